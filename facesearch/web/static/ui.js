// Shared building blocks: elements, the layout (header, navigation, notices), forms, tables,
// dialogs. No inline style or script anywhere (the CSP forbids both): classes, and CSSOM from
// JS where a value must be computed.
import { ApiError } from "./api.js";

export const ROLE_LABELS = {
  platform_admin: "Platform administrator",
  org_admin: "Organisation administrator",
  investigator: "Investigator",
  reviewer: "Reviewer",
  auditor: "Auditor",
  ingestor: "Ingestor",
};

let ids = 0;
export function uid(prefix = "f") { ids += 1; return `${prefix}-${ids}`; }

/** h("button", {class: "primary", onclick: fn, type: "button"}, "Save") */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (["checked", "disabled", "required", "hidden", "multiple", "selected", "open", "readOnly"].includes(key)) el[key] = Boolean(value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

/** Replace `el`'s content. */
export function fill(el, ...children) { clear(el); append(el, children); return el; }

export function roleLabel(role) { return ROLE_LABELS[role] || role; }

export function formatTime(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// -- notices --------------------------------------------------------------------------------------
/** A message in the notices area: kind "info" | "success" | "error". */
export function notify(message, kind = "info", { timeout } = {}) {
  const area = document.getElementById("notices");
  const note = h("div", { class: ["notice", `notice-${kind}`], role: kind === "error" ? "alert" : "status" },
    h("p", { text: message }),
    h("button", { type: "button", class: "notice-close", "aria-label": "Dismiss", onclick: () => note.remove(), text: "×" }));
  area.append(note);
  const ms = timeout ?? (kind === "error" ? 0 : 8000);
  if (ms) setTimeout(() => note.remove(), ms);
  return note;
}

export function clearNotices() { clear(document.getElementById("notices")); }

// -- page structure -----------------------------------------------------------------------------
/** The page's heading and title; focus moves to it (screen readers announce the new page). */
export function page(main, title, ...content) {
  document.title = `${title} · facesearch`;
  const heading = h("h1", { tabindex: "-1", text: title });
  fill(main, heading, ...content);
  heading.focus({ preventScroll: false });
  return heading;
}

export function section(title, ...content) {
  const id = uid("s");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id, text: title }), ...content);
}

export function button(label, onclick, { kind = "secondary", type = "button", ...attrs } = {}) {
  return h("button", { type, class: ["button", kind], onclick, ...attrs }, label);
}

/** A person as the API names them (display name or email of a user of your organisation), with
 *  the opaque id as the tooltip for auditors; `name` is null for anyone the organisation does not
 *  name (the API gives no names across organisations). */
export function person(name, id, { fallback = "an account outside your organisation" } = {}) {
  if (id == null) return h("span", { class: "person", text: fallback });
  return h("span", { class: "person", title: `user id ${id}`, "data-user-id": String(id), text: name || fallback });
}

export function link(href, label, attrs = {}) { return h("a", { href, ...attrs }, label); }

export function badge(text, kind = "") { return h("span", { class: ["badge", kind && `badge-${kind}`] }, text); }

/** The header: product, navigation (only what the person's roles open), who is signed in. */
export function header(el, { me, nav, current, onSignOut }) {
  clear(el);
  const brand = h("a", { href: "/", class: "brand" },
    h("img", { src: "/static/icons/icon.svg", alt: "", width: "28", height: "28" }), h("span", { text: "facesearch" }));
  if (!me) { el.append(brand); return; }
  const navId = uid("nav");
  const toggle = h("button", {
    type: "button", class: "nav-toggle", "aria-expanded": "false", "aria-controls": navId,
  }, "Menu");
  const list = h("ul", {}, nav.map((item) => h("li", {},
    h("a", { href: item.path, "aria-current": current === item.path ? "page" : null }, item.label))));
  const navEl = h("nav", { id: navId, class: "nav", "aria-label": "Main" }, list);
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    navEl.classList.toggle("open", open);
  });
  const who = h("div", { class: "who" },
    h("div", { class: "who-name" }, me.display_name || me.email),
    h("div", { class: "who-org" }, me.organisation || "Platform"),
    h("div", { class: "who-roles" }, me.roles.map((r) => badge(roleLabel(r)))));
  const actions = h("div", { class: "who-actions" },
    h("a", { href: "/account", class: "button secondary small", "aria-current": current === "/account" ? "page" : null }, "My account"),
    button("Sign out", onSignOut, { kind: "secondary small", "data-action": "signout" }));
  el.append(h("div", { class: "header-bar" }, brand, toggle), navEl, h("div", { class: "header-user" }, who, actions));
}

// -- forms --------------------------------------------------------------------------------------
/** A labelled input: {label, name, type, hint, required, autocomplete, value, options, ...}. */
export function field({ label, name, type = "text", hint, options, ...attrs }) {
  const id = uid(name || "f");
  const hintId = hint ? `${id}-hint` : null;
  let control;
  if (type === "select") {
    control = h("select", { id, name, "aria-describedby": hintId, ...attrs },
      (options || []).map((o) => h("option", { value: o.value, selected: o.selected }, o.label)));
  } else if (type === "textarea") {
    control = h("textarea", { id, name, "aria-describedby": hintId, ...attrs });
  } else if (type === "checkbox") {
    control = h("input", { id, name, type, "aria-describedby": hintId, ...attrs });
    return h("div", { class: "field field-check" }, control, h("label", { for: id, text: label }),
      hint ? h("p", { id: hintId, class: "hint", text: hint }) : null);
  } else {
    control = h("input", { id, name, type, "aria-describedby": hintId, ...attrs });
  }
  return h("div", { class: "field" }, h("label", { for: id, text: label }),
    hint ? h("p", { id: hintId, class: "hint", text: hint }) : null, control);
}

/** A group of checkboxes with one legend; values come back as a list under `name`. */
export function checkboxes({ legend, name, options, hint }) {
  const hintId = hint ? uid("hint") : null;
  return h("fieldset", { class: "field checks", "aria-describedby": hintId },
    h("legend", { text: legend }),
    hint ? h("p", { id: hintId, class: "hint", text: hint }) : null,
    options.map((o) => {
      const id = uid(name);
      return h("div", { class: "field-check" },
        h("input", { type: "checkbox", id, name, value: o.value, checked: o.checked }),
        h("label", { for: id, text: o.label }));
    }));
}

/** The form's values: checkbox groups as lists, single checkboxes as booleans. */
export function values(formEl) {
  const out = {};
  for (const el of formEl.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") {
      const group = formEl.querySelectorAll(`input[type=checkbox][name="${el.name}"]`);
      if (group.length > 1 || el.closest("fieldset.checks")) {
        out[el.name] = out[el.name] || [];
        if (el.checked) out[el.name].push(el.value);
      } else out[el.name] = el.checked;
    } else out[el.name] = el.value;
  }
  return out;
}

/**
 * A form that runs `onSubmit(values)`; while it runs the submit button is disabled; an error is
 * shown inside the form (role=alert) and focus moves to it.
 */
export function form({ fields, submit = "Save", onSubmit, extra = [], label, cls }) {
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  const submitButton = h("button", { type: "submit", class: "button primary" }, submit);
  const el = h("form", { class: ["form", cls], novalidate: true, "aria-label": label }, error, ...fields,
    h("div", { class: "form-actions" }, submitButton, ...extra));
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const invalid = [...el.elements].find((c) => c.willValidate && !c.checkValidity());
    if (invalid) {
      showError(error, invalid.validationMessage || "Please fill in this field.");
      invalid.focus();
      return;
    }
    submitButton.disabled = true;
    el.setAttribute("aria-busy", "true");
    try {
      await onSubmit(values(el), el);
    } catch (e) {
      if (!(e instanceof ApiError) && !(e instanceof DOMException)) console.error(e);
      showError(error, errorText(e));
    } finally {
      submitButton.disabled = false;
      el.removeAttribute("aria-busy");
    }
  });
  return el;
}

export function errorText(e) {
  if (e instanceof ApiError) return e.message;
  if (e && e.name === "NotAllowedError") return "The passkey request was cancelled or timed out.";
  return (e && e.message) || String(e);
}

function showError(box, message) {
  fill(box, message);
  box.hidden = false;
  box.setAttribute("tabindex", "-1");
  box.focus();
}

// -- tables ---------------------------------------------------------------------------------------
/** A table with a caption; on a phone each row becomes a card (labels from the headers). */
export function table({ caption, columns, rows, empty = "Nothing yet." }) {
  if (!rows.length) return h("p", { class: "empty", text: empty });
  return h("div", { class: "table-wrap" }, h("table", { class: "table" },
    caption ? h("caption", { text: caption }) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c.label })))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => {
      const content = c.render ? c.render(row) : row[c.key];
      return h("td", { "data-label": c.label }, content ?? "—");
    }))))));
}

// -- dialogs --------------------------------------------------------------------------------------
/**
 * A modal dialog (<dialog>): `build(close)` returns its content; resolves with what `close`
 * is given (undefined when dismissed with Escape or Cancel).
 */
export function dialog(title, build, { cls } = {}) {
  return new Promise((resolve) => {
    const id = uid("dlg");
    const el = h("dialog", { class: ["dialog", cls], "aria-labelledby": id });
    let result;
    const close = (value) => { result = value; el.close(); };
    el.append(h("h2", { id, text: title }), build(close));
    el.addEventListener("close", () => { el.remove(); resolve(result); });
    document.body.append(el);
    el.showModal();
  });
}

export function confirmDialog(title, message, { confirm = "Confirm", danger = false } = {}) {
  return dialog(title, (close) => h("div", {},
    h("p", { text: message }),
    h("div", { class: "form-actions" },
      button(confirm, () => close(true), { kind: danger ? "danger" : "primary" }),
      button("Cancel", () => close(false)))));
}

/** A secret shown once (an API key, recovery codes, a link), with a copy button. */
export function secretBox(label, value, { note = "Shown once: copy it now." } = {}) {
  const id = uid("secret");
  const box = h("pre", { id, class: "secret", tabindex: "0", "aria-label": label, text: value });
  const status = h("span", { class: "copy-status", role: "status" });
  const copy = button("Copy", async () => {
    try {
      await navigator.clipboard.writeText(value);
      status.textContent = "Copied.";
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(box);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  }, { kind: "secondary small" });
  return h("div", { class: "secret-box" }, h("p", { class: "secret-label" }, h("strong", { text: label }), " ", note), box,
    h("div", { class: "form-actions" }, copy, status));
}

/** A loading placeholder while a screen fetches. */
export function loading(text = "Loading…") { return h("p", { class: "loading", role: "status", text }); }
