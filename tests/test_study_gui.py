"""The real experiment in a real window (Xvfb): keys → saved choices, breaks, Escape + resume, SIGKILL + resume,
and a back-buffer screenshot whose pixels equal the PNGs (nearest-neighbour ×2).

Every window runs in a subprocess on the X display given by $DISPLAY (`make test` runs pytest under
xvfb-run); without one, a private Xvfb is started, and the tests skip when neither is possible.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percept.contracts import design as design_c
from percept.contracts import responses as responses_c
from study.design import DesignConfig, build_design
from study.experiment import layout
from test_study_support import REPO, can_open, make_manifest, start_xvfb

pytestmark = [pytest.mark.slow, pytest.mark.gui]
TIMEOUT = 60  # s for one subprocess; generous for a loaded 2-core machine


@pytest.fixture(scope="module")
def display_env():
    env = dict(os.environ)
    server = None
    if not can_open(env.get("DISPLAY")):
        started = start_xvfb()
        if started is None:
            pytest.skip("no X display: $DISPLAY cannot be opened and Xvfb is not installed (make test runs under xvfb-run)")
        server, env["DISPLAY"] = started
        if not can_open(env["DISPLAY"]):
            server.kill()
            pytest.skip(f"started Xvfb on {env['DISPLAY']} but cannot open it")
    yield env
    if server is not None:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """2 practice + 7 main trials (3 triplets, 3 rankings, 1 catch) in one list."""
    root = tmp_path_factory.mktemp("gui")
    manifest = make_manifest(root, n_images=5)
    return build_design(manifest, root, DesignConfig(images=3, pairs=(("mse", "ms_ssim"),), lists=1, practice=2,
                                                     catch=0.1, seed=2, mirror=False))


def _trials(design: Path) -> pd.DataFrame:
    """List 0's trials in presentation order."""
    df = design_c.read_design(design)
    return df[df["list_id"] == 0].sort_values("trial").reset_index(drop=True)


def _expected(trial: pd.Series, ranking_keys: list[str], triplet_key: str) -> tuple[str, str]:
    """(key, choice) the keys should produce, through the contract's screen order."""
    if trial["kind"] == "ranking":
        order = ranking_keys + [k for k in "123" if k not in ranking_keys]
        runs = [trial[f"{design_c.RANKING_SCREEN_ORDER[int(k) - 1]}_run"] for k in order]
        return ",".join(ranking_keys), ">".join(runs)
    return triplet_key, trial[f"{triplet_key}_run"]


RESPONDER_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from study.experiment import RunConfig, run_session

    design, participant, escape_at, scale, shots, screens = sys.argv[1:7]
    log = open(screens, "a")

    def responder(screen, trial):
        log.write(screen + ("" if trial is None else f" {trial['trial']}") + "\\n")
        log.flush()
        if screen != "trial":
            return ["space"]
        if trial["trial"] == int(escape_at):
            return ["escape"]
        if trial["kind"] == "ranking":  # an undo on odd trials
            return ["2", "backspace", "3", "1"] if trial["trial"] % 2 else ["1", "2"]
        return ["left"] if trial["trial"] % 3 else ["right"]

    run_session(RunConfig(design=Path(design), participant=participant, break_every=4, iti=0.05, scale=int(scale),
                          screenshots=Path(shots) if shots != "-" else None), responder=responder)
''')


def _run_responder(env, tmp_path, design, participant, escape_at, scale=1, shots="-"):
    script = tmp_path / "respond.py"
    script.write_text(RESPONDER_SCRIPT)
    screens = tmp_path / f"screens-{participant}.txt"
    screens.write_text("")
    r = subprocess.run([sys.executable, str(script), str(design), participant, str(escape_at), str(scale), str(shots), str(screens)],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "backend is" not in r.stderr, "keyboard fell back from ptb: " + r.stderr[-2000:]
    return r, screens.read_text().split("\n")


def test_keys_become_choices_with_escape_resume_and_pixel_exact_screenshot(display_env, design, tmp_path):
    trials = _trials(design)
    shots = tmp_path / "shots"
    _, screens = _run_responder(display_env, tmp_path, design, "P01", escape_at=6, scale=2, shots=shots)
    csv = design.parent / "responses" / "P01-1.csv"
    rec = json.loads(csv.with_suffix(".json").read_text())
    assert responses_c.read_responses(csv)["trial"].tolist() == list(range(6))
    assert rec["completed"] is False and rec["n_answered"] == 6 and rec["window"]["keyboard_backend"] == "ptb"
    assert rec["window"]["scale"] == 2 and rec["simulated"] is False and rec["list_id"] == 0
    assert screens[:4] == ["instructions", "trial 0", "trial 1", "practice_done"]
    assert "break" in screens and screens.index("break") == screens.index("trial 5") + 1  # after 4 main trials

    _, screens2 = _run_responder(display_env, tmp_path, design, "P01", escape_at=-1)
    assert screens2[:2] == ["instructions", "trial 6"] and "thanks" in screens2  # resumes at the first unanswered
    df = responses_c.read_responses(csv)
    assert df["trial"].tolist() == trials["trial"].tolist()  # every trial exactly once, in order
    rec = json.loads(csv.with_suffix(".json").read_text())
    assert rec["completed"] is True and rec["n_answered"] == len(trials) and len(rec["resumed"]) == 1
    for (_, trial), (_, row) in zip(trials.iterrows(), df.iterrows()):
        ranking = ["3", "1"] if trial["trial"] % 2 else ["1", "2"]
        key, choice = _expected(trial, ranking, "left" if trial["trial"] % 3 else "right")
        assert (row["key"], row["choice"]) == (key, choice), f"trial {trial['trial']}"
        assert row["left_run"] == trial["left_run"] and row["block"] == trial["block"]
        assert row["rt"] >= 0 and row["wallclock"][-6] in "+-"
    # Counterbalancing holds in what was shown: each loss of the pair on each side (±1).
    trip = df[(df["kind"] == "triplet") & (df["block"] == "main")]
    sides = Counter(trip["left_loss"])
    assert abs(sides["mse"] - sides["ms_ssim"]) <= 1 and sum(sides.values()) == 3

    # The back buffer of the first triplet trial: the images' pixels, each upscaled to a 2×2 block.
    shot = np.asarray(Image.open(shots / "triplet.png").convert("RGB"))
    first = trials[trials["kind"] == "triplet"].iloc[0]
    lay = layout(2)
    s, gap = lay["image"], lay["gap"]
    height, width = shot.shape[:2]
    top = height // 2 - gap - s // 2
    for slot, dx in (("reference", 0), ("left", -(s + gap)), ("right", s + gap)):
        path = design.parent / first[f"{slot}_path" if slot != "reference" else "reference_path"]
        png = np.asarray(Image.open(path).convert("RGB"))
        left = width // 2 + dx - s // 2
        crop = shot[top:top + s, left:left + s]
        np.testing.assert_array_equal(crop, np.kron(png, np.ones((2, 2, 1), dtype=np.uint8)), err_msg=slot)
        # A dark frame just outside the image, darker than the mid-grey background beyond it.
        frame = shot[top - 1, left:left + s].astype(int)
        background = shot[top - 8, left:left + s].astype(int)
        assert (frame < background - 40).all(), slot
    assert (shots / "ranking.png").is_file()


def _rows(csv: Path) -> int:
    return max(0, csv.read_text().count("\n") - 1) if csv.is_file() else 0


def _press(env, *keys):
    for key in keys:  # held 50 ms: a press+release between two polls could be missed by ptb
        subprocess.run(["xdotool", "keydown", key], env=env, check=True)
        time.sleep(0.05)
        subprocess.run(["xdotool", "keyup", key], env=env, check=True)
        time.sleep(0.03)


@contextmanager
def _session(cmd: list[str], env: dict, csv: Path) -> Iterator[subprocess.Popen]:
    """Start `percept run` (cmd), wait until its record matches its CSV, pass the first screen; SIGKILL it on leaving."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        t = time.monotonic()
        while not csv.with_suffix(".json").is_file() or json.loads(csv.with_suffix(".json").read_text())["n_answered"] != _rows(csv):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() - t < TIMEOUT
            time.sleep(0.05)
        time.sleep(0.3)
        _press(env, "space")  # instructions or welcome-back screen
        yield proc
    finally:
        if proc.poll() is None:  # the mid-session kill the tests resume from, or a failed test's leftover window
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


def _thank_and_exit(env: dict, proc: subprocess.Popen) -> None:
    """Press space on the thank-you screen until the experiment exits, and check that it exited 0."""
    t = time.monotonic()
    while proc.poll() is None and time.monotonic() - t < TIMEOUT:
        _press(env, "space")
        time.sleep(0.3)
    assert proc.poll() is not None, "the experiment is still running after the thank-you screen"
    assert proc.returncode == 0, proc.stderr.read()[-2000:]


def _xdotool_keys(trial: pd.Series) -> tuple[list[str], list[str], str]:
    """The X key names sent for a trial, and the (ranking presses, triplet key) they mean."""
    n = int(trial["trial"])
    ranking = ["1", "3"] if n % 2 else ["2", "1"]
    triplet = "left" if n % 2 == 0 else "right"
    if trial["kind"] == "ranking":
        return ["BackSpace", "BackSpace"] + ranking, ranking, triplet
    return [triplet.capitalize()], ranking, triplet


def _drive(env, proc, csv, trials, until):
    deadline = time.monotonic() + TIMEOUT
    while _rows(csv) < until:
        assert proc.poll() is None, f"experiment exited early: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"stuck at {_rows(csv)} rows"
        n = _rows(csv)
        _press(env, *_xdotool_keys(trials.iloc[n])[0])
        t = time.monotonic()
        while _rows(csv) == n and time.monotonic() - t < 2.0:
            time.sleep(0.02)
        if _rows(csv) == n:
            _press(env, "space")  # perhaps an instruction or break screen; harmless on a trial screen
            continue
        time.sleep(0.3)  # let the blank inter-trial interval pass: earlier presses are discarded at onset
        done = trials.iloc[:n + 1]
        n_main = int((done["block"] == "main").sum())
        if n + 1 < len(trials) and (trials["block"].iloc[n] != trials["block"].iloc[n + 1]
                                    or (trials["block"].iloc[n] == "main" and n_main % 4 == 0)):
            _press(env, "space")  # the practice-over or break screen comes next


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed (Debian package xdotool)")
def test_xdotool_keys_and_sigkill_mid_session_lose_nothing(display_env, design, tmp_path):
    trials = _trials(design)
    csv = design.parent / "responses" / "X01-1.csv"
    cmd = [sys.executable, "-m", "percept", "run", "--design", str(design), "--participant", "X01",
           "--break-every", "4", "--iti", "0.1"]

    with _session(cmd, display_env, csv) as proc:
        second = subprocess.run(cmd, env=display_env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
        assert second.returncode == 2 and "another `percept run` is using this participant/session" in second.stderr
        _drive(display_env, proc, csv, trials, until=5)
    assert _rows(csv) == 5 and json.loads(csv.with_suffix(".json").read_text())["completed"] is False

    with _session(cmd, display_env, csv) as proc:
        _drive(display_env, proc, csv, trials, until=len(trials))
        _thank_and_exit(display_env, proc)
    df = responses_c.read_responses(csv)
    assert df["trial"].tolist() == trials["trial"].tolist()  # every trial exactly once
    for (_, trial), (_, row) in zip(trials.iterrows(), df.iterrows()):
        _, ranking, triplet = _xdotool_keys(trial)
        assert (row["key"], row["choice"]) == _expected(trial, ranking, triplet), f"trial {trial['trial']}"
    rec = json.loads(csv.with_suffix(".json").read_text())
    assert rec["completed"] is True and rec["n_answered"] == len(trials) and rec["resumed"][0]["after"] == 5
