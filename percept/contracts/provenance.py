"""Provenance helpers shared by every stage: package versions, JSON records and file hashes.

One copy of each, so the versions recorded by training, the design and the analysis are
collected the same way and every JSON record is written the same (atomically, NaN as null).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Iterable

from percept.contracts.tables import atomic_write


def versions(packages: Iterable[str] = ()) -> dict[str, str]:
    """Python, platform, percept and the named distributions' versions ('not installed' when absent)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("percept", *packages):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def json_safe(obj: object) -> object:
    """A copy of `obj` that strict JSON can hold: NaN/±inf become null, numpy scalars and paths plain values."""
    import numpy as np

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: object, *, sort_keys: bool = False) -> Path:
    """Write `obj` as indented strict JSON atomically (NaN → null, so browsers and other tools read it)."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=sort_keys, default=str, allow_nan=False)
    return atomic_write(path, text + "\n")


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file (SHA-256 unless named), recorded by later stages to tie their outputs to the file they used."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
