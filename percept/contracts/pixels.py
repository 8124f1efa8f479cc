"""Raw pixels `pixels.npz` beside `codes/`: the images the codes were made from, for a pixel baseline.

Keys: `pixels` (N×C×H×W uint8, exactly the dataset's 8-bit values) and `image_ids` (N str),
matching the image_ids of the codes files. Readers get float32 rows in [0,1] (data_range 1).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from percept.contracts.tables import ContractError, atomic_write, read_npz_checked

KEYS = ("pixels", "image_ids")


def write_pixels(path: str | Path, pixels: np.ndarray, image_ids) -> Path:
    """Write uint8 N×C×H×W pixels and their image ids as an uncompressed, pickle-free npz, atomically."""
    pixels, ids = np.asarray(pixels), np.asarray(image_ids, dtype=str)
    if pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise ContractError(f"{path}: pixels must be uint8 N×C×H×W, got {pixels.dtype} {pixels.shape}")
    if ids.shape != (len(pixels),):
        raise ContractError(f"{path}: {len(pixels)} images but image_ids of shape {ids.shape}")
    buf = io.BytesIO()
    np.savez(buf, pixels=pixels, image_ids=ids)
    return atomic_write(path, buf.getvalue())


def read_pixels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a pixels file as (image_ids, N×D float32 in [0,1])."""
    path = Path(path)
    arrays = read_npz_checked(path, KEYS, "pixels")
    pixels, ids = arrays["pixels"], arrays["image_ids"].astype(str)
    if pixels.dtype != np.uint8:
        raise ContractError(f"{path}: 'pixels' must be uint8 (8-bit images), got {pixels.dtype}")
    if pixels.ndim != 4:
        raise ContractError(f"{path}: 'pixels' must be N×C×H×W, got shape {pixels.shape}")
    if ids.ndim != 1 or arrays["image_ids"].dtype.kind != "U":
        raise ContractError(f"{path}: 'image_ids' must be N text values, got {arrays['image_ids'].dtype} {arrays['image_ids'].shape}")
    if len(pixels) != len(ids):
        raise ContractError(f"{path}: {len(pixels)} pixel rows but {len(ids)} image_ids")
    return ids, pixels.reshape(len(pixels), -1).astype(np.float32) / 255.0
