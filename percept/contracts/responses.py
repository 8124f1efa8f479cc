"""Responses `study/responses/<participant>-<session>.csv` and the `.json` session record beside it.

One row is appended (flush + fsync) the moment a trial is answered. `choice` holds the run
chosen (triplet/catch/pair), the full order best-to-worst joined by ORDER_SEP (ranking), the
category "1".."5" (rating kinds) or same|different (jnd), as percept/contracts/kinds.py says; `key`
holds the keys pressed, joined by ',' for ranking. `rt` and `onset` are seconds: onset from the
session clock's start to the stimulus flip, rt from that flip to the (last) key press.
`wallclock` is the ISO 8601 time of the answer with its UTC offset. `simulated` is 1 for rows
written by a scripted observer, 0 for people.

Optional columns (a file may lack them; readers fill them in): `mode` is `lab` (a PsychoPy session or a
simulated observer; a file without the column reads as lab) or `online` (a browser session served by
`percept serve`, exported by `percept export-online`). Online rows also carry `client_time` (the
browser's ISO 8601 time of the answer) and `server_time` (when the server stored it); `wallclock` is the
server's time there, the client's clock being anyone's guess. Lab rows leave both empty.

The session record `<participant>-<session>.json` is written (`write_session`) and read
(`read_session`) here too. A response file must agree with its name and its record: one
participant and session per file, equal to the name's and the record's, and `simulated` equal
to the record's. rt lies in [0, MAX_RT] s, onset in [0, MAX_ONSET] s, both finite.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import kinds as kinds_c
from percept.contracts.provenance import json_safe, write_json
from percept.contracts.tables import ContractError, read_csv_checked, read_json

MAX_RT = 3600.0  # seconds: an hour on one trial means the participant left, not that they judged
MAX_ONSET = 7 * 24 * 3600.0  # seconds from the session's start: a session resumed within a week

ORDER_SEP = kinds_c.ORDER_SEP
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

COLUMNS = (
    "participant", "session", "list_id", "trial", "block", "kind", "image_id", "arch",
    "left_run", "left_loss", "right_run", "right_loss", "third_run", "third_loss",
    "key", "choice", "rt", "onset", "wallclock", "simulated",
)

MODES = ("lab", "online")
# Optional columns, in the order writers put them after COLUMNS; LAB_COLUMNS is what the lab writer writes.
OPTIONAL_COLUMNS = ("mode", "client_time", "server_time")
LAB_COLUMNS = COLUMNS + ("mode",)
ONLINE_COLUMNS = COLUMNS + OPTIONAL_COLUMNS

# Keys of the session record (`<participant>-<session>.json`); more may be added.
SESSION_KEYS = (
    "participant", "session", "list_id", "design", "design_sha256", "simulated", "observer",
    "started", "ended", "completed", "n_trials", "n_answered", "versions", "window",
)
# More keys of an online session's record (`mode` is "online" there; a record without `mode` is lab's).
ONLINE_SESSION_KEYS = ("mode", "dpr", "scale", "viewport", "screen", "user_agent", "platform")


def check_id(value: str, what: str) -> str:
    """Accept a participant or session ID of letters, digits, '-' and '_' only (no path tricks)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ContractError(f"{what} {value!r} is invalid: use only letters, digits, '-' and '_'")
    return value


def response_path(responses_dir: str | Path, participant: str, session: str) -> Path:
    """The CSV file of one participant's session."""
    return Path(responses_dir) / f"{check_id(participant, 'participant')}-{check_id(str(session), 'session')}.csv"


def read_responses(path: str | Path) -> pd.DataFrame:
    """Read and validate one response file (rt/onset floats, list_id/trial/simulated ints; `mode` filled in as lab)."""
    path = Path(path)
    df = read_csv_checked(
        path,
        COLUMNS,
        numeric=("rt", "onset"),
        integer=("list_id", "trial", "simulated"),
        nonempty=("participant", "session", "image_id", "choice", "left_run"),
        allowed={"block": {"practice", "main"}, "kind": set(kinds_c.KINDS)},
        what="response",
    )
    _check_mode(df, path)
    for col, high in (("rt", MAX_RT), ("onset", MAX_ONSET)):
        vals = df[col].to_numpy(dtype="float64")
        bad = ~(np.isfinite(vals) & (vals >= 0) & (vals <= high))
        if bad.any():
            i = int(bad.nonzero()[0][0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {vals[i]} is not a time in [0, {high:g}] s")
    for i, text in enumerate(df["wallclock"]):
        if not _iso_with_offset(text):
            raise ContractError(f"{path}: row {i + 2}, column 'wallclock': {text!r} is not an ISO 8601 time with UTC offset")
    for col in ("participant", "session"):
        for i, value in enumerate(df[col]):
            if not ID_PATTERN.fullmatch(value):
                raise ContractError(f"{path}: row {i + 2}, column '{col}': {value!r} uses characters other than "
                                    "letters, digits, '-' and '_'")
        if df[col].nunique() > 1:
            i = int((df[col] != df[col].iloc[0]).to_numpy().nonzero()[0][0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {df[col].iloc[i]!r} differs from the file's "
                                f"first row {df[col].iloc[0]!r}; one participant and session per file")
    if len(df) and path.name != f"{df['participant'].iloc[0]}-{df['session'].iloc[0]}.csv":
        raise ContractError(f"{path}: rows are participant {df['participant'].iloc[0]!r} session "
                            f"{df['session'].iloc[0]!r}, but the file name says otherwise "
                            f"(expected {df['participant'].iloc[0]}-{df['session'].iloc[0]}.csv)")
    bad = ~df["simulated"].isin([0, 1])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}, column 'simulated': must be 0 or 1")
    # (list_id, trial): an actively assigned online session shows main trials of several lists.
    dup = df.duplicated(["list_id", "trial"])
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}: trial {df['trial'].iloc[i]} of list {df['list_id'].iloc[i]} answered twice")
    for i, row in enumerate(df.itertuples(index=False)):
        spec = kinds_c.spec(row.kind, f"{path}: row {i + 2}, column 'kind'")
        shown = {slot: getattr(row, f"{slot}_run") for slot in spec.slots}
        empty = [slot for slot, run in shown.items() if run == ""]
        if empty:
            raise ContractError(f"{path}: row {i + 2}, column '{empty[0]}_run': {row.kind} trial shows a {empty[0]} image")
        why = kinds_c.check_choice(row.kind, row.choice, shown)
        if why is not None:
            raise ContractError(f"{path}: row {i + 2}, column 'choice': {why}")
    return df


def _check_mode(df: pd.DataFrame, path: Path) -> None:
    """Fill the optional columns of an older file (mode=lab); online rows need both times, with their offsets."""
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = "lab" if col == "mode" else ""
    bad = ~df["mode"].isin(MODES)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}, column 'mode': {df['mode'].iloc[i]!r} is not one of {', '.join(MODES)}")
    for col in ("client_time", "server_time"):
        for i, (mode, text) in enumerate(zip(df["mode"], df[col])):
            if (mode == "online" or text != "") and not _iso_with_offset(text):
                raise ContractError(f"{path}: row {i + 2}, column '{col}': {text!r} is not an ISO 8601 time with UTC offset")


def is_iso_time(text: object) -> bool:
    """Whether `text` is an ISO 8601 time with its UTC offset (as every time in these files must be)."""
    return _iso_with_offset(text)


def _iso_with_offset(text: object) -> bool:
    try:
        return isinstance(text, str) and datetime.fromisoformat(text).utcoffset() is not None
    except ValueError:
        return False


def session_path(csv_path: str | Path) -> Path:
    """The session record (`.json`) beside a response CSV."""
    return Path(csv_path).with_suffix(".json")


def write_session(path: str | Path, record: dict) -> Path:
    """Validate and write a session record atomically (temp file + fsync + rename)."""
    path = Path(path)
    record = json_safe(record)  # numpy integers and paths become plain JSON values before they are checked
    check_session(record, path)
    return write_json(path, record)


def check_session(rec: object, path: str | Path) -> dict:
    """Refuse a session record of the wrong shape, naming the key and value."""
    path = Path(path)
    if not isinstance(rec, dict):
        raise ContractError(f"{path}: session record must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in ("participant", "session", "simulated", "completed") if k not in rec]
    if missing:
        raise ContractError(f"{path}: session record lacks key(s) {', '.join(missing)}")
    for key in ("participant", "session"):
        if not isinstance(rec[key], str) or not ID_PATTERN.fullmatch(rec[key]):
            raise ContractError(f"{path}: key '{key}' is {rec[key]!r}: use only letters, digits, '-' and '_'")
    for key in ("simulated", "completed"):
        if not isinstance(rec[key], bool):
            raise ContractError(f"{path}: key '{key}' must be true or false, got {rec[key]!r}")
    for key in ("list_id", "n_trials", "n_answered"):
        value = rec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ContractError(f"{path}: key '{key}' must be an integer ≥ 0, got {value!r}")
    mode = rec.get("mode", "lab")
    if mode not in MODES:
        raise ContractError(f"{path}: key 'mode' is {mode!r}, not one of {', '.join(MODES)}")
    for key in ("started", "ended"):
        value = rec.get(key)
        if value is not None and not _iso_with_offset(value):
            raise ContractError(f"{path}: key '{key}' is {value!r}, not an ISO 8601 time with UTC offset")
    if path.name != f"{rec['participant']}-{rec['session']}.json":
        raise ContractError(f"{path}: record of participant {rec['participant']!r} session {rec['session']!r} "
                            f"under another file name (expected {rec['participant']}-{rec['session']}.json)")
    return rec


def read_session(path: str | Path) -> dict:
    """Read and validate the session record (`.json` beside the CSV)."""
    path = Path(path)
    return check_session(read_json(path, "session record not found"), path)


def read_session_files(csv_path: str | Path) -> tuple[pd.DataFrame, dict | None]:
    """A response file and its session record (None when absent), checked against each other."""
    csv_path = Path(csv_path)
    df = read_responses(csv_path)
    rec_path = session_path(csv_path)
    if not rec_path.is_file():
        return df, None
    rec = read_session(rec_path)
    if len(df):
        p, s = df["participant"].iloc[0], df["session"].iloc[0]
        if (p, s) != (rec["participant"], rec["session"]):
            raise ContractError(f"{csv_path}: rows of participant {p!r} session {s!r} but {rec_path.name} is of "
                                f"{rec['participant']!r} session {rec['session']!r}")
        bad = df["simulated"] != int(rec["simulated"])
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ContractError(f"{csv_path}: row {i + 2}, column 'simulated': {df['simulated'].iloc[i]} but "
                                f"{rec_path.name} says simulated {str(rec['simulated']).lower()}")
        bad = df["mode"] != rec.get("mode", "lab")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ContractError(f"{csv_path}: row {i + 2}, column 'mode': {df['mode'].iloc[i]!r} but {rec_path.name} "
                                f"says mode {rec.get('mode', 'lab')!r}")
    n = rec.get("n_answered")
    if isinstance(n, int) and n > len(df):
        raise ContractError(f"{rec_path}: key 'n_answered' is {n} but {csv_path.name} holds only {len(df)} answered trial(s)")
    return df, rec
