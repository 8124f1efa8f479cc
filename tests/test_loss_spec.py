"""Weighted loss sums and the VGG-16 feature/style/TV terms, on random VGG-16 weights in torchvision's format."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import vgg16

from autoencoders import loss_spec, perceptual
from autoencoders.losses import get_loss
from percept.contracts import InputError


def test_parse_weights_and_exponents():
    assert loss_spec.parse_loss_spec("ms_ssim+0.1*vgg_feature") == [(1.0, "ms_ssim"), (0.1, "vgg_feature")]
    assert loss_spec.parse_loss_spec(" mse + 1e+3*tv + 2e-1 * vgg_style") == [(1.0, "mse"), (1000.0, "tv"), (0.2, "vgg_style")]


@pytest.mark.parametrize("spec, message", [
    ("ms_ssim+0.1*vgg_feat", "unknown term 'vgg_feat'; terms are mse, mae, ssim, ms_ssim, mix, vgg_feature, vgg_style, tv"),
    ("mse+abc*tv", "weight 'abc' of term 'tv' is not a positive finite number"),
    ("mse+-1*tv", "weight '-1' of term 'tv'"),
    ("mse+0*tv", "weight '0' of term 'tv'"),
    ("mse+inf*tv", "weight 'inf' of term 'tv'"),
    ("mse++tv", "empty term"),
    ("mse+0.5*mse", "term 'mse' appears twice"),
    ("perceptual", "unknown loss 'perceptual'; choose one of mse, mae, ssim, ms_ssim, mix, vgg, vgg_feature, vgg_style, tv"),
])
def test_bad_specs_are_one_line(spec, message):
    with pytest.raises(InputError) as err:
        get_loss(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pixel_sum_equals_weighted_parts():
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    value = get_loss("0.5*mse+2*mae+0.25*tv")(x, y)
    expected = 0.5 * get_loss("mse")(x, y) + 2 * get_loss("mae")(x, y) + 0.25 * perceptual.total_variation(x)
    assert torch.allclose(value, expected)
    with pytest.raises(InputError, match="has no option\\(s\\) alpha; valid options: .*vgg_weights"):
        get_loss("mse+tv", alpha=0.3)
    assert torch.allclose(get_loss("mix+tv", alpha=0.3)(x, y), get_loss("mix", alpha=0.3)(x, y) + perceptual.total_variation(x))


def test_vgg_terms_match_direct_computation(weights_file):
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    loss = get_loss("vgg_feature+3*vgg_style", vgg_weights=str(weights_file), feature_layer="relu3_3",
                    style_layers=["relu1_2", "relu2_2"])
    # Truncated at the deepest layer needed (relu3_3 = features[:16]), frozen and in eval mode.
    assert len(loss.vgg.slices) == 3 and sum(len(s) for s in loss.vgg.slices) == 16
    assert not any(p.requires_grad for p in loss.vgg.parameters())
    with torch.device("meta"):
        ref = vgg16(weights=None)
    ref.load_state_dict(torch.load(weights_file, weights_only=True), assign=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def phi(img, end):
        return ref.features[:end]((img - mean) / std)

    a, b = phi(x, 16), phi(y, 16)
    c, h, w = a.shape[1:]
    feat = ((a - b) ** 2).sum(dim=(1, 2, 3)).div(c * h * w).mean()

    def g(f):
        n, c, h, w = f.shape
        m = f.reshape(n, c, h * w)
        return torch.einsum("nik,njk->nij", m, m) / (c * h * w)

    style = sum(((g(phi(x, e)) - g(phi(y, e))) ** 2).sum(dim=(1, 2)).mean() for e in (4, 9))
    value = loss(x, y)
    assert torch.allclose(value, feat + 3 * style, rtol=1e-4)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert loss(y, y).item() == 0.0


def test_feature_only_spec_stops_at_relu2_2(weights_file):
    loss = get_loss("ms_ssim+0.1*vgg_feature", vgg_weights=str(weights_file))
    assert sum(len(s) for s in loss.vgg.slices) == 9
    out = loss.vgg(torch.rand(1, 3, 32, 32))
    assert out.relu3_3 is None and out.relu2_2.shape == (1, 128, 16, 16)
    assert get_loss("vgg_style", vgg_weights=str(weights_file), style_layers="relu1_2, relu3_3").style_layers == (
        "relu1_2", "relu3_3")
    with pytest.raises(InputError, match="unknown feature_layer 'relu5_3'"):
        get_loss("vgg_feature", vgg_weights=str(weights_file), feature_layer="relu5_3")


def test_missing_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InputError, match="VGG-16 weights not found at .*vgg16-397923af.pth; put torchvision's"):
        get_loss("mse+vgg_feature")
    with pytest.raises(InputError, match=f"VGG-16 weights not found at {tmp_path / 'nope.pth'}"):
        get_loss("vgg_style", vgg_weights=str(tmp_path / "nope.pth"))


def test_with_vgg_weights_routes_the_path():
    assert loss_spec.with_vgg_weights("mse", {}, "w.pth") == {}
    assert loss_spec.with_vgg_weights("vgg", {}, "w.pth") == {"weights": "w.pth"}
    assert loss_spec.with_vgg_weights("mse+vgg_feature", {"feature_layer": "relu1_2"}, "w.pth") == {
        "feature_layer": "relu1_2", "vgg_weights": "w.pth"}
    assert loss_spec.with_vgg_weights("mse+vgg_feature", {}, "") == {}


def test_train_config_accepts_sums_and_names_bad_terms():
    from autoencoders.train import TrainConfig, validate

    assert validate(TrainConfig(loss="ms_ssim+0.1*vgg_feature", vgg_weights="w.pth")).vgg_weights == "w.pth"
    with pytest.raises(InputError, match="--loss 'mse\\+vgg' : |--loss 'mse\\+vgg': unknown term 'vgg'"):
        validate(TrainConfig(loss="mse+vgg"))


def test_autoencoder_trains_on_a_sum_with_vgg_weights_from_the_config(tmp_path, weights_file):
    import json

    import numpy as np
    from PIL import Image

    from autoencoders.train import TrainConfig, train

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / f"i{i}.png")
    cfg = TrainConfig(data=f"folder:{folder}", image_size=32, arch="fc", loss="mse+0.1*vgg_feature+0.5*tv", epochs=1,
                      batch_size=4, width=0.02, code_size=4, out=str(tmp_path / "exp"), progress=False, device="cpu",
                      vgg_weights=str(weights_file))
    run = train(cfg)
    record = json.loads((run / "config.json").read_text())
    assert record["status"] == "finished" and record["config"]["vgg_weights"] == str(weights_file)
    with pytest.raises(InputError, match="VGG-16 weights not found at .*absent.pth"):
        train(TrainConfig(**{**cfg.__dict__, "vgg_weights": str(tmp_path / "absent.pth"), "seed": 1}))

    # A sum's run is named with the loss's safe form (run names are safe names); config.json keeps the expression.
    assert run.name == "fc-mse_plus_0p1xvgg_feature_plus_0p5xtv-s0" and record["config"]["loss"] == cfg.loss
    assert record["guard"]["metric"] == "loss"  # a sum is judged on its own value against the flat patch
    # It exports like any other run; the manifest's loss is the safe form, so run, arch and loss agree.
    from autoencoders.export import reconstruct
    from percept.contracts.manifest import read_manifest

    df = read_manifest(reconstruct(tmp_path / "exp", n=2, device="cpu"), check_files=True)
    runs = df[df["run"] != "flat"]
    assert set(runs["loss"]) == {"mse_plus_0p1xvgg_feature_plus_0p5xtv"} and set(runs["run"]) == {run.name}
