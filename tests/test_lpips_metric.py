"""LPIPS on our VGG-16 weights file: the backbone comes from that file, the linear layers from the lpips wheel."""
from __future__ import annotations

import pytest
import torch

from ae_support import tiny_fc_run
from percept.contracts import InputError

lpips = pytest.importorskip("lpips")
from autoencoders.lpips_metric import LpipsVGG  # noqa: E402


def test_backbone_is_our_file_and_linear_layers_are_shipped(weights_file):
    metric = LpipsVGG(weights_file)
    state = torch.load(weights_file, weights_only=True)
    assert torch.equal(getattr(metric.model.net.slice3, "10").weight, state["features.10.weight"])
    assert torch.equal(getattr(metric.model.net.slice5, "28").bias, state["features.28.bias"])
    shipped = torch.load(f"{lpips.__path__[0]}/weights/v0.1/vgg.pth", map_location="cpu", weights_only=True)
    assert torch.equal(metric.model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    x, y = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    d = metric(x, y)
    assert d.shape == (3,) and (d > 0).all() and torch.allclose(metric(x, x), torch.zeros(3), atol=1e-6)
    # The package's own computation on [-1, 1] inputs gives the same numbers.
    assert torch.allclose(d, metric.model(2 * x - 1, 2 * y - 1).flatten(), atol=1e-6)


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(InputError, match=f"VGG-16 weights not found at {tmp_path / 'none.pth'}"):
        LpipsVGG(tmp_path / "none.pth")


def test_superres_metrics_fill_lpips_when_weights_exist(weights_file):
    from autoencoders.superres import bicubic_up, degrade, sr_metrics

    hr = torch.rand(2, 3, 48, 48)
    m = sr_metrics(bicubic_up(degrade(hr, 4), 4), hr, 4, LpipsVGG(weights_file))
    assert torch.isfinite(m["lpips"]).all() and (m["lpips"] > 0).all()
    assert torch.isnan(sr_metrics(hr, hr, 4)["lpips"]).all()  # no scorer: left empty, not zero


def test_superres_export_adds_lpips_column(tmp_path, weights_file):
    import pandas as pd

    from autoencoders import superres

    superres.train_sr(superres.SRConfig(out=str(tmp_path), epochs=1, channels=4, blocks=0, scale=2, crop=16,
                                        train_images=4, eval_images=2, progress=False, lpips=False))
    manifest = superres.export_sr(superres.SRExportConfig(out=str(tmp_path), n=2, vgg_weights=str(weights_file)))
    df = pd.read_csv(manifest)
    assert df["lpips"].notna().all() and (df["lpips"] >= 0).all()
    assert df.groupby("run")["lpips"].mean()["flat"] > df.groupby("run")["lpips"].mean()["sr2-bicubic"]
    # Full-size evaluation scores LPIPS with the same weights.
    from PIL import Image

    from autoencoders import superres_eval

    folder = tmp_path / "full"
    folder.mkdir()
    for i, (w, h) in enumerate([(40, 34), (30, 45)]):
        noise = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(i))
        Image.fromarray((noise * 255).byte().numpy()).save(folder / f"{i}.png")
    table = superres_eval.evaluate_folder(superres_eval.SREvaluateConfig(out=str(tmp_path), images=f"folder:{folder}",
                                                                         vgg_weights=str(weights_file), device="cpu"))
    scores = pd.read_csv(table.parent / "scores.csv")
    assert len(scores) == 4 and scores["lpips"].notna().all() and (scores["lpips"] > 0).all()


def test_lpips_column_for_manifests(weights_file, tmp_path, capsys):
    import numpy as np

    from autoencoders.lpips_metric import lpips_column

    rng = np.random.default_rng(0)
    a = (rng.random((3, 32, 32, 3)) * 255).astype(np.uint8)
    values = lpips_column(a, a[::-1].copy(), weights_file, batch_size=2)
    assert values.shape == (3,) and values[1] == pytest.approx(0, abs=1e-6) and values[0] > 0
    assert lpips_column(a, a, tmp_path / "absent.pth") is None
    assert "lpips column left out (VGG-16 weights not found" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    """One tiny fc run on a folder of 32×32 images, trained through the CLI."""
    return tiny_fc_run(tmp_path_factory.mktemp("recon_lpips"))


def test_reconstruct_adds_lpips_where_weights_exist(tiny_experiment, weights_file, capsys):
    import numpy as np
    from PIL import Image

    from percept import cli
    from percept.contracts.manifest import read_manifest

    out = tiny_experiment
    assert cli.main(["reconstruct", "--out", str(out), "--n", "2", "--spares", "0", "--vgg-weights", str(weights_file)]) == 0
    manifest = out / "reconstructions" / "manifest.csv"
    df = read_manifest(manifest, check_files=True)
    assert df["lpips"].notna().all() and (df["lpips"] >= 0).all() and set(df["run"]) == {"fc-mse-s0", "flat"}
    # the values are LPIPS of the 8-bit files people see, recomputed here from the PNGs
    load = lambda rel: torch.from_numpy(np.array(Image.open(manifest.parent / rel))).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    metric = LpipsVGG(weights_file)
    for row in df.itertuples():
        assert float(metric(load(row.recon_path), load(row.original_path))) == pytest.approx(row.lpips, abs=1e-5)
    capsys.readouterr()
    for flags in (["--vgg-weights", str(out / "absent.pth")], ["--vgg-weights", str(weights_file), "--no-lpips"]):
        assert cli.main(["reconstruct", "--out", str(out), "--n", "2", "--spares", "0", *flags]) == 0
        assert "lpips" not in read_manifest(manifest).columns
    said = capsys.readouterr().out
    assert said.count("lpips column left out") == 1 and f"VGG-16 weights not found at {out / 'absent.pth'}" in said
    broken = out / "broken.pth"
    broken.write_bytes(b"not a state dict")  # there but not weights: an error, not a silent omission
    assert cli.main(["reconstruct", "--out", str(out), "--n", "2", "--spares", "0", "--vgg-weights", str(broken)]) == 2
    assert f"{broken}: not a readable VGG-16 state dict" in capsys.readouterr().err


def test_report_says_once_that_lpips_is_absent(tiny_experiment, weights_file):
    from analysis.report import _metric_section
    from percept import cli

    out = tiny_experiment
    assert cli.main(["reconstruct", "--out", str(out), "--n", "2", "--spares", "0", "--no-lpips"]) == 0
    without = _metric_section(out / "reconstructions" / "manifest.csv", None)
    assert without.count("LPIPS is not in this manifest") == 1 and "<th class=\"\">lpips</th>" not in without
    assert cli.main(["reconstruct", "--out", str(out), "--n", "2", "--spares", "0", "--vgg-weights", str(weights_file)]) == 0
    with_it = _metric_section(out / "reconstructions" / "manifest.csv", None)
    assert "LPIPS is not in this manifest" not in with_it and "<th class=\"\">lpips</th>" in with_it
