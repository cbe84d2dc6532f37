// Sign-in: the password, then the second factor the account has (a code from the authenticator
// app, a passkey, or a recovery code). An account without a second factor enrols one first (see
// enrol.js); an account with only a passkey is never asked for an app's code.
import { api, passkeyAssertion, passkeysSupported } from "../api.js";
import { button, errorText, field, fill, form, h, notify, page } from "../ui.js";
import { enrolSecondFactor } from "./enrol.js";

const REASONS = {
  expired: "Your session has ended. Sign in again.",
  idle: null, // app.js says how long the session was idle
  signedout: "You have signed out.",
};

export async function render(ctx) {
  const reason = ctx.params.get("reason");
  const next = ctx.params.get("next");
  if (reason && REASONS[reason]) notify(REASONS[reason], "info");
  let banner = null;
  try { banner = (await api.get("/api/v1/banner", { quiet: true })).banner; } catch (e) { banner = null; }
  const card = h("div", { class: "card narrow" });
  page(ctx.main, "Sign in", banner ? h("div", { class: "banner", role: "note" }, h("strong", { text: "Notice: " }), banner) : null, card);
  passwordStep(ctx, card, next);
}

function passwordStep(ctx, card, next) {
  const f = form({
    label: "Sign in",
    submit: "Continue",
    fields: [
      field({ label: "Email", name: "email", type: "email", autocomplete: "username", required: true, autofocus: true }),
      field({ label: "Password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    ],
    onSubmit: async (v) => {
      const reply = await api.post("/api/v1/auth/signin", { email: v.email.trim(), password: v.password }, { quiet: true });
      if (!reply.mfa_enrolled) {
        await enrolSecondFactor(ctx, card, { next });
        return;
      }
      secondFactorStep(ctx, card, next, reply.methods || ["totp"]);
    },
  });
  fill(card, f);
  f.querySelector("input").focus();
}

export function secondFactorStep(ctx, card, next, methods = ["totp"]) {
  const hasTotp = methods.includes("totp");
  const hasPasskey = methods.includes("passkey") && passkeysSupported();
  let recovery = !hasTotp;
  const labels = {
    code: ["Code from your authenticator app", "Six digits; a new one every 30 seconds."],
    recovery: ["Recovery code", "One of the ten codes you saved at enrolment; each works once."],
  };
  const [label0, hint0] = recovery ? labels.recovery : labels.code;
  const codeField = field({
    label: label0, name: "code", autocomplete: "one-time-code",
    inputmode: recovery ? "text" : "numeric", required: true, minlength: "6", maxlength: "40", hint: hint0,
  });
  const label = codeField.querySelector("label");
  const hint = codeField.querySelector(".hint");
  const input = codeField.querySelector("input");
  const toggle = hasTotp ? button("Use a recovery code instead", () => {
    recovery = !recovery;
    [label.textContent, hint.textContent] = recovery ? labels.recovery : labels.code;
    input.inputMode = recovery ? "text" : "numeric";
    toggle.textContent = recovery ? "Use the authenticator app instead" : "Use a recovery code instead";
    input.focus();
  }, { kind: "link" }) : null;
  const f = form({
    label: hasTotp ? "Second factor" : "Sign in with a recovery code",
    submit: "Verify",
    fields: [codeField],
    extra: toggle ? [toggle] : [],
    onSubmit: async (v) => {
      const reply = await api.post("/api/v1/auth/mfa/verify", { code: v.code.trim() }, { quiet: true });
      done(ctx, reply, next);
    },
  });
  const status = h("p", { class: "form-error", role: "alert", hidden: true });
  const passkeyButton = button("Sign in with a passkey", async (event) => {
    const btn = event.currentTarget;
    btn.disabled = true;
    status.hidden = true;
    try {
      const credential = await passkeyAssertion("/api/v1/auth/passkey/options", { quiet: true });
      const reply = await api.post("/api/v1/auth/passkey/verify", { credential }, { quiet: true });
      done(ctx, reply, next);
    } catch (e) {
      status.textContent = e.status === 409 ? "No passkey is registered for this account: use a code." : errorText(e);
      status.hidden = false;
    } finally {
      btn.disabled = false;
    }
  }, { kind: hasTotp ? "secondary wide" : "primary wide", "data-action": "passkey" });
  const parts = [h("h2", { text: "Second factor" })];
  if (hasTotp) {
    parts.push(f);
    if (hasPasskey) parts.push(h("div", { class: "or" }, h("span", { text: "or" })), status, passkeyButton);
  } else if (hasPasskey) {
    parts.push(h("p", { text: "Confirm with your passkey (this device's fingerprint, face or PIN, or your security key)." }),
      status, passkeyButton,
      h("div", { class: "or" }, h("span", { text: "or, if you lost it" })), f);
  } else {
    parts.push(h("p", { text: "Your second factor is a passkey, which this browser cannot use: sign in with a recovery code, or use a browser that supports passkeys." }), f);
  }
  fill(card, ...parts);
  (hasTotp || !hasPasskey ? input : passkeyButton).focus();
}

function done(ctx, reply, next) {
  if (reply.used_recovery_code) {
    notify(`You used a recovery code: ${reply.recovery_codes_remaining} left. Make new ones under My account.`, "info", { timeout: 0 });
  }
  return ctx.signedIn(next);
}
