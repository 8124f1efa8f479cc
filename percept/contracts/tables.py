"""Shared helpers for the CSV contracts: atomic writes and validated reads."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd


class InputError(ValueError):
    """Bad input from the user (a name, a value, a file); the CLI prints it as one line."""


class ContractError(InputError):
    """A file breaks its contract; the message names the file, row and column."""


def _umask_mode() -> int:
    """0o666 less the process umask: the mode a plain open() would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` via a temp file, fsync and rename, then fsync the folder.

    Readers see the old file or the new one, never half of one, whatever kills the process.
    The file gets the mode a plain open() would give it (mkstemp's own is 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder so a rename or a new file in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write `df` (without its index) to `path` atomically, so readers never see half a file."""
    return atomic_write(path, df.to_csv(index=False, lineterminator="\n"))


def atomic_write_json(path: str | Path, obj: object) -> Path:
    """Write `obj` as indented strict JSON atomically (NaN as null, non-JSON values such as paths as strings)."""
    from percept.contracts.provenance import write_json  # one JSON writer; imported here as it imports this module

    return write_json(path, obj, sort_keys=True)


def read_json(path: str | Path, not_found: str) -> dict:
    """Parse a JSON object; a missing file raises `{path}: {not_found}`, a malformed one or a non-object names why."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractError(f"{path}: {not_found}") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ContractError(f"{path}: not valid JSON (bytes that are not UTF-8 text at position {exc.start})") from None
    if not isinstance(data, dict):  # every JSON file of the pipeline is an object; callers index it by key
        raise ContractError(f"{path}: not a JSON object (the top level is a {type(data).__name__})")
    return data


def read_toml(path: str | Path) -> dict:
    """Parse a `--config` TOML file; a missing or malformed file is one clear InputError."""
    import tomllib

    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--config {path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"--config {path}: not valid TOML ({exc})") from None


def read_npz_checked(path: str | Path, keys: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """Load the named arrays of an npz without unpickling anything; name the file and missing keys on error."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: {what} file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ContractError(f"{path}: {what} file lacks key(s) {', '.join(missing)}")
            arrays = {k: z[k] for k in keys}
    except ContractError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        if "pickle" in str(exc):  # numpy's text here advises allow_pickle, which would run code from the file: not that
            raise ContractError(f"{path}: not a readable npz {what} file (it holds pickled Python objects, "
                                f"which percept never loads)") from None
        # a torn or bit-flipped zip fails here, possibly only when an array is read (CRC check)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(f"{path}: not a readable npz {what} file ({first[:200]})") from None
    for k, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands back raw bytes for a member that is not .npy
            raise ContractError(f"{path}: key {k!r} of the {what} file is not an array")
    return arrays


def read_csv_checked(
    path: str | Path,
    required: Sequence[str],
    *,
    numeric: Iterable[str] = (),
    integer: Iterable[str] = (),
    nonempty: Iterable[str] = (),
    allowed: dict[str, set[str]] | None = None,
    what: str = "table",
) -> pd.DataFrame:
    """Read a CSV as strings, check required columns and per-column types; name file/row/column on error.

    Row numbers in messages are the 1-based line numbers of the file (header is line 1).
    Numeric and integer columns are converted; every other column stays a string ('' for empty).
    """
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: {what} file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not a readable CSV {what} ({str(exc).splitlines()[0]})") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas turns the first column(s) into an index when rows have more fields than the header
        raise ContractError(f"{path}: rows of the {what} have more fields than its header")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    for col in nonempty:
        bad = df.index[df[col].str.strip() == ""]
        if len(bad):
            raise ContractError(f"{path}: row {bad[0] + 2}, column '{col}': empty value")
    for col, values in (allowed or {}).items():
        bad = df.index[~df[col].isin(values)]
        if len(bad):
            raise ContractError(
                f"{path}: row {bad[0] + 2}, column '{col}': {df[col].iloc[bad[0]]!r} is not one of {sorted(values)}"
            )
    for col in numeric:
        df[col] = _to_number(df[col], path, col, integer=False)
    for col in integer:
        df[col] = _to_number(df[col], path, col, integer=True)
    return df


def _to_number(series: pd.Series, path: Path, col: str, *, integer: bool) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & (series.str.strip() != "")
    if integer:
        bad |= series.str.strip() == ""
        bad |= values.notna() & ~np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
        bad |= values.notna() & (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        kind = "an integer" if integer else "a number"
        raise ContractError(f"{path}: row {i + 2}, column '{col}': {series.iloc[i]!r} is not {kind}")
    return values.astype("int64") if integer else values.astype("float64")


def check_finite(df: pd.DataFrame, cols: Iterable[str], path: str | Path) -> None:
    """Raise if any listed numeric column holds NaN or ±inf."""
    for col in cols:
        vals = df[col].to_numpy(dtype="float64")
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {vals[i]} is not finite")
