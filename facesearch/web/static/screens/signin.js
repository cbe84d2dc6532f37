// Sign-in: the password, then the second factor (a code from the authenticator app, a recovery
// code, or a passkey). An account without a second factor enrols one first (see enrol.js).
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
      secondFactorStep(ctx, card, next);
    },
  });
  fill(card, f);
  f.querySelector("input").focus();
}

export function secondFactorStep(ctx, card, next) {
  let recovery = false;
  const codeField = field({
    label: "Code from your authenticator app", name: "code", autocomplete: "one-time-code",
    inputmode: "numeric", required: true, minlength: "6", maxlength: "40",
    hint: "Six digits; a new one every 30 seconds.",
  });
  const label = codeField.querySelector("label");
  const hint = codeField.querySelector(".hint");
  const input = codeField.querySelector("input");
  const toggle = button("Use a recovery code instead", () => {
    recovery = !recovery;
    label.textContent = recovery ? "Recovery code" : "Code from your authenticator app";
    hint.textContent = recovery ? "One of the ten codes you saved at enrolment; each works once." : "Six digits; a new one every 30 seconds.";
    input.inputMode = recovery ? "text" : "numeric";
    toggle.textContent = recovery ? "Use the authenticator app instead" : "Use a recovery code instead";
    input.focus();
  }, { kind: "link" });
  const f = form({
    label: "Second factor",
    submit: "Verify",
    fields: [codeField],
    extra: [toggle],
    onSubmit: async (v) => {
      const reply = await api.post("/api/v1/auth/mfa/verify", { code: v.code.trim() }, { quiet: true });
      done(ctx, reply, next);
    },
  });
  const parts = [h("h2", { text: "Second factor" }), f];
  if (passkeysSupported()) {
    const status = h("p", { class: "form-error", role: "alert", hidden: true });
    parts.push(h("div", { class: "or" }, h("span", { text: "or" })),
      status,
      button("Sign in with a passkey", async (event) => {
        event.currentTarget.disabled = true;
        status.hidden = true;
        try {
          const credential = await passkeyAssertion("/api/v1/auth/passkey/options", { quiet: true });
          const reply = await api.post("/api/v1/auth/passkey/verify", { credential }, { quiet: true });
          done(ctx, reply, next);
        } catch (e) {
          status.textContent = e.status === 409 ? "No passkey is registered for this account: use a code." : errorText(e);
          status.hidden = false;
        } finally {
          event.currentTarget && (event.currentTarget.disabled = false);
        }
      }, { kind: "secondary wide", "data-action": "passkey" }));
  }
  fill(card, ...parts);
  input.focus();
}

function done(ctx, reply, next) {
  if (reply.used_recovery_code) {
    notify(`You used a recovery code: ${reply.recovery_codes_remaining} left. Make new ones under My account.`, "info", { timeout: 0 });
  }
  return ctx.signedIn(next);
}
