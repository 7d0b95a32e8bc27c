// The only way the console talks to the service: the public /v1 API, with the ACL token from this
// browser's localStorage in X-Consul-Token, and one blocking query ("long-poll") per page.

const KEYS = { token: "peering:token", partition: "peering:partition", staleAfter: "peering:stale-after" };
export const DEFAULT_STALE_AFTER = 60; // seconds; see the Settings page
const BLOCKING_WAIT = "30s"; // well below common proxy idle timeouts
const STALE_WAIT = "5s"; // while a peering looks stale: a heartbeat does not bump the index, so look again soon

function read(key) {
  try { return localStorage.getItem(key) || ""; } catch { return ""; }
}

function write(key, value) {
  try {
    if (value) localStorage.setItem(key, value); else localStorage.removeItem(key);
  } catch { /* storage disabled: the setting lasts for this page only */ }
}

/** What the operator chose on the Settings page, kept in this browser. */
export const prefs = {
  get token() { return read(KEYS.token); },
  set token(value) { write(KEYS.token, value.trim()); },
  get partition() { return read(KEYS.partition); },
  set partition(value) { write(KEYS.partition, value.trim()); },
  get staleAfter() {
    const n = Number(read(KEYS.staleAfter));
    return Number.isFinite(n) && n > 0 ? n : DEFAULT_STALE_AFTER;
  },
  set staleAfter(value) { write(KEYS.staleAfter, value > 0 && value !== DEFAULT_STALE_AFTER ? String(value) : ""); },
};

/** Told of what answers say about the service: `acl` (ACLs on and their default policy), `clock`. */
export const events = new EventTarget();
export const serverInfo = { aclDefaultPolicy: null, clockOffset: 0 };

function note(response) {
  const policy = response.headers.get("X-Consul-Default-ACL-Policy");
  if (policy !== serverInfo.aclDefaultPolicy) {
    serverInfo.aclDefaultPolicy = policy;
    events.dispatchEvent(new Event("acl"));
  }
  // the server's clock, from its Date header (1 s resolution), so ages do not depend on this machine's clock
  const date = Date.parse(response.headers.get("Date") || "");
  if (!Number.isNaN(date)) {
    const offset = date - Date.now();
    serverInfo.clockOffset = Math.abs(offset) > 2000 ? offset : 0;
  }
}

/** The server's "now" in milliseconds. */
export function serverNow() {
  return Date.now() + serverInfo.clockOffset;
}

/** An answer that is not 2xx; `permission` is the one a 403 says is missing (e.g. `peering:write`, or
 * `service:read` with `resourceName` "web"). */
export class ApiError extends Error {
  constructor(status, message, index = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.index = index;
    const denied = /lacks permission '([A-Za-z_-]+:[A-Za-z_-]+)'(?: on "((?:[^"\\]|\\.)*)")?/.exec(message);
    this.permission = denied ? denied[1] : null;
    this.resourceName = denied && denied[2] !== undefined ? denied[2] : null; // `on "web"` in a named denial
    this.anyService = Boolean(denied) && / on any service/.test(message); // reading imported rows
    this.unknownToken = status === 403 && /ACL not found/.test(message);
  }
}

/** Call the API; resolves to {data, index, filtered} or throws ApiError (status 0: the service cannot be reached). */
export async function request(method, path, { query = {}, body, signal } = {}) {
  const url = new URL(path, window.location.origin);
  if (prefs.partition && !("partition" in query)) url.searchParams.set("partition", prefs.partition);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
  }
  const headers = {};
  if (prefs.token) headers["X-Consul-Token"] = prefs.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  let text;
  try {
    response = await fetch(url, {
      method, headers, signal, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    text = await response.text();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The service cannot be reached.");
  }
  note(response);
  const index = Number(response.headers.get("X-Consul-Index")) || 0;
  if (!response.ok) throw new ApiError(response.status, text.trim() || response.statusText, index);
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { throw new ApiError(response.status, "The service sent an answer that is not JSON."); }
  }
  // ACLs removed what the token may not read (catalog reads filter instead of refusing)
  const filtered = response.headers.get("X-Consul-Results-Filtered-By-ACLs") === "true";
  return { data, index, filtered };
}

/**
 * One blocking query, repeated: the first read answers at once, each next one waits (`?index=N&wait=`)
 * until the data changes. After an error it backs off (1 s doubling to 30 s, with jitter). `onData`
 * gets (data, index, fetchedAt, filtered) after every answer, also one without a change (the stream status of a
 * peering changes without its index). `notFound: true` passes a 404 as `data = null` and keeps
 * blocking on its index, so a detail page sees the peering come back. `query` is added to every read
 * (e.g. `{peer: "east"}`).
 */
export class LivePoll {
  constructor(path, { onData, onError, notFound = false, query = {} }) {
    Object.assign(this, { path, onData, onError, notFound, query });
    this.index = 0;
    this.running = false;
    this.wait = BLOCKING_WAIT;
    this.controller = null;
    this.wake = null;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.running = false;
    this.interrupt();
  }

  /** Read again now (without waiting for a change), e.g. after a write or to confirm a stale link. */
  refresh() {
    this.index = 0;
    this.interrupt();
  }

  /** Shorter blocking waits while something on the page needs a fresh look soon. */
  hurry(yes) {
    this.wait = yes ? STALE_WAIT : BLOCKING_WAIT;
  }

  interrupt() {
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => { clearTimeout(timer); resolve(); };
    }).finally(() => { this.wake = null; });
  }

  async loop() {
    let failures = 0;
    while (this.running) {
      const blocking = this.index > 0;
      const before = this.index;
      const started = performance.now();
      this.controller = new AbortController();
      let data;
      let index;
      let filtered = false;
      try {
        ({ data, index, filtered } = await request("GET", this.path, {
          query: blocking ? { ...this.query, index: this.index, wait: this.wait } : this.query, signal: this.controller.signal,
        }));
      } catch (err) {
        if (!this.running) return;
        if (err.name === "AbortError") continue; // refresh() or stop()
        if (!(this.notFound && err.status === 404)) {
          failures += 1;
          this.index = 0; // start over with a plain read once the service answers again
          const delay = Math.min(30000, 1000 * 2 ** Math.min(failures - 1, 5)) * (0.8 + Math.random() * 0.4);
          this.onError(err, delay);
          await this.sleep(delay);
          continue;
        }
        data = null;
        index = err.index;
      }
      failures = 0;
      // an index that went backwards (a restored database) means: read everything again
      this.index = index > 0 && index >= before ? index : 0;
      if (this.running) this.onData(data, this.index, serverNow(), filtered);
      // a blocking read that came back at once without a change (or an answer without an index) must not
      // turn into a busy loop
      const unchanged = blocking && this.index <= before && performance.now() - started < 1000;
      if (unchanged || this.index === 0) await this.sleep(1000);
    }
  }
}

/**
 * `work(item)` for every item, at most `limit` at a time (the long-poll holds one of the browser's six
 * connections to this host; the rest stay free for the page's other calls). Resolves to the results in
 * order, each `{value}` or `{error}`.
 */
export async function eachLimited(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next;
      next += 1;
      try { results[i] = { value: await work(items[i]) }; } catch (error) { results[i] = { error }; }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
