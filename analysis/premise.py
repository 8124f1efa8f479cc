"""The premise as a test: is each model best on the metric it was trained on, with uncertainty?

For every architecture and every trained loss that has an own metric (OWN_METRICS: mse → mse and
PSNR alongside, mae → mae, ssim → ssim, ms_ssim and mix → ms_ssim), the model's per-image value of
that metric is compared with every other loss of the same architecture and with the flat baseline
(manifest rows run = "flat", arch = "baseline": a patch of each image's own mean colour) on the
same held-out images:

- Seeds: runs `<arch>-<loss>-s<seed>` of one (arch, loss) are averaged per image over seeds
  first (only images every seed reconstructed), so the unit of the test is the image and seed
  variation enters through the averaged values; `n_seeds` says how many seeds there were.
- Difference d_i = own model − rival, signed so that d > 0 means the own model is better.
- 95% CI: paired t interval of the mean of d over images (`unit="image"`, scipy.stats.ttest_1samp),
  or over source photographs (`unit="source"`: d averaged within each photograph first, because
  patches cut from one photograph are not independent).
- Answer per (arch, loss, metric): **yes** when the CI excludes 0 in the model's favour against
  every rival (an intersection–union test: no multiplicity correction is needed for "yes");
  **no** when some rival is significantly better (CI entirely below 0; uncorrected 95% CIs);
  **undecided** otherwise.

Runs marked `degenerate = 1` in the manifest (INTERFACES item 3; 0 when the column is absent) are
left out: a loss whose every seed is degenerate gets the answer "degenerate" and no claim, and
degenerate runs are not used as rivals.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

from percept.contracts import InputError
from percept.contracts.manifest import BASELINE_ARCH as FLAT_ARCH, FLAT_RUN, HIGHER_IS_BETTER

# The metrics each training loss should win on (PSNR is checked alongside MSE).
OWN_METRICS = {"mse": ("mse", "psnr"), "mae": ("mae",), "ssim": ("ssim",), "ms_ssim": ("ms_ssim",), "mix": ("ms_ssim",)}
UNITS = ("image", "source")
ANSWERS = ("yes", "no", "undecided", "degenerate", "no rivals")
RUN_PATTERN = re.compile(r"^(?P<arch>[^-]+)-(?P<loss>.+)-s(?P<seed>\d+)$")
COLUMNS = ["arch", "loss", "metric", "rival", "rival_kind", "n_seeds", "n_seeds_rival", "n_units", "unit", "own_mean",
           "rival_mean", "mean_diff", "ci_low", "ci_high", "p", "significant", "answer", "note"]


def source_of(image_id: str) -> str:
    """The source photograph of an image id: `photos:<split>:<photo>:<k>` → `photos:<photo>`; others are their own source."""
    parts = str(image_id).split(":")
    if parts[0] == "photos" and len(parts) >= 4:
        return f"photos:{parts[2]}"
    return str(image_id)


def degenerate_runs(manifest: pd.DataFrame) -> set[str]:
    """Runs the manifest marks degenerate (column `degenerate`, 0/1; absent → none)."""
    if "degenerate" not in manifest.columns:
        return set()
    flag = pd.to_numeric(manifest["degenerate"], errors="coerce")
    bad = flag.isna() | ~flag.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"manifest row {i + 2}, column 'degenerate': {manifest['degenerate'].iloc[i]!r} is not 0 or 1")
    return set(manifest.loc[flag == 1, "run"])


def paired_ci(d: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """(mean, ci_low, ci_high, p) of a paired difference: one-sample t on d (NaN with fewer than 2 values)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if np.std(d) <= 1e-12 * max(1.0, abs(mean)):
        # no spread (up to rounding): the interval collapses on the common difference
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(1 - alpha)
    return float(d.mean()), float(ci.low), float(ci.high), float(res.pvalue)


def _per_image(manifest: pd.DataFrame, runs: list[str], metric: str) -> pd.Series:
    """The metric per image averaged over `runs` (seeds), on images every run has."""
    rows = manifest[manifest["run"].isin(runs)]
    wide = rows.assign(**{metric: pd.to_numeric(rows[metric], errors="coerce")}).pivot(index="image_id", columns="run",
                                                                                       values=metric)
    return wide.dropna().mean(axis=1)


def answer(rows: pd.DataFrame) -> str:
    """yes / no / undecided from one model's comparisons (ci columns signed so > 0 favours the model)."""
    if rows.empty:
        return "no rivals"
    if (rows["ci_high"] < 0).any():
        return "no"
    if (rows["ci_low"] > 0).all():
        return "yes"
    return "undecided"


def premise_table(manifest: pd.DataFrame, *, unit: str = "image", alpha: float = 0.05) -> pd.DataFrame:
    """One row per (arch, trained loss, own metric, rival) with the paired difference, its CI and the model's answer."""
    if unit not in UNITS:
        raise InputError(f"premise unit {unit!r} is not one of {', '.join(UNITS)}")
    degenerate = degenerate_runs(manifest)
    models = manifest[manifest["arch"] != FLAT_ARCH]
    flat_runs = sorted(set(manifest.loc[(manifest["arch"] == FLAT_ARCH) & (manifest["run"] == FLAT_RUN), "run"]))
    rows = []
    for arch, g in models.groupby("arch", sort=True):
        seeds = {loss: sorted(set(r["run"])) for loss, r in g.groupby("loss", sort=True)}
        usable = {loss: [r for r in runs if r not in degenerate] for loss, runs in seeds.items()}
        for loss in sorted(seeds):
            if loss not in OWN_METRICS:
                continue
            for metric in OWN_METRICS[loss]:
                sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
                base = {"arch": arch, "loss": loss, "metric": metric, "n_seeds": len(usable[loss]), "unit": unit}
                if not usable[loss]:
                    rows.append({**base, "rival": "", "rival_kind": "", "answer": "degenerate",
                                 "note": f"every run degenerate ({', '.join(seeds[loss])}): no claim"})
                    continue
                own = _per_image(manifest, usable[loss], metric)
                rivals = [(other, "loss", usable[other]) for other in sorted(usable) if other != loss and usable[other]]
                rivals += [("flat", "flat baseline", flat_runs)] if flat_runs else []
                group = []
                for rival, kind, runs in rivals:
                    other = _per_image(manifest, runs, metric)
                    both = own.index.intersection(other.index)
                    d = sign * (own[both] - other[both]).to_numpy(float)
                    finite = np.isfinite(d)
                    note = "" if finite.all() else f"{int((~finite).sum())} image(s) with a non-finite difference dropped"
                    d, ids = d[finite], both[finite]
                    if unit == "source":
                        d = pd.Series(d, index=[source_of(i) for i in ids]).groupby(level=0).mean().to_numpy()
                    mean, low, high, p = paired_ci(d, alpha)
                    group.append({**base, "rival": rival, "rival_kind": kind, "n_seeds_rival": len(runs),
                                  "n_units": len(d), "own_mean": float(own[ids].mean()) if len(ids) else np.nan,
                                  "rival_mean": float(other[ids].mean()) if len(ids) else np.nan,
                                  "mean_diff": mean, "ci_low": low, "ci_high": high, "p": p,
                                  "significant": bool(low > 0 or high < 0), "note": note})
                verdict = answer(pd.DataFrame(group, columns=COLUMNS))
                skipped = [o for o in sorted(seeds) if o != loss and not usable[o]]
                for r in group:
                    r["answer"] = verdict
                    if skipped:
                        r["note"] = "; ".join(x for x in (r["note"], f"degenerate rival(s) left out: {', '.join(skipped)}") if x)
                rows += group or [{**base, "rival": "", "rival_kind": "", "answer": verdict, "note": "no rival runs"}]
    return pd.DataFrame(rows, columns=COLUMNS)


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, loss, metric): the answer and the closest rival (smallest lower CI bound)."""
    out = []
    for (arch, loss, metric), g in table.groupby(["arch", "loss", "metric"], sort=True):
        valid = g[g["ci_low"].notna()]
        closest = valid.loc[valid["ci_low"].idxmin()] if len(valid) else None
        out.append({"arch": arch, "loss": loss, "metric": metric, "answer": g["answer"].iloc[0],
                    "n_seeds": g["n_seeds"].iloc[0], "n_rivals": int(g["rival"].ne("").sum()),
                    "closest_rival": closest["rival"] if closest is not None else "",
                    "diff": closest["mean_diff"] if closest is not None else np.nan,
                    "ci_low": closest["ci_low"] if closest is not None else np.nan,
                    "ci_high": closest["ci_high"] if closest is not None else np.nan})
    return pd.DataFrame(out, columns=["arch", "loss", "metric", "answer", "n_seeds", "n_rivals", "closest_rival", "diff",
                                      "ci_low", "ci_high"])
