"""Latent codes `codes/<run>.npz`: codes (N×D float32), labels (N int64, -1 if none), image_ids, splits,
and the run that made them: `run`, `arch`, `loss` (0-d text arrays).

The file is named after its run; a reader refuses a file whose stored run differs from its name
(a renamed or mis-copied file). Files written before `run`, `arch` and `loss` were stored
(older `percept encode`) are still read: the three are derived from the file name
`<arch>-<loss>-s<seed>.npz` with a warning on stderr, and a name that does not parse is refused.
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percept.contracts.paths import check_name
from percept.contracts.run import run_from_name
from percept.contracts.tables import ContractError, atomic_write, read_npz_checked

KEYS = ("codes", "labels", "image_ids", "splits")
RUN_KEYS = ("run", "arch", "loss")


@dataclass(frozen=True)
class Codes:
    """The contents of one codes file."""

    codes: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, -1 where unlabeled
    image_ids: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str
    run: str = ""  # the run that made the codes, "<arch>-<loss>-s<seed>"
    arch: str = ""
    loss: str = ""


def write_codes(path: str | Path, codes: np.ndarray, labels: np.ndarray, image_ids, splits, *,
                run: str | None = None, arch: str | None = None, loss: str | None = None) -> Path:
    """Validate shapes and names and write an uncompressed, pickle-free npz atomically (run defaults to the file's stem)."""
    path = Path(path)
    run = path.stem if run is None else run
    if arch is None or loss is None:
        arch, loss = run_from_name(run, path)
    c = _validate(path, np.asarray(codes, dtype=np.float32), np.asarray(labels), np.asarray(image_ids, dtype=str),
                  np.asarray(splits, dtype=str), np.asarray(run), np.asarray(arch), np.asarray(loss))
    buf = io.BytesIO()
    np.savez(buf, codes=c.codes, labels=c.labels, image_ids=c.image_ids, splits=c.splits,
             run=np.asarray(c.run), arch=np.asarray(c.arch), loss=np.asarray(c.loss))
    atomic_write(path, buf.getvalue())
    return path


def read_codes(path: str | Path) -> Codes:
    """Read and validate a codes file (no pickles are loaded); old files without run/arch/loss get them from the name."""
    path = Path(path)
    arrays = read_npz_checked(path, KEYS, "codes")
    try:
        stored = read_npz_checked(path, RUN_KEYS, "codes")
    except ContractError as exc:
        if "lacks key" not in str(exc):
            raise
        arch, loss = run_from_name(path.stem, path)
        print(f"warning: {path}: codes file without run, arch and loss (written by an older percept encode); "
              f"taken from its name: arch {arch!r}, loss {loss!r}", file=sys.stderr)
        stored = {"run": np.asarray(path.stem), "arch": np.asarray(arch), "loss": np.asarray(loss)}
    return _validate(path, **arrays, **stored)


def _text(path: Path, name: str, arr: np.ndarray) -> str:
    if arr.shape != () or arr.dtype.kind != "U":
        raise ContractError(f"{path}: '{name}' must be one text value, got {arr.dtype} of shape {arr.shape}")
    return check_name(str(arr), name, path)


def _validate(path: Path, codes: np.ndarray, labels: np.ndarray, image_ids: np.ndarray, splits: np.ndarray,
              run: np.ndarray, arch: np.ndarray, loss: np.ndarray) -> Codes:
    if codes.ndim != 2:
        raise ContractError(f"{path}: 'codes' must be N×D, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.floating):
        raise ContractError(f"{path}: 'codes' must be floating point, got {codes.dtype}")
    n = codes.shape[0]
    for name, arr in (("labels", labels), ("image_ids", image_ids), ("splits", splits)):
        if arr.shape != (n,):
            raise ContractError(f"{path}: '{name}' has shape {arr.shape}, expected ({n},) to match 'codes'")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ContractError(f"{path}: 'labels' must be integers, got {labels.dtype}")
    for name, arr in (("image_ids", image_ids), ("splits", splits)):
        if arr.dtype.kind != "U":
            raise ContractError(f"{path}: '{name}' must be text, got {arr.dtype}")
    if not np.isfinite(codes).all():
        raise ContractError(f"{path}: 'codes' holds NaN or Inf (first at row {int(np.argwhere(~np.isfinite(codes))[0, 0])})")
    run_s, arch_s, loss_s = _text(path, "run", run), _text(path, "arch", arch), _text(path, "loss", loss)
    if run_s != path.stem:
        raise ContractError(f"{path}: holds the codes of run {run_s!r}, but the file is named {path.name!r}")
    if run_from_name(run_s, path) != (arch_s, loss_s):
        raise ContractError(f"{path}: run {run_s!r} disagrees with its stored arch {arch_s!r} and loss {loss_s!r}")
    return Codes(codes.astype(np.float32, copy=False), labels.astype(np.int64, copy=False), image_ids.astype(str),
                 splits.astype(str), run_s, arch_s, loss_s)
