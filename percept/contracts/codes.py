"""Latent codes `codes/<run>.npz`: keys codes (N×D float32), labels (N int64, -1 if none), image_ids, splits."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percept.contracts.tables import ContractError, atomic_write, read_npz_checked

KEYS = ("codes", "labels", "image_ids", "splits")


@dataclass(frozen=True)
class Codes:
    """The contents of one codes file."""

    codes: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, -1 where unlabeled
    image_ids: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str


def write_codes(path: str | Path, codes: np.ndarray, labels: np.ndarray, image_ids, splits) -> Path:
    """Validate shapes and write an uncompressed, pickle-free npz atomically."""
    path = Path(path)
    c = _validate(path, np.asarray(codes, dtype=np.float32), np.asarray(labels), np.asarray(image_ids, dtype=str), np.asarray(splits, dtype=str))
    buf = io.BytesIO()
    np.savez(buf, codes=c.codes, labels=c.labels, image_ids=c.image_ids, splits=c.splits)
    atomic_write(path, buf.getvalue())
    return path


def read_codes(path: str | Path) -> Codes:
    """Read and validate a codes file (no pickles are loaded)."""
    path = Path(path)
    arrays = read_npz_checked(path, KEYS, "codes")
    return _validate(path, **arrays)


def _validate(path: Path, codes: np.ndarray, labels: np.ndarray, image_ids: np.ndarray, splits: np.ndarray) -> Codes:
    if codes.ndim != 2:
        raise ContractError(f"{path}: 'codes' must be N×D, got shape {codes.shape}")
    n = codes.shape[0]
    for name, arr in (("labels", labels), ("image_ids", image_ids), ("splits", splits)):
        if arr.shape != (n,):
            raise ContractError(f"{path}: '{name}' has shape {arr.shape}, expected ({n},) to match 'codes'")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ContractError(f"{path}: 'labels' must be integers, got {labels.dtype}")
    if not np.isfinite(codes).all():
        raise ContractError(f"{path}: 'codes' holds NaN or Inf (first at row {int(np.argwhere(~np.isfinite(codes))[0, 0])})")
    return Codes(codes.astype(np.float32, copy=False), labels.astype(np.int64, copy=False), image_ids.astype(str), splits.astype(str))
