// The exported app's service worker: everything the app needs is cached when it installs, so the app
// opens and predicts offline after the first visit, and a phone can add it to its home screen.
// The web exporter (mnist_edge/pytorch/exporters/web.py) puts `const PRECACHE = {version, files};` in front of this file: any change to the app
// changes the version, hence this file's bytes, so the browser installs the new worker, which fills
// a new cache and drops the old one. Several apps on one origin keep apart by their scope.

const PREFIX = `mnist-edge ${self.registration.scope} `;
const CACHE = PREFIX + PRECACHE.version;

self.addEventListener("install", (event) => {
  // cache: "reload" skips the HTTP cache, so the cache gets this version's files, not older copies.
  const requests = PRECACHE.files.map((path) => new Request(path, { cache: "reload" }));
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(requests)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  const stale = (key) => key.startsWith(PREFIX) && key !== CACHE;
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter(stale).map((key) => caches.delete(key))))
    .then(() => self.clients.claim()));
});

// Cache first: within one version the files never change, and offline there is nothing else.
self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(caches.open(CACHE)
    .then((cache) => cache.match(request, { ignoreSearch: true }))
    .then((hit) => hit || fetch(request)));
});
