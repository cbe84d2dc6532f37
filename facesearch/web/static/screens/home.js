// The start page: what this person's roles let them do.
import { h, page, roleLabel } from "../ui.js";
import { navItems } from "../app.js";

export async function render(ctx) {
  const me = ctx.me;
  const items = navItems(me).filter((i) => i.path !== "/");
  page(ctx.main, `Welcome, ${me.display_name || me.email}`,
    h("p", { class: "lead" }, `${me.organisation || "Platform"} · ${me.roles.map(roleLabel).join(", ")}`),
    h("ul", { class: "tiles" },
      items.map((i) => h("li", {}, h("a", { href: i.path, class: "tile" }, i.label))),
      h("li", {}, h("a", { href: "/account", class: "tile" }, "My account"))),
    h("p", { class: "hint" }, "Candidates found by a search are leads for a person to review, not proof of who someone is."));
}
