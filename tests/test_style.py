"""Style transfer: Johnson's network, training lowers its objective, apply at any size, the L-BFGS baseline.

VGG-16 weights are random (saved in torchvision's format): real ones cannot be fetched here, so the
stylised images are a smoke test of the code path, not of style transfer.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from autoencoders import style
from percept.contracts import InputError


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of 8 small content photos (patches of the bundled photos) and a striped style image."""
    from autoencoders.data import load_photos

    root = tmp_path_factory.mktemp("img")
    photos = load_photos("test").images[::8][:8]
    for i, p in enumerate(photos):
        Image.fromarray(p.transpose(1, 2, 0)).resize((32, 32)).save(root / f"c{i}.png")
    stripes = np.zeros((40, 40, 3), np.uint8)
    stripes[::4, :, 0] = 255
    stripes[:, ::5, 2] = 200
    Image.fromarray(stripes).save(root / "stripes.png")
    return root


def test_transformer_layers_and_any_size():
    net = style.build_transformer()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs[:3]] == [
        (3, 32, 9, 1), (32, 64, 3, 2), (64, 128, 3, 2)]
    assert (convs[-1].in_channels, convs[-1].out_channels, convs[-1].kernel_size[0]) == (32, 3, 9)
    assert len(convs) == 3 + 10 + 2 + 1
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 15
    assert style.stylise(net.eval(), torch.rand(1, 3, 30, 37)).shape == (1, 3, 30, 37)


def test_train_lowers_objective_then_apply_and_optimize(tmp_path, images, weights_file):
    cfg = style.StyleTrainConfig(style=str(images / "stripes.png"), content=f"folder:{images}", vgg_weights=str(weights_file),
                                 image_size=32, style_size=32, epochs=3, batch_size=2, train_images=6, out=str(tmp_path),
                                 style_weight=1e3, progress=False)
    run = style.train_style(cfg)
    m = pd.read_csv(run / "metrics.csv")
    assert len(m) == 3 and m["loss"].iloc[-1] < m["loss"].iloc[0]
    with pytest.raises(InputError, match="already finished"):
        style.train_style(cfg)

    out = style.apply_style(style.StyleApplyConfig(model=str(run), input=str(images / "c0.png"), out=str(tmp_path / "s")))
    assert Image.open(out[0]).size == (32, 32)
    with pytest.raises(InputError, match="not a style-transfer checkpoint|checkpoint not found"):
        style.load_transformer(tmp_path)

    common = dict(style=str(images / "stripes.png"), content=str(images / "c1.png"), vgg_weights=str(weights_file),
                  style_size=32, style_weight=1e3, out=str(tmp_path / "opt"))
    one = style.optimize_style(style.StyleOptimizeConfig(steps=1, **common))
    many = style.optimize_style(style.StyleOptimizeConfig(steps=15, **common))
    assert many["loss"] < one["loss"] and (tmp_path / "opt" / "c1-optimized.png").is_file()


def test_bad_inputs_are_one_line(tmp_path, weights_file):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="x.png: not a readable image"):
        style.read_rgb(tmp_path / "x.png")
    with pytest.raises(InputError, match="unknown style layer 'relu9_9'"):
        style.StyleObjective(torch.rand(1, 3, 16, 16), vgg_weights=str(weights_file), style_layers=("relu9_9",))
    with pytest.raises(InputError, match="--init 'zeros'"):
        style.optimize_style(style.StyleOptimizeConfig(init="zeros"))


def test_onnx_export_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import onnxruntime as ort

    torch.manual_seed(0)
    net = style.build_transformer().eval()
    path = style.export_onnx(net, tmp_path / "m.onnx")
    x = torch.rand(2, 3, 36, 44)  # another batch and size than the export used
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - net(x).numpy()).max() < 1e-3


def test_lbfgs_baseline_lowers_the_objective_and_counts_evaluations(weights_file):
    torch.manual_seed(0)
    objective = style.StyleObjective(torch.rand(1, 3, 32, 32), vgg_weights=str(weights_file), style_weight=1e3)
    content = torch.rand(1, 3, 32, 32)
    start = float(objective.terms(content, content)["loss"])
    img, final, seconds = style.lbfgs_stylise(objective, content, 5)
    assert img.shape == content.shape and not img.requires_grad and seconds > 0
    assert final["loss"] < start and final["evaluations"] >= 5  # at least one objective evaluation per iteration
    assert final["loss"] == pytest.approx(float(objective.terms(img, content)["loss"]), rel=1e-5)
    with pytest.raises(InputError, match="--steps must be ≥ 1"):
        style.lbfgs_stylise(objective, content, 0)


def test_speed_benchmark_prints_its_table(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "style.py"), "--sizes", "32", "--steps", "2",
                           "--repeats", "1", "--threads", "1"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| cpu | 32 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    fps, ratio = float(cells[2]), float(cells[4].rstrip("×"))
    assert fps > 0 and ratio > 0 and "RANDOM VGG-16" in row and "smoke test" in proc.stdout
