// One participant's session in the browser: who they are (from the URL), the session the server
// gives them, the trials fetched and answered, the browser checks, the integer scale and the completion.

import { callRetrying } from "./net.js";
import { fittingScale, loadImage, screenUrls } from "./stage.js";
import { sleep } from "./ui.js";

const RAW_ID = /^[A-Za-z0-9_-]{1,64}$/; // what the server accepts as a participant or platform ID
const SESSION_KEY = "percept.session.v1";
export const ANON_KEY = "percept.anonymous.v1";
const BREAK_EVERY = 30; // main trials between breaks (the lab's --break-every default)
const PRELOAD_AHEAD = 4; // trials whose images are fetched before they are shown
const REDIRECT_MS = 2000; // the completion code stays on screen this long before the redirect (or MTurk's POST)
const TURK_SUBMIT_MAX = 2048; // the longest turkSubmitTo the server takes
const PLATFORM_KEYS = {
  prolific: ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"],
  mturk: ["workerId", "assignmentId", "hitId"],
};

/** Who is taking part, from the URL: {participant, platform: {...}, problem} (problem: text to show). */
export function identity(params, stored) {
  const pick = (keys) => Object.fromEntries(keys.filter((k) => params.get(k) !== null).map((k) => [k, params.get(k)]));
  let participant = null;
  let platform = {};
  let name = "any";
  if (params.get("PROLIFIC_PID") !== null) {
    platform = pick(PLATFORM_KEYS.prolific);
    if (Object.keys(platform).length !== 3) return { problem: "The Prolific link lacks STUDY_ID or SESSION_ID." };
    participant = params.get("PROLIFIC_PID");
    name = "prolific";
  } else if (params.get("workerId") !== null || params.get("assignmentId") !== null) {
    platform = pick(PLATFORM_KEYS.mturk);
    participant = params.get("workerId");
    name = "mturk";
    if (params.get("assignmentId") === "ASSIGNMENT_ID_NOT_AVAILABLE") {
      return { problem: "This is a preview. Accept the HIT to take part." };
    }
    if (Object.keys(platform).length !== 3) return { problem: "The MTurk link lacks workerId, assignmentId or hitId." };
  } else if (params.get("participant") !== null) {
    participant = params.get("participant");
  }
  for (const [key, value] of Object.entries({ participant, ...platform })) {
    if (value !== null && !RAW_ID.test(value)) {
      return { problem: `The link's ${key} is not a valid ID (letters, digits, - and _ only): ${value}` };
    }
  }
  if (participant === null && name === "any") {
    participant = stored || `anon-${randomHex(16)}`; // kept in localStorage: a reload is the same person
  }
  const ident = { participant, platform, name, anonymous: name === "any" && params.get("participant") === null };
  // Where an MTurk ExternalQuestion posts its answers; the server checks it against its allowed origins.
  if (name === "mturk" && params.get("turkSubmitTo") !== null) ident.turkSubmitTo = params.get("turkSubmitTo");
  return ident;
}

function randomHex(n) {
  const bytes = new Uint8Array(n / 2);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch (err) {
    return null; // unreadable: start as if nothing were stored (the server's idempotent start recovers the session)
  }
}

function storageWorks() {
  try {
    localStorage.setItem("percept.probe", "1");
    localStorage.removeItem("percept.probe");
    return true;
  } catch (err) {
    return false;
  }
}

function isMobile() {
  if (navigator.userAgentData && navigator.userAgentData.mobile) return true;
  if (/Android|iPhone|iPad|iPod|Mobile|Silk|Kindle/i.test(navigator.userAgent)) return true;
  return navigator.maxTouchPoints > 0 && !matchMedia("(pointer: fine)").matches;
}

/** A safe redirect target: an absolute http(s) URL, else null. */
export function safeRedirect(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const u = new URL(url, location.href);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
  } catch (err) {
    return null;
  }
}

/** Text of a server refusal: its `detail` when it is a string. */
export function detail(res) {
  const d = res.data && res.data.detail;
  if (typeof d === "string") return d;
  return res.status ? `the server answered ${res.status}` : "the study server cannot be reached";
}

/** One participant's session: the trials fetched, those answered, the checks, the completion. */
export class Study {
  constructor(study, ident, stage, outbox) {
    this.study = study;
    this.ident = ident;
    this.stage = stage;
    this.outbox = outbox;
    const stored = readJson(SESSION_KEY);
    this.resuming = Boolean(stored && stored.participant === ident.participant && stored.session);
    this.trials = new Map(); // trial number → {trial, block, kind, screen}, as fetched
    this.answered = new Set(); // answered in this page or before `next_trial`
    this.only = null; // after a refused completion: the trials the server still misses
    this.notes = []; // text screens due before the next trial
    this.instructionsShown = new Set();
    this.prevBlock = null;
    this.mainDone = 0;
    this.breaksShown = new Set();
    this.current = null;
    this.done = false;
    this.result = null;
    this.checkOk = false;
    this.fitOk = false;
    this.fullscreen = false;
    this.dpr = null;
    this.k = 0;
    this.imagePx = 0;
  }

  get sid() {
    return this.session.session;
  }

  get token() {
    return this.session.token;
  }

  /** POST /api/sessions (idempotent): the session, its list and where to resume. */
  async start(status) {
    const body = {
      // The server takes either a platform's parameters or a participant, never both.
      participant: this.ident.name === "any" ? this.ident.participant : null, platform: this.ident.platform,
      // The consent this page showed: a server restarted with an amended one refuses a new session (409: reload).
      consent_sha256: (this.study.texts && this.study.texts.consent && this.study.texts.consent.sha256) || null,
      client: {
        user_agent: navigator.userAgent, screen_w: screen.width, screen_h: screen.height,
        viewport_w: innerWidth, viewport_h: innerHeight, dpr: devicePixelRatio,
      },
    };
    const res = await callRetrying("POST", "/api/sessions", { body }, { onWait: (n) => status(`Connecting to the study server (attempt ${n + 1})…`) });
    if (res.status !== 200 && res.status !== 201) throw new Error(`The study could not start: ${detail(res)}`);
    this.session = res.data;
    localStorage.setItem(SESSION_KEY, JSON.stringify({ participant: this.ident.participant, session: this.sid, token: this.token }));
    if (this.ident.anonymous) localStorage.setItem(ANON_KEY, this.ident.participant);
    this.nTrials = this.session.n_trials;
    // Answers still in this page's outbox count as given: they are sent before the completion.
    const pending = new Set(this.outbox.pending(this.sid));
    const next = this.session.next_trial ?? this.nTrials; // null: every trial is stored
    for (let t = 0; t < next; t += 1) this.answered.add(t);
    for (const t of pending) this.answered.add(t);
    if (this.session.completed) {
      this.done = false; // the completion step below asks for the code again
      this.nTrials = 0;
      return;
    }
    status("Loading the trials…");
    await this.fetch(0, status);
    const first = this.pick();
    if (!first) return;
    const img = await loadImage(first.screen.images.concat(...(first.screen.sequence || []).map((f) => f.images))[0].path);
    this.imagePx = img.naturalWidth;
    this.preload(first.trial);
    // Done before `next_trial`: for the break count after a reload.
    for (const t of this.trials.values()) if (t.block === "main" && this.answered.has(t.trial)) this.mainDone += 1;
  }

  /** GET the trials from `from` on; retried; an active policy may add trials only as answers arrive. */
  async fetch(from, status) {
    const url = `/api/sessions/${encodeURIComponent(this.sid)}/trials?from=${from}`;
    const res = await callRetrying("GET", url, { token: this.token }, { onWait: (n) => status(`Loading the trials (attempt ${n + 1})…`) });
    if (res.status !== 200) throw new Error(`The trials could not be loaded: ${detail(res)}`);
    for (const t of res.data.trials) this.trials.set(t.trial, t);
    this.nTrials = res.data.n_trials;
    return res.data.trials.length;
  }

  /** The next trial to show among those fetched, or null. */
  pick() {
    const numbers = [...this.trials.keys()].sort((a, b) => a - b);
    for (const n of numbers) {
      if (this.answered.has(n)) continue;
      if (this.only && !this.only.has(n)) continue;
      return this.trials.get(n);
    }
    return null;
  }

  hasMore() {
    if (this.nTrials === 0) return false;
    if (this.only) return this.only.size > 0;
    return this.answered.size < this.nTrials;
  }

  preload(from) {
    const ahead = [...this.trials.values()].filter((t) => t.trial >= from && !this.answered.has(t.trial)).slice(0, PRELOAD_AHEAD);
    for (const t of ahead) for (const url of screenUrls(t.screen)) loadImage(url).catch(() => {});
  }

  /** Make the next trial current (fetching more if needed) and queue the screens due before it. */
  async prepare(status) {
    if (this.outbox.fatal) throw new Error(this.outbox.fatal);
    let next = this.pick();
    for (let attempt = 0; !next && this.hasMore(); attempt += 1) {
      const known = [...this.trials.keys()];
      const from = known.length ? Math.max(...known) + 1 : 0;
      if (!(await this.fetch(from, status))) {
        // Nothing new yet (an active policy chooses from the answers): let the outbox catch up, then ask again.
        status("Preparing the next trials…");
        await this.outbox.drained();
        await sleep(Math.min(8000, 500 * 2 ** attempt));
        if (attempt > 8) throw new Error("The study server has no further trials for you right now.");
      }
      next = this.pick();
    }
    this.current = next;
    if (!next) return;
    await Promise.all(screenUrls(next.screen).map((u) => loadImage(u)));
    this.preload(next.trial + 1);
    if (this.prevBlock === "practice" && next.block === "main") {
      this.notes.push({ name: "practice-done", title: "Practice is over", paragraphs: ["The main part starts now."], ...go("Begin") });
    }
    if (next.block === "main" && this.mainDone > 0 && this.mainDone % BREAK_EVERY === 0 && !this.breaksShown.has(this.mainDone)) {
      this.breaksShown.add(this.mainDone);
      const nMain = [...this.trials.values()].filter((t) => t.block === "main").length;
      const pct = nMain ? ` (${Math.floor((100 * this.mainDone) / nMain)}%)` : "";
      this.notes.push({ name: "break", title: "Break", paragraphs: [`${this.mainDone} of ${nMain} trials done${pct}.`, "Rest your eyes, then continue."], ...go("Continue") });
    }
    const text = next.screen.instructions;
    if (text && !this.instructionsShown.has(text)) {
      this.instructionsShown.add(text);
      this.notes.push({ name: "instructions", title: "Instructions", paragraphs: [text], ...go("Start") });
    }
  }

  /** The trial's answer: into the outbox (saved, then sent at once). */
  answer(data) {
    const payload = { keys: data.keys, rt: data.rt, onset: data.onset, client_time: data.client_time };
    this.outbox.add(this.sid, this.token, data.trial, payload);
    this.answered.add(data.trial);
    if (this.only) this.only.delete(data.trial);
    this.prevBlock = data.block;
    if (data.block === "main") this.mainDone += 1;
    this.current = null;
  }

  /** The introduction: every kind's instructions known so far, in the order they first come. */
  intro() {
    const texts = [];
    for (const n of [...this.trials.keys()].sort((a, b) => a - b)) {
      const t = this.trials.get(n).screen.instructions;
      if (t && !texts.includes(t)) texts.push(t);
    }
    for (const t of texts) this.instructionsShown.add(t);
    const practice = [...this.trials.values()].some((t) => t.block === "practice");
    const own = this.text("instructions"); // the study's text (--instructions), then each kind's
    return {
      name: "intro", title: own.title || "Instructions",
      paragraphs: [...own.paragraphs, ...texts, ...(practice ? ["A few practice trials come first."] : [])],
      ...go("Start"),
    };
  }

  welcomeBack() {
    const done = this.answered.size;
    return {
      name: "welcome-back", title: "Welcome back",
      paragraphs: [`${Math.min(done, this.nTrials)} of ${this.nTrials} trials are done; we continue where you stopped.`],
      ...go("Continue"),
    };
  }

  /** The browser and screen check: rows of [what, found, ok]. */
  checks() {
    const dpr = devicePixelRatio;
    const { min_width: minW, min_height: minH } = this.study;
    const base = this.study.scale || 1;
    const k = fittingScale(dpr, base, this.imagePx, Math.floor(screen.width * dpr), Math.floor(screen.height * dpr));
    const rows = [
      ["Desktop or laptop computer", isMobile() ? "a phone or tablet" : "yes", !isMobile()],
      ["Screen size", `${screen.width} × ${screen.height} (at least ${minW} × ${minH})`, screen.width >= minW && screen.height >= minH],
      ["Answers kept if the connection drops", storageWorks() ? "yes" : "browser storage is blocked", storageWorks()],
      ["Pixel ratio (devicePixelRatio)", `${Number(dpr.toFixed(3))}: each image pixel is shown as ${Math.max(k, 1)} × ${Math.max(k, 1)} screen pixels`, k > 0],
    ];
    const ok = rows.every((r) => r[2] !== false);
    return { ok, rows };
  }

  /** After full screen: the scale that fits the window, and the window size. */
  fit() {
    const { w, h } = this.stage.size;
    const dpr = devicePixelRatio;
    this.k = fittingScale(dpr, this.study.scale || 1, this.imagePx, w, h);
    this.dpr = dpr;
    this.fullscreen = Boolean(document.fullscreenElement);
    if (this.k > 0) this.stage.setScale(this.k, this.imagePx);
    const big = innerWidth >= this.study.min_width && innerHeight >= this.study.min_height;
    this.fitOk = this.k > 0 && big;
    return this.fitOk;
  }

  /** Whether the display is still as checked (zoom, size, full screen). */
  displayOk() {
    return devicePixelRatio === this.dpr && this.stage.fits() && (!this.fullscreen || Boolean(document.fullscreenElement));
  }

  async postCheck() {
    const body = {
      dpr: this.dpr, scale: this.k, viewport_w: innerWidth, viewport_h: innerHeight,
      screen_w: screen.width, screen_h: screen.height, fullscreen: this.fullscreen,
    };
    const res = await callRetrying("POST", `/api/sessions/${encodeURIComponent(this.sid)}/check`, { body, token: this.token });
    if (res.status !== 200) throw new Error(`The screen check could not be saved: ${detail(res)}`);
  }

  /** Wait for the outbox, then ask for the completion code; 409 brings the missing trials back. */
  async complete(status) {
    const show = (n) => status(`Saving your answers… ${n} left`);
    this.outbox.listeners.add(show);
    try {
      if (this.outbox.pending(this.sid).length) show(this.outbox.pending(this.sid).length);
      await this.outbox.drained();
    } finally {
      this.outbox.listeners.delete(show);
    }
    if (this.outbox.fatal) {
      this.result = { error: this.outbox.fatal };
      this.done = true;
      return;
    }
    status("Checking your answers with the server…");
    // turkSubmitTo goes with the completion (see the server's Complete); an absurdly long one is not sent
    // (the server would refuse the request), so that participant gets the code shown instead of the POST.
    const submitTo = this.ident.turkSubmitTo;
    const body = submitTo && submitTo.length <= TURK_SUBMIT_MAX ? { turk_submit_to: submitTo } : undefined;
    const res = await callRetrying("POST", `/api/sessions/${encodeURIComponent(this.sid)}/complete`, { token: this.token, body });
    if (res.status === 200) {
      this.result = { code: res.data.code, redirect: safeRedirect(res.data.redirect), submit: safeRedirect(res.data.mturk_submit) };
      this.done = true;
    } else if (res.status === 409 && res.data && Array.isArray(res.data.missing) && res.data.missing.length) {
      const missing = res.data.missing.map(Number);
      if (this.only && missing.every((t) => this.lastMissing && this.lastMissing.includes(t))) {
        this.result = { error: `The server still misses trials ${missing.join(", ")}.` };
        this.done = true;
        return;
      }
      this.lastMissing = missing;
      this.only = new Set(missing);
      for (const t of missing) this.answered.delete(t);
      this.nTrials = Math.max(this.nTrials, 1);
    } else if (res.status === 403) {
      const reason = res.data && (res.data.reason || res.data.detail);
      this.result = { reason: typeof reason === "string" ? reason : "The check trials were not passed." };
      this.done = true;
    } else {
      this.result = { error: `The study could not be completed: ${detail(res)}` };
      this.done = true;
    }
  }

  /** A text the server sends (consent, instructions, debrief): {title (or null), paragraphs}. */
  text(name) {
    const t = (this.study.texts && this.study.texts[name]) || {};
    return { title: t.title || null, paragraphs: Array.isArray(t.paragraphs) ? t.paragraphs : [] };
  }

  completion() {
    const r = this.result || {};
    // The debrief (--debrief) comes first on every screen of a participant who took part to the end.
    const debrief = this.text("debrief");
    const title = debrief.title || "Thank you";
    if (r.code !== undefined && r.submit) {
      // MTurk ExternalQuestion: the frame POSTs the assignment to MTurk (after the outbox emptied, as the redirect).
      return {
        name: "done", title,
        paragraphs: [...debrief.paragraphs, `Your completion code: ${r.code}`, "Your HIT is being submitted to MTurk…"],
        post: { action: r.submit, fields: { assignmentId: this.ident.platform.assignmentId, code: r.code } },
        redirectMs: REDIRECT_MS,
      };
    }
    if (r.code !== undefined) {
      const paragraphs = [...debrief.paragraphs, `Your completion code: ${r.code}`];
      if (r.redirect) paragraphs.push("You are being taken back to the study platform…");
      return { name: "done", title, paragraphs, link: r.redirect, linkText: "Continue to the study platform", redirectMs: REDIRECT_MS };
    }
    if (r.reason) return { name: "refused", title, paragraphs: [...debrief.paragraphs, "We cannot give you a completion code.", r.reason] };
    return { name: "error", title: "Something went wrong", paragraphs: [r.error || "The study ended unexpectedly.", "Your answers so far are kept; reload the page to try again."] };
  }
}

/** One primary button and the Space key continuing a text screen. */
function go(label) {
  return { buttons: [{ label, value: "go" }], keys: { space: "go" }, note: "Press Space or click the button." };
}

