"""Johnson et al. perceptual loss: weights load from the torch cache layout, equations hold."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import vgg16

from autoencoders import perceptual
from percept.contracts import InputError


def test_default_path_is_torch_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert perceptual.default_weights_path() == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(InputError, match="VGG-16 weights not found at .*vgg16-397923af.pth"):
        perceptual.Vgg16Features()


def test_features_match_torchvision_vgg(weights_file):
    feats = perceptual.Vgg16Features(weights_file)
    with torch.device("meta"):
        ref = vgg16(weights=None)
    ref.load_state_dict(torch.load(weights_file, weights_only=True), assign=True)
    x = torch.rand(2, 3, 32, 32)
    norm = (x - torch.tensor(perceptual.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(perceptual.IMAGENET_STD).view(1, 3, 1, 1)
    out = feats(x)
    assert torch.allclose(out.relu2_2, ref.features[:9](norm), atol=1e-5)
    assert torch.allclose(out.relu4_3, ref.features[:23](norm), atol=1e-5)
    assert out.relu3_3.shape == (2, 256, 8, 8)
    assert not any(p.requires_grad for p in feats.parameters())
    feats.train()
    assert not feats.training


def test_foreign_weights_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "x.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="not torchvision VGG-16 weights"):
        perceptual.Vgg16Features(bad)
    (tmp_path / "y.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable VGG-16 state dict"):
        perceptual.Vgg16Features(tmp_path / "y.pth")


def test_gram_is_normalised_outer_product():
    f = torch.rand(2, 4, 3, 5)
    g = perceptual.gram(f)
    flat = f.reshape(2, 4, 15)
    assert torch.allclose(g[1], flat[1] @ flat[1].T / (4 * 3 * 5))


def test_loss_equations_and_gradient(weights_file):
    loss = perceptual.PerceptualLoss(weights=weights_file, style_weight=2.0, tv_weight=0.5)
    x, y = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    fx, fy = loss.vgg(x), loss.vgg(y)
    c, h, w = fx.relu2_2.shape[1:]
    feat = ((fx.relu2_2 - fy.relu2_2) ** 2).sum(dim=(1, 2, 3)).div(c * h * w).mean()
    style = sum(((perceptual.gram(a) - perceptual.gram(b)) ** 2).sum(dim=(1, 2)).mean() for a, b in zip(fx, fy))
    value = loss(x, y)
    assert torch.allclose(value, feat + 2.0 * style + 0.5 * perceptual.total_variation(x), rtol=1e-5)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert loss(y, y).item() == pytest.approx(0.5 * perceptual.total_variation(y).item(), abs=1e-6)


def test_bad_options(weights_file):
    with pytest.raises(InputError, match="unknown VGG layer 'relu5_3'"):
        perceptual.PerceptualLoss(weights=weights_file, feature_layer="relu5_3")
    with pytest.raises(InputError, match="style_weight must be a non-negative"):
        perceptual.PerceptualLoss(weights=weights_file, style_weight=-1)


def test_registry_builds_vgg_loss(weights_file):
    from autoencoders.losses import get_loss

    loss = get_loss("vgg", weights=str(weights_file), feature_layer="relu1_2")
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0.0 and loss(x, 1 - x).item() > 0
    with pytest.raises(InputError, match="loss 'vgg' has no option\\(s\\) alpha"):
        get_loss("vgg", alpha=0.5)
