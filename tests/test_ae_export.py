"""`percept train | reconstruct | encode` end to end on real files: manifest, PNGs, codes, contact sheet."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import piq
import pytest
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from ae_support import blob_images
from autoencoders.export import _own_metric_verdict, flat_baseline, safe_names
from autoencoders.losses import image_metrics
from percept import cli
from percept.contracts.codes import read_codes
from percept.contracts.manifest import METRICS, read_manifest

PERCEPT = str(Path(sys.executable).with_name("percept"))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Three tiny runs (fc, conv, vae) on a folder of 32×32 images, trained through the CLI."""
    root = tmp_path_factory.mktemp("export")
    # File-name hashing puts 3 of these 23 names into the test split; JPEGs with spaces in their names.
    images = blob_images(root / "imgs", seed=0, n=23, block=12, size=(40, 48), name="photo {:02d}.jpg", quality=95)
    out = root / "exp"
    for arch, loss in (("fc", "mse"), ("conv", "mae"), ("vae", "ms_ssim")):
        assert cli.main(["train", "--data", f"folder:{images}", "--image-size", "32", "--arch", arch, "--loss", loss,
                         "--width", "0.05", "--code-size", "6", "--batch-size", "4", "--epochs", "1", "--lr", "3e-3",
                         "--out", str(out), "--no-progress"]) == 0
    return out, images


@pytest.mark.slow
def test_reconstruct_writes_a_valid_manifest_of_lossless_pngs(experiment):
    out, _ = experiment
    proc = subprocess.run([PERCEPT, "reconstruct", "--out", str(out), "--n", "3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest_path = out / "reconstructions" / "manifest.csv"
    df = read_manifest(manifest_path, check_files=True)
    runs = ["conv-mae-s0", "fc-mse-s0", "flat", "vae-ms_ssim-s0"]
    assert sorted(df["run"].unique()) == runs and len(df) == 3 * 4
    # the same images, in the same order, for every run and the flat baseline; no spares left in a split of 3
    per_run = [df[df.run == r]["image_id"].tolist() for r in runs]
    assert all(p == per_run[0] for p in per_run) and all(i.startswith("folder:test:photo ") for i in per_run[0])
    assert (df["use"] == "main").all() and "only 0 of 4 spare image(s)" in proc.stdout
    flat = df[df.run == "flat"]
    assert set(flat["arch"]) == {"baseline"} and set(flat["loss"]) == {"flat"} and (flat["degenerate"] == 0).all()
    assert df["label"].isna().all() and set(df["split"]) == {"test"}
    assert set(df[df.run == "vae-ms_ssim-s0"]["loss"]) == {"ms_ssim"}
    originals = sorted((out / "reconstructions" / "originals").iterdir())
    assert len(originals) == 3 and df["original_path"].nunique() == 3
    for row in df.itertuples():
        orig = Image.open(manifest_path.parent / row.original_path)
        recon = Image.open(manifest_path.parent / row.recon_path)
        assert orig.format == recon.format == "PNG" and orig.mode == recon.mode == "RGB" and recon.size == (32, 32)
        # the manifest's metrics are those of the 8-bit files people will see
        x = torch.from_numpy(np.array(recon)).permute(2, 0, 1)[None].float() / 255
        y = torch.from_numpy(np.array(orig)).permute(2, 0, 1)[None].float() / 255
        got = image_metrics(x, y, data_range=1.0)
        for m in METRICS:
            assert float(got[m][0]) == pytest.approx(getattr(row, m), rel=1e-5, abs=1e-7), (row.run, m)
        # the colour metrics too, recomputed from the files with the libraries the contract names
        assert float(piq.haarpsi(x, y, data_range=1.0)) == pytest.approx(row.haarpsi, abs=1e-6)
        de = deltaE_ciede2000(rgb2lab(np.array(orig) / 255.0), rgb2lab(np.array(recon) / 255.0)).mean()
        assert de == pytest.approx(row.delta_e, rel=1e-9)
        if row.run == "flat":  # a patch of the original's own per-channel mean colour
            mean = np.round(np.array(orig, dtype=float).reshape(-1, 3).mean(axis=0))
            assert (np.array(recon).reshape(-1, 3) == mean).all()
    # degenerate: the run does not beat the flat baseline on its own training metric (no guard in these runs)
    means = df.groupby("run")[["mse", "mae", "ms_ssim"]].mean()
    for run, metric in (("fc-mse-s0", "mse"), ("conv-mae-s0", "mae"), ("vae-ms_ssim-s0", "ms_ssim")):
        beats = means.loc[run, metric] > means.loc["flat", metric] if metric == "ms_ssim" else \
            means.loc[run, metric] < means.loc["flat", metric]
        assert set(df.loc[df.run == run, "degenerate"]) == {0 if beats else 1}, run


@pytest.mark.slow
def test_spares_and_the_guard_mark_manifest_rows(experiment, tmp_path):
    import json
    import shutil

    out, _ = experiment
    exp = tmp_path / "exp"
    shutil.copytree(out / "models", exp / "models")
    record_path = exp / "models" / "conv-mae-s0" / "config.json"
    record = json.loads(record_path.read_text())
    record["guard"] = {"metric": "mae", "model": {"mae": 0.3}, "flat": {"mae": 0.2}, "beats_flat": False,
                       "output_spread": 0.0, "degenerate": True, "warnings": ["constant output"]}  # as training writes it
    record_path.write_text(json.dumps(record))
    assert cli.main(["reconstruct", "--out", str(exp), "--n", "2", "--spares", "1"]) == 0
    df = read_manifest(exp / "reconstructions" / "manifest.csv", check_files=True)
    uses = df.drop_duplicates("image_id").set_index("image_id")["use"]
    assert sorted(uses) == ["main", "main", "spare"]  # the spare is the one image not among the 2 main ones
    assert (df.groupby("image_id")["run"].nunique() == 4).all()
    assert set(df.loc[df.run == "conv-mae-s0", "degenerate"]) == {1}
    assert cli.main(["reconstruct", "--out", str(exp), "--spares", "-1"]) == 2


@pytest.mark.slow
def test_pngs_are_lossless_round_trips_of_the_originals(experiment):
    out, images = experiment
    assert cli.main(["reconstruct", "--out", str(out), "--n", "2", "--spares", "0"]) == 0
    df = read_manifest(out / "reconstructions" / "manifest.csv")
    from autoencoders.data import load_dataset

    test = load_dataset(f"folder:{images}", "test", image_size=32)
    for k, image_id in enumerate(df["image_id"].unique()):
        saved = np.asarray(Image.open(out / "reconstructions" / df[df.image_id == image_id]["original_path"].iloc[0]))
        assert np.array_equal(saved, test.images[test.image_ids.index(image_id)].transpose(1, 2, 0))
    # a re-export starts from scratch: no files of the earlier, larger export remain
    assert len(list((out / "reconstructions" / "originals").iterdir())) == 2
    sheet = Image.open(out / "reconstructions" / "contact_sheet.png")
    assert sheet.format == "PNG" and sheet.size[0] > 4 * 96 and sheet.size[1] > 2 * 96


@pytest.mark.slow
def test_encode_writes_codes_of_train_and_test(experiment):
    out, images = experiment
    assert cli.main(["encode", "--out", str(out)]) == 0
    for run in ("conv-mae-s0", "fc-mse-s0", "vae-ms_ssim-s0"):
        codes = read_codes(out / "codes" / f"{run}.npz")
        assert codes.codes.shape == (23, 6) and codes.codes.dtype == np.float32
        assert set(codes.splits) == {"train", "test"} and (codes.labels == -1).all()
        assert len(set(codes.image_ids)) == 23 and (codes.splits == "test").sum() == 3
    # the raw pixels of the same images, for the pixel baseline, exactly the dataset's 8-bit values
    from percept.contracts.pixels import read_pixels

    from autoencoders.data import load_dataset

    ids, pixels = read_pixels(out / "pixels.npz")
    assert ids.tolist() == codes.image_ids.tolist() and pixels.shape == (23, 3 * 32 * 32)
    expected = np.concatenate([load_dataset(f"folder:{images}", s, image_size=32).images for s in ("train", "test")])
    assert np.array_equal(np.round(pixels * 255).astype(np.uint8), expected.reshape(23, -1))
    # the VAE's codes are its posterior means: deterministic across calls
    first = read_codes(out / "codes" / "vae-ms_ssim-s0.npz").codes
    assert cli.main(["encode", "--out", str(out)]) == 0
    assert np.array_equal(first, read_codes(out / "codes" / "vae-ms_ssim-s0.npz").codes)


@pytest.mark.slow
def test_export_refuses_runs_on_different_data(experiment, tmp_path, capsys):
    out, images = experiment
    other = tmp_path / "exp"
    for size in ("32", "24"):
        assert cli.main(["train", "--data", f"folder:{images}", "--image-size", size, "--arch", "fc", "--width", "0.05",
                         "--code-size", "4", "--epochs", "1", "--seed", size, "--out", str(other), "--no-progress"]) == 0
    assert cli.main(["reconstruct", "--out", str(other)]) == 2
    assert "must share dataset and image size: image_size 24 (fc-mse-s24) vs 32 (fc-mse-s32)" in capsys.readouterr().err
    assert cli.main(["encode", "--out", str(tmp_path / "nothing")]) == 2
    assert "no finished runs to export" in capsys.readouterr().err


def test_safe_names_are_unique_file_stems():
    names = safe_names(["folder:test:a b.png", "folder:test:a_b.png", "photos:test:chelsea:0003", "folder:test:x/y.png"])
    assert names[2] == "photos_test_chelsea_0003" and names[3] == "folder_test_x_y_png"
    assert len(set(names)) == 4 and all("/" not in n and ":" not in n for n in names)


@pytest.mark.slow
def test_photos_train_and_export_as_the_demo_runs_it(tmp_path):
    """The demo's path: bundled photos at their default 96×96."""
    out = tmp_path / "demo"
    assert cli.main(["train", "--data", "photos", "--arch", "fc", "--loss", "mse", "--epochs", "1", "--width", "0.01",
                     "--batch-size", "64", "--eval-images", "8", "--out", str(out), "--no-progress"]) == 0
    assert cli.main(["reconstruct", "--out", str(out), "--n", "4"]) == 0
    df = read_manifest(out / "reconstructions" / "manifest.csv", check_files=True)
    # Spread over the 64 test patches (8 per photo): indices 0, 21, 42, 63 → four different photos.
    assert df.loc[(df.run == "fc-mse-s0") & (df.use == "main"), "image_id"].tolist() == ["photos:test:astronaut:0000", "photos:test:coffee:0005",
                                       "photos:test:motorcycle:0002", "photos:test:flower:0007"]
    assert df.loc[df.use == "main", "label"].nunique() == 4
    # 4 spares (the default) from the 60 other test patches, none of them a main image
    spare = set(df.loc[df.use == "spare", "image_id"])
    assert len(spare) == 4 and not spare & set(df.loc[df.use == "main", "image_id"])
    assert Image.open(out / "reconstructions" / df["recon_path"].iloc[0]).size == (96, 96)


def test_flat_baseline_and_own_metric_rule():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    flat = flat_baseline(imgs)
    assert flat.dtype == np.uint8 and flat.shape == imgs.shape
    assert np.array_equal(flat[1, 4, 4], np.round(imgs[1].reshape(-1, 3).mean(axis=0)).astype(np.uint8))
    assert (flat[2] == flat[2, 0, 0]).all()
    base = {"mse": np.array([0.02, 0.02]), "ms_ssim": np.array([0.36, 0.36])}
    # lower-is-better and higher-is-better metrics, ties count as not beating; mix is judged by MS-SSIM
    assert _own_metric_verdict("mse", {"mse": np.array([0.01, 0.02])}, base) is None
    assert "does not beat" in _own_metric_verdict("mse", {"mse": np.array([0.02, 0.02])}, base)
    assert "ms_ssim 0.33" in _own_metric_verdict("mix", {"ms_ssim": np.array([0.33, 0.33])}, base)
    assert _own_metric_verdict("ms_ssim", {"ms_ssim": np.array([0.4, 0.5])}, base) is None
    assert _own_metric_verdict("vgg", {}, base) is None  # trained on none of the manifest's metrics


def test_colour_shift_benchmark_finds_a_known_tint_and_none_in_exact_copies(experiment, tmp_path):
    """benchmarks/colour_shift.py on a real export whose PNGs are replaced: exact copies shift 0, a blue tint b* < 0."""
    import importlib.util
    import shutil

    out, _ = experiment
    assert cli.main(["reconstruct", "--out", str(out), "--n", "3", "--spares", "0"]) == 0
    folder = tmp_path / "reconstructions"
    shutil.copytree(out / "reconstructions", folder)
    df = read_manifest(folder / "manifest.csv")
    for row in df.itertuples():
        original = np.asarray(Image.open(folder / row.original_path).convert("RGB")).astype(np.int16)
        if row.run == "fc-mse-s0":  # an exact copy of the original
            Image.fromarray(original.astype(np.uint8)).save(folder / row.recon_path)
        elif row.run == "conv-mae-s0":  # the original with blue raised by 40 levels: b* (blue −) must fall
            tinted = original.copy()
            tinted[..., 2] = np.clip(tinted[..., 2] + 40, 0, 255)
            Image.fromarray(tinted.astype(np.uint8)).save(folder / row.recon_path)
    spec = importlib.util.spec_from_file_location("colour_shift", Path(__file__).parents[1] / "benchmarks" / "colour_shift.py")
    colour_shift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(colour_shift)
    rows = {r["run"]: r for r in colour_shift.shifts(folder / "manifest.csv")}
    assert set(rows) == {"conv-mae-s0", "fc-mse-s0", "flat", "vae-ms_ssim-s0"} and rows["flat"]["n"] == 3
    assert all(rows["fc-mse-s0"][k] == (0.0, 0.0, 0.0) for k in ("L", "a", "b")), rows["fc-mse-s0"]
    mean, low, high = rows["conv-mae-s0"]["b"]
    assert mean < -5 and high < 0, rows["conv-mae-s0"]
