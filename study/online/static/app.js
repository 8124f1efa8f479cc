// The online study in the participant's browser (jsPsych 8): consent → browser and screen check →
// pixel ratio and integer scale → full screen → instructions → practice → trials → completion.
// The consent, instructions and debrief wording comes from the server (GET /api/study `texts`).
// Trials come from the server as the trial kinds' `screen` JSON; answers go out through the outbox
// (net.js); a reload resumes at the next unanswered trial with the session kept in localStorage.

import { callRetrying, Outbox } from "./net.js";
import { ANON_KEY, Study, detail, identity } from "./session.js";
import { Stage } from "./stage.js";
import { trialPlugin } from "./trial.js";
import { el, markScreen, sleep, textContentOf, uiPlugins } from "./ui.js";

const T0 = performance.now();
const clock = (stamp) => (stamp - T0) / 1000; // s since the page loaded: the answers' `onset`
const ITI_MS = 500; // blank screen before each trial (the lab's --iti default)

/** A screen outside jsPsych (before it starts or after a fatal error). */
function plainScreen(content) {
  markScreen(content.name || "message");
  const target = document.getElementById("jspsych-target");
  target.replaceChildren(el("div", { className: "screen" }, textContentOf(content)));
}

/** The study's settings and the participant, or null after showing why the page cannot go on. */
async function boot() {
  plainScreen({ name: "loading", paragraphs: ["Loading…"] });
  const params = new URLSearchParams(location.search);
  const ident = identity(params, localStorage.getItem(ANON_KEY));
  if (ident.problem) {
    plainScreen({ name: "bad-link", title: "This link cannot be used", paragraphs: [ident.problem] });
    return null;
  }
  const res = await callRetrying("GET", "/api/study", {});
  if (res.status !== 200) {
    plainScreen({ name: "error", title: "The study server cannot be reached", paragraphs: [detail(res), "Please reload the page in a minute."] });
    return null;
  }
  const study = res.data;
  if (study.platform && study.platform !== "any" && ident.name !== study.platform) {
    plainScreen({ name: "bad-link", title: "This link cannot be used", paragraphs: [`Please open this study from ${study.platform === "prolific" ? "Prolific" : "MTurk"}.`] });
    return null;
  }
  if (study.title) document.title = study.title;
  return { study, ident };
}

/** The whole jsPsych timeline of one participant's visit. */
function timeline(S, stage) {
  const study = S.study;
  const { TextScreenPlugin: Text, StepPlugin: Step } = uiPlugins();
  const Trial = trialPlugin(stage, clock);
  const fail = (err) => plainScreen({ name: "error", title: "Something went wrong", paragraphs: [String(err.message || err), "Your answers so far are kept; reload the page to try again."] });
  const step = (name, run) => ({ type: Step, name, run: async (status) => { try { return await run(status); } catch (err) { fail(err); return new Promise(() => {}); } } });
  const text = (content, extra = {}) => ({ type: Text, content, ...extra });
  const when = (cond, node) => ({ timeline: [node], conditional_function: cond });

  // The consent's wording comes from the server (percept serve --consent FILE, else its built-in text): one
  // source, shown as text only like every screen.
  const consentText = (study.texts && study.texts.consent) || {};
  const consent = text({
    name: "consent", title: consentText.title || study.title || "Image comparison study",
    paragraphs: consentText.paragraphs || [],
    buttons: [{ label: "I agree", value: "yes" }, { label: "I do not agree", value: "no", primary: false }],
  }, { on_finish: (d) => { S.declined = d.value !== "yes"; } });
  const declined = text({ name: "declined", title: "Thank you", paragraphs: ["You did not agree to take part; you may close this page."] });

  const check = text(() => {
    const c = S.checks();
    return {
      name: "check", title: "Checking your browser and screen", rows: c.rows,
      paragraphs: ["The images must be shown pixel for pixel: please set your browser's zoom to 100% (Ctrl+0, or ⌘0 on a Mac) before you continue."],
      note: c.ok ? "" : "Your setup does not meet a requirement marked ✗. Fix it (a larger window or screen, zoom at 100%, a desktop browser), then check again.",
      buttons: c.ok ? [{ label: "Continue", value: "ok" }] : [{ label: "Check again", value: "again" }],
    };
  }, { on_finish: (d) => { S.checkOk = d.value === "ok"; } });

  const settle = () => sleep(400); // the resize after a mode change
  const enterFullscreen = () => {
    if (!document.fullscreenEnabled || document.fullscreenElement) return settle();
    // Some browsers never settle the request (refused without an error): go on after a while.
    const asked = document.documentElement.requestFullscreen({ navigationUI: "hide" }).then(settle, settle);
    return Promise.race([asked, sleep(2000)]);
  };
  const fullscreen = text(() => ({
    name: "fullscreen", title: "Full screen",
    paragraphs: ["The study runs in full screen so that nothing else is on the screen. Please stay in full screen until the end."],
    buttons: [{ label: "Switch to full screen", value: "fs", action: enterFullscreen }],
  }));
  const fitStep = step("fit", async () => S.fit());
  const tooSmall = text(() => ({
    name: "too-small", title: "The window is too small",
    paragraphs: [`The images need a window of at least ${study.min_width} × ${study.min_height} at 100% zoom; this one is ${innerWidth} × ${innerHeight} (pixel ratio ${devicePixelRatio}).`,
      "Maximise the window or use a larger screen, set the zoom to 100% (Ctrl+0 / ⌘0), then try again."],
    buttons: [{ label: "Try again in full screen", value: "again", action: enterFullscreen }],
  }));

  const guard = text(() => ({
    name: "guard", title: "Please restore the display",
    paragraphs: [
      devicePixelRatio !== S.dpr
        ? `The page zoom or the display changed (pixel ratio ${devicePixelRatio}, it was ${S.dpr}). Please set the zoom back (Ctrl+0 / ⌘0) or move the window back to its screen.`
        : "The study needs full screen and the window size checked at the start.",
    ],
    buttons: [{ label: "Return to full screen and continue", value: "again", action: enterFullscreen }],
  }));

  const notes = {
    timeline: [text(() => S.notes[0], { on_finish: () => S.notes.shift() })],
    conditional_function: () => S.notes.length > 0,
    loop_function: () => S.notes.length > 0,
  };
  const trialLoop = {
    timeline: [
      step("prepare", (status) => S.prepare(status)),
      notes,
      { timeline: [guard], conditional_function: () => Boolean(S.current) && !S.displayOk(), loop_function: () => !S.displayOk() },
      when(() => Boolean(S.current), { type: Trial, item: () => S.current, iti: ITI_MS, on_finish: (d) => S.answer(d) }),
    ],
    conditional_function: () => S.hasMore(),
    loop_function: () => S.hasMore(),
  };
  const setup = {
    timeline: [
      step("start", async (status) => { await S.start(status); }),
      when(() => S.resuming && S.hasMore(), text(() => S.welcomeBack())),
      {
        timeline: [
          { timeline: [check], loop_function: () => !S.checkOk },
          when(() => document.fullscreenEnabled, fullscreen),
          fitStep,
          { timeline: [tooSmall, fitStep], conditional_function: () => !S.fitOk, loop_function: () => !S.fitOk },
          step("check-saved", () => S.postCheck()),
        ],
        conditional_function: () => S.hasMore(), // a finished session goes straight to its code
      },
      when(() => !S.resuming && S.hasMore(), text(() => S.intro())),
      { timeline: [trialLoop, step("complete", (status) => S.complete(status))], loop_function: () => !S.done },
      text(() => S.completion()),
    ],
    conditional_function: () => !S.declined,
  };
  return [when(() => !S.resuming, consent), when(() => Boolean(S.declined), declined), setup];
}

async function main() {
  const stage = new Stage(document.getElementById("stage"));
  const outbox = new Outbox();
  window.addEventListener("online", () => outbox.kick());
  outbox.kick(); // answers left from an earlier page are sent at once
  const booted = await boot();
  if (!booted) return;
  const S = new Study(booted.study, booted.ident, stage, outbox);
  window.perceptStudy = S; // for the browser tests and for debugging from the console
  document.getElementById("jspsych-target").replaceChildren(); // jsPsych adds its own wrapper
  const jsPsych = window.jsPsychModule.initJsPsych({ display_element: "jspsych-target" });
  await jsPsych.run(timeline(S, stage));
}

main().catch((err) => plainScreen({ name: "error", title: "Something went wrong", paragraphs: [String(err.message || err)] }));
