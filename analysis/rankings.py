"""Ranking trials: rank distribution per loss, Friedman test with Kendall's W, Wilcoxon post-hoc with Holm.

Each ranking trial orders the three reconstructions (one per loss) of one image by one
architecture, best first. Trials of one participant are not independent, so by default the
tests use participants as blocks (each participant's mean rank of each loss); `unit="image"`
averages over participants per image instead, and `unit="trial"` treats every trial as a block.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from percept.contracts import InputError
from percept.contracts.responses import ORDER_SEP

UNITS = ("participant", "image", "trial")
POSTHOC_COLUMNS = ["arch", "unit", "loss_a", "loss_b", "n_blocks", "mean_rank_a", "mean_rank_b", "wilcoxon_w", "p",
                   "p_holm"]


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test of equal ranks of the losses of one architecture."""

    arch: str
    unit: str
    n_blocks: int
    k: int
    statistic: float
    p: float
    kendall_w: float  # Friedman χ² / (n (k − 1)): 0 no agreement among blocks, 1 identical orders


def ranking_table(responses: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per ranking trial and option, with the option's rank (1 = best)."""
    from percept.contracts import kinds as kinds_c

    t = responses[responses["kind"].isin(kinds_c.of_family("ranking"))]
    rows = []
    for r in t.itertuples(index=False):
        loss_of = {r.left_run: r.left_loss, r.right_run: r.right_loss, r.third_run: r.third_loss}
        for rank, run in enumerate(r.choice.split(ORDER_SEP), start=1):
            rows.append({"participant": r.participant, "image_id": r.image_id, "arch": r.arch,
                         "trial_key": f"{r.participant}/{r.session}/{r.list_id}/{r.trial}",
                         "run": run, "loss": loss_of[run], "rank": rank, "simulated": r.simulated})
    return pd.DataFrame(rows, columns=["participant", "image_id", "arch", "trial_key", "run", "loss", "rank", "simulated"])


def rank_distribution(ranks: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, loss, rank): count and proportion of trials, with the loss's mean rank (paper Fig. 2b)."""
    if ranks.empty:
        return pd.DataFrame(columns=["arch", "loss", "rank", "count", "proportion", "mean_rank", "n_trials"])
    k = int(ranks["rank"].max())
    counts = ranks.groupby(["arch", "loss", "rank"]).size().unstack("rank", fill_value=0)
    counts = counts.reindex(columns=range(1, k + 1), fill_value=0).stack().rename("count").reset_index()
    totals = counts.groupby(["arch", "loss"])["count"].transform("sum")
    counts["proportion"] = counts["count"] / totals
    means = ranks.groupby(["arch", "loss"])["rank"].mean().rename("mean_rank")
    counts = counts.merge(means.reset_index(), on=["arch", "loss"])
    counts["n_trials"] = totals
    return counts


def block_ranks(ranks: pd.DataFrame, unit: str = "participant") -> pd.DataFrame:
    """Blocks × losses matrix of mean ranks for one architecture's rows."""
    if unit not in UNITS:
        raise InputError(f"ranking unit {unit!r} is not one of {', '.join(UNITS)}")
    col = {"participant": "participant", "image": "image_id", "trial": "trial_key"}[unit]
    mat = ranks.pivot_table(index=col, columns="loss", values="rank", aggfunc="mean")
    return mat.dropna()


def _wilcoxon_method(diff: np.ndarray) -> str:
    """Exact null distribution without ties or zeros; else the tie-corrected normal approximation (as R's wilcox.test).

    scipy's permutation alternative took ~2 s per test here, too slow for the demo budget.
    """
    absd = np.abs(diff)
    if np.any(absd == 0) or len(np.unique(absd)) < len(absd):
        return "asymptotic"
    return "auto"


def friedman(ranks: pd.DataFrame, arch: str, unit: str = "participant") -> tuple[FriedmanResult, pd.DataFrame]:
    """Friedman χ² and Kendall's W over blocks, then pairwise Wilcoxon signed-rank tests with Holm's correction."""
    from statsmodels.stats.multitest import multipletests

    mat = block_ranks(ranks, unit)
    n, k = mat.shape
    nan = float("nan")
    if n < 2 or k < 3:
        return FriedmanResult(arch, unit, n, k, nan, nan, nan), pd.DataFrame(columns=POSTHOC_COLUMNS)
    stat, p = stats.friedmanchisquare(*(mat[c].to_numpy() for c in mat.columns))
    res = FriedmanResult(arch, unit, n, k, float(stat), float(p), float(stat / (n * (k - 1))))
    rows = []
    for a, b in itertools.combinations(mat.columns, 2):
        diff = mat[a].to_numpy() - mat[b].to_numpy()
        if np.all(diff == 0):
            w, pw = nan, 1.0
        else:
            w, pw = stats.wilcoxon(mat[a], mat[b], method=_wilcoxon_method(diff))
        rows.append({"arch": arch, "unit": unit, "loss_a": a, "loss_b": b, "n_blocks": n,
                     "mean_rank_a": float(mat[a].mean()), "mean_rank_b": float(mat[b].mean()),
                     "wilcoxon_w": float(w), "p": float(pw)})
    post = pd.DataFrame(rows)
    post["p_holm"] = multipletests(post["p"], method="holm")[1]
    return res, post


def ranking_tests(ranks: pd.DataFrame, unit: str = "participant") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Friedman per architecture (one row each) and the post-hoc table, as DataFrames."""
    from dataclasses import asdict

    tests, posts = [], []
    for arch, g in ranks.groupby("arch", sort=True):
        res, post = friedman(g, arch, unit)
        tests.append(asdict(res))
        posts.append(post)
    posthoc = pd.concat(posts, ignore_index=True) if posts else pd.DataFrame(columns=POSTHOC_COLUMNS)
    return pd.DataFrame(tests, columns=list(FriedmanResult.__dataclass_fields__)), posthoc
