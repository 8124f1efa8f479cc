"""Responses `study/responses/<participant>-<session>.csv` and the `.json` session record beside it.

One row is appended (flush + fsync) the moment a trial is answered. `choice` holds the run
chosen (triplet/catch/pair), the full order best-to-worst joined by ORDER_SEP (ranking), the
category "1".."5" (rating kinds) or same|different (jnd), as percept/contracts/kinds.py says; `key`
holds the keys pressed, joined by ',' for ranking. `rt` and `onset` are seconds: onset from the
session clock's start to the stimulus flip, rt from that flip to the (last) key press.
`wallclock` is the ISO 8601 time of the answer with its UTC offset. `simulated` is 1 for rows
written by a scripted observer, 0 for people.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from percept.contracts import kinds as kinds_c
from percept.contracts.tables import ContractError, read_csv_checked, read_json

ORDER_SEP = kinds_c.ORDER_SEP
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

COLUMNS = (
    "participant", "session", "list_id", "trial", "block", "kind", "image_id", "arch",
    "left_run", "left_loss", "right_run", "right_loss", "third_run", "third_loss",
    "key", "choice", "rt", "onset", "wallclock", "simulated",
)

# Keys of the session record (`<participant>-<session>.json`); more may be added.
SESSION_KEYS = (
    "participant", "session", "list_id", "design", "design_sha256", "simulated", "observer",
    "started", "ended", "completed", "n_trials", "n_answered", "versions", "window",
)


def check_id(value: str, what: str) -> str:
    """Accept a participant or session ID of letters, digits, '-' and '_' only (no path tricks)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ContractError(f"{what} {value!r} is invalid: use only letters, digits, '-' and '_'")
    return value


def response_path(responses_dir: str | Path, participant: str, session: str) -> Path:
    """The CSV file of one participant's session."""
    return Path(responses_dir) / f"{check_id(participant, 'participant')}-{check_id(str(session), 'session')}.csv"


def read_responses(path: str | Path) -> pd.DataFrame:
    """Read and validate one response file (rt/onset floats, list_id/trial/simulated ints)."""
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
    bad = (df["rt"] < 0) | df["rt"].isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}, column 'rt': {df['rt'].iloc[i]} is not a non-negative time")
    bad = ~df["simulated"].isin([0, 1])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}, column 'simulated': must be 0 or 1")
    dup = df.duplicated(["trial"])
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}: trial {df['trial'].iloc[i]} answered twice")
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


def read_session(path: str | Path) -> dict:
    """Read the session record (`.json` beside the CSV)."""
    path = Path(path)
    rec = read_json(path, "session record not found")
    missing = [k for k in ("participant", "session", "simulated", "completed") if k not in rec]
    if missing:
        raise ContractError(f"{path}: session record lacks key(s) {', '.join(missing)}")
    return rec
