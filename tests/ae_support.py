"""Shared test data: tiny training images (test_ae_train, test_ae_fast, test_ddp) and a random VGG-16 weights file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import vgg16


def blob_images(folder: Path, seed: int, n: int = 14) -> Path:
    """n smooth 36×40 PNGs of random 4×4 colour blobs (learnable, unlike pure noise) in `folder`."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.random((4, 4, 3))
        img = np.kron(base, np.ones((10, 10, 1)))[:36, :40]
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"im{i:02d}.png")
    return folder


def random_vgg16_weights(path: Path) -> Path:
    """Save a seeded random VGG-16 state dict in torchvision's format at `path` (the real weights cannot be fetched here)."""
    torch.manual_seed(0)
    torch.save(vgg16(weights=None).state_dict(), path)
    return path
