"""The new kinds (pair, rating, rating_ref, jnd and their catch trials) in a real window under Xvfb:
keys → saved choices, a back-buffer screenshot of each kind equal pixel for pixel to the PNGs where the
kind's screen description puts them, and real xdotool presses with SIGKILL mid-session then resume.
Reuses test_study_gui.py's display fixture and key helpers."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percept.contracts import responses as responses_c
from study import trials as kinds
from study.design import DesignConfig, build_design
from study.experiment import TEXT_HEIGHT, button_layout, layout
from test_study_gui import TIMEOUT, _press, _rows, _session, _thank_and_exit, _trials
from test_study_gui import display_env  # noqa: F401  (a fixture)
from test_study_support import REPO, make_manifest

pytestmark = [pytest.mark.slow, pytest.mark.gui]
NEW = ("pair", "rating", "rating_ref", "jnd")


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """2 images: 2 pairs, 4 ratings, 4 DCR ratings, 4 jnd (150/50/150 ms), 5 catch trials; one list, no practice."""
    root = tmp_path_factory.mktemp("gui-kinds")
    manifest = make_manifest(root, n_images=4)
    return build_design(manifest, root, DesignConfig(kinds=NEW, pairs=(("mse", "ms_ssim"),), ranking_losses=("mse", "ms_ssim"),
                                                     images=2, lists=1, practice=0, catch=0.25, seed=1, mirror=False,
                                                     jnd_ms=(150, 50, 150)))


def _clicked(trial: pd.Series) -> bool:
    """Rating trials answered with a mouse click on the scale button instead of a key (xdotool test)."""
    return trial["kind"].startswith("rating") and int(trial["trial"]) % 2 == 1


def _answer(trial: pd.Series, clicks: bool = False) -> tuple[str, str, str]:
    """(X key name sent, saved key, saved choice) for a trial: a different answer by trial number."""
    n, kind = int(trial["trial"]), trial["kind"]
    if kind.startswith("pair"):
        key = "left" if n % 2 == 0 else "right"
        return key.capitalize(), key, trial[f"{key}_run"]
    if kind.startswith("rating"):
        key = str(1 + n % 5)
        return key, (f"click:{key}" if clicks and _clicked(trial) else key), key
    key = "s" if n % 2 == 0 else "d"
    return key, key, "same" if key == "s" else "different"


RESPONDER = textwrap.dedent('''
    import sys
    from pathlib import Path
    from study.experiment import RunConfig, run_session
    from test_study_gui_kinds import _answer
    import pandas as pd

    design, shots = sys.argv[1:3]
    def responder(screen, trial):
        if screen != "trial":
            return ["space"]
        return [_answer(pd.Series(trial))[1]]
    run_session(RunConfig(design=Path(design), participant="K01", iti=0.05, screenshots=Path(shots)), responder=responder)
''')


def test_every_new_kind_keys_and_pixel_exact_screenshots(display_env, design, tmp_path):  # noqa: F811
    trials = _trials(design)
    assert set(trials["kind"]) == set(NEW) | {"pair_catch", "rating_catch", "rating_ref_catch", "jnd_catch"}
    script, shots = tmp_path / "respond.py", tmp_path / "shots"
    script.write_text(RESPONDER)
    env = dict(display_env, PYTHONPATH=f"{REPO}:{REPO / 'tests'}")
    r = subprocess.run([sys.executable, str(script), str(design), str(shots)], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=TIMEOUT * 2)
    assert r.returncode == 0, r.stderr[-3000:]
    df = responses_c.read_responses(design.parent / "responses" / "K01-1.csv")
    assert df["trial"].tolist() == trials["trial"].tolist()
    for (_, trial), (_, row) in zip(trials.iterrows(), df.iterrows()):
        assert (row["key"], row["choice"]) == _answer(trial)[1:], f"trial {trial['trial']} ({trial['kind']})"

    meta = json.loads(design.with_suffix(".json").read_text())
    lay = layout(1)
    s, gap = lay["image"], lay["gap"]
    rows = {"middle": gap, "top": (s + gap) // 2 + gap, "bottom": -((s + gap) // 2) + gap}  # centre heights above mid
    for kind in sorted(set(trials["kind"])):
        shot = np.asarray(Image.open(shots / f"{kind}.png").convert("RGB"))
        height, width = shot.shape[:2]
        first = trials[trials["kind"] == kind].iloc[0].to_dict()
        screen = kinds.get(kind).screen(first, meta["timing"])
        images = screen["sequence"][0]["images"] if screen["sequence"] else screen["images"]
        assert images, kind
        for img in images:
            png = np.asarray(Image.open(design.parent / img["path"]).convert("RGB"))
            top = height // 2 - rows[img["row"]] - s // 2
            left = width // 2 + img["col"] * (s + gap) - s // 2
            np.testing.assert_array_equal(shot[top:top + s, left:left + s], png, err_msg=f"{kind} {img['slot']}")


def _click(env, trial: pd.Series) -> None:
    """Click the rating button of the trial's answer, in the PsychoPy window (found by its title)."""
    wid = subprocess.run(["xdotool", "search", "--name", "PsychoPy"], env=env, capture_output=True, text=True,
                         check=True).stdout.split()[0]
    geo = dict(line.split("=") for line in subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid], env=env,
                                                          capture_output=True, text=True, check=True).stdout.split())
    width, height = int(geo["WIDTH"]), int(geo["HEIGHT"])
    s, gap = layout(1)["image"], layout(1)["gap"]
    prompt_y = gap - s / 2 - 4 * TEXT_HEIGHT  # below the image(s) in the middle row
    x, y, _, _ = button_layout(5, width, prompt_y)[int(_answer(trial)[2]) - 1]
    subprocess.run(["xdotool", "mousemove", "--window", wid, str(int(width / 2 + x)), str(int(height / 2 - y)),
                    "mousedown", "1"], env=env, check=True)
    time.sleep(0.05)
    subprocess.run(["xdotool", "mouseup", "1"], env=env, check=True)


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed (Debian package xdotool)")
def test_xdotool_presses_and_sigkill_then_resume_in_every_new_kind(display_env, design, tmp_path):  # noqa: F811
    trials = _trials(design)
    csv = design.parent / "responses" / "X02-1.csv"
    cmd = [sys.executable, "-m", "percept", "run", "--design", str(design), "--participant", "X02",
           "--break-every", "100", "--iti", "0.1"]

    def drive(proc, until):
        deadline = time.monotonic() + TIMEOUT * 2
        while _rows(csv) < until:
            assert proc.poll() is None, f"experiment exited early: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, f"stuck at {_rows(csv)} rows"
            n = _rows(csv)
            if trials["kind"].iloc[n].startswith("jnd"):
                time.sleep(0.6)  # presses during the two flashed images are discarded at the response onset
            if _clicked(trials.iloc[n]):
                _click(display_env, trials.iloc[n])
            else:
                _press(display_env, _answer(trials.iloc[n])[0])
            t = time.monotonic()
            while _rows(csv) == n and time.monotonic() - t < 2.0:
                time.sleep(0.02)
            if _rows(csv) == n:
                _press(display_env, "space")  # perhaps still the instructions; harmless on a trial screen
                continue
            time.sleep(0.3)

    with _session(cmd, display_env, csv) as proc:
        drive(proc, until=6)
    assert _rows(csv) == 6 and json.loads(csv.with_suffix(".json").read_text())["completed"] is False

    with _session(cmd, display_env, csv) as proc:
        drive(proc, until=len(trials))
        _thank_and_exit(display_env, proc)
    df = responses_c.read_responses(csv)
    assert df["trial"].tolist() == trials["trial"].tolist()  # every trial exactly once
    for (_, trial), (_, row) in zip(trials.iterrows(), df.iterrows()):
        assert (row["key"], row["choice"]) == _answer(trial, clicks=True)[1:], f"trial {trial['trial']} ({trial['kind']})"
    assert df["key"].str.startswith("click:").sum() == sum(_clicked(t) for _, t in trials.iterrows()) > 0
    rec = json.loads(csv.with_suffix(".json").read_text())
    assert rec["completed"] is True and rec["resumed"][0]["after"] == 6
