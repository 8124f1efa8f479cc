"""Super-resolution: Johnson's degradation, the network, BT.601 Y metrics, a run that beats bicubic, export."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autoencoders import superres
from percept.contracts import InputError


def test_degrade_blurs_then_downsamples_to_8_bits():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 48, 48)
    lr = superres.degrade(hr, 4)
    assert lr.shape == (2, 3, 12, 12)
    assert torch.equal(lr, (lr * 255).round() / 255)  # 8-bit values
    flat = torch.full((1, 3, 48, 48), 0.4)
    assert torch.allclose(superres.degrade(flat, 2), torch.full((1, 3, 24, 24), round(0.4 * 255) / 255))
    # The blur removes the pixel-level checkerboard that plain bicubic would alias into the output.
    checker = (torch.arange(48).view(1, 1, 48, 1) + torch.arange(48).view(1, 1, 1, 48)).remainder(2).float().expand(1, 3, 48, 48)
    assert superres.degrade(checker, 2).std() < 0.02
    with pytest.raises(InputError, match="not a multiple of the scale 8"):
        superres.degrade(torch.rand(1, 3, 36, 36), 8)


def test_y_channel_matches_scikit_image():
    from skimage.color import rgb2ycbcr

    img = np.random.default_rng(0).random((8, 9, 3))
    ours = superres.rgb_to_y(torch.from_numpy(img).permute(2, 0, 1)[None])[0, 0].numpy()
    assert np.allclose(ours * 255, rgb2ycbcr(img)[..., 0], atol=1e-6)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_network_shapes_and_bicubic_start(scale):
    torch.manual_seed(0)
    net = superres.build_srnet(scale, channels=8, blocks=1)
    lr = torch.rand(2, 3, 6, 6)
    out = net(lr)
    assert out.shape == (2, 3, 6 * scale, 6 * scale)
    assert torch.allclose(out, superres.bicubic_up(lr, scale))  # zero tail: starts at the baseline
    plain = superres.build_srnet(scale, channels=8, blocks=1, bicubic_skip=False)
    assert not torch.allclose(plain(lr), superres.bicubic_up(lr, scale))
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in net.modules()) == int(np.log2(scale))


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="--scale 3: choose from 2, 4, 8"):
        superres.validate_sr(superres.SRConfig(scale=3))
    with pytest.raises(InputError, match="--image-size 90 must be a multiple of --scale 4"):
        superres.validate_sr(superres.SRConfig(image_size=90))
    with pytest.raises(InputError, match="unknown term 'vgg'"):
        superres.validate_sr(superres.SRConfig(loss="mse+vgg"))


@pytest.mark.slow
def test_mse_run_beats_bicubic_then_resume_and_export(tmp_path):
    # 375 steps on 32 px crops: about 10 s of CPU; +0.3 dB over bicubic on the 64 held-out patches.
    cfg = superres.SRConfig(out=str(tmp_path), epochs=3, channels=16, blocks=1, crop=32, eval_images=64,
                            batch_size=8, lr=5e-4, progress=False)
    run = superres.train_sr(cfg)
    import pandas as pd

    m = pd.read_csv(run / "metrics.csv")
    bicubic = m[m["method"] == "bicubic"].iloc[0]
    last = m[m["method"] == "model"].iloc[-1]
    assert last["psnr"] > bicubic["psnr"] + 0.1 and last["psnr_y"] > bicubic["psnr_y"]
    assert np.isnan(bicubic["lpips"])  # no VGG weights here: the column stays empty
    record = json.loads((run / "config.json").read_text())
    assert record["status"] == "finished" and "BT.601" in record["metrics_note"]
    # Finished run: --resume is a no-op, a plain rerun is refused.
    assert superres.train_sr(superres.SRConfig(**{**cfg.__dict__, "resume": True})) == run
    with pytest.raises(InputError, match="already finished"):
        superres.train_sr(cfg)

    from percept.contracts.manifest import read_manifest

    manifest = superres.export_sr(superres.SRExportConfig(out=str(tmp_path), n=6))
    df = read_manifest(manifest, check_files=True)
    assert set(df["run"]) == {"sr4-bicubic", "sr4-mse-s0", "flat"}
    assert set(df.loc[df["run"] != "flat", "arch"]) == {"sr"} and set(df.loc[df["run"] == "flat", "arch"]) == {"baseline"}
    by_run = df.groupby("run")["psnr"].mean()
    assert by_run["sr4-bicubic"] > by_run["flat"] and by_run["sr4-mse-s0"] > by_run["flat"]
    extra = df[["haarpsi", "delta_e", "degenerate"]].apply(pd.to_numeric)  # columns this branch's contract reads as text
    assert extra["haarpsi"].between(0, 1).all() and (extra["delta_e"] >= 0).all() and (extra["degenerate"] == 0).all()
    assert (manifest.parent / "contact_sheet.png").is_file()


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    small = dict(epochs=2, channels=4, blocks=0, scale=2, crop=16, train_images=8, eval_images=2, batch_size=4,
                 progress=False, lpips=False)
    whole = superres.load_srnet(superres.train_sr(superres.SRConfig(out=str(tmp_path / "a"), **small)))

    real, calls = superres.evaluate_sr, []

    def dies_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # bicubic row, epoch 1, then the kill during epoch 2's evaluation
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(superres, "evaluate_sr", dies_in_epoch_2)
    cfg = superres.SRConfig(out=str(tmp_path / "b"), **small)
    with pytest.raises(KeyboardInterrupt):
        superres.train_sr(cfg)
    monkeypatch.setattr(superres, "evaluate_sr", real)
    with pytest.raises(InputError, match="pass --resume"):
        superres.train_sr(cfg)
    resumed = superres.load_srnet(superres.train_sr(superres.SRConfig(out=str(tmp_path / "b"), resume=True, **small)))
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    import pandas as pd

    m = pd.read_csv(tmp_path / "b" / "superres" / "sr2-mse-s0" / "metrics.csv")
    assert list(m["epoch"]) == [0, 1, 2]


def test_nan_stops_and_keeps_the_record(tmp_path, monkeypatch):
    cfg = superres.SRConfig(out=str(tmp_path), epochs=1, channels=4, blocks=0, scale=2, crop=16, train_images=4,
                            eval_images=2, progress=False, lpips=False)
    real = superres.build_srnet

    def blown_up(*args, **kwargs):
        net = real(*args, **kwargs)
        torch.nn.init.constant_(net.tail.bias, float("nan"))
        return net

    monkeypatch.setattr(superres, "build_srnet", blown_up)
    with pytest.raises(InputError, match="NaN/Inf at step 1 .*try a lower --lr"):
        superres.train_sr(cfg)
    record = json.loads((cfg.run_dir / "config.json").read_text())
    assert record["status"] == "failed" and "NaN" in record["error"]


def test_export_never_replaces_an_autoencoder_export(tmp_path):
    recon = tmp_path / "reconstructions"
    recon.mkdir()
    (recon / "manifest.csv").write_text("image_id,arch\nx,conv\n")
    with pytest.raises(InputError, match="holds conv reconstructions; give super-resolution its own --out"):
        superres._refuse_foreign_export(recon)
    (recon / "manifest.csv").write_text("image_id,arch\nx,sr\ny,baseline\n")
    superres._refuse_foreign_export(recon)  # its own earlier export: replaced
    (recon / "manifest.csv").unlink()
    (recon / "sr4-bicubic").mkdir()
    superres._refuse_foreign_export(recon)  # a crashed export of its own: replaced
    (tmp_path / "models" / "conv-mse-s0").mkdir(parents=True)
    with pytest.raises(InputError, match="has autoencoder runs in .*models; give super-resolution its own --out"):
        superres._refuse_foreign_export(recon)


def test_demo_stage_rerun_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setattr(superres, "DEMO_SETTINGS", {"scale": 2, "channels": 4, "blocks": 0, "crop": 16, "epochs": 1,
                                                     "batch_size": 8, "lr": 5e-4, "eval_images": 2, "train_images": 8})
    manifest = superres.demo_stage(tmp_path, n=2, device="cpu")
    ckpt = tmp_path / "superres" / "sr2-ms_ssim-s0" / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    assert superres.demo_stage(tmp_path, n=2, device="cpu") == manifest and ckpt.stat().st_mtime_ns == before
    import pandas as pd

    assert sorted(pd.read_csv(manifest)["run"].unique()) == ["flat", "sr2-bicubic", "sr2-ms_ssim-s0", "sr2-mse-s0"]


@pytest.mark.slow
def test_demo_stage_through_the_commands_reaches_a_report(tmp_path, monkeypatch, capsys):
    """The demo's super-resolution steps, run through the real CLI entry points, in their own experiment folder."""
    from percept import demo

    monkeypatch.setattr(superres, "DEMO_SETTINGS", {"scale": 2, "channels": 4, "blocks": 0, "crop": 16,
                                                     "batch_size": 8, "lr": 5e-4, "eval_images": 2, "train_images": 8})
    cfg = demo.DemoConfig(images=4, participants=2, sr_epochs=1)
    for name, module, argv in demo.sr_steps(cfg, tmp_path / demo.SR_DIR):
        demo._call(module, argv)
        assert demo._intact(name, tmp_path, cfg), name
    assert not (tmp_path / "reconstructions").exists()  # the autoencoders' export is not touched
    sr = tmp_path / demo.SR_DIR
    import pandas as pd

    design = pd.read_csv(sr / "study" / "design.csv")
    shown = set(design["left_loss"].dropna()) | set(design["right_loss"].dropna())
    assert {"mse", "ms_ssim", "bicubic"} <= shown and set(design["block"]) == {"main", "practice"}
    spares = set(pd.read_csv(sr / "reconstructions" / "manifest.csv").query("use == 'spare'")["image_id"])
    assert spares and set(design.loc[design["block"] == "practice", "image_id"]) <= spares  # practice on spares only
    page = (sr / "analysis" / "report.html").read_text()
    for text in ("sr2-bicubic", "sr2-mse-s0", "sr2-ms_ssim-s0", "psnr_y", "ssim_y", "BT.601", "LPIPS is not in this manifest"):
        assert text in page, text


TINY = dict(epochs=1, channels=4, blocks=0, scale=2, crop=16, train_images=8, eval_images=2, batch_size=8,
            progress=False, lpips=False)


def test_export_has_spares_and_refuses_a_manifest_a_design_uses(tmp_path):
    from percept.contracts.manifest import file_hash, read_manifest

    superres.train_sr(superres.SRConfig(out=str(tmp_path), **TINY))
    manifest = superres.export_sr(superres.SRExportConfig(out=str(tmp_path), n=3, spares=2, lpips=False))
    df = read_manifest(manifest, check_files=True)
    uses = df.drop_duplicates("image_id").set_index("image_id")["use"]
    assert sorted(uses.value_counts().items()) == [("main", 3), ("spare", 2)]
    assert set(df.loc[df["use"] == "spare", "run"]) == {"sr2-bicubic", "sr2-mse-s0", "flat"}  # every run has them
    # A design built from this manifest: exporting again would change the images it shows.
    study = tmp_path / "study"
    study.mkdir()
    (study / "design.json").write_text(json.dumps({"manifest": "../reconstructions/manifest.csv",
                                                    "manifest_sha256": file_hash(manifest)}))
    before = manifest.read_bytes()
    with pytest.raises(InputError, match="is the manifest .*design.json was built from; exporting would change"):
        superres.export_sr(superres.SRExportConfig(out=str(tmp_path), n=4, spares=0, lpips=False))
    assert manifest.read_bytes() == before
    superres.export_sr(superres.SRExportConfig(out=str(tmp_path), n=4, spares=0, lpips=False, overwrite=True))
    assert set(read_manifest(manifest)["use"]) == {"main"}  # --spares 0: none, as asked


def test_metrics_seconds_time_training_and_runs_must_share_the_scale(tmp_path):
    import pandas as pd

    run = superres.train_sr(superres.SRConfig(out=str(tmp_path), **TINY))
    m = pd.read_csv(run / "metrics.csv").set_index("method")
    assert np.isnan(m.loc["bicubic", "seconds"]) and m.loc["bicubic", "eval_seconds"] > 0  # nothing trained at epoch 0
    assert m.loc["model", "seconds"] > 0 and m.loc["model", "images_per_s"] > 0 and m.loc["model", "eval_seconds"] > 0
    superres.train_sr(superres.SRConfig(out=str(tmp_path), **{**TINY, "scale": 4, "crop": 32}))
    with pytest.raises(InputError, match="must share dataset and image size and scale: scale 2 .sr2-mse-s0. vs 4 .sr4-mse-s0."):
        superres.export_sr(superres.SRExportConfig(out=str(tmp_path), n=2, lpips=False))


def test_evaluate_scores_full_size_images_of_any_size(tmp_path):
    import pandas as pd
    from PIL import Image

    from autoencoders import superres_eval
    from autoencoders.data import load_photos

    superres.train_sr(superres.SRConfig(out=str(tmp_path / "exp"), **TINY))
    folder = tmp_path / "Set3"
    folder.mkdir()
    photo = load_photos("test").images[0].transpose(1, 2, 0)  # a 96 px photo patch
    sizes = {"a.png": (96, 96), "b.png": (61, 45), "c.png": (37, 50)}  # odd sides: cropped to multiples of 2
    for name, (w, h) in sizes.items():
        Image.fromarray(photo).resize((w, h)).save(folder / name)
    cfg = superres_eval.SREvaluateConfig(out=str(tmp_path / "exp"), images=f"folder:{folder}", lpips=False, device="cpu")
    table = superres_eval.evaluate_folder(cfg)
    assert table == tmp_path / "exp" / "evaluations" / "Set3" / "table.md"
    scores = pd.read_csv(table.parent / "scores.csv")
    assert len(scores) == 3 * 2 and set(scores["method"]) == {"sr2-bicubic", "sr2-mse-s0"}
    got = scores.drop_duplicates("image_id").set_index("image_id")[["width", "height"]]
    assert got.loc["b.png"].tolist() == [60, 44] and got.loc["c.png"].tolist() == [36, 50]
    assert Image.open(table.parent / "sr2-mse-s0" / "b_png.png").size == (60, 44)
    # The bicubic row is Johnson's pipeline scored directly: recompute one image by hand.
    from autoencoders.data import to_float
    from autoencoders.losses import psnr

    hr = to_float(np.asarray(Image.open(folder / "b.png").convert("RGB")).transpose(2, 0, 1)[None])[..., :44, :60]
    up = superres.bicubic_up(superres.degrade(hr, 2), 2).mul(255).round().div(255)
    want = float(psnr(up, hr, data_range=1.0, reduction="none")[0])
    row = scores[(scores["image_id"] == "b.png") & (scores["method"] == "sr2-bicubic")].iloc[0]
    assert row["psnr"] == pytest.approx(want, abs=1e-4) and np.isnan(row["lpips"])
    ms = scores.set_index(["image_id", "method"])["ms_ssim"]
    assert np.isfinite(ms[("b.png", "sr2-bicubic")]) and np.isnan(ms[("c.png", "sr2-bicubic")])  # 36 px: 1 scale, left empty
    means = pd.read_csv(table.parent / "table.csv").set_index("method")
    assert means.loc["sr2-bicubic", "psnr"] == pytest.approx(scores[scores["method"] == "sr2-bicubic"]["psnr"].mean())
    assert "| sr2-bicubic | 3 |" in table.read_text() and (table.parent / "contact_sheet.png").is_file()
    with pytest.raises(InputError, match="evaluate takes folder:PATH"):
        superres_eval.evaluate_folder(superres_eval.SREvaluateConfig(out=str(tmp_path / "exp"), images="photos"))
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.fromarray(photo).resize((6, 6)).save(tiny / "x.png")
    with pytest.raises(InputError, match="image 6×6 is too small for ×2"):
        superres_eval.evaluate_folder(superres_eval.SREvaluateConfig(out=str(tmp_path / "exp"), images=f"folder:{tiny}"))
