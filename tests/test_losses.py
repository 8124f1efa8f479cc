"""Tests for autoencoders.losses: SSIM/MS-SSIM against skimage, piq and pytorch_msssim; gradients; registry."""
from __future__ import annotations

import numpy as np
import piq
import pytest
import pytorch_msssim
import torch
from skimage import data as skimage_data
from skimage import filters, metrics

from autoencoders.losses import (
    CS_FLOOR,
    IMAGE_LOSS_NAMES,
    LOSS_NAMES,
    MS_SSIM_WEIGHTS,
    RANGE_TOLERANCE,
    _downsample,
    _floor_straight_through,
    _resolve_scales,
    _scale_sizes,
    default_scales,
    get_loss,
    image_metrics,
    ms_ssim,
    psnr,
    ssim,
)
import autoencoders.losses as losses_module
from percept.contracts import InputError

IMAGES = ("astronaut", "chelsea", "coffee")
DISTORTIONS = ("noise", "blur")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Run this module single-threaded, restoring the previous setting afterwards."""
    # Its tensors are small, and on a shared 2-core machine threaded kernels mostly wait for each
    # other: with 2 threads this module took 4x longer under load.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _natural(name: str, size: int) -> torch.Tensor:
    """A size x size centre crop of a bundled scikit-image photo as a float64 (1,3,size,size) tensor in [0,1]."""
    img = getattr(skimage_data, name)().astype(np.float64) / 255.0
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    crop = img[top : top + size, left : left + size]
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]


def _distort(x: torch.Tensor, kind: str, seed: int = 0) -> torch.Tensor:
    """Gaussian noise (sd 0.08, clipped) or Gaussian blur (sigma 1.2) of a (1,3,H,W) float64 batch."""
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        return (x + 0.08 * torch.randn(x.shape, generator=gen, dtype=x.dtype)).clamp(0, 1)
    if kind == "blur":
        img = x[0].permute(1, 2, 0).numpy()
        out = filters.gaussian(img, sigma=1.2, channel_axis=-1, preserve_range=True)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None]
    raise ValueError(kind)


@pytest.fixture(scope="module")
def pairs96() -> tuple[torch.Tensor, torch.Tensor]:
    """Six 96x96 natural image pairs (3 photos x noise/blur), float64 (6,3,96,96)."""
    xs, ys = [], []
    for name in IMAGES:
        x = _natural(name, 96)
        for kind in DISTORTIONS:
            xs.append(x)
            ys.append(_distort(x, kind))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="module")
def pairs192() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 192x192 natural image pairs (noise, blur), enough for the standard five MS-SSIM scales."""
    xs, ys = [], []
    for name, kind in zip(("astronaut", "coffee"), DISTORTIONS):
        x = _natural(name, 192)
        xs.append(x)
        ys.append(_distort(x, kind, seed=1))
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------- agreement with references


def test_ssim_matches_skimage_valid_crop(pairs96):
    x, y = pairs96
    ours = ssim(x, y, 1.0, reduction="none")
    for i in range(x.shape[0]):
        # skimage filters with reflection, then averages after cropping (win_size-1)//2 = 5 px per
        # border: exactly the 'valid' map.
        ref = metrics.structural_similarity(
            x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0, channel_axis=-1,
        )
        assert abs(float(ours[i]) - ref) < 1e-5
    assert ours.dtype == torch.float64
    assert float(ours.min()) < 0.95  # the distortions are real, not near-identity


def test_ssim_matches_piq_and_pytorch_msssim(pairs96):
    x, y = pairs96
    ours = ssim(x, y, 1.0, reduction="none")
    ref_piq = piq.ssim(x, y, kernel_size=11, kernel_sigma=1.5, data_range=1.0, reduction="none", k1=0.01, k2=0.03)
    ref_pm = pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)
    torch.testing.assert_close(ours, ref_piq, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours, ref_pm.to(ours.dtype), rtol=0, atol=1e-5)


def test_ms_ssim_matches_piq_at_96_with_three_scales(pairs96):
    x, y = pairs96
    ours = ms_ssim(x, y, 1.0, reduction="none")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:3], dtype=torch.float64)  # piq renormalises them
    ref = piq.multi_scale_ssim(x, y, kernel_size=11, kernel_sigma=1.5, data_range=1.0, reduction="none",
                               scale_weights=weights, k1=0.01, k2=0.03)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_ms_ssim_explicit_four_scales_matches_piq(pairs96):
    x, y = (t[:2] for t in pairs96)
    weights = (0.1, 0.2, 0.3, 0.4)
    ours = ms_ssim(x, y, 1.0, scales=4, weights=weights, reduction="none")
    ref = piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none", scale_weights=torch.tensor(weights,
                                                                                                 dtype=torch.float64))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_ms_ssim_five_scales_matches_piq_and_pytorch_msssim(pairs192):
    x, y = pairs192
    # Five scales are explicit here: 192 px is below the default's 321 px (coarsest map 2x2).
    ours = ms_ssim(x, y, 1.0, scales=5, reduction="none")
    ref_piq = piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none")
    ref_pm = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    torch.testing.assert_close(ours, ref_piq, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours, ref_pm.to(ours.dtype), rtol=0, atol=1e-5)


def test_float32_matches_float64(pairs96):
    x, y = pairs96
    for fn in (ssim, ms_ssim):
        v32 = fn(x.float(), y.float(), 1.0, reduction="none")
        assert v32.dtype == torch.float32
        torch.testing.assert_close(v32.double(), fn(x, y, 1.0, reduction="none"), rtol=0, atol=1e-5)


def test_psnr_matches_skimage(pairs96):
    x, y = pairs96
    ours = psnr(x, y, 1.0, reduction="none")
    for i in range(x.shape[0]):
        ref = metrics.peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=1.0)
        assert abs(float(ours[i]) - ref) < 1e-9


def test_data_range_is_used_not_inferred(pairs96):
    x, y = pairs96
    scaled = ssim(255 * x, 255 * y, 255.0, reduction="none")
    torch.testing.assert_close(scaled, ssim(x, y, 1.0, reduction="none"), rtol=0, atol=1e-9)
    # The same 0-255 images with the wrong range are refused, neither silently fixed nor mis-scored.
    with pytest.raises(InputError, match=r"x has values in \[.*\], outside \[0, 1\]"):
        ssim(255 * x, 255 * y, 1.0, reduction="none")


# --------------------------------------------------------------------------- definition details


def test_identical_images_score_one(pairs96):
    x, _ = pairs96
    torch.testing.assert_close(ms_ssim(x, x, reduction="none"), torch.ones(6, dtype=torch.float64), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(ssim(x, x, reduction="none"), torch.ones(6, dtype=torch.float64), rtol=0,
                               atol=1e-12)
    assert float(ms_ssim(x.float(), x.float())) == pytest.approx(1.0, abs=1e-6)


def test_channels_are_averaged(pairs96):
    x, y = pairs96
    per_channel = torch.stack([ssim(x[:, c : c + 1], y[:, c : c + 1], reduction="none") for c in range(3)])
    torch.testing.assert_close(ssim(x, y, reduction="none"), per_channel.mean(0), rtol=0, atol=1e-12)


def test_reductions(pairs96):
    x, y = pairs96
    for fn in (ssim, ms_ssim, psnr):
        per_image = fn(x, y, 1.0, reduction="none")
        assert per_image.shape == (6,)
        torch.testing.assert_close(fn(x, y, 1.0, reduction="mean"), per_image.mean())
        torch.testing.assert_close(fn(x, y, 1.0, reduction="sum"), per_image.sum())


def test_default_scales_and_weights():
    assert default_scales(96, 96) == 3
    assert default_scales(176, 176) == 4
    assert default_scales(512, 300) == 4  # the shorter side decides
    assert default_scales(512, 330) == 5
    assert default_scales(42, 42) == 2  # second 'valid' map 11 px
    assert default_scales(40, 40) == 1  # it would be 10 px
    assert default_scales(11, 11) == 1
    scales, weights = _resolve_scales(96, 96, 11, None, None)
    assert scales == 3
    assert weights == pytest.approx((0.0711, 0.4530, 0.4760), abs=1e-4)
    assert sum(weights) == pytest.approx(1.0)
    assert _resolve_scales(400, 400, 11, None, None) == (5, MS_SSIM_WEIGHTS)
    assert _resolve_scales(200, 200, 11, None, None)[1] == pytest.approx((0.0517, 0.3295, 0.3462, 0.2726), abs=1e-4)


@pytest.mark.parametrize("size, expected", [(96, 3), (160, 3), (161, 4), (176, 4), (192, 4), (256, 4), (320, 4),
                                            (321, 5), (512, 5)])
def test_default_scales_follow_one_rule(size, expected):
    # The rule: the most scales, up to 5, whose coarsest 'valid' map is at least one window (11 px) wide.
    assert default_scales(size, size) == expected
    map_side = min(_scale_sizes(size, size, expected)[-1]) - 10
    assert map_side >= 11
    if expected < len(MS_SSIM_WEIGHTS):
        assert min(_scale_sizes(size, size, expected + 1)[-1]) - 10 < 11  # one more scale breaks it
    # Every size in the list still fits the peers' limit (1x1 map) for more scales when asked explicitly.
    assert _resolve_scales(size, size, 11, min(expected + 1, 5), None)[0] == min(expected + 1, 5)


def test_ms_ssim_default_four_scales_matches_piq(pairs192):
    x, y = pairs192
    ours = ms_ssim(x, y, 1.0, reduction="none")  # 192 px: 4 scales by default, coarsest map 14x14
    weights = torch.tensor(MS_SSIM_WEIGHTS[:4], dtype=torch.float64)  # piq renormalises them
    ref = piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none", scale_weights=weights)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(image_metrics(x, y)["ms_ssim"], ours, rtol=0, atol=1e-12)


def test_default_ms_ssim_at_96_equals_explicit_three_scales(pairs96):
    x, y = pairs96
    explicit = ms_ssim(x, y, scales=3, weights=(0.0448 / 0.6305, 0.2856 / 0.6305, 0.3001 / 0.6305),
                       reduction="none")
    torch.testing.assert_close(ms_ssim(x, y, reduction="none"), explicit, rtol=0, atol=1e-12)


def test_one_scale_ms_ssim_is_ssim(pairs96):
    x, y = pairs96
    torch.testing.assert_close(ms_ssim(x, y, scales=1, reduction="none"), ssim(x, y, reduction="none"),
                               rtol=0, atol=1e-12)


def test_odd_sizes_pool_with_replicated_edge():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 45, 39, generator=gen, dtype=torch.float64)
    y = (x + 0.1 * torch.rand(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    # Appending a copy of the last row/column changes nothing at the pooled scale.
    x_even = torch.cat([x, x[..., -1:, :]], dim=-2)
    x_even = torch.cat([x_even, x_even[..., -1:]], dim=-1)
    torch.testing.assert_close(_downsample(x), _downsample(x_even))
    assert _downsample(x).shape[-2:] == (23, 20)
    # An odd height: the last pooled row averages the last input row with a copy of itself.
    torch.testing.assert_close(_downsample(x)[..., -1, :19], (x[..., -1, 0:38:2] + x[..., -1, 1:38:2]) / 2)
    value = ms_ssim(x, y, scales=2, win_size=7, reduction="none")
    assert torch.isfinite(value).all() and (value < 1).all()


# --------------------------------------------------------------------------- gradients


def _gradcheck_pair(seed: int, shape: tuple[int, ...], noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A correlated float64 pair (both requiring grad): every term stays above the floor, where the function is smooth."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    y = (x + noise * torch.rand(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return x.requires_grad_(True), y.requires_grad_(True)


def test_gradcheck_ssim():
    x, y = _gradcheck_pair(0, (1, 1, 24, 24), 0.5)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, win_size=7), (x, y), fast_mode=True)
    x, y = _gradcheck_pair(4, (1, 1, 12, 11), 0.5)  # the full Jacobian, on a small image
    assert torch.autograd.gradcheck(lambda a: ssim(a, y.detach(), win_size=5), (x,))
    x, y = _gradcheck_pair(1, (2, 2, 20, 17), 0.5)  # per-image values, several channels, non-square
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, win_size=7, reduction="none"), (x, y), fast_mode=True)


def test_gradcheck_ms_ssim():
    x, y = _gradcheck_pair(2, (1, 1, 24, 24), 0.2)
    assert torch.autograd.gradcheck(lambda a, b: ms_ssim(a, b, scales=2, win_size=7), (x, y), fast_mode=True)
    x, y = _gradcheck_pair(3, (2, 2, 23, 30), 0.2)  # odd sizes go through the replicated-edge pooling
    assert torch.autograd.gradcheck(lambda a, b: ms_ssim(a, b, scales=2, win_size=5, reduction="none"), (x, y),
                                    fast_mode=True)
    # A target without grad (as in training) takes a shorter backward path.
    assert torch.autograd.gradcheck(lambda a: ms_ssim(a, y.detach(), scales=2, win_size=5, reduction="none"), (x,),
                                    fast_mode=True)


def test_gradients_match_piq_at_96(pairs96):
    # At full size the banded products run in several row and column blocks, unlike the gradchecks.
    x, y = (t[:2] for t in pairs96)
    weights = torch.tensor(MS_SSIM_WEIGHTS[:3], dtype=torch.float64)
    cases = [
        (lambda a, b: ssim(a, b, reduction="sum"), lambda a, b: piq.ssim(a, b, data_range=1.0, reduction="sum")),
        (lambda a, b: ms_ssim(a, b, reduction="sum"),
         lambda a, b: piq.multi_scale_ssim(a, b, data_range=1.0, reduction="sum", scale_weights=weights)),
    ]
    for ours, theirs in cases:
        a, b = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        ours(a, b).backward()
        a_ref, b_ref = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        theirs(a_ref, b_ref).backward()
        scale = float(a_ref.grad.abs().max())
        torch.testing.assert_close(a.grad, a_ref.grad, rtol=0, atol=1e-9 * scale)
        torch.testing.assert_close(b.grad, b_ref.grad, rtol=0, atol=1e-9 * scale)


def _grad(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed loss with respect to x."""
    x = x.clone().requires_grad_(True)
    fn(x, y).sum().backward()
    return x.grad


@pytest.mark.parametrize("loss_name", ["ssim", "ms_ssim", "mix"])
def test_gradients_finite_on_degenerate_pairs(pairs96, loss_name):
    x = pairs96[0][:2].float()
    constant = torch.full_like(x, 0.5)
    loss = get_loss(loss_name)
    for a, b in ((x, x), (constant, constant), (constant, x), (x, 1 - x)):
        g = _grad(loss, a, b)
        assert torch.isfinite(g).all()
    assert _grad(loss, x, 1 - x).abs().sum() > 0


def test_anti_correlated_sample_keeps_its_gradient(pairs96):
    x = pairs96[0][:2].clone()
    y = torch.stack([x[0], 1 - x[1]])  # sample 0 similar to its target, sample 1 anti-correlated
    y[0] = _distort(x[:1], "noise")[0]
    per_image = ms_ssim(x, y, reduction="none")
    # Every term of the inverted image is negative, so each is floored: CS_FLOOR ** (sum of weights = 1).
    assert float(per_image[1]) == pytest.approx(CS_FLOOR, rel=1e-9)
    assert torch.isfinite(per_image).all()
    g = _grad(lambda a, b: ms_ssim(a, b, reduction="sum"), x, y)
    assert torch.isfinite(g).all()
    assert g[1].abs().sum() > 0  # a ReLU clip would give exactly zero here
    # Its gradient points uphill: a small step along it (kept in [0, 1]) raises the (unfloored) similarity.
    x1 = (x[1:] + 1e-3 * g[1:] / g[1:].abs().max()).clamp(0, 1)
    assert ssim(x1, y[1:]) > ssim(x[1:], y[1:])


def test_floor_changes_only_values_below_it_and_passes_gradient_through():
    t = torch.tensor([-0.5, 0.0, 5e-4, CS_FLOOR, 2e-3, 0.9], dtype=torch.float64, requires_grad=True)
    floored = _floor_straight_through(t, CS_FLOOR)
    # Terms below the floor become it (up to the rounding of t + (floor - t)); the rest pass bit for bit.
    torch.testing.assert_close(floored[:3].detach(), torch.full((3,), CS_FLOOR, dtype=torch.float64), rtol=1e-12,
                               atol=0)
    assert torch.equal(floored[3:].detach(), t[3:].detach())
    floored.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))  # identity gradient, floored or not


def _terms_seen(monkeypatch) -> list[torch.Tensor]:
    """Record the stacked per-scale terms (S, N, C) that reach the floor in each ms_ssim call."""
    seen: list[torch.Tensor] = []
    floor_fn = losses_module._floor_straight_through

    def spy(t: torch.Tensor, floor: float) -> torch.Tensor:
        seen.append(t.detach().clone())
        return floor_fn(t, floor)

    monkeypatch.setattr(losses_module, "_floor_straight_through", spy)
    return seen


@pytest.mark.parametrize("pairs, scales", [("pairs96", None), ("pairs192", None), ("pairs192", 5)])
def test_floor_leaves_natural_pairs_unchanged(request, monkeypatch, pairs, scales):
    x, y = request.getfixturevalue(pairs)
    a, b = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    seen = _terms_seen(monkeypatch)
    floored = ms_ssim(a, b, scales=scales, reduction="none")
    floored.sum().backward()
    assert float(seen[0].min()) > 0.1  # every term far above the floor: the test is about real values
    grads = (a.grad.clone(), b.grad.clone())
    a.grad = b.grad = None
    monkeypatch.setattr(losses_module, "CS_FLOOR", float("-inf"))  # no floor at all
    plain = ms_ssim(a, b, scales=scales, reduction="none")
    plain.sum().backward()
    assert torch.equal(floored, plain)
    assert torch.equal(grads[0], a.grad) and torch.equal(grads[1], b.grad)


def test_floor_also_raises_small_positive_luminance_terms():
    # Black against white: every contrast-structure term is exactly 1 (both flat), the coarsest
    # term's luminance is C1 / (1 + C1) ~ 1e-4 > 0, and it is floored too, not only negative cs.
    black, white = torch.zeros(1, 3, 96, 96, dtype=torch.float64), torch.ones(1, 3, 96, 96, dtype=torch.float64)
    lum = 0.01**2 / (1 + 0.01**2)
    assert float(ssim(black, white)) == pytest.approx(lum, rel=1e-9)
    assert float(ms_ssim(black, white, scales=1)) == pytest.approx(CS_FLOOR, rel=1e-12)  # not SSIM here
    w_last = MS_SSIM_WEIGHTS[2] / sum(MS_SSIM_WEIGHTS[:3])
    assert float(ms_ssim(black, white)) == pytest.approx(CS_FLOOR**w_last, rel=1e-9)  # 0.0374, not 0.0125
    # The floored term still passes gradient: brightening the black image raises the score.
    g = _grad(lambda a, b: ms_ssim(a, b, reduction="sum"), black, white)
    assert torch.isfinite(g).all() and float(g.min()) > 0


# --------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("loss_name", IMAGE_LOSS_NAMES)
def test_losses_run_in_float32_under_bf16_autocast(pairs96, loss_name):
    x, y = (t.float() for t in pairs96)
    loss = get_loss(loss_name)
    expected = loss(x, y)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = loss(x, y)
        got_bf16_inputs = loss(x.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32 and got_bf16_inputs.dtype == torch.float32
    assert got.shape == ()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_bf16_inputs, loss(x.bfloat16().float(), y.bfloat16().float()), rtol=0,
                               atol=1e-6)
    # backward() called inside the autocast region still computes the gradient in float32.
    recon = x.clone().requires_grad_(True)
    loss(recon, y).backward()
    expected_grad = recon.grad
    recon.grad = None
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss(recon, y).backward()
    assert recon.grad.dtype == torch.float32
    torch.testing.assert_close(recon.grad, expected_grad, rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------- registry and metrics


def test_registry_names_and_values(pairs96):
    assert LOSS_NAMES == IMAGE_LOSS_NAMES + ("vgg",)
    x, y = (t.float() for t in pairs96)
    values = {name: get_loss(name)(x, y) for name in IMAGE_LOSS_NAMES}
    torch.testing.assert_close(values["mse"], ((x - y) ** 2).mean())
    torch.testing.assert_close(values["mae"], (x - y).abs().mean())
    torch.testing.assert_close(values["ssim"], 1 - ssim(x, y))
    torch.testing.assert_close(values["ms_ssim"], 1 - ms_ssim(x, y))
    torch.testing.assert_close(values["mix"], 0.84 * (1 - ms_ssim(x, y)) + 0.16 * (x - y).abs().mean())
    torch.testing.assert_close(get_loss("mix", alpha=0.5)(x, y), 0.5 * values["ms_ssim"] + 0.5 * values["mae"])
    for name in IMAGE_LOSS_NAMES:
        assert float(get_loss(name)(x, x)) == pytest.approx(0.0, abs=1e-6)
        assert values[name] > 0


def test_registry_options_reach_the_functions(pairs96):
    x, y = pairs96
    torch.testing.assert_close(get_loss("ssim", win_size=7, sigma=1.0)(x, y), 1 - ssim(x, y, win_size=7, sigma=1.0))
    torch.testing.assert_close(get_loss("ms_ssim", scales=2)(x, y), 1 - ms_ssim(x, y, scales=2))
    assert "scales=2" in repr(get_loss("ms_ssim", scales=2))


def test_registry_errors():
    with pytest.raises(InputError, match="unknown loss 'ssmi'.*mse, mae, ssim, ms_ssim, mix"):
        get_loss("ssmi")
    with pytest.raises(InputError, match="no option.*alpha.*valid options: data_range"):
        get_loss("ssim", alpha=0.5)
    with pytest.raises(InputError, match="valid options: none"):
        get_loss("mse", data_range=1.0)
    with pytest.raises(InputError, match="alpha must be a number in \\[0, 1\\], got 1.5"):
        get_loss("mix", alpha=1.5)
    with pytest.raises(InputError, match="win_size must be an odd"):
        get_loss("ms_ssim", win_size=10)
    with pytest.raises(InputError, match="3 MS-SSIM weights for 2 scales"):
        get_loss("mix", scales=2, weights=(0.2, 0.3, 0.5))
    with pytest.raises(InputError, match="6 scales need explicit weights"):
        get_loss("ms_ssim", scales=6)
    with pytest.raises(InputError, match="data_range must be a positive"):
        get_loss("ssim", data_range=0)


def test_input_errors_quote_shapes():
    x = torch.rand(2, 3, 96, 96)
    with pytest.raises(InputError, match=r"same shape, got \(2, 3, 96, 96\) and \(2, 3, 96, 95\)"):
        ssim(x, x[..., :95])
    with pytest.raises(InputError, match=r"4-D \(N,C,H,W\) tensor, got shape \(3, 96, 96\)"):
        ms_ssim(x[0], x[0])
    with pytest.raises(InputError, match=r"8x8 px .* smaller than the 11x11 window"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="y contains NaN"):
        get_loss("ssim")(x, bad)
    with pytest.raises(InputError, match="x contains NaN"):
        get_loss("mse")(bad, x)
    with pytest.raises(InputError, match="float tensor"):
        ssim((x * 255).to(torch.uint8), (x * 255).to(torch.uint8), 255.0)
    with pytest.raises(InputError, match="reduction must be one of mean, none, sum"):
        ssim(x, x, reduction="avg")
    with pytest.raises(InputError, match="same shape"):
        get_loss("mae")(x, x[:1])  # would broadcast silently in F.l1_loss


_RANGE_CHECKED = {
    "ssim": lambda a, b: ssim(a, b, 1.0),
    "ms_ssim": lambda a, b: ms_ssim(a, b, 1.0),
    "psnr": lambda a, b: psnr(a, b, 1.0),
    "image_metrics": lambda a, b: image_metrics(a, b, 1.0),
    "loss ssim": lambda a, b: get_loss("ssim")(a, b),
    "loss ms_ssim": lambda a, b: get_loss("ms_ssim")(a, b),
    "loss mix": lambda a, b: get_loss("mix")(a, b),
}


@pytest.mark.parametrize("name", list(_RANGE_CHECKED))
def test_out_of_range_and_non_finite_inputs_are_refused(name):
    fn = _RANGE_CHECKED[name]
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    fn(x, x)  # in range
    edge = x.clone()
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = 1 + 0.5 * RANGE_TOLERANCE, -0.5 * RANGE_TOLERANCE
    fn(edge, x)  # float rounding just outside [0, 1] is accepted
    over = x.clone()
    over[1, 2, 3, 4] = 1 + 2 * RANGE_TOLERANCE
    with pytest.raises(InputError, match=r"^x has values in \[.*, 1\], outside \[0, 1\] = \[0, data_range\] "
                                         r"\(shape \(2, 3, 32, 32\)\); clip the images"):
        fn(over, x)
    with pytest.raises(InputError, match=r"^y has values in \[0.*, 255\], outside \[0, 1\]"):
        fn(x, x * 255)  # a 0-255 image scored with data_range 1
    with pytest.raises(InputError, match=r"^x has values in \[-1, 1\], outside"):
        fn(torch.linspace(-1, 1, 2 * 3 * 32 * 32).view(2, 3, 32, 32), x)  # a [-1, 1] image
    for bad, counts in ((float("nan"), "1 NaN, 0 \\+inf, 0 -inf"), (float("inf"), "0 NaN, 1 \\+inf, 0 -inf"),
                        (float("-inf"), "0 NaN, 0 \\+inf, 1 -inf")):
        t = x.clone()
        t[1, 0, 5, 5] = bad
        with pytest.raises(InputError, match=rf"^y contains NaN or infinite values \(shape \(2, 3, 32, 32\): "
                                             rf"{counts} of 6144; finite values in \[[-0-9.e]+, 1\]\)$"):
            fn(x, t)


def test_pixel_losses_check_finiteness_but_not_range():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(get_loss("mse")(x * 255, x * 255), torch.tensor(0.0))  # no data_range to check
    with pytest.raises(InputError, match="x contains NaN or infinite values"):
        get_loss("mae")(x / 0 - x / 0, x)


def test_scale_configuration_errors_name_sizes():
    x = torch.rand(1, 3, 96, 96)
    with pytest.raises(InputError, match=r"5 MS-SSIM scales do not fit 96x96 px .* coarsest scale would be 6x6 px; "
                                         r"at most 4 scale\(s\) fit"):
        ms_ssim(x, x, scales=5)
    with pytest.raises(InputError, match="got 2 MS-SSIM weights for 3 scales"):
        ms_ssim(x, x, scales=3, weights=(0.5, 0.5))
    with pytest.raises(InputError, match="positive finite"):
        ms_ssim(x, x, weights=(0.5, -0.5))
    with pytest.raises(InputError, match=r"6 MS-SSIM scales do not fit"):
        ms_ssim(x, x, weights=(1.0,) * 6)
    # Four scales fit 96 px when asked for explicitly (coarsest 12 px >= 11).
    assert float(ms_ssim(x, x, scales=4)) == pytest.approx(1.0, abs=1e-6)


def test_image_metrics(pairs96):
    x, y = (t.float() for t in pairs96)
    x.requires_grad_(True)
    out = image_metrics(x, y, 1.0)
    assert list(out) == ["mse", "mae", "psnr", "ssim", "ms_ssim"]
    for name, values in out.items():
        assert values.shape == (6,), name
        assert values.dtype == torch.float32, name
        assert not values.requires_grad, name
    torch.testing.assert_close(out["ssim"], ssim(x, y, reduction="none").detach())
    torch.testing.assert_close(out["ms_ssim"], ms_ssim(x, y, reduction="none").detach())
    torch.testing.assert_close(out["psnr"], psnr(x, y, reduction="none").detach())
    torch.testing.assert_close(out["mae"], (x - y).abs().mean(dim=(1, 2, 3)).detach())
    assert torch.isinf(image_metrics(y, y)["psnr"]).all()  # a perfect reconstruction


def test_image_metrics_refuses_wrong_range():
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(InputError, match=r"x has values in \[.*\], outside \[0, 1\]"):
        image_metrics(x * 255, x)
    assert image_metrics(x * 255, x * 255, 255.0)["ssim"].allclose(torch.ones(2))


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_pixel_losses_are_bit_for_bit_the_plain_formula_and_its_gradient(name):
    """The fused F.mse_loss / F.l1_loss must not change a single bit of training (the demo's numbers depend on it)."""
    gen = torch.Generator().manual_seed(3)
    for shape in [(32, 3, 96, 96), (7, 3, 33, 45)]:
        x = torch.rand(shape, generator=gen)
        a = torch.rand(shape, generator=gen, requires_grad=True)
        b = a.detach().clone().requires_grad_(True)
        ours = get_loss(name)(a, x)
        plain = (b - x).square().mean() if name == "mse" else (b - x).abs().mean()
        ours.backward()
        plain.backward()
        assert torch.equal(ours, plain) and torch.equal(a.grad, b.grad)
