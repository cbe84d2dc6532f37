// A password reset link `/reset#token=…` from an administrator: set a new password, then sign in.
import { api } from "../api.js";
import { field, fill, form, h, notify, page } from "../ui.js";
import { PASSWORD_HINT } from "./enrol.js";

let pendingToken = null;

export async function render(ctx) {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || pendingToken;
  if (location.hash) history.replaceState(null, "", location.pathname);
  pendingToken = token;
  const card = h("div", { class: "card narrow" });
  page(ctx.main, "Set a new password", card);
  if (!token) {
    fill(card, h("p", { text: "This page needs the reset link your administrator gave you (it ends with #token=…)." }));
    return;
  }
  fill(card, form({
    label: "Set a new password",
    submit: "Set password",
    fields: [
      field({ label: "New password", name: "password", type: "password", autocomplete: "new-password", required: true, minlength: "12", hint: PASSWORD_HINT }),
      field({ label: "New password again", name: "again", type: "password", autocomplete: "new-password", required: true }),
    ],
    onSubmit: async (v) => {
      if (v.password !== v.again) throw new Error("The two passwords differ.");
      await api.post("/api/v1/auth/password-reset/accept", { token, password: v.password }, { quiet: true });
      pendingToken = null;
      notify("Your password is set. Sign in with it.", "success");
      await ctx.navigate("/signin", { replace: true });
    },
  }));
}
