// The stimulus stage: one canvas filling the viewport whose backing store is the viewport in device
// pixels, so each stimulus pixel becomes exactly k×k device pixels (k an integer), drawn without
// smoothing at whole device-pixel positions. The layout follows study/experiment.py's `layout` and
// `_make_stimuli` (a 3-column grid, rows top/middle/bottom, a dark frame under each image), in device
// pixels instead of PsychoPy window pixels.

export const TEXT_HEIGHT = 20; // CSS px: the lab's text height, used for the layout's room for text
const GAP_MIN = 24; // CSS px: the lab's smallest gap between images
const FRAME_PX = 2; // CSS px: the dark frame around each image (the lab's FRAME_PX)
export const BACKGROUND = "rgb(128, 128, 128)"; // the lab's mid-grey (PsychoPy rgb 0)
const FRAME_COLOR = "rgb(51, 51, 51)"; // the lab's frame (PsychoPy rgb -0.6)
const ROW_NAMES = ["top", "middle", "bottom"];
const COL_STEPS = [-1, 0, 1];

/** Image size, gap and the room the layout needs, all in device pixels, for scale k and a dpr. */
export function layout(k, imagePx, dpr) {
  const s = imagePx * k;
  const gap = Math.max(Math.round(GAP_MIN * dpr), Math.floor(s / 4));
  const text = Math.round(TEXT_HEIGHT * dpr);
  return { s, gap, width: 3 * s + 4 * gap, height: 2 * s + 3 * gap + 8 * text };
}

/** The preferred integer scale: the study's CSS size per image pixel in device pixels, at least 1. */
export function preferredScale(dpr, base = 1) {
  return Math.max(1, Math.round(dpr * base));
}

/** The largest k ≤ the preferred one whose layout fits a device-pixel area; 0 when even k = 1 does not. */
export function fittingScale(dpr, base, imagePx, devW, devH) {
  for (let k = preferredScale(dpr, base); k >= 1; k -= 1) {
    const need = layout(k, imagePx, dpr);
    if (need.width <= devW && need.height <= devH) return k;
  }
  return 0;
}

const cache = new Map();

/** A decoded image (cached by URL); rejects when it cannot be loaded. */
export function loadImage(url) {
  if (!cache.has(url)) {
    const img = new Image();
    img.decoding = "async";
    const p = new Promise((resolve, reject) => {
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`image ${url} did not load`));
    });
    img.src = url;
    cache.set(url, p);
    p.catch(() => cache.delete(url)); // a failed load may be tried again
  }
  return cache.get(url);
}

/** Every image URL of a trial's screen (response screen and sequence frames). */
export function screenUrls(screen) {
  const urls = (screen.images || []).map((i) => i.path);
  for (const frame of screen.sequence || []) urls.push(...(frame.images || []).map((i) => i.path));
  return [...new Set(urls)];
}

export class Stage {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { alpha: false });
    this.k = 1;
    this.imagePx = 0;
    this.current = null; // what is drawn: a list of images, redrawn when the device size changes
    this.onResize = new Set();
    this.exact = typeof ResizeObserver === "function";
    this.resize(Math.round(canvas.clientWidth * this.dpr), Math.round(canvas.clientHeight * this.dpr));
    if (this.exact) {
      const ro = new ResizeObserver((entries) => this.observed(entries[0]));
      try {
        // The content box in device pixels, exactly as the compositor will use it (no rounding guess).
        ro.observe(canvas, { box: "device-pixel-content-box" });
      } catch (err) {
        ro.observe(canvas); // browsers without device-pixel-content-box: rounded CSS size × dpr
      }
    }
    window.addEventListener("resize", () => {
      if (!this.exact) this.resize(Math.round(canvas.clientWidth * this.dpr), Math.round(canvas.clientHeight * this.dpr));
    });
  }

  get dpr() {
    return window.devicePixelRatio || 1;
  }

  observed(entry) {
    const w = Math.round(entry.contentRect.width * this.dpr);
    const h = Math.round(entry.contentRect.height * this.dpr);
    const box = entry.devicePixelContentBoxSize && entry.devicePixelContentBoxSize[0];
    // The exact device-pixel box, unless it disagrees with the pixel ratio: Chromium's device-scale
    // emulation (DevTools, Playwright) reports it unscaled while it renders scaled.
    if (box && Math.abs(box.inlineSize - w) <= 1 && Math.abs(box.blockSize - h) <= 1) this.resize(box.inlineSize, box.blockSize);
    else this.resize(w, h);
  }

  resize(w, h) {
    if (w <= 0 || h <= 0 || (w === this.canvas.width && h === this.canvas.height)) return;
    this.canvas.width = w;
    this.canvas.height = h;
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    // Overlays are placed from the new rectangles, so they wait for the redraw.
    Promise.resolve(this.current ? this.draw(this.current) : null).then(() => {
      for (const fn of this.onResize) fn();
    });
  }

  /** Backing store size in device pixels. */
  get size() {
    return { w: this.canvas.width, h: this.canvas.height };
  }

  setScale(k, imagePx) {
    this.k = k;
    this.imagePx = imagePx;
  }

  get geometry() {
    return layout(this.k, this.imagePx, this.dpr);
  }

  /** Whether the current layout fits the canvas. */
  fits() {
    const need = this.geometry;
    return need.width <= this.canvas.width && need.height <= this.canvas.height;
  }

  /** Device-pixel rectangles {slot, path, x, y, s} of a screen's images (the lab's grid, y pointing down). */
  place(images) {
    const { s, gap } = this.geometry;
    const cx = Math.floor(this.canvas.width / 2);
    const cy = Math.floor(this.canvas.height / 2);
    // The lab's row centres above the window centre (PsychoPy's y points up).
    const up = { middle: gap, top: Math.floor((s + gap) / 2) + gap, bottom: -Math.floor((s + gap) / 2) + gap };
    return images.map((img) => {
      if (!ROW_NAMES.includes(img.row) || !COL_STEPS.includes(img.col)) throw new Error(`bad grid cell ${img.row}/${img.col}`);
      return {
        slot: img.slot, path: img.path, s,
        x: cx + img.col * (s + gap) - Math.floor(s / 2),
        y: cy - up[img.row] - Math.floor(s / 2),
      };
    });
  }

  /** Draw images (decoded beforehand) on the background; returns their rectangles. */
  async draw(images) {
    this.current = images;
    const decoded = await Promise.all(images.map((i) => loadImage(i.path)));
    if (this.current !== images) return this.placed; // a newer draw won
    const ctx = this.ctx;
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    const placed = this.place(images);
    const f = Math.max(1, Math.round(FRAME_PX * this.dpr));
    ctx.fillStyle = FRAME_COLOR;
    for (const p of placed) ctx.fillRect(p.x - f, p.y - f, p.s + 2 * f, p.s + 2 * f);
    placed.forEach((p, n) => ctx.drawImage(decoded[n], p.x, p.y, p.s, p.s));
    this.placed = placed;
    // Read by the browser tests (pixel checks) and useful when debugging; never parsed by the app.
    this.canvas.dataset.placed = JSON.stringify(placed);
    this.canvas.dataset.scale = String(this.k);
    return placed;
  }

  clear() {
    this.current = null;
    this.placed = [];
    this.ctx.fillStyle = BACKGROUND;
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.canvas.dataset.placed = "[]";
  }

  show(on) {
    this.canvas.classList.toggle("on", on);
  }

  /** A device-pixel point as CSS pixels of the viewport (the canvas sits at the viewport's origin). */
  css(x) {
    return x / this.dpr;
  }
}
