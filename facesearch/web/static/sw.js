// The service worker caches only the static shell (the page, scripts, styles, icons), so the
// application opens fast and installs as an app. It never caches the API (/api/: results,
// images, accounts: network only, the browser's own no-store applies) nor any image outside the
// shell's icons. Shell files are fetched from the network first (an upgrade shows at once) and
// come from the cache only when the network fails.
const VERSION = "facesearch-shell-v1";
const SHELL = [
  "/",
  "/static/app.css",
  "/static/casework.css",
  "/static/app.js",
  "/static/api.js",
  "/static/ui.js",
  "/static/icons/icon.svg",
  "/manifest.webmanifest",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== VERSION).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

/** Only these are ever put in the cache. */
function isShell(url, request) {
  if (url.origin !== self.location.origin || request.method !== "GET") return false;
  if (url.pathname.startsWith("/api/")) return false;
  if (request.mode === "navigate") return true;
  if (url.pathname === "/manifest.webmanifest") return true;
  if (!url.pathname.startsWith("/static/")) return false;
  if (request.destination === "image" && !url.pathname.startsWith("/static/icons/")) return false;
  return /\.(js|css|svg|png|webmanifest|html)$/.test(url.pathname);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (!isShell(url, request)) return; // network only: the browser fetches as if we were not here
  const key = request.mode === "navigate" ? "/" : request; // every screen path is index.html
  event.respondWith(fetch(request).then((response) => {
    if (response.ok && response.type === "basic") {
      const copy = response.clone();
      caches.open(VERSION).then((cache) => cache.put(key, copy));
    }
    return response;
  }).catch(() => caches.match(key).then((hit) => hit || Response.error())));
});
