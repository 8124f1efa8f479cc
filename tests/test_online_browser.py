"""The online study's browser client in Debian's headless Chromium (Playwright), against the real server
(`percept serve`, uvicorn on loopback) over tiny designs made by `percept design`:
- the happy path through consent, checks, full screen, instructions, practice and every kind to the code,
  the presses stored as the kinds' `press` makes them (ranking with an undo; rating by a click);
- a reload mid-study resumes at the next unanswered trial: every trial shown once, one row per trial;
- the first answers lost at the network layer (route abort) are retried: one row per trial;
- device scale factors 1, 1.25, 1.5 and 2: the stimulus pixels on screen equal a nearest-neighbour
  upscale of the PNG by the chosen integer k (screenshot in device pixels, compared exactly);
- hostile participant IDs from the URL are shown as text, never as HTML; Prolific/MTurk/direct URL
  parameters become the platform IDs sent to the server;
- the study's own consent (with a hostile line, shown literally), instructions and debrief files reach their
  screens, and the session's record names the consent's sha256;
- the check screen refuses a small screen and a phone; leaving full screen or zooming pauses the study;
- under the active policy the client asks for trials as the server fixes them, batch by batch;
- MTurk: the study inside a cross-origin iframe of an allowed --mturk-origin (refused in another's), run to
  the end with and without the iframe's allow="fullscreen", POSTs assignmentId and the code there once.
Skipped (with the reason) only where /usr/bin/chromium, Playwright or the npm client are missing."""
from __future__ import annotations

import io
import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study import cli as study_cli
from study import trials as kinds
from study.online import security
from test_study_support import REPO, make_manifest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
JSPSYCH = REPO / "study" / "online" / "node_modules" / "jspsych" / "dist" / "index.browser.min.js"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1101, "height": 761}  # CSS px: above the server's 1024 × 700; odd, so × 1.25 is fractional
TIMEOUT = 30_000  # ms for any one screen to appear
KEY_NAMES = {"left": "ArrowLeft", "right": "ArrowRight", "backspace": "Backspace"}


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian package chromium; `make setup` installs it as root)"
    if not JSPSYCH.exists():
        return f"{JSPSYCH.relative_to(REPO)} is missing: run `make setup` (npm ci in study/online; needs node/npm)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)


# --- the study: a tiny design and the real server ------------------------------------------------
class Served:
    """A served design at a URL, and what the tests read back: its database, trials and export."""

    def __init__(self, design: Path, url: str):
        self.design, self.url = design, url

    def database(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.design.parent / 'online' / 'study.sqlite'}?mode=ro", uri=True)

    def positions(self, sid: str) -> pd.DataFrame:
        """The session's trials: position → design row (from the database and design.csv)."""
        with self.database() as db:
            pos = pd.read_sql_query("SELECT position, list_id, trial FROM session_trials WHERE session = ? ORDER BY position", db, params=(sid,))
        design = pd.read_csv(self.design, dtype=str, keep_default_na=False)
        design[["list_id", "trial"]] = design[["list_id", "trial"]].astype(int)
        return pos.merge(design, on=["list_id", "trial"], how="left", validate="one_to_one").set_index("position")

    def answers(self, sid: str) -> pd.DataFrame:
        with self.database() as db:
            return pd.read_sql_query("SELECT * FROM answers WHERE session = ? ORDER BY position", db, params=(sid,))

    def export(self, sid: str) -> pd.DataFrame:
        """`percept export-online`, then this session's response CSV."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-m", "percept", "export-online", "--design", str(self.design)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        found = list((self.design.parent / "responses").glob(f"*-{sid}.csv"))
        assert len(found) == 1, found
        return pd.read_csv(found[0], dtype=str, keep_default_na=False)


class Server(Served):
    """`percept serve` in a subprocess on a free loopback port."""

    def __init__(self, design: Path, *extra: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        super().__init__(design, f"http://127.0.0.1:{self.port}")
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        self.log = open(design.parent / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "percept", "serve", "--design", str(design), "--port", str(self.port),
                                      "--redirect-url", f"{self.url}/done?cc={{code}}", *extra],
                                     cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/study", timeout=2) as r:
                    self.study = json.loads(r.read())
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"percept serve did not start: {(design.parent / f'serve-{self.port}.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _design(root: Path, kinds_shown: str, images: int) -> Path:
    """`percept design` (the command's own entry point) over a synthetic manifest of 3 + 1 spare images."""
    make_manifest(root, n_images=3, spares=1)
    assert study_cli.main(["design", "--out", str(root), "--kinds", kinds_shown, "--pairs", "mse:ms_ssim",
                           "--ranking-losses", "mse,mae,ms_ssim", "--images", str(images), "--lists", "1", "--no-mirror",
                           "--practice", "1", "--catch", "0.25", "--seed", "1", "--jnd-ms", "150x50x150"]) == 0
    return root / "study" / "design.csv"


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """22 trials: a practice triplet, triplets, rankings, ratings, jnd, and their catch trials."""
    server = Server(_design(tmp_path_factory.mktemp("online-all"), "triplet,ranking,rating,jnd", 2))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A few triplets and rankings with their catch trials, for the reload and network tests."""
    server = Server(_design(tmp_path_factory.mktemp("online-small"), "triplet,ranking", 2))
    yield server
    server.stop()


class _FirstUnseen:
    """Stand-in for study.online.active.ActivePolicy while that module is not in this tree: the first
    unseen pool rows. The client test is about fetching trials as the server fixes them, batch by batch."""

    def __init__(self, pool, seed):
        self.pool = pool

    def choose(self, answered, seen, n):
        return [i for i in range(len(self.pool)) if i not in seen][:n]


@pytest.fixture(scope="module")
def active(tmp_path_factory):
    """The small design served in-process with the active policy filling main triplets one at a time."""
    from study.online.config import ServeConfig
    from study.online.server import Background, create_app

    try:
        from study.online.active import ActivePolicy as policy
    except ImportError:
        policy = _FirstUnseen
    design = _design(tmp_path_factory.mktemp("online-active"), "triplet,ranking", 2)
    app = create_app(ServeConfig(policy="active", batch=1), design, policy_factory=policy)
    with Background(app) as url:
        served = Served(design, url)
        served.app = app
        yield served
    app.app.state.percept.store.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page_factory(browser):
    contexts = []

    def make(scale: float = 1.0, **kw):
        ctx = browser.new_context(**{"device_scale_factor": scale, "viewport": VIEWPORT, **kw})
        ctx.set_default_timeout(TIMEOUT)
        contexts.append(ctx)
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" and "favicon" not in m.text else None)
        return page

    yield make
    for ctx in contexts:
        ctx.close()


# --- driving the page -----------------------------------------------------------------------------
def _state(page) -> dict:
    return page.evaluate("""() => ({screen: document.body.dataset.screen || '', step: document.body.dataset.step || '0',
        ready: Boolean(document.querySelector('.trial-overlay.ready')), trial: document.body.dataset.trial})""")


def _wait_change(page, step: str) -> None:
    page.wait_for_function("s => (document.body.dataset.step || '0') !== s", arg=step, timeout=TIMEOUT)


def _presses(row: pd.Series, n: int) -> list[tuple[str, str]]:
    """What the participant does on trial position n: [(how, key name)], catch trials answered right."""
    kind = row["kind"]
    if kind in ("catch", "pair_catch"):
        return [("key", row["answer"])]
    if kind in ("triplet", "pair"):
        return [("key", "left" if n % 2 else "right")]
    if kind == "ranking":
        return [("key", "3"), ("key", "backspace"), ("key", "2"), ("key", "3")] if n % 2 else [("key", "1"), ("key", "3")]
    if kind in ("rating_catch", "rating_ref_catch"):
        return [("click", row["answer"])]
    if kind in ("rating", "rating_ref"):
        return [("click" if n % 2 else "key", str(1 + n % 5))]
    if kind == "jnd_catch":
        return [("key", "s" if row["answer"] == "same" else "d")]
    if kind == "jnd":
        return [("key", "s" if n % 2 else "d")]
    raise AssertionError(f"no answer rule for kind {kind}")


def _answer(page, presses: list[tuple[str, str]]) -> None:
    for how, key in presses:
        if how == "click":
            page.click(f".answer-button[data-key='{key}']")
        else:
            page.keyboard.press(KEY_NAMES.get(key, key))


def run_study(page, server: Served, *, stop_after: int | None = None, shown: list | None = None, on_trial=None,
              on_screen=None) -> str:
    """Click through every screen and answer trials until the completion screen (its name is returned) or
    until `stop_after` trials were answered in this call ('stopped'). Trial positions shown go to `shown`;
    `on_trial(page, position)` and `on_screen(page, name)` are called before a trial or text screen is answered."""
    rows = None
    answered = 0
    shown = shown if shown is not None else []
    while True:
        st = _state(page)
        screen = st["screen"]
        if screen in ("done", "refused", "error", "bad-link", "declined"):
            return screen
        if screen == "trial" and st["ready"]:
            if rows is None:
                rows = server.positions(page.evaluate("perceptStudy.sid"))
            n = int(st["trial"])
            shown.append(n)
            if on_trial is not None:
                on_trial(page, n)
            _answer(page, _presses(rows.loc[n], n))
            answered += 1
            if stop_after is not None and answered >= stop_after:
                return "stopped"
            _wait_change(page, st["step"])
            continue
        if on_screen is not None and screen not in ("trial", "", "loading") and not screen.startswith("step:"):
            on_screen(page, screen)
        if screen == "consent":
            page.click("button[data-value='yes']")
        elif screen == "check":
            page.click("button[data-value='ok']")
        elif screen in ("fullscreen", "too-small", "guard"):
            page.click("#jspsych-target button")
        elif screen in ("intro", "instructions", "practice-done", "welcome-back", "break"):
            page.keyboard.press("Space")
        else:  # loading, steps and the trial's blank interval: wait for the next screen
            page.wait_for_function("s => (document.body.dataset.step || '0') !== s || document.querySelector('.trial-overlay.ready')",
                                   arg=st["step"], timeout=TIMEOUT)
            continue
        _wait_change(page, st["step"])


def _expected(row: pd.Series, presses: list[tuple[str, str]]) -> tuple[str, str]:
    """(key, choice) the kind's own `press` makes of these presses (what the server must store); a click is
    saved as "click:<key>", as the lab's PsychoPy session saves it."""
    kind = kinds.get(row["kind"])
    trial = row.to_dict()
    pressed: list[str] = []
    out = None
    for _, key in presses:
        out = kind.press(trial, pressed, key) or out
    assert out is not None
    clicked = any(how == "click" for how, _ in presses)
    return (f"click:{out[0]}" if clicked else out[0]), out[1]


def _one_row_per_trial(server: Served, sid: str) -> pd.DataFrame:
    rows = server.positions(sid)
    answers = server.answers(sid)
    assert sorted(answers["position"]) == list(range(len(rows)))  # every trial once: no gap, no duplicate
    csv = server.export(sid)
    assert len(csv) == len(rows) and set(csv["mode"]) == {"online"}
    assert sorted(csv["trial"].astype(int)) == sorted(rows["trial"])
    return csv


class _Screenshots:
    """With PERCEPT_SCREENSHOTS=folder, the happy path saves the check screen and the first trial of each
    kind shown there as online-<name>.png (how docs/img/online-*.png were made)."""

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None
        self.done: set[str] = set()

    def _save(self, page, name: str, box: tuple[int, int, int, int]) -> None:
        if self.folder is None or name in self.done:
            return
        self.done.add(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(page.screenshot())).crop(box).save(self.folder / f"online-{name}.png", optimize=True)

    def screen(self, page, name: str) -> None:
        if name == "check":
            self._save(page, name, (100, 140, 1000, 620))

    def trial(self, page, n: int) -> None:
        kind = page.evaluate("perceptStudy.current.kind")
        if kind in ("triplet", "ranking", "rating"):
            self._save(page, kind, (150, 200, 950, 600))


# --- tests ----------------------------------------------------------------------------------------
def test_happy_path_every_kind_to_the_completion_code(every_kind, page_factory):
    page = page_factory()
    response = page.goto(f"{every_kind.url}/?participant=happy01")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    shown: list[int] = []
    shots = _Screenshots(os.environ.get("PERCEPT_SCREENSHOTS"))
    assert run_study(page, every_kind, shown=shown, on_trial=shots.trial, on_screen=shots.screen) == "done"
    errors = list(page.errors)  # before the redirect to the (404) platform page
    sid = page.evaluate("perceptStudy.sid")
    code = page.evaluate("perceptStudy.result.code")
    assert code and code in page.inner_text("#jspsych-target")
    # The redirect happens only after the outbox is empty, and carries the code.
    page.wait_for_url(f"{every_kind.url}/done?cc={code}", timeout=TIMEOUT)
    assert page.evaluate("localStorage.getItem('percept.outbox.v1')") == "[]"
    rows = every_kind.positions(sid)
    assert shown == list(range(len(rows))) and len(rows) == 22
    assert set(rows["kind"]) >= {"triplet", "ranking", "rating", "jnd", "catch", "rating_catch", "jnd_catch"}
    csv = _one_row_per_trial(every_kind, sid).set_index("trial")
    for n, row in rows.iterrows():
        key, choice = _expected(row, _presses(row, n))
        got = csv.loc[str(row["trial"])]
        assert (got["key"], got["choice"]) == (key, choice), (n, row["kind"])
    record = json.loads(next((every_kind.design.parent / "responses").glob(f"*-{sid}.json")).read_text())
    assert (record["mode"], record["dpr"], record["scale"], record["viewport"]) == ("online", 1, 1, [VIEWPORT["width"], VIEWPORT["height"]])
    assert record["completed"] and not errors, errors


def test_reload_mid_study_resumes_without_duplicates(small, page_factory):
    page = page_factory()
    held = []
    # The 4th answer (position 3) never gets through before the reload: it must survive in the outbox.
    page.route("**/api/sessions/*/answers/3", lambda route: held.append(route))
    page.goto(f"{small.url}/?participant=reload01")
    shown: list[int] = []
    assert run_study(page, small, stop_after=4, shown=shown) == "stopped"
    page.wait_for_function("() => JSON.parse(localStorage.getItem('percept.outbox.v1') || '[]').some(e => e.trial === 3)")
    sid = page.evaluate("perceptStudy.sid")
    assert held and sorted(small.answers(sid)["position"]) == [0, 1, 2]
    page.unroute("**/api/sessions/*/answers/3")
    page.reload()
    page.wait_for_function("() => document.body.dataset.screen === 'welcome-back'")
    assert "4 of" in page.inner_text("#jspsych-target")
    statuses = []
    page.on("response", lambda r: statuses.append(r.status) if "/answers/" in r.url else None)
    assert run_study(page, small, shown=shown) == "done"
    rows = small.positions(sid)
    assert shown == list(range(len(rows)))  # each trial shown once, in order, across the reload
    assert statuses and set(statuses) == {200}
    csv = _one_row_per_trial(small, sid).set_index("trial")
    row3 = rows.loc[3]
    assert (csv.loc[str(row3["trial"]), "key"], csv.loc[str(row3["trial"]), "choice"]) == _expected(row3, _presses(row3, 3))
    assert not page.errors, page.errors


def test_first_answers_lost_on_the_network_still_one_row_per_trial(small, page_factory):
    page = page_factory()
    attempts = {"n": 0, "aborted": 0, "faked": 0}

    def flaky(route):
        attempts["n"] += 1
        if attempts["aborted"] < 3:  # the first three PUTs never reach the server
            attempts["aborted"] += 1
            route.abort("connectionreset")
        elif route.request.url.endswith("/answers/5") and not attempts["faked"]:
            # A proxy acknowledges trial 5 without passing it on: the server's missing list brings it back.
            attempts["faked"] += 1
            route.fulfill(status=200, content_type="application/json", body='{"trial": 5, "choice": "x", "next_trial": 6}')
        else:
            route.continue_()

    page.route("**/api/sessions/*/answers/*", flaky)
    page.goto(f"{small.url}/?participant=flaky01")
    shown: list[int] = []
    assert run_study(page, small, shown=shown) == "done"
    sid = page.evaluate("perceptStudy.sid")
    rows = small.positions(sid)
    assert attempts["aborted"] == 3 and attempts["faked"] == 1 and attempts["n"] >= len(rows) + 3 + 1
    assert shown == list(range(len(rows))) + [5]  # trial 5 shown again, and only it
    _one_row_per_trial(small, sid)
    # The aborted requests are logged by the browser as failed loads; the app itself logs no error.
    assert not [e for e in page.errors if "Failed to load resource" not in e], page.errors


def test_active_policy_trials_fetched_batch_by_batch(active, page_factory):
    page = page_factory()
    asked = []
    page.on("request", lambda r: asked.append(int(r.url.rsplit("from=", 1)[1])) if "/trials?from=" in r.url else None)
    page.goto(f"{active.url}/?participant=active01")
    shown: list[int] = []
    assert run_study(page, active, shown=shown) == "done"
    sid = page.evaluate("perceptStudy.sid")
    store = active.app.app.state.percept.store
    plan = store.positions(sid)
    assert not any(p["pending"] for p in plan) and shown == list(range(len(plan)))
    assert len(asked) > 2 and asked == sorted(set(asked)), asked  # later trials asked for as the study went on, once each
    assert sorted(store.answered(sid)) == list(range(len(plan)))


def test_leaving_full_screen_or_zooming_pauses_until_restored(small, page_factory):
    page = page_factory()
    cdp = page.context.new_cdp_session(page)
    seen = []

    def zoom(factor: float) -> None:  # what Ctrl +/- does to the page: a new devicePixelRatio
        cdp.send("Emulation.setDeviceMetricsOverride", {**VIEWPORT, "deviceScaleFactor": factor, "mobile": False})

    def on_trial(page, n):
        if n == 1:
            page.evaluate("() => document.exitFullscreen()")
        elif n == 2:
            zoom(1.5)

    def on_screen(page, name):
        if name == "guard":
            seen.append((page.evaluate("devicePixelRatio"), page.evaluate("Boolean(document.fullscreenElement)"),
                         page.inner_text("#jspsych-target")))
            zoom(1.0)  # the participant sets the zoom back; the guard's button returns to full screen

    page.goto(f"{small.url}/?participant=guard01")
    shown: list[int] = []
    assert run_study(page, small, shown=shown, on_trial=on_trial, on_screen=on_screen) == "done"
    assert [(dpr, fs) for dpr, fs, _ in seen] == [(1, False), (1.5, True)]
    assert "full screen" in seen[0][2] and "zoom" in seen[1][2]
    assert shown == list(range(len(small.positions(page.evaluate("perceptStudy.sid")))))
    assert page.evaluate("[devicePixelRatio, Boolean(document.fullscreenElement)]") == [1, True]


@pytest.mark.parametrize("scale", [1.0, 1.25, 1.5, 2.0])
def test_stimulus_pixels_are_exact_integer_upscales(every_kind, page_factory, scale):
    page = page_factory(scale)
    page.goto(f"{every_kind.url}/?participant=pixels{int(scale * 100)}")
    captured = {}

    def grab(page, n):
        if n != 0:
            return
        placed = json.loads(page.evaluate("document.getElementById('stage').dataset.placed"))
        k = int(page.evaluate("document.getElementById('stage').dataset.scale"))
        size = page.evaluate("[document.getElementById('stage').width, document.getElementById('stage').height]")
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
        captured.update(placed=placed, k=k, size=size, shot=shot)

    assert run_study(page, every_kind, stop_after=1, on_trial=grab) == "stopped"
    k, shot = captured["k"], captured["shot"]
    assert k == max(1, round(scale))  # 1 CSS px per image px, rounded to whole device pixels
    # The canvas's backing store is the viewport in device pixels, as is the screenshot.
    assert captured["size"] == [math.floor(VIEWPORT[d] * scale + 0.5) for d in ("width", "height")] == [shot.shape[1], shot.shape[0]]
    assert len(captured["placed"]) == 3  # the practice triplet: reference, left, right
    for p in captured["placed"]:
        png = Image.open(io.BytesIO(page.request.get(every_kind.url + p["path"]).body())).convert("RGB")
        want = np.asarray(png.resize((png.width * k, png.height * k), Image.NEAREST))
        got = shot[p["y"]:p["y"] + p["s"], p["x"]:p["x"] + p["s"]]
        assert p["s"] == png.width * k and got.shape == want.shape
        assert np.array_equal(got, want), f"scale {scale}: {int((got != want).any(axis=2).sum())} pixels differ in {p['slot']}"
        # Just outside the image: the dark frame, not image pixels smeared by smoothing.
        assert tuple(shot[p["y"] - 1, p["x"] + p["s"] // 2]) == (51, 51, 51)


def test_url_parameters_become_the_platform_ids(every_kind, page_factory):
    page = page_factory()
    page.goto(f"{every_kind.url}/static/index.html?participant=probe")
    page.wait_for_function("() => Boolean(window.perceptStudy)")
    got = page.evaluate("""async () => {
        const { identity, safeRedirect } = await import('/static/session.js');
        const id = (q, stored = null) => identity(new URLSearchParams(q), stored);
        return {
            prolific: id('PROLIFIC_PID=p1&STUDY_ID=s1&SESSION_ID=x1&other=1'),
            prolificPartial: id('PROLIFIC_PID=p1&STUDY_ID=s1'),
            mturk: id('assignmentId=a1&hitId=h1&workerId=w1&turkSubmitTo=https%3A%2F%2Fwww.mturk.com'),
            mturkPreview: id('assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1'),
            direct: id('participant=P017'),
            anonymousAgain: id('', 'anon-0123456789abcdef'),
            anonymousNew: id(''),
            redirects: [safeRedirect('https://app.prolific.com/submissions/complete?cc=C1'), safeRedirect('javascript:alert(1)'),
                        safeRedirect('data:text/html,x'), safeRedirect(null)],
        };
    }""")
    assert got["prolific"] == {"participant": "p1", "platform": {"PROLIFIC_PID": "p1", "STUDY_ID": "s1", "SESSION_ID": "x1"},
                               "name": "prolific", "anonymous": False}
    assert "lacks" in got["prolificPartial"]["problem"] and "preview" in got["mturkPreview"]["problem"]
    assert got["mturk"]["platform"] == {"workerId": "w1", "assignmentId": "a1", "hitId": "h1"} and got["mturk"]["name"] == "mturk"
    assert got["mturk"]["turkSubmitTo"] == "https://www.mturk.com"  # sent with the completion, never a platform ID
    assert (got["direct"]["participant"], got["direct"]["platform"], got["direct"]["anonymous"]) == ("P017", {}, False)
    assert got["anonymousAgain"]["participant"] == "anon-0123456789abcdef" and got["anonymousAgain"]["anonymous"]
    assert got["anonymousNew"]["participant"].startswith("anon-") and len(got["anonymousNew"]["participant"]) == 21
    assert got["redirects"] == ["https://app.prolific.com/submissions/complete?cc=C1", None, None, None]


@pytest.mark.parametrize("what, context", [
    ("Screen size", {"viewport": {"width": 900, "height": 600}}),
    ("Desktop or laptop computer", {"is_mobile": True, "has_touch": True, "user_agent":
                                    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36"}),
])
def test_check_refuses_small_screens_and_phones(every_kind, page_factory, what, context):
    page = page_factory(**context)
    page.goto(f"{every_kind.url}/?participant=check{len(what)}")
    page.click("button[data-value='yes']")
    page.wait_for_function("() => document.body.dataset.screen === 'check'")
    bad = page.eval_on_selector_all("table.checks tr.bad th", "rows => rows.map(r => r.textContent)")
    assert bad == [what]
    assert page.eval_on_selector_all("#jspsych-target button", "bs => bs.map(b => b.dataset.value)") == ["again"]
    step = page.evaluate("document.body.dataset.step")
    page.click("button[data-value='again']")  # checked again: still refused, never past the check
    page.wait_for_function("s => document.body.dataset.step !== s && document.body.dataset.screen === 'check'", arg=step)


@pytest.mark.parametrize("query", ["participant=%3Cimg%20src%3Dx%20onerror%3D%22window.pwned%3D1%22%3E",
                                   "PROLIFIC_PID=%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E&STUDY_ID=s&SESSION_ID=t"])
def test_hostile_participant_id_is_text_never_html(every_kind, page_factory, query):
    page = page_factory()
    page.goto(f"{every_kind.url}/?{query}")
    page.wait_for_function("() => document.body.dataset.screen === 'bad-link'")
    text = page.inner_text("#jspsych-target")
    raw = urllib.request.unquote(query.split("=", 1)[1].split("&")[0])
    assert raw in text  # shown literally, as text
    time.sleep(0.3)  # an onerror handler would have run by now
    assert page.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0
    assert page.evaluate("window.pwned") is None


def test_study_texts_are_shown_as_text_consent_to_debrief(tmp_path, page_factory):
    """`--consent/--instructions/--debrief` files: the consent's hostile line is shown literally (no element made of
    it, nothing run), the study's instructions open the instructions screen, the debrief heads the completion screen
    above the code, and the session's record names the consent's sha256."""
    import hashlib

    hostile = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'
    consent = tmp_path / "consent.txt"
    consent.write_text(f"# Consent: [STUDY]\n\nRun by [NAME] at [INSTITUTION].\n\n{hostile}\n\nDo you agree?\n")
    instructions = tmp_path / "instructions.txt"
    instructions.write_text("Look closely at [DETAILS].\n")
    debrief = tmp_path / "debrief.txt"
    debrief.write_text("# Debriefing\n\nThe study compared [MODELS]; contact [EMAIL].\n")
    server = Server(_design(tmp_path / "exp", "triplet", 2), "--consent", str(consent),
                    "--instructions", str(instructions), "--debrief", str(debrief))
    try:
        page = page_factory()
        page.goto(f"{server.url}/?participant=texts01")
        page.wait_for_function("() => document.body.dataset.screen === 'consent'")
        shown = page.inner_text("#jspsych-target")
        assert "Consent: [STUDY]" in shown and "Run by [NAME] at [INSTITUTION]." in shown and hostile in shown
        time.sleep(0.3)  # an onerror handler would have run by now
        assert page.evaluate("document.querySelectorAll('#jspsych-target img, script:not([src])').length") == 0
        assert page.evaluate("window.pwned") is None
        screens = {}
        assert run_study(page, server, on_screen=lambda p, name: screens.setdefault(name, p.inner_text("#jspsych-target"))) == "done"
        assert screens["intro"].index("Look closely at [DETAILS].") < screens["intro"].index(kinds.get("triplet").instructions)
        done = page.inner_text("#jspsych-target")  # before the redirect to the platform
        code = page.evaluate("perceptStudy.result.code")
        assert done.startswith("Debriefing") and done.index("The study compared [MODELS]; contact [EMAIL].") < done.index(code)
        assert "Thank you!" not in done and not page.errors, page.errors
        sid = page.evaluate("perceptStudy.sid")
        _one_row_per_trial(server, sid)
        record = json.loads(next((server.design.parent / "responses").glob(f"*-{sid}.json")).read_text())
        assert record["texts"]["consent"] == {"sha256": hashlib.sha256(consent.read_bytes()).hexdigest(), "source": "consent.txt"}
    finally:
        server.stop()


# --- MTurk: the study inside a cross-origin iframe, answers POSTed to turkSubmitTo --------------------
class _Turk:
    """A stand-in for MTurk's page on its own loopback origin: /hit frames the study (the URL in ?src, with
    `allow` as given), and POSTs to /mturk/externalSubmit are recorded (path, form fields)."""

    def __init__(self):
        import html
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: str) -> None:
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlsplit(self.path)
                if url.path != "/hit":
                    self.send_error(404)
                    return
                q = parse_qs(url.query)
                allow = f' allow="{html.escape(q["allow"][0])}"' if "allow" in q else ""
                self._send("<!DOCTYPE html><html><head><style>html,body{margin:0;height:100%;overflow:hidden}"
                           "iframe{border:0;display:block;width:100%;height:100%}</style><link rel='icon' href='data:,'></head>"
                           f'<body><iframe id="hit" src="{html.escape(q["src"][0])}"{allow}></iframe></body></html>')

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                posts.append((self.path, {k: v for k, v in parse_qs(body).items()}))
                self._send("<!DOCTYPE html><p id='submitted'>HIT submitted</p>")

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def hit(self, src: str, allow: str | None) -> str:
        """The parent page's URL framing `src`."""
        from urllib.parse import urlencode

        return f"{self.origin}/hit?" + urlencode({"src": src, **({"allow": allow} if allow else {})})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _InFrame:
    """The study's frame, driven by run_study like a page: the frame's DOM, the page's keyboard."""

    def __init__(self, page, frame):
        self.page, self.frame = page, frame

    @property
    def keyboard(self):
        return self.page.keyboard

    def __getattr__(self, name):
        return getattr(self.frame, name)


@pytest.fixture(scope="module")
def turk(tmp_path_factory):
    """MTurk's stand-in, a second one (an origin not allowed) and `percept serve --platform mturk` allowing the first."""
    parent, stranger = _Turk(), _Turk()
    server = Server(_design(tmp_path_factory.mktemp("online-mturk"), "triplet,ranking", 2),
                    "--platform", "mturk", "--mturk-origin", parent.origin)
    yield parent, stranger, server
    server.stop()
    parent.close()
    stranger.close()


def _study_frame(page):
    """The parent page's one frame, once it has started loading something."""
    page.wait_for_function("() => document.getElementById('hit') !== null")
    deadline = time.monotonic() + TIMEOUT / 1000
    while time.monotonic() < deadline:
        frames = [f for f in page.frames if f is not page.main_frame]
        if frames and frames[0].url not in ("", "about:blank"):
            return frames[0]
        time.sleep(0.05)
    raise AssertionError("the parent page's iframe never navigated")


@pytest.mark.parametrize("allow", ["fullscreen", None])
def test_mturk_hit_in_a_cross_origin_frame_posts_the_assignment_once(turk, page_factory, allow):
    """MTurk's ExternalQuestion: the study shows inside an iframe of the allowed origin (and not of another), runs to the
    end (in full screen where the iframe allows it, else without), and the frame POSTs assignmentId and the code there."""
    parent, stranger, server = turk
    worker = f"W{allow or 'none'}"
    src = f"{server.url}/?assignmentId=A1{worker}&hitId=H1&workerId={worker}&turkSubmitTo={parent.origin}"

    page = page_factory()
    # An origin not in --mturk-origin: the browser refuses to show the study in its frame (CSP frame-ancestors).
    page.goto(stranger.hit(src, allow))
    blocked = _study_frame(page)
    page.wait_for_function("() => document.readyState === 'complete'")  # the iframe's load (or refusal) is over
    # Chromium puts its error page in a refused frame and logs the violated directive.
    assert not blocked.url.startswith(server.url) and any("frame-ancestors" in e for e in page.errors), (blocked.url, page.errors)
    page.errors.clear()

    posts_before = len(parent.posts)
    page.goto(parent.hit(src, allow))
    frame = _study_frame(page)
    assert frame.url.startswith(server.url + "/?assignmentId=")
    frame.wait_for_function("() => document.body.dataset.screen === 'consent'")  # displayed inside the frame
    assert frame.evaluate("window.top !== window.self") and frame.is_visible("button[data-value='yes']")
    screens: list[str] = []
    assert run_study(_InFrame(page, frame), server, on_screen=lambda p, name: screens.append(name)) == "done"
    # The code on screen (for 2 s, before the POST), and nothing left unsent.
    sid, shown_code, outbox = frame.evaluate(
        "[perceptStudy.sid, perceptStudy.result.code, localStorage.getItem('percept.outbox.v1')]")
    assert shown_code in frame.inner_text("#jspsych-target") and outbox == "[]"
    # The frame navigates to MTurk's submit page by a POST of the form, after the answers are all stored.
    deadline = time.monotonic() + TIMEOUT / 1000
    while len(parent.posts) == posts_before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a second POST would come within this
    posts = parent.posts[posts_before:]
    assert shown_code == security.completion_code(security.load_key(server.design.parent / "online"), sid)
    assert posts == [("/mturk/externalSubmit", {"assignmentId": [f"A1{worker}"], "code": [shown_code]})]
    frame.wait_for_selector("#submitted")  # the frame itself shows MTurk's answer to the POST
    assert frame.url == f"{parent.origin}/mturk/externalSubmit"
    assert page.url.startswith(f"{parent.origin}/hit?")  # the parent page stayed: only the frame moved

    _one_row_per_trial(server, sid)
    record = json.loads(next((server.design.parent / "responses").glob(f"*-{sid}.json")).read_text())
    # Full screen where the iframe allows it; otherwise the study goes on without it and says so in the record.
    assert record["fullscreen"] is (allow == "fullscreen") and ("fullscreen" in screens) is (allow == "fullscreen")
    assert record["platform"]["name"] == "mturk" and record["completed"]
    assert not page.errors, page.errors
