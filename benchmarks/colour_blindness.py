"""How much does each loss charge for losing colour? Desaturate held-out patches and score them.

Each held-out photo patch x is changed in two ways that keep its structure and only move colour:
`grey means`, every channel's mean moved to the patch's grey mean (the channel means become equal:
the patch's overall tint is removed, detail kept), and `hue shift`, the channel means rotated
(R ← G ← B ← R means, detail kept). For each change the table gives the loss each training objective
assigns (1 − MS-SSIM, 1 − SSIM, MSE, MAE, mix) and the mean CIEDE2000 colour difference ΔE00.
Compare with what the objectives charge for other errors (the trained models' losses in the README):
a loss that charges little for a large ΔE leaves colour unconstrained.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/colour_blindness.py
"""
from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    """Print the table for the bundled photos' held-out patches."""
    import torch

    from autoencoders.data import load_photos
    from autoencoders.losses import get_loss, image_metrics
    from autoencoders.train import delta_e

    torch.set_num_threads(1)
    x = load_photos("test").tensor()
    means = x.mean(dim=(2, 3), keepdim=True)
    grey = means.mean(dim=1, keepdim=True)
    changes = {
        "grey means": (x - means + grey).clamp(0, 1),
        "hue shift": (x - means + means[:, [1, 2, 0]]).clamp(0, 1),
        "flat patch (reference)": means.expand_as(x).contiguous(),
    }
    mix = get_loss("mix")
    print(f"{len(x)} held-out photo patches, 96×96; mean per image")
    print("| change | 1−MS-SSIM | 1−SSIM | MSE | MAE | mix | ΔE00 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, y in changes.items():
        m = image_metrics(y, x)
        mixv = np.mean([float(mix(y[i:i + 1], x[i:i + 1])) for i in range(len(x))])
        print(f"| {name} | {1 - float(m['ms_ssim'].mean()):.4f} | {1 - float(m['ssim'].mean()):.4f} | "
              f"{float(m['mse'].mean()):.4f} | {float(m['mae'].mean()):.4f} | {mixv:.4f} | {delta_e(y, x).mean():.2f} |")
    # Per channel and per scale: where the channel means enter MS-SSIM at all.
    from autoencoders.losses import ms_ssim

    shifted = changes["grey means"]
    per_channel = [1 - float(ms_ssim(shifted[:, c:c + 1], x[:, c:c + 1])) for c in range(3)]
    print("\n1−MS-SSIM per channel after 'grey means' (R, G, B):", ", ".join(f"{v:.4f}" for v in per_channel))
    mean_shift = (means - grey).abs().mean(dim=(0, 2, 3))
    print("mean |channel mean − grey mean| (R, G, B), i.e. the shift applied:", ", ".join(f"{float(v):.3f}" for v in mean_shift))
    return 0


if __name__ == "__main__":
    sys.exit(main())
