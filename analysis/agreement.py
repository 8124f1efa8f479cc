"""How often each objective metric picks the reconstruction people picked (2AFC agreement, as in BAPPS).

For a comparison unit (one image, architecture and pair of runs) with h = the fraction of
judgments choosing option B, a metric that calls A closer scores 1 − h, B closer scores h, a tie
0.5 (Zhang et al. 2018); the agreement is the mean score over units. The human ceiling is
p² + (1 − p)² per unit (BAPPS's formula, biased upwards with few judgments: 1 for a single one),
and `human_pairwise` is the unbiased chance that two different judges agree, over units with at
least two judgments: the ceiling to compare a metric with, so it comes first in the table.
Rankings contribute their three implied pairwise comparisons as a separate source. Metrics are
the contract's plus `delta_e` (lower better) and `haarpsi` (higher better) when the manifest has
them, and the contract's optional metrics where present: `lpips` (lower better; only when the
VGG-16 weights were there at export) and super-resolution's `psnr_y`, `ssim_y` (higher better).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from percept.contracts.manifest import HIGHER_IS_BETTER, METRICS, OPTIONAL_METRICS

# Manifest metric columns newer manifests carry (INTERFACES item 2), in case the contract does not list them yet.
EXTRA_METRICS = {"delta_e": False, "haarpsi": True}


def metric_directions(manifest: pd.DataFrame) -> dict[str, bool]:
    """Every metric column of the manifest → whether higher is better (contract metrics, delta_e/haarpsi, then lpips, psnr_y, ssim_y where present)."""
    out = {m: HIGHER_IS_BETTER[m] for m in METRICS}
    out.update({m: up for m, up in EXTRA_METRICS.items() if m in manifest.columns and m not in out})
    out.update({m: HIGHER_IS_BETTER[m] for m in OPTIONAL_METRICS if m in manifest.columns and m not in out})
    return out

# The unbiased ceiling (human_pairwise: the chance two different people agree) leads; BAPPS's p² + (1 − p)²
# (human_ceiling) follows, because it is biased upwards with few judgments per unit (1 for a single one).
COLUMNS = ["source", "arch", "metric", "n_units", "n_judgments", "agreement", "ci_low", "ci_high",
           "human_pairwise", "n_units_multi", "human_ceiling"]


def pairs_from_triplets(trials: pd.DataFrame) -> pd.DataFrame:
    """Judgments as (arch, image_id, run_a, run_b, chose_b) from the triplet table."""
    return pd.DataFrame({"arch": trials["arch"], "image_id": trials["image_id"], "run_a": trials["run_a"],
                         "run_b": trials["run_b"], "chose_b": 1 - trials["chose_a"]})


def pairs_from_rankings(ranks: pd.DataFrame) -> pd.DataFrame:
    """Each ranking's three implied pairwise judgments, runs in sorted order within a pair."""
    rows = []
    for _, t in ranks.sort_values("rank").groupby("trial_key", sort=False):
        order = list(t["run"])
        for a, b in itertools.combinations(sorted(order), 2):
            rows.append({"arch": t["arch"].iloc[0], "image_id": t["image_id"].iloc[0], "run_a": a, "run_b": b,
                         "chose_b": int(order.index(b) < order.index(a))})
    return pd.DataFrame(rows, columns=["arch", "image_id", "run_a", "run_b", "chose_b"])


def agreement_table(judgments: pd.DataFrame, manifest: pd.DataFrame, source: str, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Per metric and architecture (and pooled): 2AFC agreement with a unit-bootstrap 95% CI and the human ceiling."""
    if judgments.empty:
        return pd.DataFrame(columns=COLUMNS)
    units = judgments.groupby(["arch", "image_id", "run_a", "run_b"], sort=True)["chose_b"].agg(
        n="size", k="sum").reset_index()
    directions = metric_directions(manifest)
    metrics = manifest.set_index(["image_id", "run"])[list(directions)].apply(pd.to_numeric, errors="coerce")
    rows = []
    groups = [(a, u) for a, u in units.groupby("arch", sort=True)]
    if len(groups) > 1:
        groups.append(("all", units))
    rng = np.random.default_rng(seed)
    for arch, u in groups:
        ia = pd.MultiIndex.from_arrays([u["image_id"], u["run_a"]])
        ib = pd.MultiIndex.from_arrays([u["image_id"], u["run_b"]])
        known = ia.isin(metrics.index) & ib.isin(metrics.index)
        u = u[known]
        if u.empty:
            continue
        n, k = u["n"].to_numpy(float), u["k"].to_numpy(float)
        h = k / n
        ceiling = h ** 2 + (1 - h) ** 2
        multi = n >= 2
        pairwise = (k * (k - 1) + (n - k) * (n - k - 1))[multi] / (n * (n - 1))[multi]
        boot_idx = rng.integers(0, len(u), size=(n_boot, len(u)))
        for metric, higher in directions.items():
            ma = metrics.loc[list(zip(u["image_id"], u["run_a"])), metric].to_numpy(float)
            mb = metrics.loc[list(zip(u["image_id"], u["run_b"])), metric].to_numpy(float)
            # distances: smaller means closer to the original
            da, db = (-ma, -mb) if higher else (ma, mb)
            score = np.where(da < db, 1 - h, np.where(db < da, h, 0.5))
            boot = score[boot_idx].mean(axis=1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            rows.append({"source": source, "arch": arch, "metric": metric, "n_units": len(u),
                         "n_judgments": int(n.sum()), "agreement": float(score.mean()), "ci_low": float(lo),
                         "ci_high": float(hi), "human_ceiling": float(ceiling.mean()),
                         "human_pairwise": float(pairwise.mean()) if multi.any() else float("nan"),
                         "n_units_multi": int(multi.sum())})
    return pd.DataFrame(rows, columns=COLUMNS)


def metric_means(manifest: pd.DataFrame) -> pd.DataFrame:
    """Mean of every objective metric per run (arch, loss), from the manifest, with its degenerate flag."""
    cols = list(metric_directions(manifest))
    # extra metric columns (delta_e, haarpsi) arrive as text when the manifest contract does not type them yet
    values = manifest[["run", "arch", "loss"]].join(manifest[cols].apply(pd.to_numeric, errors="coerce"))
    means = values.groupby(["run", "arch", "loss"], sort=True)[cols].mean().reset_index()
    means["n_images"] = manifest.groupby(["run", "arch", "loss"], sort=True).size().to_numpy()
    if "degenerate" in manifest.columns:
        flag = pd.to_numeric(manifest["degenerate"], errors="coerce").fillna(0)
        means["degenerate"] = flag.groupby([manifest["run"], manifest["arch"], manifest["loss"]], sort=True).max().to_numpy().astype(int)
    else:
        means["degenerate"] = 0
    return means
