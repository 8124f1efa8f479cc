"""Analysis outputs `runs/<exp>/analysis/`: summary.json and the tables report.html reads.

`summary.json` names the study folder and the manifest by paths relative to the experiment
folder `runs/<exp>` (so the folder can be moved or copied), with `simulated`, `n_rows`,
`warnings`, `headline`, `figures` (file names under `figures/`), `versions` and `options`.
Old summaries with absolute paths inside the experiment folder are read; paths that lead
outside it are refused.

Each table in TABLES is a CSV the report reads: its required columns, numeric columns and
columns that are proportions or probabilities in [0, 1] (NaN allowed where a test was not run).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts.paths import inside, relative_to
from percept.contracts.provenance import write_json
from percept.contracts.tables import ContractError, read_json

SUMMARY = "summary.json"
PATH_KEYS = ("study", "manifest")
SUMMARY_TYPES = {"study": str, "simulated": bool, "n_rows": int, "warnings": list, "headline": list, "figures": dict,
                 "versions": dict, "options": dict}
OPTIONAL_TYPES = {"manifest": (str, type(None)), "n_simulated_rows": int, "n_practice_dropped": int, "trials": dict,
                  "participants": dict, "response_files": list, "seconds": (int, float),
                  # written by analyze since the premise test, the headline family and the other trial kinds
                  "degenerate_runs": list, "family": dict, "premise": dict, "observers": dict, "kinds": dict,
                  "n_degenerate_trials_dropped": int}


def _table(required, numeric=(), unit=()) -> dict:
    return {"required": tuple(required), "numeric": tuple(numeric) + tuple(unit), "unit": tuple(unit)}


# name → columns the report relies on; `unit` columns are proportions or p-values in [0, 1].
TABLES = {
    "exclusions": _table(["participant", "included", "n_trials"], ["n_trials", "median_rt"],
                         ["catch_accuracy", "side_fraction", "fast_fraction"]),
    "pairwise": _table(["arch", "pair", "loss_a", "loss_b", "n", "wins_a", "wins_b"], ["n", "wins_a", "wins_b"],
                       ["prop_a", "ci_low", "ci_high", "p_binom"]),
    "models": _table(["arch", "pair", "estimator", "estimate"], ["estimate", "se"], ["p"]),
    "per_image": _table(["arch", "pair", "image_id", "n", "wins_a"], ["n", "wins_a"], ["prop_a", "p_holm", "p_bh"]),
    "rankings": _table(["arch", "loss", "mean_rank"], ["mean_rank"], ["proportion"]),
    "friedman": _table(["arch"], [], ["p", "kendall_w"]),
    "ranking_posthoc": _table(["arch", "loss_a", "loss_b"], ["mean_rank_a", "mean_rank_b"], ["p", "p_holm"]),
    "scale": _table(["arch", "model", "item", "score"], ["score"], []),
    "agreement": _table(["source", "arch", "metric"], [], ["agreement", "ci_low", "ci_high"]),
    "classification": _table(["kind", "run", "accuracy"], [], ["accuracy", "ci_low", "ci_high"]),
    "power": _table(["participants", "images", "power", "source"], ["participants", "images"],
                    ["power", "ci_low", "ci_high"]),
    "premise": _table(["arch", "loss", "metric", "rival", "answer"], ["n_units", "mean_diff"], ["p"]),
    "family": _table(["test", "arch", "pair", "p", "p_holm"], [], ["p", "p_holm"]),
    # The tables of the other trial kinds (analysis/kinds.py): readable CSVs; their numbers are checked where written.
    **{name: _table([], [], []) for name in (
        "pairs_pairwise", "pairs_scale", "pairs_models", "pairs_agreement", "ratings_mos", "ratings_dmos",
        "ratings_screening", "ratings_models", "ratings_agreement", "jnd", "jnd_per_image")},
    "classification_pairs": _table(["arch", "run_a", "run_b"], ["n_test", "diff"],
                                   ["accuracy_a", "accuracy_b", "p_mcnemar", "p_holm"]),
}


def experiment_of(analysis_dir: str | Path) -> Path:
    """The experiment folder `runs/<exp>` of an analysis folder `runs/<exp>/analysis`."""
    return Path(analysis_dir).resolve().parent


def write_summary(analysis_dir: str | Path, summary: dict) -> Path:
    """Write summary.json with `study` and `manifest` made relative to the experiment folder; validated first."""
    analysis_dir = Path(analysis_dir)
    path = analysis_dir / SUMMARY
    exp = experiment_of(analysis_dir)
    out = dict(summary)
    for key in PATH_KEYS:
        if out.get(key) is not None:
            out[key] = relative_to(exp, out[key], f"{path}: key '{key}'")
    check_summary(out, path, exp)
    return write_json(path, out, sort_keys=True)


def read_summary(experiment_dir: str | Path) -> dict:
    """Read and validate `<exp>/analysis/summary.json`; `study` and `manifest` come back relative to the experiment."""
    exp = Path(experiment_dir).resolve()
    path = exp / "analysis" / SUMMARY
    summary = read_json(path, f"no analysis summary; run `percept analyze --study {exp / 'study'}` first")
    if isinstance(summary, dict):
        for key in PATH_KEYS:  # summaries written before this contract held absolute paths
            value = summary.get(key)
            if isinstance(value, str) and os.path.isabs(value):
                summary[key] = relative_to(exp, value, f"{path}: key '{key}'")
    return check_summary(summary, path, exp)


def summary_path(experiment_dir: str | Path, summary: dict, key: str) -> Path | None:
    """The absolute path a summary names under `key` (study | manifest), None when it names none."""
    if key not in PATH_KEYS:
        raise ContractError(f"summary path key {key!r} is not one of {', '.join(PATH_KEYS)}")
    value = summary.get(key)
    if value is None:
        return None
    exp = Path(experiment_dir).resolve()
    return inside(exp, exp, value, f"{exp / 'analysis' / SUMMARY}: key '{key}'")


def _check_type(value, want, path: Path, key: str) -> None:
    wants_bool = want is bool or (isinstance(want, tuple) and bool in want)
    if (isinstance(value, bool) and not wants_bool) or not isinstance(value, want):
        names = " or ".join(t.__name__ for t in want) if isinstance(want, tuple) else want.__name__
        raise ContractError(f"{path}: key '{key}' must be {names}, got {value!r}"[:300])


def check_summary(summary: object, path: str | Path, experiment_dir: str | Path) -> dict:
    """Refuse a summary of the wrong shape or whose paths leave the experiment folder."""
    path = Path(path)
    if not isinstance(summary, dict):
        raise ContractError(f"{path}: analysis summary must be a JSON object, got {type(summary).__name__}")
    missing = [k for k in SUMMARY_TYPES if k not in summary]
    if missing:
        raise ContractError(f"{path}: analysis summary lacks key(s) {', '.join(missing)}")
    for key, want in SUMMARY_TYPES.items():
        _check_type(summary[key], want, path, key)
    for key, want in OPTIONAL_TYPES.items():
        if key in summary:
            _check_type(summary[key], want, path, key)
    for key in ("n_rows", "n_simulated_rows", "n_practice_dropped"):
        if key in summary and summary[key] < 0:
            raise ContractError(f"{path}: key '{key}' must be ≥ 0, got {summary[key]}")
    for key in ("warnings", "headline"):
        if not all(isinstance(x, str) for x in summary[key]):
            raise ContractError(f"{path}: key '{key}' must be a list of text")
    exp = Path(experiment_dir).resolve()
    for key in PATH_KEYS:
        if summary.get(key) is not None:
            inside(exp, exp, summary[key], f"{path}: key '{key}'")
    figures = exp / "analysis" / "figures"
    for name, file in summary["figures"].items():
        if not isinstance(file, str):
            raise ContractError(f"{path}: key 'figures.{name}' must be a file name, got {file!r}")
        inside(figures, figures, file, f"{path}: key 'figures.{name}'")
    return summary


def read_table(analysis_dir: str | Path, name: str) -> pd.DataFrame | None:
    """Read `<analysis>/<name>.csv` (None when absent), checking columns, numbers and [0, 1] ranges."""
    if name not in TABLES:
        raise ContractError(f"{name!r} is not an analysis table; known: {', '.join(TABLES)}")
    spec = TABLES[name]
    path = Path(analysis_dir) / f"{name}.csv"
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(spec["required"]))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"{path}: not a readable CSV table ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(df.index, pd.RangeIndex):
        raise ContractError(f"{path}: rows of the table have more fields than its header")
    missing = [c for c in spec["required"] if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: table lacks column(s) {', '.join(missing)}")
    for col in spec["numeric"]:
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {df[col].iloc[i]!r} is not a number")
        vals = values.to_numpy(dtype="float64")
        bad = np.isinf(vals)
        if col in spec["unit"]:
            bad |= (vals < 0) | (vals > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = "in [0, 1]" if col in spec["unit"] else "finite"
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {float(vals[i])!r} is not {where}")
        df[col] = values
    return df
