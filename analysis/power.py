"""Power of the main preference test by simulation, from a smallest effect of interest.

The effect is never the study's own estimate ("observed power" says nothing the p value does not).
The user states a smallest effect size of interest (SESOI) as a preference proportion: the share
of judgments, over people and images, choosing loss A (default DEFAULT_SESOI = 0.60, the 60% vs 50%
that REFERENCES.md plans for). It is turned into the subject-specific log-odds β whose
population-averaged probability, integrated over the participant and image random intercepts, is
the SESOI (`effect_for_proportion`). The random-effect SDs come from the study's crossed
mixed-model fit (variance components, not the effect) or are given.

`design_power` simulates on the REAL design: the main-block triplets of one (arch, pair) in every
list of design.csv, with the sides exactly as listed, participant k answering list k mod L (as
`percept run` and `percept simulate` assign them). `power_grid` is the hypothetical balanced design
(every participant judges every image once, sides alternating) for planning other sizes.

Data-generating model (the crossed random-intercept logit of preferences.py):

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
DEFAULT_SESOI = 0.60  # smallest preference proportion worth detecting (60% vs 50%, REFERENCES.md)


@dataclass(frozen=True)
class PowerSetting:
    """The fitted (or assumed) data-generating values a power simulation starts from."""

    effect: float  # subject-specific log-odds of choosing A
    sd_participant: float
    sd_image: float
    side_bias: float = 0.0
    source: str = "assumed"  # where the values came from, e.g. "bayes_mixed_vb fc ms_ssim:mse"
    sesoi: float = float("nan")  # the population-averaged preference proportion `effect` was derived from


def marginal_proportion(effect: float, sd_total: float) -> float:
    """Population-averaged P(chose A) of a random-intercept logit with total intercept SD (Gauss–Hermite)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w / (1.0 + np.exp(-(effect + sd_total * x)))) / np.sqrt(2.0 * np.pi))


def effect_for_proportion(proportion: float, sd_participant: float, sd_image: float) -> float:
    """Subject-specific log-odds whose population-averaged preference (over both random intercepts) is `proportion`."""
    from scipy.optimize import brentq

    if not 0.0 < proportion < 1.0:
        raise InputError(f"--sesoi must be a proportion strictly between 0 and 1, got {proportion}")
    if sd_participant < 0 or sd_image < 0:
        raise InputError(f"random-effect SDs must be ≥ 0, got {sd_participant}, {sd_image}")
    sd = float(np.hypot(sd_participant, sd_image))
    target = float(np.log(proportion / (1 - proportion)))
    # the marginal log-odds shrink towards 0 as the SD grows, so β lies between the target and ~3× it
    return float(brentq(lambda b: marginal_proportion(b, sd) - proportion, -abs(target) * 4 - 1, abs(target) * 4 + 1))


def design_trials(design: pd.DataFrame, arch: str, pair: str) -> pd.DataFrame:
    """The design's main triplets of (arch, pair): list_id, image_id and side (+1 when loss A is on the left)."""
    t = design[(design["block"] == "main") & (design["kind"] == "triplet") & (design["arch"] == arch) &
               (design["pair"] == pair)]
    if t.empty:
        have = sorted({f"{a} {p}" for a, p in zip(design.loc[design["kind"] == "triplet", "arch"],
                                                   design.loc[design["kind"] == "triplet", "pair"])})
        raise InputError(f"design.csv has no main triplets for arch={arch} pair={pair}; it has: {', '.join(have) or 'none'}")
    loss_a = pair.split(":", 1)[0]
    return pd.DataFrame({"list_id": t["list_id"].to_numpy(), "image_id": t["image_id"].to_numpy(),
                         "side": np.where(t["left_loss"].to_numpy() == loss_a, 1.0, -1.0)})


def simulate_design(trials: pd.DataFrame, n_participants: int, setting: PowerSetting,
                    rng: np.random.Generator) -> pd.DataFrame:
    """One simulated study on the real lists: participant k answers list k mod L with its own sides."""
    lists = sorted(trials["list_id"].unique())
    by_list = {k: g for k, g in trials.groupby("list_id")}
    images = sorted(trials["image_id"].unique())
    v = dict(zip(images, rng.normal(0.0, setting.sd_image, len(images))))
    frames = []
    for k in range(n_participants):
        g = by_list[lists[k % len(lists)]]
        u = rng.normal(0.0, setting.sd_participant)
        eta = setting.effect + u + g["image_id"].map(v).to_numpy() + setting.side_bias * g["side"].to_numpy()
        chose_a = (rng.random(len(g)) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
        frames.append(pd.DataFrame({"participant": k, "image_id": g["image_id"].to_numpy(), "side": g["side"].to_numpy(),
                                    "chose_a": chose_a}))
    return pd.concat(frames, ignore_index=True)


def design_power(design: pd.DataFrame, arch: str, pair: str, participants: list[int], setting: PowerSetting, *,
                 sims: int = 200, alpha: float = 0.05, family_size: int = 1, test: str = "cluster_logit",
                 seed: int = 0) -> pd.DataFrame:
    """Power per number of participants on the design's real lists and sides; also at alpha / family_size (Holm's first step)."""
    from analysis.preferences import wilson_ci

    if test not in TESTS:
        raise InputError(f"power test {test!r} is not one of {', '.join(TESTS)}")
    if sims < 1:
        raise InputError(f"--sims must be at least 1, got {sims}")
    bad = [n for n in participants if n < 2]
    if bad:
        raise InputError(f"--participants needs at least 2 (clusters), got {bad[0]}")
    trials = design_trials(design, arch, pair)
    n_lists = trials["list_id"].nunique()
    rows = []
    for cell, n_p in enumerate(participants):
        rng = np.random.default_rng([seed, cell])
        studies = [simulate_design(trials, n_p, setting, rng) for _ in range(sims)]
        ps = np.nan_to_num(np.array([test_p(t, test) for t in studies]), nan=1.0)
        rejected, strict = int(np.sum(ps < alpha)), int(np.sum(ps < alpha / family_size))
        low, high = wilson_ci(rejected, sims)
        rows.append({"arch": arch, "pair": pair, "participants": n_p, "images": int(trials["image_id"].nunique()),
                     "lists": n_lists, "trials": len(studies[0]), "sims": sims, "alpha": alpha, "test": test,
                     "power": rejected / sims, "ci_low": float(low), "ci_high": float(high),
                     "family_size": family_size, "power_holm_first": strict / sims, "sesoi": setting.sesoi,
                     "effect": setting.effect, "sd_participant": setting.sd_participant, "sd_image": setting.sd_image,
                     "side_bias": setting.side_bias, "design": "real lists and sides of design.csv",
                     "balanced": n_p % n_lists == 0, "source": setting.source})
    return pd.DataFrame(rows)


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
                     "sd_image": setting.sd_image, "side_bias": setting.side_bias, "sesoi": setting.sesoi,
                     "design": "hypothetical balanced design", "source": setting.source})
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
