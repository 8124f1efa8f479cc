"""Shared test data: blob images, a tiny trained fc run, a random VGG-16 weights file, three-class code labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def blob_images(folder: Path, seed: int, n: int = 14, *, block: int = 10, size: tuple[int, int] = (36, 40),
                name: str = "im{:02d}.png", **save_options) -> Path:
    """n smooth images of random 4×4 colour blobs (learnable, unlike pure noise), block×block pixels a blob,
    cropped to size (height, width), saved in `folder` as name.format(i) (the names decide the split)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.random((4, 4, 3))
        img = np.kron(base, np.ones((block, block, 1)))[:size[0], :size[1]]
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / name.format(i), **save_options)
    return folder


def tiny_fc_run(root: Path) -> Path:
    """One tiny fc mse run trained through the CLI on 23 32×32 blob PNGs in root/imgs; return its experiment folder."""
    from percept import cli

    images = blob_images(root / "imgs", seed=0, n=23, block=8, size=(32, 32), name="p{:02d}.png")  # 3 land in test
    out = root / "exp"
    assert cli.main(["train", "--data", f"folder:{images}", "--image-size", "32", "--arch", "fc", "--loss", "mse",
                     "--width", "0.05", "--code-size", "6", "--batch-size", "4", "--epochs", "1", "--out", str(out),
                     "--no-progress"]) == 0
    return out


def random_vgg16_weights(path: Path) -> Path:
    """Save a seeded random VGG-16 state dict in torchvision's format at `path` (the real weights cannot be fetched here)."""
    import torch  # here, not at the top: the analysis tests use this module without torch
    from torchvision.models import vgg16

    torch.manual_seed(0)
    torch.save(vgg16(weights=None).state_dict(), path)
    return path


def three_classes(n: int, test_every: int, id_format: str = "img{}") -> tuple[np.ndarray, list[str], np.ndarray]:
    """Labels of n coded images in three equal blocks, their ids, and splits: every test_every-th one 'test'."""
    labels = np.repeat([0, 1, 2], n // 3)
    ids = [id_format.format(i) for i in range(n)]
    splits = np.where(np.arange(n) % test_every == 0, "test", "train")
    return labels, ids, splits
