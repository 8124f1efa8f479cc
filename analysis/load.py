"""Load a study folder (design, manifest, responses), drop practice, flag and exclude participants.

A study folder is `runs/EXP/study/` with design.csv, design.json and responses/*.csv (+ .json
session records), as written by the `study` package (see percept/contracts). The analysis of a
study goes to its sibling folder `runs/EXP/analysis/`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from percept.contracts import ContractError, InputError
from percept.contracts import kinds as kinds_c
from percept.contracts.design import read_design_pair
from percept.contracts.manifest import file_hash, read_manifest
from percept.contracts.responses import read_session_files
from percept.contracts import provenance
from percept.contracts.kinds import CATCH_THRESHOLD


@dataclass(frozen=True)
class ExclusionRules:
    """Rules that exclude a participant's data; each threshold is documented in the report."""

    catch_threshold: float = CATCH_THRESHOLD  # catch trials are easy: below 80% correct means not attending
    side_bias: float = 0.9  # choosing one side on ≥90% of 2AFC trials ignores the images
    min_side_trials: int = 10  # side bias is judged only with enough 2AFC trials
    fast_rt: float = 0.2  # seconds; faster answers cannot follow from looking at the images
    max_fast_fraction: float = 0.2  # more than 20% of answers that fast marks a clicker

    def __post_init__(self) -> None:
        for name in ("catch_threshold", "side_bias", "max_fast_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"--{name.replace('_', '-')} must be a proportion in [0, 1], got {value}")
        if self.fast_rt < 0:
            raise InputError(f"--fast-rt must be a non-negative number of seconds, got {self.fast_rt}")
        if self.min_side_trials < 1:
            raise InputError(f"--min-side-trials must be at least 1, got {self.min_side_trials}")


@dataclass(frozen=True)
class Study:
    """A loaded study: main-block responses after exclusions plus everything needed to explain them."""

    study_dir: Path
    design: pd.DataFrame
    meta: dict
    manifest: pd.DataFrame | None  # None when the manifest named by design.json is missing
    manifest_path: Path | None
    responses: pd.DataFrame  # main block, included participants, merged with design's pair/answer
    participants: pd.DataFrame  # one row per participant: checks, flags, reasons, included
    n_practice: int  # practice rows dropped
    files: tuple[str, ...]  # response files read
    warnings: tuple[str, ...] = field(default_factory=tuple)
    sessions: tuple[dict, ...] = field(default_factory=tuple)  # the session records (.json) that were found

    @property
    def simulated(self) -> bool:
        """Whether any analysed row was written by a scripted observer."""
        return bool(len(self.responses)) and bool(self.responses["simulated"].astype(bool).any())

    def kind(self, kind: str) -> pd.DataFrame:
        """The analysed rows of one trial kind (any of percept.contracts.kinds; an unknown kind is refused)."""
        kinds_c.spec(kind)
        return self.responses[self.responses["kind"] == kind]


def analysis_dir(study_dir: str | Path) -> Path:
    """The analysis folder for a study folder: its sibling `analysis/`."""
    return Path(study_dir).resolve().parent / "analysis"


def load_study(
    study_dir: str | Path,
    rules: ExclusionRules | None = None,
    *,
    exclude_simulated: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Study:
    """Read design, manifest and every response file of `study_dir`; apply the exclusion rules."""
    rules = rules or ExclusionRules()
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    notes: list[str] = []

    def _warn(msg: str) -> None:
        notes.append(msg)
        warn(msg)

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise InputError(f"{study_dir}: study folder not found (expected runs/EXP/study with design.csv and responses/)")
    design_path = study_dir / "design.csv"
    design, meta = read_design_pair(design_path)
    manifest, manifest_path = _load_manifest(study_dir, meta, _warn)

    files = sorted((study_dir / "responses").glob("*.csv"))
    if not files:
        raise InputError(f"{study_dir / 'responses'}: no response files (*.csv); run `percept run` or `percept simulate` first")
    frames = []
    sessions = []
    for path in files:
        df, rec = read_session_files(path)  # the rows agree with the file name and the session record
        if rec is not None:
            sessions.append({**rec, "file": path.with_suffix(".json").name})
            if not rec.get("completed", False):
                _warn(f"{path.name}: session not completed ({len(df)} trials answered); its answers are kept")
        df = _join_design(df, design, path)
        df["file"] = path.name
        frames.append(df)
    allrows = pd.concat(frames, ignore_index=True)
    dup = allrows.duplicated(["participant", "list_id", "trial"])
    if dup.any():
        row = allrows[dup].iloc[0]
        raise ContractError(
            f"{row['file']}: participant {row['participant']!r} answered trial {row['trial']} of list {row['list_id']} "
            "again in another session file; keep one session per trial"
        )
    practice = allrows["block"] == "practice"
    main = allrows[~practice].reset_index(drop=True)
    if exclude_simulated:
        main = main[main["simulated"] == 0].reset_index(drop=True)
        if main.empty:
            raise InputError(f"{study_dir}: every response is simulated; no human data left with --exclude-simulated")
    if main.empty:
        raise InputError(f"{study_dir}: no main-block responses (only practice trials were answered)")
    participants = participant_checks(main, rules)
    keep = set(participants.loc[participants["included"], "participant"])
    responses = main[main["participant"].isin(keep)].reset_index(drop=True)
    if responses.empty:
        raise InputError(f"{study_dir}: every participant was excluded ({'; '.join(_reasons(participants))}); "
                         "see the exclusion rules (--catch-threshold, --side-bias, --fast-rt)")
    return Study(study_dir, design, meta, manifest, manifest_path, responses, participants,
                 int(practice.sum()), tuple(p.name for p in files), tuple(notes), tuple(sessions))


def _reasons(participants: pd.DataFrame) -> list[str]:
    return [f"{r.participant}: {r.reasons}" for r in participants.itertuples() if not r.included][:3]


def _load_manifest(study_dir: Path, meta: dict, warn) -> tuple[pd.DataFrame | None, Path | None]:
    """Read the manifest named in design.json; warn (not fail) when it changed since the design."""
    rel = meta.get("manifest")
    if not rel:
        warn(f"{study_dir / 'design.json'}: names no manifest; metric agreement and metric tables are skipped")
        return None, None
    path = (study_dir / rel).resolve()
    if not path.is_file():
        warn(f"manifest {path} named in design.json is missing; metric agreement and metric tables are skipped")
        return None, None
    expected = meta.get("manifest_sha256")
    if expected and file_hash(path) != expected:
        warn(f"manifest {path} changed since the design was made (sha256 differs from design.json); "
             "metrics may not match what people saw")
    return read_manifest(path), path


def _join_design(df: pd.DataFrame, design: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Attach the design's pair and answer to each response; refuse rows that contradict the design."""
    cols = ["list_id", "trial", "image_id", "pair", "answer", "left_run", "right_run"]
    merged = df.merge(design[cols].rename(columns={"image_id": "design_image_id", "left_run": "design_left_run",
                                                   "right_run": "design_right_run"}),
                      on=["list_id", "trial"], how="left", validate="one_to_one", indicator=True)
    missing = merged["_merge"] != "both"
    if missing.any():
        i = int(np.flatnonzero(missing.to_numpy())[0])
        raise ContractError(f"{path}: row {i + 2}, column 'trial': trial {df['trial'].iloc[i]} of list "
                            f"{df['list_id'].iloc[i]} is not in design.csv")
    for col in ("image_id", "left_run", "right_run"):
        bad = merged[col] != merged[f"design_{col}"]
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {merged[col].iloc[i]!r} differs from the design's "
                                f"{merged[f'design_{col}'].iloc[i]!r} for trial {df['trial'].iloc[i]}")
    return merged.drop(columns=["_merge", "design_image_id", "design_left_run", "design_right_run"])


def participant_checks(main: pd.DataFrame, rules: ExclusionRules) -> pd.DataFrame:
    """One row per participant: catch accuracy, side bias, fast answers, and the exclusion decision."""
    rows = []
    for pid, g in main.groupby("participant", sort=True):
        catch = g[g["kind"].isin(kinds_c.CATCH_KINDS)]
        # design.csv's `answer` is the known answer: the slot of the original, a scale end, same/different
        correct = [kinds_c.catch_correct(r.kind, r.answer, r.choice, {"left": r.left_run, "right": r.right_run})
                   for r in catch.itertuples(index=False)]
        catch_acc = float(np.mean(correct)) if len(catch) else np.nan
        twoafc = g[g["kind"].isin([k for k, s in kinds_c.KINDS.items() if s.family == "pairwise"])]
        left = (twoafc["choice"] == twoafc["left_run"]).mean() if len(twoafc) else np.nan
        side = float(max(left, 1 - left)) if len(twoafc) else np.nan
        fast = float((g["rt"] < rules.fast_rt).mean())
        reasons = []
        if len(catch) and catch_acc < rules.catch_threshold:
            reasons.append(f"catch accuracy {catch_acc:.2f} < {rules.catch_threshold:g}")
        if len(twoafc) >= rules.min_side_trials and side >= rules.side_bias:
            which = "left" if left >= 0.5 else "right"
            reasons.append(f"chose the {which} image on {side:.0%} of 2AFC trials (≥ {rules.side_bias:.0%})")
        if fast > rules.max_fast_fraction:
            reasons.append(f"{fast:.0%} of answers faster than {rules.fast_rt:g} s (> {rules.max_fast_fraction:.0%})")
        rows.append({
            "participant": pid,
            "sessions": int(g["session"].nunique()),
            "n_trials": int(len(g)),
            "n_catch": int(len(catch)),
            "catch_accuracy": catch_acc,
            "side_fraction": side,
            "median_rt": float(g["rt"].median()),
            "fast_fraction": fast,
            "simulated": int(g["simulated"].max()),
            "included": not reasons,
            "reasons": "; ".join(reasons),
        })
    return pd.DataFrame(rows)


def versions() -> dict[str, str]:
    """Versions of Python and the packages the analysis relies on, saved with every output."""
    return provenance.versions(("numpy", "pandas", "scipy", "statsmodels", "choix", "scikit-learn", "matplotlib", "pillow"))


def write_json(obj: dict, path: str | Path) -> Path:
    """Write JSON atomically (NaN becomes null, so browsers and other tools can read it)."""
    return provenance.write_json(path, obj, sort_keys=True)
