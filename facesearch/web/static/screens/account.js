// My account: profile, password, second factor, recovery codes, passkeys, sessions, API keys,
// notices. Sensitive actions ask for re-authentication when the API demands it (api.js).
import { api, passkeyCreation, passkeysSupported } from "../api.js";
import { badge, button, checkboxes, confirmDialog, errorText, field, fill, form, formatTime, h, loading, notify, page, roleLabel, secretBox, section, table } from "../ui.js";
import { PASSWORD_HINT } from "./enrol.js";

const FACTOR_LABELS = { totp: "Authenticator app", passkey: "Passkey" };
const SCOPE_LABELS = { search: "Search", ingest: "Ingest", review: "Review", audit: "Audit", admin: "Administration" };

export async function render(ctx) {
  const me = ctx.me;
  const profile = section("Profile",
    h("dl", { class: "facts" },
      h("dt", { text: "Name" }), h("dd", { text: me.display_name || "—" }),
      h("dt", { text: "Email" }), h("dd", { text: me.email }),
      h("dt", { text: "Organisation" }), h("dd", { text: me.organisation || "Platform" }),
      h("dt", { text: "Roles" }), h("dd", {}, me.roles.map((r) => badge(roleLabel(r)))),
      h("dt", { text: "Second factor" }), h("dd", { text: (me.second_factors || []).map((f) => FACTOR_LABELS[f] || f).join(", ") || "—" }),
      h("dt", { text: "Recovery codes left" }), h("dd", { text: String(me.recovery_codes_remaining) })));
  const slots = {
    notices: section("Notices", loading()),
    password: section("Password", passwordForm(ctx)),
    factor: section("Second factor", secondFactor(ctx)),
    passkeys: section("Passkeys", loading()),
    sessions: section("Sessions", loading()),
    keys: section("API keys", loading()),
  };
  page(ctx.main, "My account", h("div", { class: "grid" }, profile, slots.notices, slots.password, slots.factor, slots.passkeys), slots.sessions, slots.keys);
  await Promise.all([
    loadNotices(slots.notices), loadPasskeys(ctx, slots.passkeys), loadSessions(ctx, slots.sessions), loadKeys(ctx, slots.keys),
  ]);
}

function body(sectionEl, ...content) {
  const heading = sectionEl.querySelector("h2");
  fill(sectionEl, heading, ...content);
}

// -- notices --------------------------------------------------------------------------------------
async function loadNotices(el) {
  const items = await api.get("/api/v1/me/notices");
  body(el, items.length
    ? h("ul", { class: "notice-list" }, items.slice(0, 10).map((n) => h("li", {}, h("span", { text: n.message }), " ", h("time", { class: "hint", datetime: n.created_at, text: formatTime(n.created_at) }))))
    : h("p", { class: "empty", text: "Nothing new about your account." }));
}

// -- password -------------------------------------------------------------------------------------
function passwordForm(ctx) {
  return form({
    label: "Change password",
    submit: "Change password",
    fields: [
      field({ label: "Current password", name: "current", type: "password", autocomplete: "current-password", required: true }),
      field({ label: "New password", name: "new", type: "password", autocomplete: "new-password", required: true, minlength: "12", hint: PASSWORD_HINT }),
      field({ label: "New password again", name: "again", type: "password", autocomplete: "new-password", required: true }),
    ],
    onSubmit: async (v, f) => {
      if (v.new !== v.again) throw new Error("The two new passwords differ.");
      const reply = await api.post("/api/v1/me/password", { current_password: v.current, new_password: v.new });
      f.reset();
      notify(`Password changed. ${reply.other_sessions_ended} other session(s) ended.`, "success");
    },
  });
}

// -- second factor and recovery codes -------------------------------------------------------------
function secondFactor(ctx) {
  const out = h("div", {});
  const factors = ctx.me.second_factors || [];
  const hasTotp = factors.includes("totp");
  const start = () => fill(out,
    hasTotp
      ? h("p", { text: "Replace your authenticator app (a new phone, a lost device). The current one keeps working until you confirm a code of the new one." })
      : h("p", { text: "Your second factor is a passkey. You can add an authenticator app as a second way to sign in (for a device without your passkey)." }),
    h("div", { class: "form-actions" },
      button(hasTotp ? "Set up a new authenticator" : "Add an authenticator app", reenrol, { kind: "secondary", "data-action": "reenrol" }),
      button("New recovery codes", regenerate, { kind: "secondary", "data-action": "recovery-codes" })));
  async function reenrol() {
    try {
      const enrolment = await api.post("/api/v1/me/mfa/enrol");
      const qr = h("img", { class: "qr", alt: "QR code of your new authenticator secret (the key is also written below)", width: "220", height: "220", src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}` });
      fill(out, h("p", { text: "Scan this with the new authenticator app, then type the code it shows." }),
        h("div", { class: "qr-wrap" }, qr),
        h("details", { class: "manual-key" }, h("summary", { text: "Cannot scan? Enter the key by hand" }), h("p", {}, h("code", { class: "secret-inline", text: enrolment.secret }))),
        form({
          label: "Confirm the new authenticator",
          submit: "Confirm",
          fields: [field({ label: "Code from the new app", name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, minlength: "6", maxlength: "12" })],
          extra: [button("Cancel", start)],
          onSubmit: async (v) => {
            const reply = await api.post("/api/v1/me/mfa/confirm", { code: v.code.trim() });
            showCodes(reply.recovery_codes, hasTotp
              ? "The new authenticator is in use. Your old recovery codes no longer work."
              : "The authenticator app is added: sign in with it or your passkey. Your old recovery codes no longer work.", !hasTotp);
          },
        }));
    } catch (e) { notify(errorText(e), "error"); }
  }
  async function regenerate() {
    if (!(await confirmDialog("New recovery codes", "Your current recovery codes stop working at once.", { confirm: "Make new codes" }))) return;
    try {
      const reply = await api.post("/api/v1/me/recovery-codes");
      showCodes(reply.recovery_codes, "Your old recovery codes no longer work.");
    } catch (e) { notify(errorText(e), "error"); }
  }
  function showCodes(codes, message, reload = false) {
    const saved = reload ? async () => { await ctx.refreshMe(); await ctx.navigate("/account", { replace: true }); } : start;
    fill(out, h("p", { text: message }), secretBox("Your recovery codes", codes.join("\n")),
      h("div", { class: "form-actions" }, button("I have saved them", saved, { kind: "primary" })));
    out.querySelector("pre").focus();
  }
  start();
  return out;
}

// -- passkeys -------------------------------------------------------------------------------------
async function loadPasskeys(ctx, el) {
  const items = await api.get("/api/v1/me/passkeys");
  const nameField = field({ label: "Name of the new passkey", name: "name", value: "This device", maxlength: "200" });
  const add = passkeysSupported()
    ? form({
      label: "Add a passkey", submit: "Add a passkey", cls: "inline-form", fields: [nameField],
      onSubmit: async (v) => {
        const credential = await passkeyCreation("/api/v1/me/passkeys/options");
        await api.post("/api/v1/me/passkeys", { name: v.name || "passkey", credential });
        notify("Passkey added: you can sign in with it instead of a code.", "success");
        await loadPasskeys(ctx, el);
      },
    })
    : h("p", { class: "hint", text: "This browser does not support passkeys." });
  body(el,
    table({
      caption: "Your passkeys", empty: "No passkey yet.", rows: items,
      columns: [
        { label: "Name", render: (r) => h("span", {}, h("strong", { text: r.name }), h("br"), h("span", { class: "hint", text: `added ${formatTime(r.created_at)}` })) },
        { label: "Last used", render: (r) => formatTime(r.last_used_at) },
        { label: "Actions", render: (r) => button("Remove", async () => {
          if (!(await confirmDialog("Remove passkey", `Remove the passkey "${r.name}"?`, { confirm: "Remove", danger: true }))) return;
          try { await api.del(`/api/v1/me/passkeys/${encodeURIComponent(r.id)}`); await loadPasskeys(ctx, el); } catch (e) { notify(errorText(e), "error"); }
        }, { kind: "secondary small" }) },
      ],
    }), add);
}

// -- sessions -------------------------------------------------------------------------------------
async function loadSessions(ctx, el) {
  const items = await api.get("/api/v1/me/sessions");
  body(el,
    table({
      caption: "Where you are signed in", rows: items,
      columns: [
        { label: "Browser", render: (r) => h("span", {}, r.user_agent ? shortAgent(r.user_agent) : "—", r.current ? [" ", badge("this session", "ok")] : null) },
        { label: "Address", render: (r) => r.ip || "—" },
        { label: "Signed in", render: (r) => formatTime(r.created_at) },
        { label: "Last seen", render: (r) => formatTime(r.last_seen_at) },
        { label: "Actions", render: (r) => r.current ? "—" : button("End", async () => {
          try { await api.del(`/api/v1/me/sessions/${encodeURIComponent(r.id)}`); notify("Session ended.", "success"); await loadSessions(ctx, el); } catch (e) { notify(errorText(e), "error"); }
        }, { kind: "secondary small" }) },
      ],
    }),
    h("div", { class: "form-actions" }, button("Sign out everywhere", async () => {
      if (!(await confirmDialog("Sign out everywhere", "End every session of yours, this one included?", { confirm: "Sign out everywhere", danger: true }))) return;
      try { await api.post("/api/v1/auth/signout-all"); } catch (e) { notify(errorText(e), "error"); return; }
      await ctx.signOut("signedout");
    }, { kind: "danger", "data-action": "signout-all" })));
}

function shortAgent(ua) {
  const m = ua.match(/(Firefox|Edg|Chrome|Chromium|Safari)\/[\d.]+/);
  const os = ua.match(/\(([^;)]+)/);
  return `${m ? m[0].split("/")[0].replace("Edg", "Edge") : "Browser"}${os ? ` on ${os[1]}` : ""}`;
}

// -- API keys -------------------------------------------------------------------------------------
async function loadKeys(ctx, el) {
  const items = await api.get("/api/v1/me/api-keys");
  const shown = h("div", {});
  const create = form({
    label: "Create an API key",
    submit: "Create key",
    fields: [
      field({ label: "Name", name: "name", required: true, maxlength: "200", hint: "What the key is for (a script, a server)." }),
      checkboxes({ legend: "Scopes", name: "scopes", hint: "Only what your roles allow.", options: ctx.me.scopes.map((s) => ({ value: s, label: SCOPE_LABELS[s] || s })) }),
      field({ label: "Expires in (days)", name: "days", type: "number", min: "1", max: "365", value: "30", required: true }),
    ],
    onSubmit: async (v, f) => {
      if (!v.scopes.length) throw new Error("Choose at least one scope.");
      const key = await api.post("/api/v1/me/api-keys", { name: v.name.trim(), scopes: v.scopes, expires_in_days: Number(v.days) });
      f.reset();
      await loadKeys(ctx, el);
      const box = el.querySelector("[data-slot=new-key]");
      fill(box, secretBox(`API key "${key.name}"`, key.key, { note: "Shown only now: copy it into your program's configuration." }));
      box.querySelector("pre").focus();
    },
  });
  body(el,
    table({
      caption: "Your API keys", empty: "No API key yet.", rows: items,
      columns: [
        { label: "Name", key: "name" },
        { label: "Prefix", render: (r) => h("code", { class: "mono", text: r.prefix }) },
        { label: "Scopes", render: (r) => r.scopes.map((s) => badge(SCOPE_LABELS[s] || s)) },
        { label: "Expires", render: (r) => formatTime(r.expires_at) },
        { label: "Last used", render: (r) => formatTime(r.last_used_at) },
        { label: "State", render: (r) => r.active ? badge("active", "ok") : badge(r.revoked_at ? "revoked" : "expired", "bad") },
        { label: "Actions", render: (r) => r.active ? button("Revoke", async () => {
          if (!(await confirmDialog("Revoke API key", `Revoke "${r.name}"? Programs using it stop working.`, { confirm: "Revoke", danger: true }))) return;
          try { await api.del(`/api/v1/me/api-keys/${encodeURIComponent(r.id)}`); notify("Key revoked.", "success"); await loadKeys(ctx, el); } catch (e) { notify(errorText(e), "error"); }
        }, { kind: "secondary small" }) : "—" },
      ],
    }),
    h("div", { "data-slot": "new-key" }, shown),
    h("h3", { text: "New key" }), create);
}
