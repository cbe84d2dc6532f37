// Enrolment from an invitation (or the bootstrap) link `/enrol#token=…`: set a password, sign in,
// choose the second factor (an authenticator app with a QR code, or a passkey: either alone is
// enough), keep the recovery codes ("I have saved them"), and after TOTP optionally add a passkey
// while the session is fresh. The token travels in the fragment,
// which the browser never sends to a server; the page drops it from the address bar at once.
import { api, passkeyCreation, passkeysSupported } from "../api.js";
import { button, errorText, field, fill, form, h, notify, page, secretBox } from "../ui.js";

export const PASSWORD_HINT = "At least 12 characters; not a common password. A passphrase of a few words is good.";

let pendingToken = null;

export async function render(ctx) {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || pendingToken;
  if (location.hash) history.replaceState(null, "", location.pathname);
  pendingToken = token;
  const card = h("div", { class: "card narrow" });
  page(ctx.main, "Set up your account", card);
  if (!token) {
    fill(card, h("p", { text: "This page needs the enrolment link you were given (it ends with #token=…). Ask your administrator for a new one." }),
      h("p", {}, h("a", { href: "/signin" }, "Sign in")));
    return;
  }
  const passwordField = field({ label: "New password", name: "password", type: "password", autocomplete: "new-password", required: true, minlength: "12", hint: PASSWORD_HINT });
  const f = form({
    label: "Set a password",
    submit: "Set password",
    fields: [
      h("p", { text: "Step 1 of 3: choose your name and a password." }),
      field({ label: "Your name (shown to your colleagues)", name: "display_name", autocomplete: "name", maxlength: "200" }),
      passwordField,
      field({ label: "New password again", name: "again", type: "password", autocomplete: "new-password", required: true }),
    ],
    onSubmit: async (v) => {
      if (v.password !== v.again) throw new Error("The two passwords differ.");
      const accepted = await api.post("/api/v1/invitations/accept", { token, password: v.password, display_name: v.display_name.trim() }, { quiet: true });
      pendingToken = null;
      const signin = await api.post("/api/v1/auth/signin", { email: accepted.email, password: v.password }, { quiet: true });
      if (signin.mfa_enrolled) {
        // the address already had an account: its own second factor applies
        notify("This address already has an account: sign in with it.", "info");
        return ctx.navigate("/signin", { replace: true });
      }
      await enrolSecondFactor(ctx, card, { email: accepted.email });
    },
  });
  fill(card, f);
}

/** After a password-only sign-in of an account without a second factor: choose one. */
export async function enrolSecondFactor(ctx, card, { next } = {}) {
  if (!passkeysSupported()) return enrolTotp(ctx, card, { next });
  const status = h("p", { class: "form-error", role: "alert", hidden: true });
  const nameField = field({ label: "A name for this passkey", name: "name", value: "This device", maxlength: "200" });
  fill(card,
    h("h2", { text: "Choose your second factor" }),
    h("p", { text: "Step 2 of 3: besides your password, sign-in needs one of these. You can add the other later under My account." }),
    h("div", { class: "choice" },
      h("section", { class: "choice-option", "aria-labelledby": "choice-totp" },
        h("h3", { id: "choice-totp", text: "An authenticator app" }),
        h("p", { text: "An app on your phone (FreeOTP, Aegis, Google Authenticator, 1Password…) shows a new six-digit code every 30 seconds." }),
        button("Use an authenticator app", () => enrolTotp(ctx, card, { next }), { kind: "secondary", "data-action": "choose-totp" })),
      h("section", { class: "choice-option", "aria-labelledby": "choice-passkey" },
        h("h3", { id: "choice-passkey", text: "A passkey" }),
        h("p", { text: "This device's fingerprint, face or PIN, or a security key. Nothing to type, and it cannot be used on a look-alike site." }),
        nameField, status,
        button("Use a passkey", async (event) => {
          const btn = event.currentTarget;
          btn.disabled = true;
          status.hidden = true;
          try {
            const credential = await passkeyCreation("/api/v1/auth/passkey/enrol/options", { quiet: true });
            const name = nameField.querySelector("input").value.trim() || "passkey";
            const reply = await api.post("/api/v1/auth/passkey/enrol", { name, credential }, { quiet: true });
            showRecoveryCodes(ctx, card, reply.recovery_codes || [], next, { passkey: true });
          } catch (e) {
            status.textContent = e.name === "NotAllowedError" ? "The passkey was not created (cancelled or timed out). Try again, or use an authenticator app." : errorText(e);
            status.hidden = false;
            btn.disabled = false;
          }
        }, { kind: "primary", "data-action": "choose-passkey" }))));
  card.querySelector("h2").setAttribute("tabindex", "-1");
  card.querySelector("h2").focus();
}

/** Enrol TOTP: the QR code and a first code. */
export async function enrolTotp(ctx, card, { next } = {}) {
  const enrolment = await api.post("/api/v1/auth/mfa/enrol", {}, { quiet: true });
  const qr = h("img", {
    class: "qr", alt: "QR code of your authenticator secret (the key is also written below)",
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`, width: "220", height: "220",
  });
  const f = form({
    label: "Confirm the authenticator",
    submit: "Verify",
    fields: [field({ label: "The six-digit code your app shows now", name: "code", autocomplete: "one-time-code", inputmode: "numeric", required: true, minlength: "6", maxlength: "12" })],
    onSubmit: async (v) => {
      const reply = await api.post("/api/v1/auth/mfa/verify", { code: v.code.trim() }, { quiet: true });
      showRecoveryCodes(ctx, card, reply.recovery_codes || [], next);
    },
  });
  fill(card,
    h("h2", { text: "Second factor: an authenticator app" }),
    h("p", { text: "Step 2 of 3: scan this code with an authenticator app (for example FreeOTP, Aegis, Google Authenticator or 1Password), then type the code it shows." }),
    h("div", { class: "qr-wrap" }, qr),
    h("details", { class: "manual-key" }, h("summary", { text: "Cannot scan? Enter the key by hand" }),
      h("p", {}, "Key: ", h("code", { class: "secret-inline", "data-secret": "totp", text: enrolment.secret })),
      h("p", { class: "hint", text: "Time-based (TOTP), 6 digits, 30 seconds." })),
    f,
    passkeysSupported() ? h("p", {}, button("Use a passkey instead", () => enrolSecondFactor(ctx, card, { next }), { kind: "link", "data-action": "back-to-choice" })) : null);
  f.querySelector("input").focus();
}

function showRecoveryCodes(ctx, card, codes, next, { passkey = false } = {}) {
  const saved = field({ label: "I have saved these recovery codes somewhere safe", name: "saved", type: "checkbox", required: true });
  const f = form({
    label: "Recovery codes",
    submit: "Continue",
    fields: [saved],
    onSubmit: async () => (passkey ? ctx.signedIn(next) : offerPasskey(ctx, card, next)),
  });
  fill(card,
    h("h2", { text: "Recovery codes" }),
    h("p", { text: `Step 3 of 3: each of these codes signs you in once if you lose your ${passkey ? "passkey" : "authenticator"}. They are shown only now.` }),
    secretBox("Your recovery codes", codes.join("\n")),
    f);
  card.querySelector("pre").focus();
}

function offerPasskey(ctx, card, next) {
  if (!passkeysSupported()) return ctx.signedIn(next);
  const status = h("p", { class: "form-error", role: "alert", hidden: true });
  const nameField = field({ label: "A name for this passkey", name: "name", value: "This device", maxlength: "200" });
  fill(card,
    h("h2", { text: "Add a passkey (optional)" }),
    h("p", { text: "A passkey (your device's fingerprint, face or PIN, or a security key) can replace the code at sign-in. You can add one later under My account." }),
    status, nameField,
    h("div", { class: "form-actions" },
      button("Add a passkey", async () => {
        status.hidden = true;
        try {
          const credential = await passkeyCreation("/api/v1/me/passkeys/options");
          await api.post("/api/v1/me/passkeys", { name: nameField.querySelector("input").value || "passkey", credential });
          notify("Passkey added.", "success");
          await ctx.signedIn(next);
        } catch (e) {
          status.textContent = errorText(e);
          status.hidden = false;
        }
      }, { kind: "primary", "data-action": "add-passkey" }),
      button("Not now", () => ctx.signedIn(next), { "data-action": "skip-passkey" })));
}
