// Building blocks of the page: an element helper that sets text only through textContent, a jsPsych
// plugin for text screens (title, paragraphs, a table of checks, buttons, keys) and one that runs an
// async step while showing what it is doing. Nothing here (or anywhere in the client) assigns HTML.

let shown = 0;

const KEY_NAMES = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down", Backspace: "backspace", " ": "space" };

/** The PsychoPy key name of a keyboard event ("left", "1", "s", "backspace", "space", ...). */
export function keyName(event) {
  return KEY_NAMES[event.key] || event.key.toLowerCase();
}

/** A promise resolved after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Name the screen now showing (body data-screen) and count screens (data-step), for tests and debugging. */
export function markScreen(name) {
  shown += 1;
  document.body.dataset.screen = name;
  document.body.dataset.step = String(shown);
}

/** An element with properties (`text` → textContent) and children. */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else if (name === "type" || name === "href" || name === "rel") node.setAttribute(name, value);
    else throw new Error(`el: unsupported property ${name}`);
  }
  for (const child of children) node.append(child);
  return node;
}

/** A text screen's content as elements: {title, paragraphs, rows: [[label, value, ok]], note}. */
export function textContentOf(c) {
  const parts = [];
  if (c.title) parts.push(el("h1", { text: c.title }));
  for (const p of c.paragraphs || []) parts.push(el("p", { text: p }));
  if (c.rows && c.rows.length) {
    const table = el("table", { className: "checks" });
    for (const [label, value, ok] of c.rows) {
      const mark = ok === undefined ? "" : ok ? "✓" : "✗";
      const tr = el("tr", { className: ok === false ? "bad" : "" }, [
        el("td", { text: mark }), el("th", { text: label }), el("td", { text: value }),
      ]);
      table.append(tr);
    }
    parts.push(table);
  }
  if (c.note) parts.push(el("p", { className: "note", text: c.note }));
  if (c.link) parts.push(el("p", {}, [el("a", { href: c.link, rel: "noreferrer", text: c.linkText || c.link })]));
  return parts;
}

/**
 * POST a form of text fields to `action`, navigating this frame (MTurk's ExternalQuestion submit). Built with
 * DOM properties only: each value is an input's `.value`, never markup.
 */
export function postForm(action, fields) {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = action;
  form.target = "_self"; // the frame itself navigates, as MTurk expects of its iframe
  form.hidden = true;
  for (const [name, value] of Object.entries(fields)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = String(value);
    form.append(input);
  }
  document.body.append(form);
  form.submit();
  return form;
}

/** Plugin classes that need jsPsych's ParameterType (loaded as a classic script before the modules). */
export function uiPlugins() {
  const { ParameterType } = window.jsPsychModule;

  /**
   * A text screen. `content` (a function, evaluated when the screen starts) gives {name, title, paragraphs,
   * rows, note, link, linkText, post: {action, fields}, redirectMs, buttons: [{label, value, action}], keys:
   * {key: value}}; with `link` (or `post`) and `redirectMs` the page goes to the link (or POSTs the form's fields
   * to its action) after that long. A button's `action`
   * runs inside the click (a user gesture, as fullscreen needs) and may return a promise awaited before
   * the screen ends. Data: {value}.
   */
  class TextScreenPlugin {
    constructor(jsPsych) {
      this.jsPsych = jsPsych;
    }

    trial(display, params) {
      const c = params.content || {};
      markScreen(c.name || "text");
      const box = el("div", { className: "screen" }, textContentOf(c));
      const row = el("div", { className: "buttons" });
      box.append(row);
      display.replaceChildren(box);
      if (c.link && c.redirectMs !== undefined) setTimeout(() => location.assign(c.link), c.redirectMs);
      if (c.post && c.redirectMs !== undefined) setTimeout(() => postForm(c.post.action, c.post.fields), c.redirectMs);
      return new Promise((resolve) => {
        let over = false;
        const end = async (value, action) => {
          if (over) return;
          over = true;
          document.removeEventListener("keydown", onKey);
          try {
            if (action) await action();
          } finally {
            resolve({ value, screen: c.name || "text" });
          }
        };
        for (const b of c.buttons || []) {
          const btn = el("button", { type: "button", text: b.label, className: b.primary === false ? "secondary" : "primary" });
          if (b.value !== undefined) btn.dataset.value = String(b.value);
          btn.addEventListener("click", () => {
            // The action starts synchronously in the click, before any await (user activation).
            const pending = b.action ? b.action() : null;
            end(b.value, pending ? () => pending : null);
          });
          row.append(btn);
        }
        const onKey = (ev) => {
          const keys = c.keys || {};
          const name = keyName(ev);
          if (Object.hasOwn(keys, name) && !ev.repeat) {
            ev.preventDefault();
            end(keys[name]);
          }
        };
        document.addEventListener("keydown", onKey);
        const first = row.querySelector("button");
        if (first) first.focus();
      });
    }
  }
  TextScreenPlugin.info = {
    name: "percept-text",
    version: "1.0.0",
    parameters: { content: { type: ParameterType.COMPLEX, default: {} } },
    data: { value: { type: ParameterType.STRING }, screen: { type: ParameterType.STRING } },
  };

  /** Runs `run(status)` (async); `status(text)` shows what it is waiting for. Data: {value: its result}. */
  class StepPlugin {
    constructor(jsPsych) {
      this.jsPsych = jsPsych;
    }

    async trial(display, params) {
      markScreen(`step:${params.name || "step"}`);
      const msg = el("p", { className: "status" });
      const box = el("div", { className: "screen" }, [msg]);
      display.replaceChildren(box);
      // Shown only when the step takes long enough to notice.
      const timer = setTimeout(() => { msg.textContent = params.message || "Please wait…"; }, 300);
      try {
        const value = await params.run((text) => { msg.textContent = text; });
        return { value: value === undefined ? null : value };
      } finally {
        clearTimeout(timer);
      }
    }
  }
  StepPlugin.info = {
    name: "percept-step",
    version: "1.0.0",
    parameters: {
      run: { type: ParameterType.FUNCTION, default: undefined },
      name: { type: ParameterType.STRING, default: "step" },
      message: { type: ParameterType.STRING, default: "Please wait…" },
    },
    data: { value: { type: ParameterType.COMPLEX } },
  };

  return { TextScreenPlugin, StepPlugin };
}
