"""Image similarity: SSIM, MS-SSIM and PSNR as differentiable functions, plus the registry of training losses.

Images follow the project convention: float tensors of shape (N, C, H, W) with values in
[0, data_range]; `data_range` is always passed explicitly and never inferred from a batch.
SSIM follows Wang et al. (2004): an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
'valid' filtering (no padding), computed per channel and then averaged over channels. MS-SSIM
follows Wang et al. (2003). Every function computes in float32 (float64 stays float64) with
autocast switched off, because SSIM in bfloat16 is off by 0.07-0.35.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from percept.contracts import InputError

__all__ = [
    "LOSS_NAMES",
    "IMAGE_LOSS_NAMES",
    "MS_SSIM_WEIGHTS",
    "CS_FLOOR",
    "RANGE_TOLERANCE",
    "ssim",
    "ms_ssim",
    "psnr",
    "image_metrics",
    "default_scales",
    "get_loss",
    "trusted_inputs",
]

# Wang et al. (2003): the exponents of the five scales, finest first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Floor for MS-SSIM's per-scale terms (every cs_j and the coarsest scale's full SSIM) before the
# fractional power: terms below it are raised to it in value only; see `ms_ssim`.
CS_FLOOR: float = 1e-3
# "vgg" is Johnson et al.'s perceptual loss (autoencoders/perceptual.py): it needs VGG-16 weights.
LOSS_NAMES: tuple[str, ...] = ("mse", "mae", "ssim", "ms_ssim", "mix", "vgg")
# The losses computed from the two images alone (no pretrained network, nothing to load).
IMAGE_LOSS_NAMES: tuple[str, ...] = ("mse", "mae", "ssim", "ms_ssim", "mix")
REDUCTIONS: tuple[str, ...] = ("mean", "none", "sum")


# --------------------------------------------------------------------------- validation


def _check_window(win_size: int, sigma: float, k1: float, k2: float) -> None:
    """Raise InputError unless the SSIM window and constants are usable."""
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise InputError(f"win_size must be an odd positive integer, got {win_size!r}")
    for name, value in (("sigma", sigma), ("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InputError(f"{name} must be a positive finite number, got {value!r}")


def _check_data_range(data_range: float) -> None:
    """Raise InputError unless data_range is a positive finite number."""
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not math.isfinite(data_range) \
            or data_range <= 0:
        raise InputError(f"data_range must be a positive finite number (1.0 for images in [0,1]), got {data_range!r}")


def _check_reduction(reduction: str) -> None:
    """Raise InputError unless reduction is one of REDUCTIONS."""
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


# How far outside [0, data_range] a value may lie (as a fraction of data_range) before it is
# refused: float rounding of in-range arithmetic stays far below it, an image in the wrong range
# (0-255 scored with data_range 1, or [-1, 1]) is far above it.
RANGE_TOLERANCE: float = 1e-4


def _check_pair(x: Tensor, y: Tensor, min_size: int = 1, data_range: float | None = None) -> None:
    """Raise InputError unless x, y are finite float (N,C,H,W) of one shape, >= min_size px, in [0, data_range].

    The range is checked within RANGE_TOLERANCE * data_range, and only when data_range is given:
    mse and mae, which have none, check finiteness alone.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise InputError(f"{name} must be a torch.Tensor of shape (N,C,H,W), got {type(t).__name__}")
        if t.dim() != 4:
            raise InputError(f"{name} must be a 4-D (N,C,H,W) tensor, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise InputError(f"{name} must be a float tensor with values in [0, data_range], got dtype {t.dtype}")
    if x.shape != y.shape:
        raise InputError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.device != y.device:
        raise InputError(f"x and y must be on the same device, got {x.device} and {y.device}")
    n, c, h, w = x.shape
    if n == 0 or c == 0:
        raise InputError(f"empty batch: shape {tuple(x.shape)}")
    if min(h, w) < min_size:
        raise InputError(
            f"images of {h}x{w} px (shape {tuple(x.shape)}) are smaller than the {min_size}x{min_size} window"
        )
    if _TRUSTED.get():
        return  # values vouched for by the caller (`trusted_inputs`): no device sync
    # One pass per tensor (aminmax) and one device sync for both: NaN propagates into min and max,
    # +-inf shows up as max or min, so the same two numbers answer finiteness and range.
    with torch.no_grad():
        bounds = torch.stack([v.to(torch.float64) for t in (x, y) for v in torch.aminmax(t.detach())]).tolist()
    for name, t, (low, high) in (("x", x, bounds[0:2]), ("y", y, bounds[2:4])):
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError(_non_finite_message(name, t))
        if data_range is not None:
            slack = RANGE_TOLERANCE * data_range
            if low < -slack or high > data_range + slack:
                raise InputError(
                    f"{name} has values in [{low:.4g}, {high:.4g}], outside [0, {data_range:g}] = [0, data_range] "
                    f"(shape {tuple(t.shape)}); clip the images or pass the matching data_range"
                )


# Set by `trusted_inputs`: the value check (finite, in range) is skipped; shapes are still checked.
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("percept_losses_trusted", default=False)


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Within this block the losses skip their finite/range value check, which reads two numbers back from the device.

    For a training loop whose inputs are in range by construction (uint8 / 255, a sigmoid output)
    and which checks finiteness itself, batched, so that a step never waits for the device
    (autoencoders/train.py). A NaN input then gives a NaN loss instead of an InputError.
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _non_finite_message(name: str, t: Tensor) -> str:
    """One line counting the NaN and infinite values of t, with the range of its finite values (error path only)."""
    t = t.detach()
    finite = t[torch.isfinite(t)]
    counts = (f"{int(torch.isnan(t).sum())} NaN, {int(torch.isposinf(t).sum())} +inf, "
              f"{int(torch.isneginf(t).sum())} -inf of {t.numel()}")
    span = (f"finite values in [{float(finite.min()):.4g}, {float(finite.max()):.4g}]" if finite.numel()
            else "no finite values")
    return f"{name} contains NaN or infinite values (shape {tuple(t.shape)}: {counts}; {span})"


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck, reference comparisons); everything else computes in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _reduce(values: Tensor, reduction: str) -> Tensor:
    """Reduce per-image values (N,) by 'mean', 'sum' or 'none'."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


# --------------------------------------------------------------------------- SSIM core


@functools.lru_cache(maxsize=64)
def _gaussian_window(win_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian of `win_size` taps, built in float64 and then cast (cached: a copy to the GPU waits for it)."""
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor even if first made under inference mode
        return _make_window(win_size, sigma, dtype, torch.device(device))


@functools.lru_cache(maxsize=64)
def _exponents(weights: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """MS-SSIM's per-scale exponents as an (S, 1, 1) tensor on `device` (cached, as `_gaussian_window`)."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.tensor(weights, dtype=dtype, device=device).view(-1, 1, 1)


def _make_window(win_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The body of `_gaussian_window`."""
    coords = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _band_matrix(size: int, win: Tensor) -> Tensor:
    """(size, size-k+1) matrix whose column j holds the window at rows j..j+k-1: 'valid' filtering as a matmul."""
    k = win.numel()
    out = size - k + 1
    rows = torch.arange(k, device=win.device)[:, None] + torch.arange(out, device=win.device)[None, :]
    cols = torch.arange(out, device=win.device)[None, :].expand(k, out)
    band = torch.zeros(size, out, dtype=win.dtype, device=win.device)
    band[rows, cols] = win[:, None].expand(k, out)
    return band


# Block sizes for the banded products on CPU (measured at 96 px, 1 thread): the band has only k
# nonzeros per column, so multiplying block by block skips most of the zeros (2-3x fewer flops),
# while few blocks keep the number of threaded BLAS calls low. Column blocks of a right product
# use strided BLAS operands, which pays off only for wide blocks.
_ROW_BLOCK, _COL_BLOCK = 16, 32


def _band_range(start: int, stop: int, k: int, n_rows: int, adjoint: bool) -> tuple[int, int]:
    """Rows of a 'valid' band matrix (adjoint: of its transpose) that are nonzero in columns start..stop-1."""
    if adjoint:
        return max(0, start - k + 1), min(n_rows, stop)
    return start, stop + k - 1


def _band_left(band: Tensor, rhs: Tensor, k: int, adjoint: bool) -> Tensor:
    """band @ rhs for a band matrix with k nonzeros per row, in blocks of rows on CPU."""
    n_out = band.shape[0]
    if rhs.device.type != "cpu":
        return band @ rhs
    out = rhs.new_empty(n_out, rhs.shape[1])
    for start in range(0, n_out, _ROW_BLOCK):
        stop = min(n_out, start + _ROW_BLOCK)
        lo, hi = _band_range(start, stop, k, rhs.shape[0], adjoint)
        torch.mm(band[start:stop, lo:hi], rhs[lo:hi], out=out[start:stop])
    return out


def _band_right(lhs: Tensor, band: Tensor, k: int, adjoint: bool) -> Tensor:
    """lhs @ band for a band matrix with k nonzeros per column, in blocks of columns on CPU."""
    n_out = band.shape[1]
    if lhs.device.type != "cpu" or n_out <= _COL_BLOCK:
        return lhs @ band
    blocks = []
    for start in range(0, n_out, _COL_BLOCK):
        stop = min(n_out, start + _COL_BLOCK)
        lo, hi = _band_range(start, stop, k, lhs.shape[1], adjoint)
        blocks.append(lhs[:, lo:hi] @ band[lo:hi, start:stop])
    return torch.cat(blocks, dim=1)


def _filter_valid(stats: Tensor, band_h: Tensor, band_w: Tensor) -> Tensor:
    """'valid' separable filtering of a (H, *, W) stack with band matrices -> (H', *, W')."""
    h, w = stats.shape[0], stats.shape[-1]
    mid = stats.shape[1:-1]
    k = h - band_h.shape[1] + 1
    # Along W, then along H: large GEMMs on the contiguous stack, no transposed copy in between.
    out = _band_right(stats.reshape(-1, w), band_w, k, adjoint=False)  # (H * prod(mid), W')
    out = _band_left(band_h.T, out.view(h, -1), k, adjoint=False)  # (H', prod(mid) * W')
    return out.view(band_h.shape[1], *mid, band_w.shape[1])


def _filter_valid_transposed(grads: Tensor, band_h: Tensor, band_w: Tensor) -> Tensor:
    """Adjoint of `_filter_valid`: (H', *, W') -> (H, *, W)."""
    mid = grads.shape[1:-1]
    k = band_h.shape[0] - band_h.shape[1] + 1
    out = _band_left(band_h, grads.reshape(band_h.shape[1], -1), k, adjoint=True)  # (H, prod(mid) * W')
    out = _band_right(out.view(-1, band_w.shape[1]), band_w.T, k, adjoint=True)  # (H * prod(mid), W)
    return out.view(band_h.shape[0], *mid, band_w.shape[0])


class _SSIMScale(torch.autograd.Function):
    """Per-channel means (N, C) of the contrast-structure map and, if asked, of the SSIM map at one scale.

    Forward: the five moment images [x, y, x^2, y^2, xy] are stacked rows-first as
    (H, 5, N, C, W) and filtered once with band-matrix GEMMs (much faster on CPU than depthwise
    11-tap convolutions). Backward is written out analytically: the per-pixel gradients with
    respect to the five filtered maps are filtered back with the transposed band matrices in one
    pass, which avoids autograd's many elementwise intermediates. Checked by gradcheck in tests.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, win: Tensor, c1: float, c2: float, luminance: bool) -> Tensor:
        """(1, N, C) [cs] or (2, N, C) [cs, ssim]."""
        n, c, h, w = x.shape
        band_h, band_w = _band_matrix(h, win), _band_matrix(w, win)
        moments = x.new_empty(h, 5, n, c, w)  # rows first: [x, y, x^2, y^2, xy]
        xt, yt = moments[:, 0], moments[:, 1]
        xt.copy_(x.permute(2, 0, 1, 3))
        yt.copy_(y.permute(2, 0, 1, 3))
        torch.mul(xt, xt, out=moments[:, 2])
        torch.mul(yt, yt, out=moments[:, 3])
        torch.mul(xt, yt, out=moments[:, 4])
        mu_x, mu_y, e_xx, e_yy, e_xy = _filter_valid(moments, band_h, band_w).unbind(dim=1)  # (H', N, C, W')
        del moments, xt, yt
        mu_sq = (mu_x * mu_x).addcmul_(mu_y, mu_y)
        mu_xy = mu_x * mu_y
        # Wang et al. 2004, eq. 9-13 with alpha = beta = gamma = 1 and C3 = C2/2:
        # cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2), l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
        denom_cs = (e_xx + e_yy).sub_(mu_sq).add_(c2)
        cs_map = (e_xy - mu_xy).mul_(2).add_(c2).div_(denom_cs)
        out = [cs_map.mean(dim=(0, 3))]
        denom_l = lum = None
        if luminance:
            denom_l = mu_sq.add_(c1)
            lum = mu_xy.mul_(2).add_(c1).div_(denom_l)
            out.append((lum * cs_map).mean(dim=(0, 3)))
        ctx.luminance = luminance
        ctx.save_for_backward(x, y, band_h, band_w, mu_x, mu_y, cs_map, denom_cs, lum, denom_l)
        return torch.stack(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients with respect to x and y, in the forward's precision even if backward() runs under autocast."""
        with torch.autocast(device_type=grad.device.type, enabled=False):
            return _SSIMScale._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        """The body of `backward`."""
        x, y, band_h, band_w, mu_x, mu_y, cs_map, denom_cs, lum, denom_l = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        n_pix = cs_map.shape[0] * cs_map.shape[-1]
        g_cs = (grad[0] / n_pix)[None, :, :, None]  # d loss / d cs_map, broadcast over (H', N, C, W')
        if ctx.luminance:
            g_ssim = (grad[1] / n_pix)[None, :, :, None]
            g_lum = g_ssim * cs_map
            g_cs = g_cs + g_ssim * lum
        # Gradients for the filtered maps, in a stack [mu_x?, mu_y?, E[x^2] = E[y^2], E[xy] / 2]:
        # E[x^2] and E[y^2] share one gradient, so it is filtered back once.
        slots = int(need_x) + int(need_y)
        grads = cs_map.new_empty(cs_map.shape[0], slots + 2, *cs_map.shape[1:])
        g_num = torch.div(g_cs, denom_cs, out=grads[:, slots + 1])  # d/d(2 sigma_xy + C2)
        g_den = torch.mul(g_num, cs_map, out=grads[:, slots]).neg_()  # d/d(sigma_x^2 + sigma_y^2 + C2)
        g_l = None if not ctx.luminance else g_lum.mul_(2).div_(denom_l)
        for slot, (mu_a, mu_b) in enumerate([(mu_x, mu_y)] * need_x + [(mu_y, mu_x)] * need_y):
            # d/d mu_a of cs (through sigma_xy and sigma_a^2) and of the luminance term.
            g_mu = torch.mul(mu_b, g_num, out=grads[:, slot]).addcmul_(mu_a, g_den).mul_(-2)
            if g_l is not None:
                g_mu.addcmul_(g_l, mu_b - lum * mu_a)
        back = _filter_valid_transposed(grads, band_h, band_w)  # (H, slots + 2, N, C, W)
        g_sq, g_cross = back[:, slots], back[:, slots + 1]
        xt, yt = x.permute(2, 0, 1, 3), y.permute(2, 0, 1, 3)
        dx = dy = None
        if need_x:  # d/dx = G_mu_x + 2 x G_E[x^2] + y G_E[xy], with G_E[xy] = 2 g_cross
            dx = back[:, 0].addcmul_(xt, g_sq, value=2).addcmul_(yt, g_cross, value=2).permute(1, 2, 0, 3)
        if need_y:
            dy = back[:, int(need_x)].addcmul_(yt, g_sq, value=2).addcmul_(xt, g_cross, value=2).permute(1, 2, 0, 3)
        return dx, dy, None, None, None, None


def _ssim_terms(
    x: Tensor, y: Tensor, win: Tensor, c1: float, c2: float, luminance: bool
) -> tuple[Tensor | None, Tensor]:
    """Per-channel means (N, C) of the SSIM map (only if `luminance`) and of the contrast-structure map."""
    out = _SSIMScale.apply(x, y, win, c1, c2, luminance)
    return (out[1] if luminance else None), out[0]


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    reduction: str = "mean",
) -> Tensor:
    """Structural similarity (Wang et al. 2004) of two (N,C,H,W) batches; 1 means identical.

    Parameters
    ----------
    x, y : Tensor
        Float images of one shape (N, C, H, W), values in [0, data_range], H and W >= win_size.
        NaN, inf or values outside [0, data_range] by more than RANGE_TOLERANCE * data_range
        raise InputError (quoting the tensor's min, max and shape).
    data_range : float
        The value range L of the images (1.0 for [0,1]); C1 = (k1*L)^2, C2 = (k2*L)^2.
    win_size, sigma : int, float
        Gaussian window: `win_size` taps (odd), standard deviation `sigma` px; 'valid' filtering.
    k1, k2 : float
        Stabilising constants.
    reduction : {'mean', 'none', 'sum'}
        Over images; 'none' gives per-image values of shape (N,). Channels are always averaged.

    Returns
    -------
    Tensor
        float32 (float64 for float64 inputs), differentiable with respect to x and y.
    """
    _check_reduction(reduction)
    _check_data_range(data_range)
    _check_window(win_size, sigma, k1, k2)
    _check_pair(x, y, min_size=win_size, data_range=data_range)
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = _compute_dtype(x)
        x, y = x.to(dtype), y.to(dtype)
        win = _gaussian_window(win_size, sigma, dtype, x.device)
        ssim_c, _ = _ssim_terms(x, y, win, (k1 * data_range) ** 2, (k2 * data_range) ** 2, luminance=True)
        return _reduce(ssim_c.mean(dim=1), reduction)


# --------------------------------------------------------------------------- MS-SSIM


def _scale_sizes(h: int, w: int, scales: int) -> list[tuple[int, int]]:
    """Image size at each scale; odd sizes round up because pooling replicates the last row/column."""
    sizes = [(h, w)]
    for _ in range(scales - 1):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def default_scales(h: int, w: int, win_size: int = 11) -> int:
    """Default number of MS-SSIM scales: the most, up to 5, whose coarsest 'valid' map is >= win_size px a side.

    One rule for every size. The coarsest term is the mean of its 'valid' SSIM map; requiring that
    map to be at least one window wide (coarsest image >= 2 * win_size - 1 px) means the mean is
    taken over win_size x win_size window positions, not over a handful. With 11 taps: 1 scale
    below 41 px, 2 from 41, 3 from 81 (96 px -> maps 86, 38, 14), 4 from 161, 5 from 321 px (sizes
    halve rounding up). The limit Wang et al. and the peer libraries accept, a coarsest map of
    1x1 (5 scales from 161 px), would give 4 scales with a 2x2 map at 96 px: the coarsest term
    is then the correlation of one to four windows. On 200 crops of bundled photos against crops
    of other content it was negative for 22-36% of image channels with a 1x1 or 2x2 map, 10-11%
    with a 12x12 or 14x14 map; noise and blur pairs: never (`benchmarks/ms_ssim_scales.py`).
    An explicit `scales` may still go down to that 1x1 limit (see `_resolve_scales`).
    """
    fitting = [s for s in range(1, len(MS_SSIM_WEIGHTS) + 1)
               if min(_scale_sizes(h, w, s)[-1]) - win_size + 1 >= win_size]
    return max(fitting, default=1)


def _resolve_scales(
    h: int, w: int, win_size: int, scales: int | None, weights: Sequence[float] | None
) -> tuple[int, tuple[float, ...]]:
    """Check or choose the number of scales and their weights for an h x w image; raise InputError if they do not fit."""
    if scales is not None and (isinstance(scales, bool) or not isinstance(scales, int) or scales < 1):
        raise InputError(f"scales must be a positive integer or None, got {scales!r}")
    if weights is not None:
        try:
            weights = tuple(float(v) for v in weights)
        except (TypeError, ValueError):
            raise InputError(f"weights must be a sequence of positive numbers, got {weights!r}") from None
        if not weights or any(not math.isfinite(v) or v <= 0 for v in weights):
            raise InputError(f"weights must be a non-empty sequence of positive finite numbers, got {weights!r}")
        if scales is None:
            scales = len(weights)
        elif len(weights) != scales:
            raise InputError(f"got {len(weights)} MS-SSIM weights for {scales} scales; give one weight per scale")
    if scales is None:
        scales = default_scales(h, w, win_size)
    coarsest = _scale_sizes(h, w, scales)[-1]
    if min(coarsest) < win_size:
        fits = max(s for s in range(1, scales + 1) if min(_scale_sizes(h, w, s)[-1]) >= win_size) \
            if min(h, w) >= win_size else 0
        raise InputError(
            f"{scales} MS-SSIM scales do not fit {h}x{w} px images with a {win_size}-tap window: the coarsest "
            f"scale would be {coarsest[0]}x{coarsest[1]} px; at most {fits} scale(s) fit"
        )
    if weights is None:
        if scales > len(MS_SSIM_WEIGHTS):
            raise InputError(
                f"{scales} scales need explicit weights; the standard weights cover {len(MS_SSIM_WEIGHTS)} scales"
            )
        head = MS_SSIM_WEIGHTS[:scales]
        # The published five sum to 1.0001; they are kept as published, a subset is renormalised.
        weights = head if scales == len(MS_SSIM_WEIGHTS) else tuple(v / sum(head) for v in head)
    return scales, weights


def _downsample(t: Tensor) -> Tensor:
    """2x2 average pooling; an odd last row/column is replicated first, as in Wang's reference code."""
    h, w = t.shape[-2:]
    if h % 2 or w % 2:
        t = F.pad(t, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(t, kernel_size=2)


def _floor_straight_through(t: Tensor, floor: float) -> Tensor:
    """max(t, floor) in value, identity in gradient, so clipped entries still pass gradient back."""
    return t + (t.clamp_min(floor) - t).detach()


def ms_ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    *,
    scales: int | None = None,
    weights: Sequence[float] | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    reduction: str = "mean",
) -> Tensor:
    """Multi-scale structural similarity (Wang et al. 2003) of two (N,C,H,W) batches; 1 means identical.

    MS-SSIM = prod_j cs_j^w_j * l_M^w_M per channel, then the mean over channels: contrast-structure
    cs_j at every scale j, luminance l only at the coarsest scale M (there the term is the full
    SSIM), with 2x2 average pooling between scales and 'valid' Gaussian filtering at each.

    Parameters
    ----------
    x, y : Tensor
        Float images of one shape (N, C, H, W), values in [0, data_range]; refused as in `ssim`.
    data_range : float
        The value range L of the images (1.0 for [0,1]).
    scales : int or None
        Number of scales. None: the most scales, up to 5, whose coarsest 'valid' SSIM map is at
        least `win_size` x `win_size` (`default_scales`): 3 at 96x96 (maps 86, 38 and 14 px),
        4 from 161 px, the standard 5 from 321 px with 11 taps. An explicit number may go down
        to a coarsest scale of exactly `win_size` px (a 1x1 map, the peers' limit: 5 scales
        from 161 px); more raises InputError.
    weights : sequence of float or None
        One exponent per scale, finest first, used as given. None: (0.0448, 0.2856, 0.3001,
        0.2363, 0.1333) at 5 scales, as published; at fewer scales the first `scales` of them
        renormalised to sum to 1 (0.0711, 0.4530, 0.4760 at 3 scales; 0.0517, 0.3295, 0.3462,
        0.2726 at 4).
    win_size, sigma, k1, k2 : as in `ssim`.
    reduction : {'mean', 'none', 'sum'}
        Over images; 'none' gives per-image values of shape (N,).

    Notes
    -----
    The floor. The original formula gives NaN for a negative term raised to a fractional power,
    peers clip with ReLU (the sample then gets zero gradient) and t**w has an infinite slope at 0.
    Here every per-scale term t_j, per image and channel, goes through max(t_j, CS_FLOOR) with
    CS_FLOOR = 1e-3 before the power: the contrast-structure terms cs_j of the finer scales and
    the coarsest scale's full SSIM l_M * cs_M alike, negative or not. A term >= 1e-3 passes
    unchanged, bit for bit, in value and gradient. A term below 1e-3 (negative, zero, or a small
    positive one such as the luminance of a black image against a white one) is replaced by 1e-3
    in value, while the backward pass treats the floor as the identity (straight-through): its
    gradient is w_j * 1e-3**(w_j - 1) * (rest of the product), finite, and nonzero (pushing the
    term up) for a sample whose term is negative. So the returned MS-SSIM is never below
    1e-3**sum(w) (about 1e-3), and with one scale it equals SSIM only where SSIM >= 1e-3. On
    natural image pairs (noise, blur) every term is far above 1e-3 and the result is the
    formula's, bit for bit (tested against the unfloored computation and piq).
    Odd sizes are pooled by replicating the last row/column (Wang's reference code pads
    symmetrically after the image); piq pads before it, pytorch_msssim with zeros. Even sizes agree.
    """
    _check_reduction(reduction)
    _check_data_range(data_range)
    _check_window(win_size, sigma, k1, k2)
    _check_pair(x, y, min_size=win_size, data_range=data_range)
    n_scales, scale_weights = _resolve_scales(x.shape[-2], x.shape[-1], win_size, scales, weights)
    with torch.autocast(device_type=x.device.type, enabled=False):
        per_image, _ = _ms_ssim_per_image(x, y, data_range, scale_weights, win_size, sigma, k1, k2)
        return _reduce(per_image, reduction)


def _ms_ssim_per_image(
    x: Tensor, y: Tensor, data_range: float, scale_weights: Sequence[float], win_size: int, sigma: float,
    k1: float, k2: float, with_ssim: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Per-image MS-SSIM (N,) of validated inputs and, if `with_ssim`, the single-scale SSIM from the same first pass."""
    dtype = _compute_dtype(x)
    x, y = x.to(dtype), y.to(dtype)
    win = _gaussian_window(win_size, sigma, dtype, x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    n_scales = len(scale_weights)
    terms, ssim_first = [], None
    for scale in range(n_scales):
        if scale:
            x, y = _downsample(x), _downsample(y)
        coarsest = scale == n_scales - 1
        ssim_c, cs_c = _ssim_terms(x, y, win, c1, c2, luminance=coarsest or (with_ssim and scale == 0))
        terms.append(ssim_c if coarsest else cs_c)
        if scale == 0 and with_ssim:
            ssim_first = ssim_c.mean(dim=1)
    stacked = _floor_straight_through(torch.stack(terms), CS_FLOOR)  # (S, N, C)
    exponents = _exponents(tuple(float(v) for v in scale_weights), dtype, x.device)
    per_channel = torch.prod(stacked**exponents, dim=0)  # (N, C)
    return per_channel.mean(dim=1), ssim_first


# --------------------------------------------------------------------------- PSNR and metrics


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB, 10*log10(L^2 / MSE) per image (+inf when x == y); inputs as in `ssim`."""
    _check_reduction(reduction)
    _check_data_range(data_range)
    _check_pair(x, y, data_range=data_range)
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = _compute_dtype(x)
        mse = (x.to(dtype) - y.to(dtype)).square().mean(dim=(1, 2, 3))
        return _reduce(10 * torch.log10(data_range**2 / mse), reduction)


def image_metrics(x: Tensor, y: Tensor, data_range: float = 1.0) -> dict[str, Tensor]:
    """Per-image (N,) mse, mae, psnr, ssim and ms_ssim of reconstructions x against originals y, without grad.

    Values must lie in [0, data_range] (a 0-255 batch with data_range=1 is refused, not mis-scored).
    SSIM and MS-SSIM use the defaults of `ssim` and `ms_ssim` (11 taps, sigma 1.5, 3 scales at 96x96).
    """
    _check_data_range(data_range)
    _check_pair(x, y, min_size=11, data_range=data_range)
    with torch.no_grad():
        _, weights = _resolve_scales(x.shape[-2], x.shape[-1], 11, None, None)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = _compute_dtype(x)
            diff = x.to(dtype) - y.to(dtype)
            mse = diff.square().mean(dim=(1, 2, 3))
            # SSIM is MS-SSIM's first scale plus luminance, so both come from one filtering pass.
            ms, single = _ms_ssim_per_image(x, y, data_range, weights, 11, 1.5, 0.01, 0.03, with_ssim=True)
            return {
                "mse": mse,
                "mae": diff.abs().mean(dim=(1, 2, 3)),
                "psnr": 10 * torch.log10(data_range**2 / mse),
                "ssim": single,
                "ms_ssim": ms,
            }


# --------------------------------------------------------------------------- loss registry


class _Loss(nn.Module):
    """Base of the registry's losses: validates the pair and returns a float32 scalar to minimise."""

    name: str = ""

    def __init__(self, **options: object) -> None:
        super().__init__()
        self.options = dict(options)

    def extra_repr(self) -> str:
        """Show the resolved options in repr()."""
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class PixelLoss(_Loss):
    """Mean squared ('mse') or mean absolute ('mae') error over all pixels and channels."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        """Mean pixel error of recon against target, in float32."""
        _check_pair(recon, target)
        with torch.autocast(device_type=recon.device.type, enabled=False):
            dtype = _compute_dtype(recon)
            # The fused kernels: bit for bit (x - y).square().mean() / .abs().mean() and their gradients (checked in
            # tests/test_losses.py), at a third of the time per step for mse (benchmarks/train.py's mse case).
            fn = F.mse_loss if self.name == "mse" else F.l1_loss
            return fn(recon.to(dtype), target.to(dtype))


class SSIMLoss(_Loss):
    """1 - SSIM, averaged over the batch."""

    name = "ssim"

    def __init__(self, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
                 k1: float = 0.01, k2: float = 0.03) -> None:
        _check_data_range(data_range)
        _check_window(win_size, sigma, k1, k2)
        super().__init__(data_range=data_range, win_size=win_size, sigma=sigma, k1=k1, k2=k2)

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        """1 - mean SSIM of recon against target."""
        return 1 - ssim(recon, target, **self.options)


class MSSSIMLoss(_Loss):
    """1 - MS-SSIM, averaged over the batch."""

    name = "ms_ssim"

    def __init__(self, data_range: float = 1.0, scales: int | None = None, weights: Sequence[float] | None = None,
                 win_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> None:
        _check_data_range(data_range)
        _check_window(win_size, sigma, k1, k2)
        # Checks scales/weights consistency now; whether they fit is only known per image size.
        _resolve_scales(10**6, 10**6, win_size, scales, weights)
        weights = None if weights is None else tuple(float(v) for v in weights)
        super().__init__(data_range=data_range, scales=scales, weights=weights, win_size=win_size,
                         sigma=sigma, k1=k1, k2=k2)

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        """1 - mean MS-SSIM of recon against target."""
        return 1 - ms_ssim(recon, target, **self.options)


class MixLoss(_Loss):
    """alpha * (1 - MS-SSIM) + (1 - alpha) * L1, after Zhao et al. (2017), alpha = 0.84.

    Zhao et al. weight the L1 term by a Gaussian G_sigma (and compute MS-SSIM with full-resolution
    Gaussians); here the L1 term is the plain mean absolute error and MS-SSIM is `ms_ssim`.
    """

    name = "mix"

    def __init__(self, alpha: float = 0.84, **ms_ssim_options: object) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise InputError(f"mix loss: alpha must be a number in [0, 1], got {alpha!r}")
        ms = MSSSIMLoss(**ms_ssim_options)
        super().__init__(alpha=float(alpha), **ms.options)
        self.ms_ssim = ms
        self.alpha = float(alpha)

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        """alpha * (1 - MS-SSIM) + (1 - alpha) * mean absolute error."""
        structural = self.ms_ssim(recon, target)  # validates the pair
        with torch.autocast(device_type=recon.device.type, enabled=False):
            dtype = _compute_dtype(recon)
            l1 = (recon.to(dtype) - target.to(dtype)).abs().mean()
        return self.alpha * structural + (1 - self.alpha) * l1


_OPTIONS: dict[str, tuple[str, ...]] = {
    "mse": (),
    "mae": (),
    "ssim": ("data_range", "win_size", "sigma", "k1", "k2"),
    "ms_ssim": ("data_range", "scales", "weights", "win_size", "sigma", "k1", "k2"),
    "mix": ("alpha", "data_range", "scales", "weights", "win_size", "sigma", "k1", "k2"),
    "vgg": ("feature_layer", "feature_weight", "style_weight", "tv_weight", "weights"),
}


def get_loss(name: str, **options: object) -> nn.Module:
    """The training loss `name` (one of LOSS_NAMES, or a weighted sum of terms: see loss_spec) as a module: loss(recon, target) -> float32 scalar to minimise."""
    if name not in LOSS_NAMES:
        # Weighted sums ("ms_ssim+0.1*vgg_feature") and the VGG-16 terms; unknown names fail there in one line.
        from autoencoders.loss_spec import build_loss

        return build_loss(name, **options)
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        valid = ", ".join(_OPTIONS[name]) or "none"
        raise InputError(f"loss {name!r} has no option(s) {', '.join(unknown)}; valid options: {valid}")
    if name in ("mse", "mae"):
        return PixelLoss(name)
    if name == "ssim":
        return SSIMLoss(**options)
    if name == "ms_ssim":
        return MSSSIMLoss(**options)
    if name == "mix":
        return MixLoss(**options)
    if name == "vgg":
        from autoencoders.perceptual import PerceptualLoss  # torchvision's VGG only when asked for

        return PerceptualLoss(**options)
    raise AssertionError(f"loss {name!r} is in LOSS_NAMES but has no constructor")
