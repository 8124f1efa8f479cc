// The online study's network side: JSON calls with retries, and the answer outbox.
//
// Every answer goes into a localStorage outbox first and is PUT at once; it leaves the outbox only when
// the server has confirmed it (200, or 409: the server already holds a different answer for that trial,
// which it keeps). Network errors, 429 and 5xx are retried with exponential backoff and jitter, so a
// reload, a dropped connection or a busy server never loses an answer and never stores one twice (the
// server is idempotent on (session, trial)).

import { sleep } from "./ui.js";

const TOKEN_HEADER = "X-Session-Token";
const OUTBOX_KEY = "percept.outbox.v1";
const BACKOFF_MS = 250; // first retry delay; doubles per failure
const BACKOFF_MAX_MS = 8000;
const RETRY_AFTER_MAX_MS = 20000; // never wait longer than this on a 429's Retry-After

/** A delay in ms for the n-th retry (n ≥ 0): exponential with full jitter between half and all of it. */
export function backoff(n) {
  const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** n);
  return ms / 2 + Math.random() * (ms / 2);
}


/** Whether a status is worth retrying (the server may answer differently later). */
export function transient(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/** One HTTP exchange: {status, data}; status 0 for a network error (never throws). */
export async function call(method, url, { body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers[TOKEN_HEADER] = token;
  let resp;
  try {
    resp = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin", cache: "no-store",
    });
  } catch (err) {
    return { status: 0, data: null, error: String(err) };
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (err) {
    data = null; // an empty or non-JSON body (a proxy's error page): the status says enough
  }
  const retryAfter = Number(resp.headers.get("Retry-After"));
  return { status: resp.status, data, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null };
}

/** A call retried while the failure is transient; `onWait(attempt)` is told before each wait. */
export async function callRetrying(method, url, opts = {}, { attempts = 8, onWait } = {}) {
  let res;
  for (let n = 0; n < attempts; n += 1) {
    res = await call(method, url, opts);
    if (!transient(res.status)) return res;
    if (onWait) onWait(n + 1, res);
    await sleep(waitFor(res, n));
  }
  return res;
}

function waitFor(res, n) {
  if (res.status === 429 && res.retryAfter) return Math.min(res.retryAfter * 1000, RETRY_AFTER_MAX_MS);
  return backoff(n);
}

/**
 * Answers waiting for the server's confirmation, kept in localStorage across reloads.
 * Entries: {session, token, trial, payload}; one per (session, trial).
 */
export class Outbox {
  constructor(storage = window.localStorage) {
    this.storage = storage;
    this.running = false;
    this.waiters = [];
    this.failures = 0;
    this.listeners = new Set();
    this.fatal = null; // set when the server refuses the session's token (401): nothing can be sent
    this.dropped = []; // answers the server refused for good (404/413/422): shown again if it reports them missing
  }

  entries() {
    try {
      const list = JSON.parse(this.storage.getItem(OUTBOX_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (err) {
      return []; // a corrupt outbox cannot be read back; the server's missing list brings those trials back
    }
  }

  save(list) {
    this.storage.setItem(OUTBOX_KEY, JSON.stringify(list));
    for (const fn of this.listeners) fn(list.length);
  }

  /** Pending trial numbers of one session. */
  pending(session) {
    return this.entries().filter((e) => e.session === session).map((e) => e.trial);
  }

  /** Keep an answer (persisted before anything is sent) and start sending. */
  add(session, token, trial, payload) {
    const list = this.entries().filter((e) => !(e.session === session && e.trial === trial));
    list.push({ session, token, trial, payload });
    this.save(list);
    this.kick();
  }

  /** Send what is waiting, oldest first, one at a time; retries transient failures with backoff. */
  async kick() {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const list = this.entries();
        if (!list.length || this.fatal) break;
        const e = list[0];
        const url = `/api/sessions/${encodeURIComponent(e.session)}/answers/${e.trial}`;
        const res = await call("PUT", url, { body: e.payload, token: e.token });
        if (transient(res.status)) {
          this.failures += 1;
          await sleep(waitFor(res, this.failures - 1));
          continue;
        }
        this.failures = 0;
        if (res.status === 401) {
          this.fatal = "The study server no longer accepts this session (401).";
          break;
        }
        if (res.status === 409) console.warn(`trial ${e.trial}: the server keeps its earlier, different answer`);
        else if (res.status !== 200) {
          console.error(`trial ${e.trial}: the server refused the answer (${res.status})`, res.data);
          this.dropped.push(e.trial);
        }
        this.save(this.entries().filter((x) => !(x.session === e.session && x.trial === e.trial)));
      }
    } finally {
      this.running = false;
      if (!this.entries().length || this.fatal) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    }
  }

  /** Resolves once the outbox is empty (or cannot be emptied: see `fatal`). */
  drained() {
    if (!this.entries().length || this.fatal) return Promise.resolve();
    const p = new Promise((resolve) => this.waiters.push(resolve));
    this.kick();
    return p;
  }
}
