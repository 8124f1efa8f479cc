"""autoencoders.models: shapes, output range, codes, the VAE's terms and errors."""
from __future__ import annotations

import pytest
import torch

from autoencoders.models import ARCHS, VAEOutput, build_model, count_parameters
from percept.contracts import InputError


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_range_and_codes(arch):
    torch.manual_seed(0)
    model = build_model(arch, image_size=32, code_size=7, width=0.1).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z = model.encode(x)
        recon = model.reconstruct(x)
        out = model(x)
        decoded = model.decode(z)
    assert z.shape == (3, 7)
    assert recon.shape == x.shape and recon.dtype == torch.float32
    assert 0.0 <= float(recon.min()) and float(recon.max()) <= 1.0
    assert torch.allclose(decoded, recon)
    assert torch.equal(out.recon if isinstance(out, VAEOutput) else out, recon)  # eval forward is deterministic


def test_full_size_conv_matches_the_documented_layers():
    model = build_model("conv")
    convs = [m for m in model.body.down if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 256, 512] and all(c.kernel_size == (5, 5) for c in convs)
    assert model.to_code.in_features == 512 * 12 * 12 and model.to_code.out_features == 128
    assert build_model("fc", width=0.25).encoder[1].out_features == 256  # 1024 at full width
    assert count_parameters(build_model("conv", width=0.25)) < count_parameters(model) / 4


def test_vae_samples_in_training_and_returns_its_kl():
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, code_size=5, width=0.1)
    x = torch.rand(4, 3, 32, 32)
    model.train()
    a, b = model(x), model(x)
    assert isinstance(a, VAEOutput) and not torch.equal(a.recon, b.recon)  # z = mu + sigma * eps
    assert torch.equal(a.mu, model.encode(x))  # encode() is the posterior mean
    kl = a.kl()
    assert kl.ndim == 0 and float(kl.detach()) >= 0
    zero = VAEOutput(a.recon, torch.zeros(2, 5), torch.zeros(2, 5)).kl()
    assert float(zero) == 0.0  # q = N(0, I) equals the prior
    kl.backward()
    assert model.to_logvar.weight.grad is not None


def test_errors_name_the_options_and_sizes():
    with pytest.raises(InputError, match="unknown architecture 'resnet'; choose from fc, conv, vae"):
        build_model("resnet")
    with pytest.raises(InputError, match="divisible by 8"):
        build_model("conv", image_size=100)
    with pytest.raises(InputError, match="width must be > 0"):
        build_model("fc", width=0)
    model = build_model("conv", image_size=32, code_size=4, width=0.1)
    with pytest.raises(InputError, match="built for 32×32 images but got 96×96"):
        model.encode(torch.rand(1, 3, 96, 96))
    with pytest.raises(InputError, match=r"expects images \(N, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_hidden_layer_is_leaky_relu_and_old_specs_rebuild_relu(arch):
    model = build_model(arch, image_size=32, code_size=4, width=0.1)
    kinds = [type(m) for m in model.modules()]
    assert torch.nn.ReLU not in kinds  # plain ReLU units died under (MS-)SSIM (models.py docstring)
    leaky = [m for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(leaky) >= 2 and all(m.negative_slope == 0.2 for m in leaky)
    assert model.describe()["activation"] == "leaky_relu"
    old = build_model(arch, image_size=32, code_size=4, width=0.1, activation="relu")
    assert torch.nn.LeakyReLU not in [type(m) for m in old.modules()]
    assert old.state_dict().keys() == model.state_dict().keys()  # same weights, so the spec must say which
    with pytest.raises(InputError, match="unknown activation 'tanh'"):
        build_model(arch, image_size=32, activation="tanh")
