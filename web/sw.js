// Service worker: the app shell opens offline, and so do the last search's results (marked as saved, with the
// time). It never touches a booking: only GET requests are answered here, so nothing is queued or sent later.
const SHELL_CACHE = "stays-shell-v1";
const SEARCH_CACHE = "stays-last-search-v1";
const SHELL = [
  "./", "index.html", "styles.css", "manifest.webmanifest", "config.json",
  "js/app.js", "js/account.js", "js/api.js", "js/auth.js", "js/booking.js", "js/config.js", "js/dates.js",
  "js/listing.js", "js/mine.js", "js/search.js", "js/text.js", "js/ui.js",
  "icons/icon.svg", "icons/icon-192.png", "icons/icon-512.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((name) => ![SHELL_CACHE, SEARCH_CACHE].includes(name)).map((name) => caches.delete(name))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET") return; // bookings and cancellations go to the network or fail: never queued
  const url = new URL(request.url);
  if (url.pathname.endsWith("/v1/listings")) {
    event.respondWith(search(request, url));
  } else if (url.origin === self.location.origin && !url.pathname.startsWith("/v1/")) {
    event.respondWith(shell(request));
  }
  // every other request (the rest of the API, Cognito) goes to the network as if there were no worker
});

// The app's own files: the network first, so a new version shows at once; the cached copy when offline.
async function shell(request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) cache.put(request.mode === "navigate" ? "index.html" : request, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(request.mode === "navigate" ? "index.html" : request, { ignoreSearch: true });
    if (cached) return cached;
    throw error;
  }
}

// A search: the network first; a new search (no cursor) replaces the saved one, its further pages are added.
// Offline, the saved answer for the same URL is served with X-Served-Offline and the time it was saved.
async function search(request, url) {
  const cache = await caches.open(SEARCH_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) {
      if (!url.searchParams.has("cursor")) {
        for (const old of await cache.keys()) await cache.delete(old);
      }
      const headers = new Headers(response.headers);
      headers.set("X-Saved-At", new Date().toISOString());
      await cache.put(request, new Response(await response.clone().blob(), { status: response.status, headers }));
    }
    return response;
  } catch (error) {
    const saved = await cache.match(request);
    if (!saved) throw error;
    const headers = new Headers(saved.headers);
    headers.set("X-Served-Offline", "1");
    return new Response(await saved.blob(), { status: saved.status, headers });
  }
}
