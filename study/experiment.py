"""The PsychoPy experiment: one participant's session of trials of any kind, crash-safe and resumable.

Screens: instructions (Space) → practice → "practice over" (Space) → main block with a break
every N trials showing progress (Space) → thank-you (Space, or after a few seconds). Each trial
is drawn from its kind's screen description (study/trials/: images on a 3-column grid, labels,
prompt, frames shown in turn, keys), and its kind turns key presses into the saved choice:
triplet/catch/pair Left/Right; ranking 1/2/3 best to worst (Backspace undoes); rating kinds 1–5;
jnd S/D after the two images were flashed. Escape ends the session keeping everything answered. Every answer is appended to the response
CSV and fsync'd before the next trial is drawn; running the same participant and session again
resumes after the last saved trial.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from percept.contracts import ContractError, InputError
from percept.contracts import design as design_c
from percept.contracts import manifest as manifest_c
from percept.contracts import responses as responses_c
from study import responses as log
from study import trials as kinds
from study.design import load_design, versions

# A test hook: called when a screen appears with (screen name, trial row or None); the keys it
# returns are injected into the real keyboard device, so the whole key path is exercised.
Responder = Callable[[str, "dict | None"], list[str]]

IMAGE_SIZE = 96  # the manifests' usual image resolution (STL-10); others work if all images share one size
BACKGROUND = (0.0, 0.0, 0.0)  # mid-grey in PsychoPy's rgb space [-1, 1]
TEXT_HEIGHT = 20  # px
FRAME_PX = 2  # width of the dark frame around each image, px
FRAME_COLOR = (-0.6, -0.6, -0.6)  # dark grey in rgb [-1, 1]: visible on the mid-grey background
THANKS_SECONDS = 10.0  # the thank-you screen closes by itself after this long


@dataclass(frozen=True)
class RunConfig:
    """Settings of one session (`percept run`)."""

    design: Path
    participant: str
    session: str = "1"  # session id; a new one starts a fresh response file
    list_choice: str = "auto"  # "auto" or a list number
    fullscreen: bool = False  # a window of --size is easier to pilot; use fullscreen with participants
    scale: int = 1  # integer nearest-neighbour upscale, the same for every image
    monitor: str | None = None  # a PsychoPy Monitor Center name
    break_every: int = 30  # main-block trials between breaks
    iti: float = 0.5  # s of blank screen between trials
    pilot: bool = False  # shows PILOT, marks the record and prefixes the participant id
    size: tuple[int, int] = (1024, 768)  # window size when not fullscreen (grown to fit the layout)
    screenshots: Path | None = None  # save a back-buffer screenshot of the first trial of each kind


def participant_id(cfg: RunConfig) -> str:
    """The id written to the data: the participant, prefixed with 'pilot-' in pilot mode."""
    pid = responses_c.check_id(cfg.participant, "participant")
    return f"pilot-{pid}" if cfg.pilot else pid


def choose_list(design: pd.DataFrame, responses_dir: Path, choice: str, this_csv: Path) -> int:
    """The list to run: a given number, or (auto) rotate over lists by the number of human sessions so far."""
    lists = sorted(int(k) for k in design["list_id"].unique())
    if choice != "auto":
        try:
            k = int(choice)
        except ValueError:
            raise InputError(f"--list: {choice!r} is not 'auto' or a list number ({', '.join(map(str, lists))})") from None
        if k not in lists:
            raise InputError(f"--list: {k} is not in the design (lists {', '.join(map(str, lists))})")
        return k
    n = 0
    for rec_path in sorted(responses_dir.glob("*.json")):
        if rec_path.with_suffix(".csv") == this_csv:
            continue
        rec = log.existing_record(rec_path)
        if rec is not None and not rec.get("simulated") and not rec.get("pilot"):
            n += 1
    return lists[n % len(lists)]


def layout(scale: int, image_px: int = IMAGE_SIZE) -> dict:
    """Image size, gap and required window size (pixels) for the two screen layouts."""
    s = image_px * scale
    gap = max(24, s // 4)
    width = 3 * s + 4 * gap
    height = 2 * s + 3 * gap + 8 * TEXT_HEIGHT
    return {"image": s, "gap": gap, "width": width + width % 2, "height": height + height % 2}


def button_layout(n: int, win_width: int, prompt_y: float) -> list[tuple[float, float, float, float]]:
    """(x, y, width, height) in pix (centre origin) of n clickable buttons in a row below the prompt."""
    if n == 0:
        return []
    total = min(win_width - 40, 190 * n)
    width = total / n
    return [(-total / 2 + width * (k + 0.5), prompt_y - 3 * TEXT_HEIGHT, width - 10, 2 * TEXT_HEIGHT) for k in range(n)]


def _load_image(path: Path, scale: int):
    """An RGB PIL image upscaled by an integer factor with nearest neighbour (every pixel an s×s block)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return rgb.resize((rgb.size[0] * scale, rgb.size[1] * scale), Image.NEAREST) if scale > 1 else rgb


def common_image_size(design: pd.DataFrame, design_path: Path) -> int:
    """The one square size (px) of every image the design shows; refuse mixed or non-square sizes."""
    from PIL import Image

    base = design_path.resolve().parent
    sizes: dict[tuple[int, int], str] = {}
    for rel in design_c.image_paths(design):
        with Image.open(base / rel) as im:
            sizes.setdefault(im.size, rel)
    if len(sizes) != 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
        shown = ", ".join(f"{w}×{h} ({rel})" for (w, h), rel in sizes.items())
        raise ContractError(f"{design_path}: images must all be square and the same size, found {shown}")
    return next(iter(sizes))[0]


class Session:
    """One open PsychoPy window running a participant's remaining trials."""

    def __init__(self, cfg: RunConfig, responder: Responder | None = None):
        self.cfg = cfg
        self.responder = responder
        self.design_path = Path(cfg.design)
        self.pid = participant_id(cfg)
        self.session = responses_c.check_id(str(cfg.session), "session")
        if cfg.scale < 1:
            raise InputError(f"--scale: {cfg.scale} must be an integer ≥ 1")
        if cfg.break_every < 1:
            raise InputError(f"--break-every: {cfg.break_every} must be at least 1")
        if not (cfg.iti >= 0 and math.isfinite(cfg.iti)):
            raise InputError(f"--iti: {cfg.iti} must be a number of seconds ≥ 0")
        # Everything that can be refused is refused here, before any window opens.
        self.design, self.meta = load_design(self.design_path, check_files=True)
        self.responses_dir = self.design_path.parent / "responses"
        self.csv_path = responses_c.response_path(self.responses_dir, self.pid, self.session)
        self.rec_path = log.record_path(self.csv_path)
        if self.responses_dir.is_dir():  # briefly, so a session running elsewhere is refused right away
            with log.session_lock(self.csv_path):
                self._load_state()
        else:
            self._load_state()
        self.image_px = common_image_size(self.trials, self.design_path)
        self.images: dict[str, object] = {}
        self.win = None

    def _load_state(self) -> None:
        """Read what this participant/session already has: record, answered trials, list, remaining trials."""
        cfg = self.cfg
        self.record = log.existing_record(self.rec_path)
        answered = log.read_answered(self.csv_path)
        if self.record is not None and self.record.get("simulated"):
            raise InputError(f"{self.csv_path}: belongs to a simulated observer; choose another participant id")
        if self.record is not None and self.record.get("completed"):
            raise InputError(f"{self.csv_path}: session {self.session} of {self.pid} is already complete; use a new --session")
        if self.record is not None:
            self.list_id = int(self.record["list_id"])
        elif len(answered):
            self.list_id = int(answered["list_id"].iloc[0])
        else:
            self.list_id = choose_list(self.design, self.responses_dir, cfg.list_choice, self.csv_path)
        if cfg.list_choice != "auto" and (self.record is not None or len(answered)) and \
                choose_list(self.design, self.responses_dir, cfg.list_choice, self.csv_path) != self.list_id:
            raise InputError(f"--list {cfg.list_choice}: {self.csv_path} was started with list {self.list_id}; resume it with that list")
        self.trials = self.design[self.design["list_id"] == self.list_id].sort_values("trial").reset_index(drop=True)
        done = set(int(t) for t in answered["trial"]) if len(answered) else set()
        unknown = sorted(done - set(self.trials["trial"]))
        if unknown:
            raise ContractError(f"{self.csv_path}: trial(s) {unknown[:5]} are not in list {self.list_id} of {self.design_path}")
        self.n_done = len(done)
        self.remaining = self.trials[~self.trials["trial"].isin(done)].reset_index(drop=True)
        self.n_main = int((self.trials["block"] == "main").sum())
        self.main_done = int(((self.trials["block"] == "main") & self.trials["trial"].isin(done)).sum())

    # --- session record -------------------------------------------------------------------
    def _write_record(self, **changes) -> None:
        self.record.update(changes, n_answered=self.n_done)
        log.write_record(self.rec_path, self.record)

    def _new_record(self, window: dict) -> dict:
        import psychopy

        return {
            "participant": self.pid, "session": self.session, "list_id": self.list_id,
            "design": "../" + self.design_path.name, "design_sha256": manifest_c.file_hash(self.design_path),
            "simulated": False, "observer": None, "started": log.now_iso(), "ended": None, "completed": False,
            "n_trials": len(self.trials), "n_answered": self.n_done,
            "versions": {**versions(), "psychopy": psychopy.__version__}, "window": window,
            "pilot": self.cfg.pilot, "break_every": self.cfg.break_every, "iti": self.cfg.iti, "resumed": [],
        }

    # --- window ---------------------------------------------------------------------------
    def preflight(self) -> None:
        """Refuse an unknown monitor or a missing display before anything is written or opened."""
        import os

        if self.cfg.monitor:
            from psychopy import monitors

            if self.cfg.monitor not in monitors.getAllMonitors():
                known = ", ".join(monitors.getAllMonitors()) or "none"
                raise InputError(f"--monitor: {self.cfg.monitor!r} is not in PsychoPy's Monitor Center (known: {known})")
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("no display to open the window on: set DISPLAY (or run under xvfb-run for a dry run)")

    def open_window(self) -> None:
        """Open the window and keyboard, check the layout fits, and write the session record."""
        from psychopy import logging, visual
        from psychopy.hardware import keyboard

        need = layout(self.cfg.scale, self.image_px)
        size = (max(self.cfg.size[0], need["width"]), max(self.cfg.size[1], need["height"]))
        size = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # even sizes keep the centre on a pixel corner
        kwargs = {"monitor": self.cfg.monitor} if self.cfg.monitor else {}
        self.win = visual.Window(size=size, fullscr=self.cfg.fullscreen, units="pix", color=BACKGROUND,
                                 colorSpace="rgb", allowGUI=not self.cfg.fullscreen, checkTiming=False, **kwargs)
        width, height = (int(v) for v in self.win.size)
        if width < need["width"] or height < need["height"]:
            self.win.close()
            raise InputError(f"--scale {self.cfg.scale}: needs a {need['width']}×{need['height']} window, the screen gives {width}×{height}")
        # Half-pixel offset on odd-sized (fullscreen) windows so image pixels land on screen pixels.
        self.offset = (0.5 * (width % 2), 0.5 * (height % 2))
        self.kb = keyboard.Keyboard()
        backend = self.kb.getBackend()
        if backend != "ptb":
            msg = (f"WARNING: PsychoPy keyboard backend is {backend!r}, not 'ptb': key timing is coarse and "
                   "getKeys(keyList=...) is unreliable. Install psychtoolbox and Debian's libjack-jackd2-0.")
            print("\n" + "!" * 78 + f"\n{msg}\n" + "!" * 78 + "\n", file=sys.stderr)
            logging.warning(msg)
        frame_rate = self.win.getActualFrameRate(nIdentical=10, nMaxFrames=60, nWarmUpFrames=5, threshold=1)
        self.win.mouseVisible = False
        self._make_stimuli(need)
        window = {"size": [width, height], "fullscreen": self.cfg.fullscreen, "monitor": self.cfg.monitor,
                  "scale": self.cfg.scale, "image_px": need["image"], "units": "pix",
                  "frame_rate": None if frame_rate is None else round(float(frame_rate), 3),
                  "keyboard_backend": backend, "screen": int(getattr(self.win, "screen", 0) or 0)}
        if self.record is None:
            self.record = self._new_record(window)
        else:
            self.record.setdefault("resumed", []).append({"at": log.now_iso(), "after": self.n_done, "window": window})
        self._write_record()

    def _make_stimuli(self, need: dict) -> None:
        from psychopy import event, visual

        s, gap = need["image"], need["gap"]
        ox, oy = self.offset
        step = s + gap
        # The grid rows and columns of the kinds' screen descriptions, in pixels.
        self.rows = {"middle": oy + gap, "top": oy + (s + gap) // 2 + gap, "bottom": oy - (s + gap) // 2 + gap}
        self.cols = {c: ox + c * step for c in (-1, 0, 1)}
        self.image_stims = {name: visual.ImageStim(self.win, units="pix", size=None, interpolate=False, name=str(name))
                            for name in ("reference", "a", "b", "c")}
        # A thin dark frame drawn under each image, so an image as grey as the background still
        # shows its extent; the image covers the frame's inside, so its pixels stay exact.
        self.frames = {name: visual.Rect(self.win, units="pix", width=s + 2 * FRAME_PX, height=s + 2 * FRAME_PX,
                                         fillColor=FRAME_COLOR, lineColor=None, name=f"frame-{name}")
                       for name in self.image_stims}
        self.text = visual.TextStim(self.win, text="", units="pix", height=TEXT_HEIGHT, color="white",
                                    wrapWidth=min(900, int(self.win.size[0]) - 40))
        self.prompt = visual.TextStim(self.win, text="", units="pix", height=TEXT_HEIGHT, color="white",
                                      wrapWidth=min(900, int(self.win.size[0]) - 40))
        self.labels = [visual.TextStim(self.win, text="", units="pix", height=TEXT_HEIGHT, color="white") for _ in range(4)]
        # Buttons of kinds answered by clicks too (the rating scales): a box with its label.
        self.button_boxes = [visual.Rect(self.win, units="pix", width=10, height=10, fillColor=(-0.3, -0.3, -0.3),
                                         lineColor="white", name=f"button-{k}") for k in range(5)]
        self.button_texts = [visual.TextStim(self.win, text="", units="pix", height=TEXT_HEIGHT * 0.8, color="white")
                             for _ in range(5)]
        self.mouse = event.Mouse(visible=False, win=self.win)
        self.pilot_text = visual.TextStim(self.win, text="PILOT", units="pix", height=28, color="red", bold=True,
                                          pos=(-int(self.win.size[0]) // 2 + 60, int(self.win.size[1]) // 2 - 30))
        self.s, self.gap = s, gap

    def _image(self, rel: str):
        if rel not in self.images:
            self.images[rel] = _load_image(self.design_path.resolve().parent / rel, self.cfg.scale)
        return self.images[rel]

    # --- drawing --------------------------------------------------------------------------
    def _draw_common(self) -> None:
        if self.cfg.pilot:
            self.pilot_text.draw()

    def _place(self, images: list[dict]) -> list[tuple]:
        """(stim, frame, slot) of a description's images, positioned, in drawing order."""
        placed = []
        for name, img in zip(("reference", "a", "b", "c"), images):
            stim = self.image_stims[name]
            stim.setImage(self._image(img["path"]))
            stim.pos = (self.cols[img["col"]], self.rows[img["row"]])
            placed.append((stim, self.frames[name], img["slot"]))
        return placed

    def _set_trial(self, trial: pd.Series) -> None:
        self.kind = kinds.get(trial["kind"])
        self.screen = self.kind.screen(trial.to_dict(), self.meta.get("timing", {}))
        self.placed = self._place(self.screen["images"])
        self.prompt.text = self.screen["prompt"]
        lowest = min((stim.pos[1] for stim, _, _ in self.placed), default=None)
        self.prompt.pos = (0, 0) if lowest is None else (0, lowest - self.s / 2 - 4 * TEXT_HEIGHT)
        buttons = self.screen["buttons"]
        self.buttons = []
        for button, box, text, (x, y, w, h) in zip(buttons, self.button_boxes, self.button_texts,
                                                   button_layout(len(buttons), int(self.win.size[0]), self.prompt.pos[1])):
            box.pos, box.width, box.height = (x, y), w, h
            text.pos, text.text, text.wrapWidth = (x, y), button["label"], w - 6
            self.buttons.append((button["key"], box, text))
        self.mouse.setVisible(bool(self.buttons))

    def _draw_images(self, placed: list[tuple]) -> None:
        for stim, frame, _ in placed:
            frame.pos = stim.pos
            frame.draw()
            stim.draw()

    def _draw_trial(self, trial: pd.Series, pressed: list[str]) -> None:
        self._draw_common()
        self._draw_images(self.placed)
        labelled = [(stim, slot) for stim, _, slot in self.placed if slot != "reference"]
        for label, (stim, slot) in zip(self.labels, labelled):
            label.text = self.kind.label(slot, pressed)
            if label.text:
                label.color = "yellow" if self.kind.highlight(slot, pressed) else "white"
                label.pos = (stim.pos[0], stim.pos[1] - self.s / 2 - TEXT_HEIGHT)
                label.draw()
        self.prompt.draw()
        for _, box, text in self.buttons:
            box.draw()
            text.draw()

    def _play_sequence(self, trial: pd.Series) -> bool:
        """Frames shown in turn before the response screen (jnd); False on Escape."""
        from psychopy import core

        for k, frame in enumerate(self.screen["sequence"]):
            placed = self._place(frame["images"])
            self._draw_common()
            self._draw_images(placed)
            if k == 0:
                self._screenshot(trial)
            clock = core.Clock()
            self.win.callOnFlip(clock.reset)  # each frame's time counts from its own onset flip
            self.win.flip()
            while clock.getTime() < frame["ms"] / 1000.0:
                self._draw_common()
                self._draw_images(placed)
                self.win.flip()
                if any(key.name == "escape" for key in self._keys()):
                    return False
        return True

    def _screenshot(self, trial: pd.Series) -> None:
        """Save the back buffer about to be shown, once per kind (exact pixels)."""
        if self.cfg.screenshots is None or trial["kind"] in self._shot:
            return
        self._shot.add(trial["kind"])
        frame = self.win.getMovieFrame(buffer="back")
        self.win.movieFrames.clear()
        Path(self.cfg.screenshots).mkdir(parents=True, exist_ok=True)
        frame.save(Path(self.cfg.screenshots) / f"{trial['kind']}.png")

    # --- input ----------------------------------------------------------------------------
    def _respond(self, screen: str, trial: dict | None) -> None:
        """Let the test hook answer the screen by injecting key events into the keyboard device."""
        if self.responder is None:
            return
        t = self.kb.clock.getTime()
        for k, key in enumerate(self.responder(screen, trial)):
            self.kb.device.makeResponse(code=key, tDown=t + 0.01 * (k + 1))

    def _keys(self) -> list:
        # Filter names here rather than with keyList, which the event backend mishandles in 2026.2.
        return self.kb.getKeys(waitRelease=False)

    def wait_screen(self, screen: str, message: str, timeout: float | None = None) -> bool:
        """Show a message until Space (True) or Escape (False); a timeout counts as Space."""
        from psychopy import core

        self.text.text = message
        self.text.pos = (0, 0)
        self.kb.clearEvents()
        first = True
        clock = core.Clock()
        while timeout is None or clock.getTime() < timeout:
            self._draw_common()
            self.text.draw()
            self.win.flip()
            if first:
                self._respond(screen, None)
                first = False
            for key in self._keys():
                if key.name == "space":
                    return True
                if key.name == "escape":
                    return False
        return True

    def blank(self, seconds: float) -> bool:
        """A blank inter-trial screen; False if Escape was pressed."""
        from psychopy import core

        clock = core.Clock()
        if getattr(self, "mouse", None) is not None:
            self.mouse.setVisible(False)  # only screens with buttons show the pointer
        while clock.getTime() < seconds:
            self._draw_common()
            self.win.flip()
            if any(k.name == "escape" for k in self._keys()):
                return False
        return True

    def run_trial(self, trial: pd.Series, session_clock) -> dict | None:
        """Show one trial until answered; the response row, or None on Escape."""
        self._set_trial(trial)
        if self.screen["sequence"] and not self._play_sequence(trial):
            return None
        pressed: list[str] = []
        self._draw_trial(trial, pressed)
        self._screenshot(trial)
        onset_holder = {}
        self.win.callOnFlip(self.kb.clock.reset)  # rt counts from the response screen's onset flip
        self.win.callOnFlip(lambda: onset_holder.setdefault("onset", session_clock.getTime()))
        self.kb.clearEvents()  # presses made before the onset do not count
        self.win.flip()
        self._respond("trial", trial.to_dict())
        was_down = bool(self.mouse.getPressed()[0])  # a button held since before the onset does not count
        while True:
            for key in self._keys():
                if key.name == "escape":
                    return None
                answer = self.kind.press(trial, pressed, key.name)
                if answer is not None:
                    return self._row(trial, answer[0], answer[1], key.rt, onset_holder["onset"])
            if self.buttons:
                down = bool(self.mouse.getPressed()[0])
                if down and not was_down:
                    for key, box, _ in self.buttons:
                        answer = self.kind.press(trial, pressed, key) if box.contains(self.mouse) else None
                        if answer is not None:  # saved as "click:<key>" so clicks and presses stay apart
                            return self._row(trial, f"click:{answer[0]}", answer[1], self.kb.clock.getTime(),
                                             onset_holder["onset"])
                was_down = down
            self._draw_trial(trial, pressed)
            self.win.flip()

    def _row(self, trial: pd.Series, key: str, choice: str, rt: float, onset: float) -> dict:
        return log.response_row(trial, self.pid, self.session, key=key, choice=choice, rt=max(float(rt), 0.0),
                                onset=onset, wallclock=log.now_iso(), simulated=False)

    # --- the session ----------------------------------------------------------------------
    def run(self) -> Path:
        """Run the remaining trials; return the response CSV path."""
        from psychopy import core

        self._shot: set[str] = set()
        self.preflight()
        # Held for the whole session: a second `percept run` of the same session is refused.
        with log.session_lock(self.csv_path):
            self._load_state()  # again, under the lock: nothing can have changed unseen
            self.open_window()
            completed = False
            try:
                with log.ResponseLog(self.csv_path) as responses:
                    completed = self._loop(responses, core.Clock())
            finally:
                self._write_record(ended=log.now_iso(), completed=completed)
                if self.win is not None:
                    self.win.close()
        print(f"run: {self.n_done}/{len(self.trials)} trials saved in {self.csv_path}"
              + ("" if completed else " (session ended early; run the same command again to resume)"), file=sys.stderr)
        return self.csv_path

    def _loop(self, responses: log.ResponseLog, session_clock) -> bool:
        shown = set(self.trials["kind"])
        if self.n_done:
            intro = (f"Welcome back. {self.n_done} of {len(self.trials)} trials are done; "
                     "we continue where you stopped.\n\nPress Space to continue.")
        else:
            intro = _instructions(shown, has_practice=bool((self.trials["block"] == "practice").any()))
        if not self.wait_screen("instructions", intro):
            return False
        previous_block = None
        for _, trial in self.remaining.iterrows():
            if previous_block == "practice" and trial["block"] == "main":
                if not self.wait_screen("practice_done", "Practice is over. The main part starts now.\n\nPress Space to begin."):
                    return False
            previous_block = trial["block"]
            if not self.blank(self.cfg.iti):
                return False
            row = self.run_trial(trial, session_clock)
            if row is None:
                return False
            responses.append(row)  # flushed and fsync'd before anything else is drawn
            self.n_done += 1
            if trial["block"] == "main":
                self.main_done += 1
                if self.main_done % self.cfg.break_every == 0 and self.main_done < self.n_main:
                    self._write_record()
                    msg = (f"Break. {self.main_done} of {self.n_main} trials done "
                           f"({100 * self.main_done // self.n_main}%).\n\nRest your eyes, then press Space to continue.")
                    if not self.wait_screen("break", msg):
                        return False
        self._write_record(ended=log.now_iso(), completed=True)
        self.wait_screen("thanks", "Thank you! You have finished.\n\nPress Space to close.", timeout=THANKS_SECONDS)
        return True


def _instructions(shown: set[str], has_practice: bool) -> str:
    """The instructions of every kind shown (a catch kind's are its task's), in registry order."""
    from percept.contracts import kinds as kinds_c

    parts = ["In each trial you see an original image and copies of it made by different computer models."]
    order = sorted(shown, key=lambda k: kinds_c.MAIN_KINDS.index(kinds_c.spec(k).catch_of or k))
    parts += list(dict.fromkeys(kinds.get(k).instructions for k in order))
    parts.append("There are no right or wrong answers; go by your first impression. Escape ends the session "
                 "(your answers so far are kept).")
    if has_practice:
        parts.append("A few practice trials come first.")
    return "\n\n".join(parts) + "\n\nPress Space to start."


def run_session(cfg: RunConfig, responder: Responder | None = None) -> Path:
    """Run (or resume) one participant's session; return the response CSV path.

    Holds the study folder's lock shared: sessions may run side by side, `design` and `simulate` may not.
    """
    from percept.contracts.staging import stage_lock

    design = Path(cfg.design)
    with stage_lock(design.parent if design.parent.name else design.resolve().parent, shared=True):
        return Session(cfg, responder).run()


def dialog_problem() -> str | None:
    """Why a Qt dialog cannot open here (None if it can), probed in a subprocess because Qt aborts the process."""
    import subprocess

    probe = ("try:\n from PyQt6.QtWidgets import QApplication\nexcept ImportError:\n from PyQt5.QtWidgets import QApplication\n"
             "QApplication([])")
    try:
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the Qt probe did not finish in 30 s"
    if r.returncode == 0:
        return None
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return lines[0] if lines else f"Qt exited with code {r.returncode}"


def ask_participant(session: str) -> tuple[str, str] | None:
    """A PsychoPy dialog asking for the participant and session; None if cancelled."""
    problem = dialog_problem()
    if problem is not None:
        raise InputError(f"cannot open the participant dialog ({problem}); give --participant (and --session) instead")
    from psychopy import gui

    info = {"participant": "", "session": session}
    dlg = gui.DlgFromDict(info, title="percept study", order=["participant", "session"])
    if not dlg.OK:
        return None
    return str(info["participant"]).strip(), str(info["session"]).strip()
