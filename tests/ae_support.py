"""Tiny training images shared by the trainer tests (test_ae_train, test_ae_fast, test_ddp)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def blob_images(folder: Path, seed: int, n: int = 14) -> Path:
    """n smooth 36×40 PNGs of random 4×4 colour blobs (learnable, unlike pure noise) in `folder`."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.random((4, 4, 3))
        img = np.kron(base, np.ones((10, 10, 1)))[:36, :40]
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"im{i:02d}.png")
    return folder
