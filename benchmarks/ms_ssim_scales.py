"""How MS-SSIM's coarsest term behaves by the size of its 'valid' map; run `python benchmarks/ms_ssim_scales.py`.

The evidence behind `autoencoders.losses.default_scales` (the coarsest map must be at least one
window wide): for random crops of scikit-image's bundled colour photos and five kinds of second
image (noise, blur, the crop's flat mean colour, the crop shifted 8 px, a crop of other content),
it prints the median and interquartile range of the coarsest scale's term (the full SSIM there,
per image and channel) and how often it is below the 1e-3 floor or negative.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
KINDS = ("noise .08", "blur 3", "flat mean", "shift 8px", "other crop")
# (image side, scales): the default at 96 and 176 px, and one scale more (coarsest map 2x2 or 1x1).
SETTINGS = ((96, 3), (96, 4), (176, 4), (176, 5), (192, 5))


def _crops(photos: list[np.ndarray], size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random size x size crops of the photos, float64 in [0, 1], shape (n, size, size, 3)."""
    out = []
    while len(out) < n:
        img = photos[rng.integers(len(photos))]
        top, left = rng.integers(img.shape[0] - size + 1), rng.integers(img.shape[1] - size + 1)
        out.append(img[top:top + size, left:left + size].astype(np.float64) / 255)
    return np.stack(out)


def _second_image(batch: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The image each crop is compared with, in [0, 1]."""
    from skimage import filters

    if kind == "noise .08":
        return np.clip(batch + 0.08 * rng.standard_normal(batch.shape), 0, 1)
    if kind == "blur 3":
        return np.stack([filters.gaussian(img, sigma=3, channel_axis=-1) for img in batch])
    if kind == "flat mean":
        return np.broadcast_to(batch.mean(axis=(1, 2), keepdims=True), batch.shape).copy()
    if kind == "shift 8px":
        return np.roll(batch, 8, axis=(1, 2))
    if kind == "other crop":
        return batch[np.roll(np.arange(len(batch)), 1)]
    raise ValueError(f"unknown kind {kind!r}")


def coarsest_terms(x: np.ndarray, y: np.ndarray, scales: int) -> np.ndarray:
    """The coarsest scale's MS-SSIM term (its full SSIM, before the floor) per image and channel, flattened."""
    import torch

    from autoencoders.losses import _downsample, _gaussian_window, _ssim_terms

    a = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    b = torch.from_numpy(np.ascontiguousarray(y.transpose(0, 3, 1, 2)))
    for _ in range(scales - 1):
        a, b = _downsample(a), _downsample(b)
    win = _gaussian_window(11, 1.5, torch.float64, a.device)
    with torch.no_grad():
        ssim_c, _ = _ssim_terms(a, b, win, 0.01**2, 0.03**2, luminance=True)
    return ssim_c.flatten().numpy()


def main(argv: Sequence[str] | None = None) -> int:
    """Print one line per (size, scales, kind)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=200, help="crops per setting (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from skimage import data as skimage_data

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    photos = [getattr(skimage_data, name)() for name in PHOTOS]
    for size, scales in SETTINGS:
        batch = _crops(photos, size, args.crops, rng)
        side = -(-size // 2 ** (scales - 1)) - 10  # sizes halve rounding up; 'valid' 11-tap map
        for kind in KINDS:
            t = coarsest_terms(_second_image(batch, kind, rng), batch, scales)
            q1, median, q3 = np.quantile(t, [0.25, 0.5, 0.75])
            print(f"{size}px {scales} scales (coarsest map {side}x{side}) {kind:>10}: median {median:.3f}, "
                  f"IQR {q3 - q1:.3f}, <1e-3 {np.mean(t < 1e-3):.1%}, <0 {np.mean(t < 0):.1%} of {t.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
