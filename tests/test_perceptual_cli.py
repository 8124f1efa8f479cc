"""`percept superres` and `percept style` end to end through the dispatcher (tiny settings)."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from ae_support import random_vgg16_weights


def percept(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "percept", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_superres_train_and_export(tmp_path):
    r = percept("superres", "train", "--out", str(tmp_path), "--epochs", "1", "--channels", "8", "--blocks", "0",
                "--train-images", "8", "--eval-images", "4", "--scale", "2", "--crop", "32", "--no-progress")
    assert r.returncode == 0, r.stderr
    m = pd.read_csv(tmp_path / "superres" / "sr2-mse-s0" / "metrics.csv")
    assert list(m["method"]) == ["bicubic", "model"]
    r = percept("superres", "export", "--out", str(tmp_path), "--n", "3")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(tmp_path / "reconstructions" / "manifest.csv")
    # 3 main + 4 spare images (the default --spares 4, as `percept reconstruct`) × 3 runs.
    assert sorted(df["run"].unique()) == ["flat", "sr2-bicubic", "sr2-mse-s0"] and len(df) == 21
    assert (df["use"] == "spare").sum() == 12
    # The study takes super-resolved images like reconstructions: pixel loss against bicubic, practice on the spares.
    r = percept("design", "--manifest", str(tmp_path / "reconstructions" / "manifest.csv"), "--out", str(tmp_path),
                "--kinds", "triplet", "--pairs", "bicubic:mse", "--archs", "sr", "--practice", "2", "--catch", "0")
    assert r.returncode == 0, r.stderr
    design = pd.read_csv(tmp_path / "study" / "design.csv")
    trials = design[design["kind"] == "triplet"]
    assert set(trials["arch"]) == {"sr"} and set(trials["left_loss"]) | set(trials["right_loss"]) == {"bicubic", "mse"}
    spare_ids = set(df.loc[df["use"] == "spare", "image_id"])
    practice = design[design["block"] == "practice"]
    assert len(practice) > 0 and set(practice["image_id"]) <= spare_ids
    assert not set(design.loc[design["block"] == "main", "image_id"]) & spare_ids
    # That design now depends on the manifest: a second export is refused, the manifest unchanged.
    before = (tmp_path / "reconstructions" / "manifest.csv").read_bytes()
    r = percept("superres", "export", "--out", str(tmp_path), "--n", "2")
    assert r.returncode == 2 and "design.json was built from" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (tmp_path / "reconstructions" / "manifest.csv").read_bytes() == before
    r = percept("superres", "train", "--out", str(tmp_path), "--scale", "3")
    assert r.returncode == 2 and r.stderr.strip() == "percept superres train: error: --scale 3: choose from 2, 4, 8"
    r = percept("superres", "train", "--out", str(tmp_path), "--loss", "mse+0.1*vgg_feat")
    assert r.returncode == 2 and "unknown term 'vgg_feat'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_style_optimize_and_missing_weights(tmp_path):
    weights = random_vgg16_weights(tmp_path / "vgg16.pth")
    for name, colour in (("s.png", (200, 30, 30)), ("c.png", (20, 120, 220))):
        Image.new("RGB", (24, 24), colour).save(tmp_path / name)
    common = ["--style", str(tmp_path / "s.png"), "--content", str(tmp_path / "c.png"), "--style-size", "24",
              "--out", str(tmp_path / "o"), "--steps", "2"]
    r = percept("style", "optimize", *common, "--vgg-weights", str(weights))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "c-optimized.png").is_file() and "L-BFGS" in r.stdout
    r = percept("style", "optimize", *common, "--vgg-weights", str(tmp_path / "absent.pth"))
    assert r.returncode == 2 and f"VGG-16 weights not found at {tmp_path / 'absent.pth'}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
