"""Responses `study/responses/<participant>-<session>.csv` and the `.json` session record beside it.

One row is appended (flush + fsync) the moment a trial is answered. `choice` holds the run
chosen (triplet/catch) or the full order best-to-worst joined by ORDER_SEP (ranking); `key`
holds the keys pressed, joined by ',' for ranking. `rt` and `onset` are seconds: onset from the
session clock's start to the stimulus flip, rt from that flip to the (last) key press.
`wallclock` is the ISO 8601 time of the answer with its UTC offset. `simulated` is 1 for rows
written by a scripted observer, 0 for people.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from percept.contracts.tables import ContractError, read_csv_checked, read_json

ORDER_SEP = ">"
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
        nonempty=("participant", "session", "image_id", "choice", "left_run", "right_run"),
        allowed={"block": {"practice", "main"}, "kind": {"triplet", "ranking", "catch"}},
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
        shown = {row.left_run, row.right_run} | ({row.third_run} if row.kind == "ranking" else set())
        chosen = row.choice.split(ORDER_SEP) if row.kind == "ranking" else [row.choice]
        if row.kind == "ranking" and (len(chosen) != 3 or set(chosen) != shown):
            raise ContractError(f"{path}: row {i + 2}, column 'choice': {row.choice!r} is not an order of the three runs shown")
        if row.kind != "ranking" and chosen[0] not in shown:
            raise ContractError(f"{path}: row {i + 2}, column 'choice': {row.choice!r} was not shown on that trial")
    return df


def read_session(path: str | Path) -> dict:
    """Read the session record (`.json` beside the CSV)."""
    path = Path(path)
    rec = read_json(path, "session record not found")
    missing = [k for k in ("participant", "session", "simulated", "completed") if k not in rec]
    if missing:
        raise ContractError(f"{path}: session record lacks key(s) {', '.join(missing)}")
    return rec
