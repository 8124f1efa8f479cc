"""`percept design|run|simulate` end to end on real files; bad input is one line and exit code 2."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from percept import cli
from percept.contracts import design as design_c
from percept.contracts import responses as responses_c
from test_study_support import REPO, make_manifest


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_manifest(root, n_images=6)
    return root


def _design(exp, *extra) -> list[str]:
    return ["design", "--manifest", str(exp / "reconstructions" / "manifest.csv"), "--out", str(exp), *extra]


def test_design_and_simulate_through_the_percept_command(exp):
    r = subprocess.run([sys.executable, "-m", "percept", *_design(exp, "--lists", "2", "--practice", "2", "--catch", "0.1",
                        "--pairs", "mse:ms_ssim,mae:ms_ssim", "--seed", "5")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    design = exp / "study" / "design.csv"
    df = design_c.read_design(design, check_files=True)
    assert set(df["pair"]) == {"", "mse:ms_ssim", "mae:ms_ssim"} and df["list_id"].nunique() == 4  # 2 lists + mirrors
    assert "trials in 4 list(s) (2 covering every item, each with its mirror)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "study", "simulate", "--design", str(design), "--participants", "2",
                        "--observer", "preference", "--prob", "0.6", "--seed", "1"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rec = json.loads((exp / "study" / "responses" / "sim02-1.json").read_text())
    assert rec["simulated"] is True and rec["observer"].startswith("preference target=ms_ssim")
    assert len(responses_c.read_responses(exp / "study" / "responses" / "sim02-1.csv")) == rec["n_trials"]


def test_config_file_sets_defaults_and_flags_override(exp, tmp_path, capsys):
    toml = tmp_path / "study.toml"
    out = tmp_path / "out"
    shutil.copytree(exp / "reconstructions", out / "reconstructions")  # a design's images stay inside its experiment
    toml.write_text(f'[design]\nmanifest = "{out / "reconstructions" / "manifest.csv"}"\nlists = 3\npractice = 0\ncatch = 0.0\n')
    assert cli.main(["design", "--config", str(toml), "--out", str(out), "--lists", "2"]) == 0
    meta = json.loads((out / "study" / "design.json").read_text())
    assert meta["lists"] == 2 and meta["practice"] == 0 and meta["catch"]["share"] == 0.0
    toml.write_text("[design]\nlistz = 3\n")
    assert cli.main(["design", "--config", str(toml), "--out", str(out)]) == 2
    assert "unknown key(s) listz" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--pairs", "mse"], "--pairs: 'mse' is not 'lossA:lossB'"),
    (["--ranking-losses", "mse,mae,ssim"], "has no run with loss ssim"),
    (["--catch", "1.5"], "--catch: 1.5 must be a share in [0, 1)"),
    (["--preset", "snell"], "--preset snell: missing run(s) fc/mse, fc/ssim"),
    (["--stimulus-seed", "3"], "--stimulus-seed 3: seeds available conv/mae [0]"),
    (["--pairs", "fc=ssim:mse"], "--pairs: architecture 'fc' has no run to show"),
])
def test_design_errors_are_one_line(exp, tmp_path, capsys, argv, message):
    argv = ["design", "--manifest", str(exp / "reconstructions" / "manifest.csv"), "--out", str(tmp_path), *argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("percept design: error:") and message in err and "\n" not in err


def test_design_per_arch_flags_and_no_mirror(exp, tmp_path):
    import shutil

    out = tmp_path / "o"  # a copy of the experiment: a design stays inside the experiment of its manifest
    shutil.copytree(exp / "reconstructions", out / "reconstructions")
    exp = out
    assert cli.main(["design", "--manifest", str(exp / "reconstructions" / "manifest.csv"), "--out", str(out),
                     "--kinds", "conv=triplet", "--pairs", "conv=mse:mae", "--no-mirror", "--practice", "1",
                     "--stimulus-seed", "0"]) == 0
    df = design_c.read_design(out / "study" / "design.csv")
    meta = json.loads((out / "study" / "design.json").read_text())
    assert set(df["kind"]) == {"triplet", "catch"} and set(df.loc[df["kind"] == "triplet", "pair"]) == {"mse:mae"}
    assert df["list_id"].nunique() == 1 and meta["mirror"] is False and meta["stimulus_seed"] == 0


def test_run_refuses_before_any_window_opens(tmp_path, capsys, monkeypatch):
    # No display at all: any attempt to open a window would fail with a traceback, not these messages.
    monkeypatch.delenv("DISPLAY", raising=False)
    design = tmp_path / "d" / "study" / "design.csv"
    manifest = make_manifest(tmp_path / "d", n_images=4)  # its own images: one gets corrupted below
    assert cli.main(["design", "--manifest", str(manifest), "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert cli.main(["run", "--design", str(design), "--participant", "../evil"]) == 2
    assert "participant '../evil' is invalid" in capsys.readouterr().err
    assert cli.main(["run", "--design", str(design), "--participant", "P1", "--session", "a/b"]) == 2
    assert "session 'a/b' is invalid" in capsys.readouterr().err
    assert cli.main(["run", "--design", str(design), "--participant", "P1", "--list", "9"]) == 2
    assert "--list: 9 is not in the design" in capsys.readouterr().err
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert cli.main(["run", "--design", str(design), "--participant", "P1"]) == 2
    assert "no display to open the window on" in capsys.readouterr().err
    assert cli.main(["run", "--design", str(design), "--participant", "P1", "--monitor", "no-such-monitor"]) == 2
    assert "--monitor: 'no-such-monitor' is not in PsychoPy's Monitor Center" in capsys.readouterr().err
    df = design_c.read_design(design)
    victim = design.parent / df["left_path"].iloc[0]
    victim.write_bytes(b"not a png")
    assert cli.main(["run", "--design", str(design), "--participant", "P1"]) == 2
    err = capsys.readouterr().err
    assert "missing or unreadable" in err and victim.name in err
    assert not (design.parent / "responses").exists()
    assert cli.main(["simulate", "--design", str(design), "--participants", "1", "--observer", "preference"]) == 2
    assert "needs --logit or --prob" in capsys.readouterr().err
