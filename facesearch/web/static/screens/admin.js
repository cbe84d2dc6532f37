// Administration: an organisation administrator manages its users (roles, disable, unlock,
// password reset link), their API keys (list, revoke with a reason) and invitations; the platform administrator creates organisations and
// invites their first administrator. The API decides; this page shows what it allows.
import { api } from "../api.js";
import { ROLE_LABELS, badge, button, checkboxes, confirmDialog, dialog, errorText, field, fill, form, formatTime, h, loading, notify, page, roleLabel, secretBox, section, table } from "../ui.js";

const ORG_ROLES = ["org_admin", "investigator", "reviewer", "auditor", "ingestor"];

function tabsFor(me) {
  const tabs = [];
  if (me.roles.includes("org_admin")) tabs.push({ path: "/admin/users", label: "Users" }, { path: "/admin/api-keys", label: "API keys", title: "API keys" });
  tabs.push({ path: "/admin/invitations", label: "Invitations" });
  if (me.roles.includes("platform_admin")) tabs.unshift({ path: "/admin/organisations", label: "Organisations" });
  return tabs;
}

export async function render(ctx) {
  const tabs = tabsFor(ctx.me);
  const current = tabs.find((t) => t.path === `/admin/${ctx.rest.split("/")[0]}`) || tabs[0];
  const content = h("div", {}, loading());
  page(ctx.main, `Administration: ${current.title || current.label.toLowerCase()}`,
    h("nav", { class: "tabs", "aria-label": "Administration" }, tabs.map((t) => h("a", { href: t.path, "aria-current": t === current ? "page" : null }, t.label))),
    content);
  const screens = { "/admin/users": users, "/admin/api-keys": apiKeys, "/admin/invitations": invitations, "/admin/organisations": organisations };
  await screens[current.path](ctx, content);
}

// -- users ----------------------------------------------------------------------------------------
async function users(ctx, el) {
  const rows = await api.get("/api/v1/users");
  const reload = () => users(ctx, el);
  fill(el, section(`People of ${ctx.me.organisation}`, table({
    caption: "Users", rows, empty: "No users yet: invite someone.",
    columns: [
      { label: "Name", render: (u) => h("span", {}, h("strong", { text: u.display_name || "—" }), h("br"), h("span", { class: "mono", text: u.email })) },
      { label: "Roles", render: (u) => u.roles.map((r) => badge(roleLabel(r))) },
      { label: "State", render: (u) => [
        u.disabled ? badge("disabled", "bad") : badge("active", "ok"),
        u.locked ? [" ", badge("locked", "warn")] : null,
        u.mfa_enrolled ? null : [" ", badge("no second factor", "warn")],
      ] },
      { label: "Last sign-in", render: (u) => formatTime(u.last_login_at) },
      { label: "Actions", render: (u) => u.disabled ? "—" : h("div", { class: "cell-actions" },
        button("Roles", () => editRoles(u, reload), { kind: "secondary small", "aria-label": `Roles of ${u.email}` }),
        u.locked ? button("Unlock", async () => {
          try { await api.post(`/api/v1/users/${encodeURIComponent(u.id)}/unlock`); notify(`${u.email} unlocked.`, "success"); await reload(); } catch (e) { notify(errorText(e), "error"); }
        }, { kind: "secondary small", "aria-label": `Unlock ${u.email}` }) : null,
        button("Reset password", () => resetLink(u), { kind: "secondary small", "aria-label": `Reset password of ${u.email}` }),
        u.id === ctx.me.user_id ? null : button("Disable", async () => {
          if (!(await confirmDialog("Disable user", `Disable ${u.email}? Their sessions and API keys stop working.`, { confirm: "Disable", danger: true }))) return;
          try { await api.post(`/api/v1/users/${encodeURIComponent(u.id)}/disable`); notify(`${u.email} disabled.`, "success"); await reload(); } catch (e) { notify(errorText(e), "error"); }
        }, { kind: "danger small", "aria-label": `Disable ${u.email}` })) },
    ],
  })));
}

// -- API keys of the organisation's users -----------------------------------------------------------
const SCOPE_LABELS = { search: "Search", ingest: "Ingest", review: "Review", audit: "Audit", admin: "Administration" };

async function apiKeys(ctx, el) {
  const rows = await api.get("/api/v1/api-keys");
  const reload = () => apiKeys(ctx, el);
  const active = rows.filter((k) => k.active).length;
  fill(el, section(`API keys of ${ctx.me.organisation}`,
    h("p", { class: "hint", text: `${active} active of ${rows.length}. Keys are shown once to their owner, at creation; here you see what they may do and when they were last used, never the key itself.` }),
    table({
      caption: "API keys, newest first", rows, empty: "Nobody in the organisation has an API key.",
      columns: [
        { label: "Name", render: (k) => h("span", {}, h("strong", { text: k.name }), h("br"), h("code", { class: "mono", text: k.prefix })) },
        { label: "Owner", render: (k) => h("span", {}, k.owner_name ? [h("strong", { text: k.owner_name }), h("br")] : null, h("span", { text: k.owner_email })) },
        { label: "Scopes", render: (k) => k.scopes.map((s) => badge(SCOPE_LABELS[s] || s)) },
        { label: "Created", render: (k) => formatTime(k.created_at) },
        { label: "Expires", render: (k) => formatTime(k.expires_at) },
        { label: "Last used", render: (k) => k.last_used_at ? formatTime(k.last_used_at) : "never" },
        { label: "State", render: (k) => k.active ? badge("active", "ok") : badge(k.revoked_at ? "revoked" : "expired", "bad") },
        { label: "Actions", render: (k) => k.active ? button("Revoke", () => revokeKey(k, reload), { kind: "danger small", "aria-label": `Revoke the key ${k.name} of ${k.owner_email}` }) : "—" },
      ],
    })));
}

function revokeKey(key, reload) {
  return dialog(`Revoke the key "${key.name}"`, (close) => form({
    label: "Revoke API key",
    submit: "Revoke key",
    fields: [
      h("p", { text: `Programs using ${key.owner_email}'s key ${key.prefix} stop working at once. The reason goes into the audit log and to ${key.owner_name || key.owner_email}.` }),
      field({ label: "Reason", name: "reason", type: "textarea", required: true, minlength: "3", maxlength: "500" }),
    ],
    extra: [button("Cancel", () => close())],
    onSubmit: async (v) => {
      const reason = v.reason.trim();
      if (reason.length < 3) throw new Error("Say why the key is revoked.");
      await api.post(`/api/v1/api-keys/${encodeURIComponent(key.id)}/revoke`, { reason });
      close(true);
      notify(`Key "${key.name}" of ${key.owner_email} revoked.`, "success");
      await reload();
    },
  }));
}

function editRoles(user, reload) {
  return dialog(`Roles of ${user.email}`, (close) => form({
    label: "Roles",
    submit: "Save roles",
    fields: [checkboxes({ legend: "Roles", name: "roles", options: ORG_ROLES.map((r) => ({ value: r, label: ROLE_LABELS[r], checked: user.roles.includes(r) })) })],
    extra: [button("Cancel", () => close())],
    onSubmit: async (v) => {
      if (!v.roles.length) throw new Error("Choose at least one role.");
      await api.put(`/api/v1/users/${encodeURIComponent(user.id)}/roles`, { roles: v.roles });
      close(true);
      notify(`Roles of ${user.email} saved.`, "success");
      await reload();
    },
  }));
}

function resetLink(user) {
  return dialog(`Password reset for ${user.email}`, (close) => {
    const out = h("div", {});
    const f = form({
      label: "Password reset link",
      submit: "Create link",
      fields: [
        h("p", { text: "A one-time link for them to set a new password; hand it over yourself (facesearch sends no e-mail). Using it ends their sessions." }),
        field({ label: "Also clear their second factor (they enrol a new one)", name: "reset_second_factor", type: "checkbox" }),
        field({ label: "Valid for (hours)", name: "hours", type: "number", min: "1", max: "168", value: "24", required: true }),
      ],
      extra: [button("Close", () => close())],
      onSubmit: async (v) => {
        const reply = await api.post(`/api/v1/users/${encodeURIComponent(user.id)}/password-reset`, { expires_in_hours: Number(v.hours), reset_second_factor: v.reset_second_factor });
        fill(out, secretBox("Reset link", reply.link, { note: `Shown once; expires ${formatTime(reply.expires_at)}.` }),
          h("div", { class: "form-actions" }, button("Close", () => close(), { kind: "primary" })));
        f.remove();
        out.querySelector("pre").focus();
      },
    });
    return h("div", {}, f, out);
  });
}

// -- invitations ----------------------------------------------------------------------------------
async function invitations(ctx, el) {
  const platform = ctx.me.roles.includes("platform_admin");
  const [rows, orgs] = await Promise.all([
    api.get("/api/v1/invitations"),
    platform ? api.get("/api/v1/organisations") : Promise.resolve([]),
  ]);
  const orgName = (id) => (orgs.find((o) => o.id === id) || {}).name || "—";
  const reload = () => invitations(ctx, el);
  const created = h("div", { "data-slot": "invitation-link" });
  const fields = [field({ label: "Email", name: "email", type: "email", required: true, autocomplete: "off" })];
  if (platform) {
    fields.push(field({ label: "Organisation", name: "org_id", type: "select", required: true, options: [{ value: "", label: "Choose…" }, ...orgs.filter((o) => !o.disabled).map((o) => ({ value: o.id, label: o.name }))] }),
      h("p", { class: "hint", text: "The platform administrator invites an organisation's first administrator; they invite everyone else." }));
  } else {
    fields.push(checkboxes({ legend: "Roles", name: "roles", options: ORG_ROLES.map((r) => ({ value: r, label: ROLE_LABELS[r], checked: r === "investigator" })) }));
  }
  fields.push(field({ label: "Valid for (hours)", name: "hours", type: "number", min: "1", max: "336", value: "72", required: true }));
  const invite = form({
    label: "Invite someone",
    submit: "Create invitation",
    fields,
    onSubmit: async (v, f) => {
      const body = { email: v.email.trim(), roles: platform ? ["org_admin"] : v.roles, expires_in_hours: Number(v.hours) };
      if (!body.roles.length) throw new Error("Choose at least one role.");
      if (platform) {
        if (!v.org_id) throw new Error("Choose the organisation.");
        body.org_id = orgs.find((o) => String(o.id) === v.org_id).id;
      }
      const reply = await api.post("/api/v1/invitations", body);
      f.reset();
      await reload();
      const slot = el.querySelector("[data-slot=invitation-link]");
      fill(slot, secretBox(`Enrolment link for ${reply.email}`, reply.link, { note: `Shown once: send it to them over a channel you trust. Expires ${formatTime(reply.expires_at)}.` }));
      slot.querySelector("pre").focus();
    },
  });
  fill(el,
    h("div", { class: "grid" }, section("Invite someone", invite, created)),
    section("Invitations", table({
      caption: "Invitations, newest first", rows: [...rows].reverse(), empty: "No invitations yet.",
      columns: [
        { label: "Email", render: (r) => h("span", { class: "mono", text: r.email }) },
        ...(platform ? [{ label: "Organisation", render: (r) => orgName(r.org_id) }] : []),
        { label: "Roles", render: (r) => r.roles.map((x) => badge(roleLabel(x))) },
        { label: "State", render: (r) => badge(r.state, r.state === "pending" ? "warn" : r.state === "used" ? "ok" : "bad") },
        { label: "Expires", render: (r) => formatTime(r.expires_at) },
        { label: "Actions", render: (r) => r.state === "pending" ? button("Revoke", async () => {
          if (!(await confirmDialog("Revoke invitation", `Revoke the invitation of ${r.email}? The link stops working.`, { confirm: "Revoke", danger: true }))) return;
          try { await api.del(`/api/v1/invitations/${encodeURIComponent(r.id)}`); notify("Invitation revoked.", "success"); await reload(); } catch (e) { notify(errorText(e), "error"); }
        }, { kind: "secondary small", "aria-label": `Revoke the invitation of ${r.email}` }) : "—" },
      ],
    })));
}

// -- organisations (platform administrators) ------------------------------------------------------
async function organisations(ctx, el) {
  const rows = await api.get("/api/v1/organisations");
  const create = form({
    label: "Create an organisation",
    submit: "Create organisation",
    cls: "inline-form",
    fields: [field({ label: "Name", name: "name", required: true, maxlength: "200" })],
    onSubmit: async (v) => {
      const org = await api.post("/api/v1/organisations", { name: v.name.trim() });
      notify(`Organisation "${org.name}" created. Invite its first administrator under Invitations.`, "success");
      await organisations(ctx, el);
    },
  });
  fill(el,
    section("New organisation", create),
    section("Organisations", table({
      caption: "Organisations", rows, empty: "No organisations yet.",
      columns: [
        { label: "Name", render: (o) => h("strong", { text: o.name }) },
        { label: "Users", render: (o) => String(o.users) },
        { label: "Created", render: (o) => formatTime(o.created_at) },
        { label: "State", render: (o) => o.disabled ? badge("disabled", "bad") : badge("active", "ok") },
      ],
    })));
}
