// The jsPsych plugin that shows any trial kind's `screen` (study/trials/base.py TrialKind.screen): the
// sequence frames first (jnd), then the response screen: images on the grid (canvas, exact pixels),
// labels under the answer images, the prompt, on-screen buttons, and keys; several presses with undo
// for ranking. It returns the presses in order; the server computes the choice with the kind's `press`.
// All text is set with textContent.

import { TEXT_HEIGHT } from "./stage.js";
import { el, keyName, markScreen, sleep } from "./ui.js";

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));

/**
 * The answer state of one screen: which presses count, when the answer is complete, the labels.
 * Mirrors TrialKind.press / label / highlight: one key for n_presses = 1; for more (ranking), different
 * answer keys best first, the undo key taking back the last one.
 */
export class Answer {
  constructor(screen) {
    this.screen = screen;
    this.pressed = [];
    this.keys = [];
  }

  /** Take one key; true when it counts (it is then part of `keys`). */
  press(key) {
    const sc = this.screen;
    if (sc.undo && key === sc.undo) {
      if (!this.pressed.length) return false;
      this.pressed.pop();
    } else if (sc.keys.includes(key) && !this.pressed.includes(key)) {
      this.pressed.push(key);
    } else {
      return false;
    }
    this.keys.push(key);
    return true;
  }

  get complete() {
    return this.pressed.length >= (this.screen.n_presses || 1);
  }

  /** The answer key of an image slot: for several presses the k-th answer image takes the k-th key. */
  slotKey(slot) {
    if ((this.screen.n_presses || 1) < 2) return null;
    const answerSlots = this.screen.images.filter((i) => i.slot !== "reference").map((i) => i.slot);
    const n = answerSlots.indexOf(slot);
    return n >= 0 ? this.screen.keys[n] : null;
  }

  /** Text under an answer image, and whether it is highlighted (already ranked). */
  label(slot) {
    const key = this.slotKey(slot);
    if (key === null) return { text: (this.screen.key_labels || {})[slot] || "", on: false };
    const rank = this.pressed.indexOf(key);
    return { text: rank >= 0 ? `[${key}]  rank ${rank + 1}` : `[${key}]`, on: rank >= 0 };
  }
}

/** The plugin class, bound to the app's stage and session clock. */
export function trialPlugin(stage, clock) {
  const { ParameterType } = window.jsPsychModule;

  class PerceptTrialPlugin {
    constructor(jsPsych) {
      this.jsPsych = jsPsych;
    }

    async trial(display, params) {
      const item = params.item;
      const screen = item.screen;
      document.body.dataset.trial = String(item.trial);
      markScreen("trial");
      stage.show(true);
      try {
        stage.clear();
        await sleep(params.iti); // the blank screen before every trial (the lab's inter-trial interval)
        for (const frame of screen.sequence || []) {
          await stage.draw(frame.images || []);
          const t0 = await nextFrame();
          // The frame stays until its time has passed, counted from its first displayed frame.
          for (let t = t0; t - t0 < frame.ms - 4; t = await nextFrame());
        }
        return await this.respond(display, item, screen);
      } finally {
        stage.onResize.delete(this.relayout);
        stage.clear();
        stage.show(false);
        delete document.body.dataset.trial;
      }
    }

    async respond(display, item, screen) {
      const answer = new Answer(screen);
      const overlay = el("div", { className: "trial-overlay" });
      const labels = new Map();
      for (const img of screen.images.filter((i) => i.slot !== "reference")) {
        const lab = el("div", { className: "slot-label" });
        labels.set(img.slot, lab);
        overlay.append(lab);
      }
      const prompt = el("div", { className: "prompt", text: screen.prompt || "" });
      const buttons = el("div", { className: "answer-buttons" });
      const below = el("div", { className: "below" }, [prompt, buttons]);
      overlay.append(below);
      display.replaceChildren(overlay);

      let finish;
      const done = new Promise((resolve) => { finish = resolve; });
      let onset = null;
      const take = (key, timeStamp, via) => {
        if (onset === null || timeStamp < onset) return; // presses before the response screen do not count
        if (answer.complete) return; // nothing after the answer is complete
        if (!answer.press(key)) return;
        // A click is sent as "click:<key>": the server saves it so, as the lab does, and presses it as the key.
        if (via === "click") answer.keys[answer.keys.length - 1] = `click:${key}`;
        update();
        if (answer.complete) finish({ rt: (timeStamp - onset) / 1000, via });
      };
      for (const b of screen.buttons || []) {
        const btn = el("button", { type: "button", className: "answer-button", text: b.label });
        btn.dataset.key = b.key;
        btn.addEventListener("click", (ev) => take(b.key, ev.timeStamp, "click"));
        buttons.append(btn);
      }
      const onKey = (ev) => {
        if (ev.repeat) return;
        const key = keyName(ev);
        if (screen.keys.includes(key) || key === screen.undo) ev.preventDefault(); // no page scroll or back
        take(key, ev.timeStamp, "key");
      };
      const update = () => {
        for (const [slot, lab] of labels) {
          const { text, on } = answer.label(slot);
          lab.textContent = text;
          lab.classList.toggle("on", on);
        }
      };
      this.relayout = () => {
        const placed = stage.placed || [];
        for (const p of placed) {
          const lab = labels.get(p.slot);
          if (!lab) continue;
          lab.style.left = `${stage.css(p.x + p.s / 2)}px`;
          lab.style.top = `${stage.css(p.y + p.s)}px`;
        }
        const bottom = placed.length ? Math.max(...placed.map((p) => p.y + p.s)) : stage.size.h / 2;
        below.style.top = `${stage.css(bottom) + 2.5 * TEXT_HEIGHT}px`; // the lab's prompt sits this far below
      };
      stage.onResize.add(this.relayout);
      update();
      await stage.draw(screen.images || []);
      this.relayout();
      document.addEventListener("keydown", onKey);
      try {
        const stamp = await nextFrame(); // the frame that shows the response screen begins
        onset = stamp;
        overlay.classList.add("ready");
        const { rt, via } = await done;
        return {
          trial: item.trial, kind: item.kind, block: item.block, keys: answer.keys.slice(), via,
          rt: Math.max(0, rt), onset: clock(onset), client_time: new Date().toISOString(),
        };
      } finally {
        document.removeEventListener("keydown", onKey);
      }
    }
  }

  PerceptTrialPlugin.info = {
    name: "percept-trial",
    version: "1.0.0",
    parameters: {
      item: { type: ParameterType.COMPLEX, default: undefined }, // {trial, block, kind, screen} from the server
      iti: { type: ParameterType.INT, default: 500 }, // ms of blank screen first
    },
    data: {
      trial: { type: ParameterType.INT },
      keys: { type: ParameterType.STRING, array: true },
      rt: { type: ParameterType.FLOAT },
      onset: { type: ParameterType.FLOAT },
    },
  };
  return PerceptTrialPlugin;
}
