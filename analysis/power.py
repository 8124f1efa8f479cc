"""Power of the main preference test by simulation from fitted variance components.

Data-generating model (the crossed random-intercept logit of preferences.py): every simulated
participant judges every image once for one pair of losses, with loss A on the left for half of
the images (alternating, so sides are balanced within participant and image):

    logit P(chose A) = effect + u_participant + v_image + side_bias · side,
    u ~ N(0, sd_participant²),  v ~ N(0, sd_image²),  side = ±1.

Each simulated data set is tested with the study's main test, the two-way cluster-robust logit
(t test on min(clusters) − 1 df); power is the share of simulations with p < alpha, reported
with a Wilson 95% interval for the Monte Carlo error. `test="participant_t"` is a cheaper
alternative (one-sample t test of participants' proportions against 0.5) that ignores image
variance and so overstates power when sd_image > 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from percept.contracts import InputError

TESTS = ("cluster_logit", "participant_t")


@dataclass(frozen=True)
class PowerSetting:
    """The fitted (or assumed) data-generating values a power simulation starts from."""

    effect: float  # subject-specific log-odds of choosing A
    sd_participant: float
    sd_image: float
    side_bias: float = 0.0
    source: str = "assumed"  # where the values came from, e.g. "bayes_mixed_vb fc ms_ssim:mse"


def simulate_trials(n_participants: int, n_images: int, setting: PowerSetting, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated study: participants × images rows with chose_a and side."""
    p = np.repeat(np.arange(n_participants), n_images)
    i = np.tile(np.arange(n_images), n_participants)
    side = np.where((p + i) % 2 == 0, 1.0, -1.0)
    u = rng.normal(0.0, setting.sd_participant, n_participants)[p]
    v = rng.normal(0.0, setting.sd_image, n_images)[i]
    eta = setting.effect + u + v + setting.side_bias * side
    chose_a = (rng.random(len(p)) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"participant": p, "image_id": i, "side": side, "chose_a": chose_a})


def test_p(trials: pd.DataFrame, test: str = "cluster_logit") -> float:
    """p value of the preference test on one data set (NaN when the test is undefined)."""
    if test == "cluster_logit":
        from analysis.preferences import fit_cluster_logit

        return fit_cluster_logit(trials).p
    if test == "participant_t":
        props = trials.groupby("participant")["chose_a"].mean().to_numpy()
        if len(props) < 2:
            return float("nan")
        if np.all(props == props[0]):
            # no spread: an exact null when everyone sits at 0.5, certain evidence otherwise
            return 1.0 if props[0] == 0.5 else 0.0
        return float(stats.ttest_1samp(props, 0.5).pvalue)
    raise InputError(f"power test {test!r} is not one of {', '.join(TESTS)}")


def power_grid(participants: list[int], images: list[int], setting: PowerSetting, sims: int = 200,
               alpha: float = 0.05, test: str = "cluster_logit", seed: int = 0) -> pd.DataFrame:
    """Power per (participants, images) cell: share of `sims` simulated studies with p < alpha."""
    from analysis.preferences import wilson_ci

    if test not in TESTS:
        raise InputError(f"power test {test!r} is not one of {', '.join(TESTS)}")
    if sims < 1:
        raise InputError(f"--sims must be at least 1, got {sims}")
    bad = [n for n in list(participants) + list(images) if n < 2]
    if bad:
        raise InputError(f"--participants and --images need at least 2 each (clusters), got {bad[0]}")
    rows = []
    for cell, (n_p, n_i) in enumerate((a, b) for a in participants for b in images):
        rng = np.random.default_rng([seed, cell])
        ps = np.array([test_p(simulate_trials(n_p, n_i, setting, rng), test) for _ in range(sims)])
        # an undefined test (e.g. every answer the same) counts as a rejection only if the effect is real
        rejected = int(np.sum(np.nan_to_num(ps, nan=1.0) < alpha))
        low, high = wilson_ci(rejected, sims)
        rows.append({"participants": n_p, "images": n_i, "trials": n_p * n_i, "sims": sims, "alpha": alpha,
                     "test": test, "power": rejected / sims, "ci_low": float(low), "ci_high": float(high),
                     "effect": setting.effect, "sd_participant": setting.sd_participant,
                     "sd_image": setting.sd_image, "side_bias": setting.side_bias, "source": setting.source})
    return pd.DataFrame(rows)


def setting_from_models(models: pd.DataFrame, arch: str | None = None, pair: str | None = None) -> PowerSetting:
    """Take effect and random-effect SDs from the Bayesian mixed fit of one (arch, pair) in models.csv."""
    fits = models[(models["estimator"] == "bayes_mixed_vb") & models["estimate"].notna()]
    if arch is not None:
        fits = fits[fits["arch"] == arch]
    if pair is not None:
        fits = fits[fits["pair"] == pair]
    if fits.empty:
        have = sorted({f"{a} {p}" for a, p in zip(models["arch"], models["pair"])})
        raise InputError(f"no mixed-model fit for arch={arch or 'any'} pair={pair or 'any'}; fitted: {', '.join(have) or 'none'}")
    if arch is None:
        # the pooled fit uses every triplet; otherwise the fit with most trials
        pooled = fits[fits["arch"] == "all"]
        fits = pooled if len(pooled) else fits
    row = fits.sort_values("n", ascending=False, kind="stable").iloc[0]
    sdp = 0.0 if np.isnan(row["sd_participant"]) else float(row["sd_participant"])
    sdi = 0.0 if np.isnan(row["sd_image"]) else float(row["sd_image"])
    side = 0.0 if np.isnan(row["side_estimate"]) else float(row["side_estimate"])
    return PowerSetting(float(row["estimate"]), sdp, sdi, side, f"bayes_mixed_vb {row['arch']} {row['pair']}")
