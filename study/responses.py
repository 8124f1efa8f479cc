"""Crash-safe response logging: one fsync'd row per answered trial, atomic session records, resume.

A `kill -9` can at worst leave a half-written last line (the trial on screen); reopening the log
cuts it off, so that trial is simply asked again. Rows are never rewritten or duplicated.
"""
from __future__ import annotations

import csv
import io
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd

from percept.contracts import ContractError, InputError
from percept.contracts import responses as responses_c
from percept.contracts.tables import atomic_write, fsync_dir


def now_iso() -> str:
    """The current local time as ISO 8601 with its UTC offset (milliseconds)."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def record_path(csv_path: str | Path) -> Path:
    """The session record (`.json`) beside a response CSV."""
    return Path(csv_path).with_suffix(".json")


def write_record(path: str | Path, record: dict) -> Path:
    """Write a session record atomically (temp file + fsync + rename), validated by its contract."""
    return responses_c.write_session(path, record)


def repair_tail(path: str | Path) -> int:
    """Cut a half-written last line left by a crash; return the number of bytes removed."""
    path = Path(path)
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1  # 0 when even the header was torn
    with open(path, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data) - keep


def read_answered(path: str | Path) -> pd.DataFrame:
    """Rows already saved in a response file (empty frame if none), after repairing a torn tail."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=list(responses_c.COLUMNS))
    repair_tail(path)
    text = path.read_text()
    if not text.strip():
        return pd.DataFrame(columns=list(responses_c.COLUMNS))
    header = text.splitlines()[0].split(",")
    if header not in (list(responses_c.LAB_COLUMNS), list(responses_c.COLUMNS)):  # files from before `mode` resume too
        raise ContractError(f"{path}: header is not the response contract's columns ({','.join(responses_c.LAB_COLUMNS)})")
    if len(text.splitlines()) == 1:
        return pd.DataFrame(columns=list(responses_c.COLUMNS))
    return responses_c.read_responses(path)


@contextmanager
def session_lock(csv_path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on one participant/session (a hidden `.lock` file beside the CSV)."""
    import fcntl

    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(csv_path.parent / f".{csv_path.stem}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(f"{csv_path}: another `percept run` is using this participant/session right now") from None
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class ResponseLog:
    """Append-only response CSV: each `append` is flushed and fsync'd before it returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.is_file() and self.path.stat().st_size > 0
        if existed:
            repair_tail(self.path)
            existed = self.path.stat().st_size > 0
        # A file begun before the `mode` column keeps its header: every row of a file has the same fields.
        self.columns = responses_c.LAB_COLUMNS
        if existed and self.path.read_text().split("\n", 1)[0] == ",".join(responses_c.COLUMNS):
            self.columns = responses_c.COLUMNS
        self._fh = open(self.path, "a", newline="")
        if not existed:
            self._write_line(list(self.columns))
            fsync_dir(self.path.parent)

    def _write_line(self, values: list) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        # One write call per row keeps a crash from interleaving partial rows.
        self._fh.write(buf.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, row: dict) -> None:
        """Write one answered trial (all contract columns) durably."""
        missing = [c for c in responses_c.COLUMNS if c not in row]
        if missing:
            raise ContractError(f"{self.path}: response row lacks {', '.join(missing)}")
        self._write_line([_cell(row.get(c, "lab")) if c == "mode" else _cell(row[c]) for c in self.columns])

    def close(self) -> None:
        """Close the file (every row is already on disk)."""
        self._fh.close()

    def __enter__(self) -> "ResponseLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cell(value) -> str:
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def response_row(trial: pd.Series | dict, participant: str, session: str, *, key: str, choice: str,
                 rt: float, onset: float, wallclock: str, simulated: bool) -> dict:
    """One response row in the contract's columns from a design row and what was answered."""
    get = trial.get
    return {
        "participant": participant, "session": session, "list_id": int(get("list_id")), "trial": int(get("trial")),
        "block": get("block"), "kind": get("kind"), "image_id": get("image_id"), "arch": get("arch"),
        "left_run": get("left_run"), "left_loss": get("left_loss"), "right_run": get("right_run"),
        "right_loss": get("right_loss"), "third_run": get("third_run"), "third_loss": get("third_loss"),
        "key": key, "choice": choice, "rt": float(rt), "onset": float(onset), "wallclock": wallclock,
        "simulated": int(bool(simulated)),
    }


def existing_record(path: str | Path) -> dict | None:
    """The session record if one exists (validated), else None."""
    path = Path(path)
    return responses_c.read_session(path) if path.is_file() else None


TRIPLET_KEYS = ("left", "right")
RANKING_KEYS = ("1", "2", "3")  # screen positions left, middle, right


def triplet_choice(trial: pd.Series | dict, key: str) -> str:
    """The run chosen by pressing `key` ('left' or 'right') on a triplet or catch trial."""
    if key not in TRIPLET_KEYS:
        raise ValueError(f"triplet key {key!r} is not one of {TRIPLET_KEYS}")
    return trial.get(f"{key}_run")


def ranking_choice(trial: pd.Series | dict, pressed: list[str]) -> tuple[str, str]:
    """(key, choice) for a ranking: the positions pressed best-first (last implied) → runs joined by '>'."""
    from percept.contracts.design import RANKING_SCREEN_ORDER

    if len(pressed) != 2 or len(set(pressed)) != 2 or not set(pressed) <= set(RANKING_KEYS):
        raise ValueError(f"a ranking needs two different presses of {RANKING_KEYS}, got {pressed}")
    order = list(pressed) + [k for k in RANKING_KEYS if k not in pressed]
    runs = [trial.get(f"{RANKING_SCREEN_ORDER[int(k) - 1]}_run") for k in order]
    return ",".join(pressed), responses_c.ORDER_SEP.join(runs)


def write_rows(path: str | Path, rows: list[dict]) -> Path:
    """Write a whole lab response file (mode=lab) at once, atomically, in the same format `ResponseLog` appends."""
    return atomic_write(Path(path), rows_text(rows, responses_c.LAB_COLUMNS))


def rows_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    """A response file's text: header and rows in `columns` (a row without `mode` is a lab row)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c, "lab")) if c == "mode" else _cell(row[c]) for c in columns])
    return buf.getvalue()
