// The application: a path router (the server answers index.html for every screen path), the
// signed-in person, the idle timeout, re-authentication prompts. Screens are modules under
// screens/ with `export async function render(ctx)`.
import { ApiError, api, onActivity, onReauth, onUnauthenticated, passkeyAssertion, passkeysSupported } from "./api.js";
import { button, clearNotices, dialog, errorText, field, fill, form, h, header, notify } from "./ui.js";

/**
 * Every screen: `path` (a prefix: "/cases" also answers "/cases/…"), its module, and, for the
 * navigation, a label and the roles that see it (none: everyone signed in). `public` screens
 * need no session. Add a screen here and its top-level path in facesearch/web/__init__.py.
 */
export const ROUTES = [
  { path: "/signin", module: "./screens/signin.js", public: true },
  { path: "/enrol", module: "./screens/enrol.js", public: true },
  { path: "/reset", module: "./screens/reset.js", public: true },
  { path: "/", module: "./screens/home.js", label: "Home" },
  { path: "/search", module: "./screens/search.js", label: "Search", roles: ["investigator"] },
  { path: "/results", module: "./screens/results.js", roles: ["investigator"] },
  { path: "/review", module: "./screens/review.js", label: "Review", roles: ["reviewer"] },
  { path: "/cases", module: "./screens/cases.js", label: "Cases", roles: ["investigator", "reviewer", "auditor"] },
  { path: "/collections", module: "./screens/collections.js", label: "Collections", roles: ["org_admin", "ingestor", "investigator"] },
  { path: "/ingest", module: "./screens/ingest.js", label: "Ingest jobs", roles: ["org_admin", "ingestor"] },
  { path: "/admin", module: "./screens/admin.js", label: "Administration", roles: ["org_admin", "platform_admin"] },
  { path: "/audit", module: "./screens/audit.js", label: "Audit", roles: ["auditor"] },
  { path: "/account", module: "./screens/account.js" },
];

const state = { me: null, idle: null, rendering: 0 };

function matchRoute(pathname) {
  const candidates = ROUTES.filter((r) => r.path === "/" ? pathname === "/" : pathname === r.path || pathname.startsWith(`${r.path}/`));
  candidates.sort((a, b) => b.path.length - a.path.length);
  return candidates[0] || null;
}

export function navItems(me) {
  return ROUTES.filter((r) => r.label && (!r.roles || r.roles.some((role) => me.roles.includes(role))));
}

export function mayOpen(route, me) {
  return !route.roles || route.roles.some((role) => me.roles.includes(role));
}

/** Go to an in-app path (pushState) and render it. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState({}, "", path);
  else history.pushState({}, "", path);
  return render();
}

async function loadMe() {
  state.me = await api.get("/api/v1/me", { quiet: true });
  idle.start(state.me.session_idle_minutes);
  return state.me;
}

/** After the second factor is verified: load who signed in, then go on. */
export async function signedIn(next) {
  await loadMe();
  const target = next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/signin") ? next : "/";
  return navigate(target, { replace: true });
}

export async function signOut(reason) {
  idle.stop();
  try { await api.post("/api/v1/auth/signout", undefined, { quiet: true }); } catch (e) { /* gone already */ }
  state.me = null;
  const q = reason ? `?reason=${encodeURIComponent(reason)}` : "";
  return navigate(`/signin${q}`, { replace: true });
}

function toSignIn(reason) {
  idle.stop();
  state.me = null;
  const here = location.pathname + location.search;
  const params = new URLSearchParams();
  if (reason) params.set("reason", reason);
  if (here !== "/" && !here.startsWith("/signin")) params.set("next", here);
  const q = params.toString();
  return navigate(`/signin${q ? `?${q}` : ""}`, { replace: true });
}

async function render() {
  const ticket = ++state.rendering;
  const main = document.getElementById("main");
  const head = document.getElementById("app-header");
  const route = matchRoute(location.pathname);
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  if (!route) {
    header(head, { me: state.me, nav: state.me ? navItems(state.me) : [], current: null, onSignOut: () => signOut() });
    fill(main, h("h1", { tabindex: "-1", text: "Page not found" }), h("p", {}, h("a", { href: "/" }, "Back to the start")));
    return;
  }
  if (!route.public && !state.me) {
    try {
      await loadMe();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return toSignIn();
      fill(main, h("h1", { text: "facesearch" }), h("p", { class: "form-error", role: "alert", text: errorText(e) }));
      return;
    }
  }
  if (ticket !== state.rendering) return;
  const me = route.public ? null : state.me;
  header(head, { me, nav: me ? navItems(me) : [], current: route.path, onSignOut: () => signOut() });
  if (me && !mayOpen(route, me)) {
    document.title = "Not allowed · facesearch";
    fill(main, h("h1", { tabindex: "-1", text: "Not allowed" }),
      h("p", { text: "Your roles do not open this page." }), h("p", {}, h("a", { href: "/" }, "Back to the start")));
    return;
  }
  const module = await import(route.module);
  if (ticket !== state.rendering) return;
  const url = new URL(location.href);
  const ctx = {
    main, me, route, url,
    rest: location.pathname.slice(route.path.length).replace(/^\//, ""),
    params: url.searchParams,
    navigate, signedIn, signOut,
    refreshMe: loadMe,
  };
  try {
    await module.render(ctx);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && !e.reauthRequired) return;
    console.error(e);
    fill(main, h("h1", { tabindex: "-1", text: "Something went wrong" }), h("p", { class: "form-error", role: "alert", text: errorText(e) }));
  }
}

// -- the idle timeout: the server ends a session after `session_idle_minutes` without a request;
// the page warns before, then returns to sign-in -------------------------------------------------
export const idle = {
  minutes: null, warnTimer: null, endTimer: null, warning: null,
  start(minutes) {
    this.minutes = minutes || null;
    this.touch();
  },
  stop() {
    clearTimeout(this.warnTimer);
    clearTimeout(this.endTimer);
    this.minutes = null;
    if (this.warning) { this.warning.close(); this.warning = null; }
  },
  /** Warn this many seconds before the end: a fifth of the timeout, between 15 s and 2 min. */
  lead(total) { return Math.max(15, Math.min(120, Math.round(total / 5))); },
  touch() {
    clearTimeout(this.warnTimer);
    clearTimeout(this.endTimer);
    if (!this.minutes) return;
    if (this.warning) { this.warning.close(); this.warning = null; }
    // the server notes a session's last request at most every 30 s, so it may count idleness
    // from up to 30 s before this one: end that much early (for timeouts of 5 minutes or more)
    const total = this.minutes * 60 - (this.minutes >= 5 ? 30 : 0);
    const lead = this.lead(total);
    this.warnTimer = setTimeout(() => this.warn(lead), (total - lead) * 1000);
    this.endTimer = setTimeout(() => this.expire(), total * 1000);
  },
  warn(seconds) {
    const el = h("dialog", { class: "dialog", "aria-labelledby": "idle-title", "aria-describedby": "idle-text", "data-dialog": "idle" },
      h("h2", { id: "idle-title", text: "Still there?" }),
      h("p", { id: "idle-text", text: `Your session ends in ${seconds} seconds without activity.` }),
      h("div", { class: "form-actions" },
        button("Stay signed in", async () => {
          try { await api.get("/api/v1/me"); } catch (e) { /* 401: the hook sends us to sign-in */ }
        }, { kind: "primary" }),
        button("Sign out", () => signOut())));
    el.addEventListener("close", () => { el.remove(); if (this.warning === el) this.warning = null; });
    document.body.append(el);
    el.showModal();
    this.warning = el;
  },
  expire() {
    const minutes = this.minutes;
    this.stop();
    signOut("idle").then(() => {
      notify(`Your session ended after ${minutes} minute${minutes === 1 ? "" : "s"} without activity. Sign in again.`, "info", { timeout: 0 });
    });
  },
};

// -- re-authentication: the API asks for the password and the second factor again ----------------
function reauthenticate() {
  return dialog("Confirm it is you", (close) => {
    const passwordField = field({ label: "Password", name: "password", type: "password", autocomplete: "current-password", required: true });
    const codeField = field({ label: "Code from your authenticator app (or a recovery code)", name: "code", autocomplete: "one-time-code", inputmode: "numeric", minlength: "6", maxlength: "40" });
    const extra = [button("Cancel", () => close(false))];
    const f = form({
      label: "Re-authenticate",
      fields: [h("p", { text: "This action needs your password and second factor again." }), passwordField, codeField],
      submit: "Confirm",
      extra,
      onSubmit: async (v) => {
        if (!v.code) throw new Error("Enter a code, or use a passkey.");
        await api.post("/api/v1/auth/reauth", { password: v.password, code: v.code.trim() }, { noReauth: true });
        close(true);
      },
    });
    if (passkeysSupported()) {
      extra.push(button("Use a passkey", async () => {
        const password = f.querySelector("input[name=password]").value;
        if (!password) { notify("Enter your password first.", "error"); return; }
        try {
          const credential = await passkeyAssertion("/api/v1/auth/reauth/passkey/options", { noReauth: true });
          await api.post("/api/v1/auth/reauth/passkey", { password, credential }, { noReauth: true });
          close(true);
        } catch (e) { notify(errorText(e), "error"); }
      }));
      f.querySelector(".form-actions").append(extra[1]);
    }
    return f;
  }).then((ok) => { if (!ok) throw new ApiError(401, "re-authentication cancelled"); });
}

// -- start ----------------------------------------------------------------------------------------
onUnauthenticated(() => { if (state.me) toSignIn("expired"); });
onReauth(reauthenticate);
onActivity(() => { if (state.me) idle.touch(); });

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[href]");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/static/")) return;
  if (url.pathname === location.pathname && url.hash && !url.search) return;
  event.preventDefault();
  clearNotices();
  navigate(url.pathname + url.search + url.hash);
});
window.addEventListener("popstate", () => render());

if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => { /* the app works without it */ });
}

render();
