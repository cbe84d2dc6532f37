// The only module that calls fetch: JSON in and out, the session cookie (same origin) and the
// CSRF header on every request that changes state, the error vocabulary as messages a person can
// act on, 401 with the session gone -> sign in again, "re-authentication required" -> ask, then retry once.

const CSRF_COOKIE = "fs_csrf";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
export const REAUTH_PREFIX = "re-authentication required";

const MESSAGES = {
  400: "The request was not understood.",
  401: "Please sign in again.",
  403: "You are not allowed to do this.",
  404: "Not found (or not yours to see).",
  409: "This conflicts with the current state.",
  410: "This link is invalid, used, revoked or expired.",
  413: "That is too large for the server.",
  422: "Please check what you entered.",
  423: "The account is locked for a while after too many failed attempts.",
  429: "Too many attempts.",
  500: "Something went wrong on the server.",
  503: "The service is busy or not ready.",
};

export class ApiError extends Error {
  constructor(status, detail, extra = {}) {
    super(describe(status, detail, extra));
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.retryAfter = extra.retryAfter ?? null;
    this.requestId = extra.requestId ?? null;
  }
  get reauthRequired() {
    return this.status === 401 && typeof this.detail === "string" &&
      this.detail.startsWith(REAUTH_PREFIX);
  }
}

function describe(status, detail, extra) {
  let text = "";
  if (typeof detail === "string" && detail) {
    text = detail.charAt(0).toUpperCase() + detail.slice(1);
  } else if (Array.isArray(detail)) {
    // FastAPI's validation errors: [{loc: ["body", "field"], msg}]
    text = detail.map((d) => {
      const loc = (d.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
      return loc ? `${loc.replaceAll("_", " ")}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  if (!text) text = MESSAGES[status] || `The server answered ${status}.`;
  if (extra.retryAfter) text += ` Try again in ${extra.retryAfter} s.`;
  if (status >= 500 && extra.requestId) text += ` (request id ${extra.requestId})`;
  if (!/[.!?)]$/.test(text)) text += ".";
  return text;
}

const hooks = { unauthenticated: null, reauth: null, activity: null };

/** fn(error) is called when a request (not marked `quiet`) finds the session gone. */
export function onUnauthenticated(fn) { hooks.unauthenticated = fn; }
/** fn() must resolve once the person has re-authenticated (or reject when they cancel). */
export function onReauth(fn) { hooks.reauth = fn; }
/** fn() is called after every answered request (the server counts it as activity). */
export function onActivity(fn) { hooks.activity = fn; }

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(value.join("="));
  }
  return "";
}

/**
 * request(method, path, body?, {quiet, noReauth}) -> the parsed JSON (null for an empty answer).
 * `quiet`: a 401 is the caller's business (sign-in screens), not a reason to leave the page.
 */
export async function request(method, path, body, options = {}) {
  if (!path.startsWith("/api/v1/")) throw new Error(`not an API path: ${path}`);
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body instanceof FormData) {
    init.body = body; // multipart: the browser sets the boundary
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (UNSAFE.has(method)) {
    const token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
  }
  let reply;
  try {
    reply = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the server cannot be reached; check the connection");
  }
  const type = reply.headers.get("content-type") || "";
  let data = null;
  if (type.includes("json")) {
    try { data = await reply.json(); } catch (e) { data = null; }
  } else if (!reply.ok) {
    data = null;
  } else if (reply.status !== 204) {
    data = await reply.blob();
  }
  if (reply.status !== 401 && hooks.activity) hooks.activity();
  if (reply.ok) return data;
  const error = new ApiError(reply.status, data && data.detail, {
    retryAfter: reply.headers.get("retry-after"),
    requestId: (data && data.request_id) || reply.headers.get("x-request-id"),
  });
  if (error.reauthRequired && hooks.reauth && !options.noReauth) {
    await hooks.reauth();
    return request(method, path, body, { ...options, noReauth: true });
  }
  if (reply.status === 401 && !options.quiet && hooks.unauthenticated && !(await sessionAlive())) {
    // the session is gone (a 401 for a wrong password or code leaves the person where they are)
    hooks.unauthenticated(error);
  }
  throw error;
}

async function sessionAlive() {
  try {
    const reply = await fetch("/api/v1/me", { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    return reply.ok;
  } catch (e) {
    return true; // offline: not a reason to sign out
  }
}

export const api = {
  get: (path, options) => request("GET", path, undefined, options),
  post: (path, body = {}, options) => request("POST", path, body, options),
  put: (path, body = {}, options) => request("PUT", path, body, options),
  del: (path, options) => request("DELETE", path, undefined, options),
};

/** POST a FormData (files and fields, multipart); the parsed JSON back. */
export function postForm(path, formData, options) { return request("POST", path, formData, options); }

/**
 * POST a FormData with upload progress (XMLHttpRequest: fetch reports none):
 * onProgress(loaded, total) as the bytes leave; resolves with the parsed JSON answer.
 */
export function upload(path, formData, onProgress) {
  if (!path.startsWith("/api/v1/")) throw new Error(`not an API path: ${path}`);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    const token = csrfToken();
    if (token) xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded, e.total); });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the server cannot be reached; check the connection")));
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status !== 401 && hooks.activity) hooks.activity();
      if (xhr.status >= 200 && xhr.status < 300) { resolve(data); return; }
      const error = new ApiError(xhr.status, data && data.detail, {
        retryAfter: xhr.getResponseHeader("retry-after"),
        requestId: (data && data.request_id) || xhr.getResponseHeader("x-request-id"),
      });
      if (xhr.status === 401 && hooks.unauthenticated) hooks.unauthenticated(error);
      reject(error);
    });
    xhr.send(formData);
  });
}

/**
 * Follow an ingest job by server-sent events: handlers.progress(job) and handlers.end(job).
 * The browser's EventSource reconnects when a stream ends before the job; close() stops it.
 */
export function jobEvents(jobId, handlers) {
  const source = new EventSource(`/api/v1/jobs/${encodeURIComponent(jobId)}/events`, { withCredentials: true });
  for (const name of ["progress", "end"]) {
    source.addEventListener(name, (e) => {
      if (hooks.activity) hooks.activity();
      if (handlers[name]) handlers[name](JSON.parse(e.data));
    });
  }
  return source;
}

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// -- passkeys (WebAuthn): the browser's ceremony around the API's options --------------------
export function passkeysSupported() {
  return typeof window.PublicKeyCredential === "function" &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
}

/** Ask the authenticator for an assertion with options from `optionsPath`. */
export async function passkeyAssertion(optionsPath, options) {
  const reply = await api.post(optionsPath, {}, options);
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(reply.options);
  const credential = await navigator.credentials.get({ publicKey });
  return credential.toJSON();
}

/** Create a credential with creation options from `optionsPath`. */
export async function passkeyCreation(optionsPath, options) {
  const reply = await api.post(optionsPath, {}, options);
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(reply.options);
  const credential = await navigator.credentials.create({ publicKey });
  return credential.toJSON();
}
