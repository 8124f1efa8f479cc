"""Ratings (ACR and DCR/DSIS trials): MOS with 95% CIs, DMOS, BT.500 observer screening, mixed and ordinal models.

- MOS per (kind, arch, loss): the mean of every rating with the t-based 95% CI of ITU-T P.910 / ITU-R
  BT.500 (mean ± t(0.975, n−1)·s/√n; scipy.stats.t.interval).
- DMOS (ACR with hidden reference, ITU-T P.910 §"ACR-HR"): each rating becomes
  DV = V(reconstruction) − V(original) + 5, where V(original) is the same participant's rating of
  that image's original where they rated it (rating_catch trials showing the original), else their
  mean rating of originals; participants who never rated an original give no DV. DCR ratings
  (rating_ref) already rate impairment against the shown original and get no DMOS.
- Screening (ITU-R BT.500-14 Annex 1, §A1-2.3.1): per presentation (kind, image, run) the mean u,
  SD s and kurtosis β2 = m4/m2² (scipy.stats.kurtosis, fisher=False); a rating counts in P if
  ≥ u + c·s and in Q if ≤ u − c·s, with c = 2 when 2 ≤ β2 ≤ 4 (normal) else √20; a participant is
  rejected when (P+Q)/N > 0.05 and |P−Q|/(P+Q) < 0.3 (N their ratings). The reason is written.
- Linear mixed model per (kind, arch): score ~ C(loss) with crossed random intercepts for
  participant and image (statsmodels MixedLM, one group, variance components), REML.
- Ordinal model per (kind, arch): cumulative logit of score on loss dummies (statsmodels OrderedModel).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from percept.contracts import kinds as kinds_c

RATING_COLUMNS = ["participant", "image_id", "kind", "arch", "loss", "run", "score", "simulated"]
MOS_COLUMNS = ["kind", "arch", "loss", "n", "n_participants", "mos", "sd", "ci_low", "ci_high"]
DMOS_COLUMNS = ["arch", "loss", "n", "n_participants", "dmos", "sd", "ci_low", "ci_high"]
SCREEN_COLUMNS = ["participant", "n", "p", "q", "ratio", "asymmetry", "rejected", "reason"]
MODEL_COLUMNS = ["kind", "arch", "model", "term", "estimate", "se", "p", "ci_low", "ci_high", "n", "note"]


def rating_table(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per rating of a reconstruction (rating and rating_ref trials), score 1..5 (5 best)."""
    t = responses[responses["kind"].isin(kinds_c.of_family("rating"))]
    out = pd.DataFrame({"participant": t["participant"], "image_id": t["image_id"], "kind": t["kind"], "arch": t["arch"],
                        "loss": t["left_loss"], "run": t["left_run"], "score": pd.to_numeric(t["choice"]).astype(int),
                        "simulated": t["simulated"]}, columns=RATING_COLUMNS)
    return out.reset_index(drop=True)


def reference_table(responses: pd.DataFrame) -> pd.DataFrame:
    """Ratings of the original itself on ACR catch trials (the hidden reference): participant, image_id, score."""
    t = responses[(responses["kind"] == "rating_catch") & (responses["left_run"] == kinds_c.ORIGINAL_RUN)]
    return pd.DataFrame({"participant": t["participant"], "image_id": t["image_id"],
                         "score": pd.to_numeric(t["choice"]).astype(int)}).reset_index(drop=True)


def _t_ci(x: np.ndarray) -> tuple[float, float, float, float]:
    from scipy import stats

    x = np.asarray(x, dtype=float)
    mean = float(np.mean(x)) if len(x) else np.nan
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else np.nan
    if len(x) < 2 or sd == 0:
        return mean, sd, mean if len(x) and sd == 0 else np.nan, mean if len(x) and sd == 0 else np.nan
    low, high = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=sd / np.sqrt(len(x)))
    return mean, sd, float(low), float(high)


def mos_table(ratings: pd.DataFrame) -> pd.DataFrame:
    """MOS with its 95% t-interval per (kind, arch, loss)."""
    rows = []
    for (kind, arch, loss), g in ratings.groupby(["kind", "arch", "loss"], sort=True):
        mean, sd, low, high = _t_ci(g["score"].to_numpy())
        rows.append({"kind": kind, "arch": arch, "loss": loss, "n": len(g), "n_participants": g["participant"].nunique(),
                     "mos": mean, "sd": sd, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=MOS_COLUMNS)


def dmos_table(ratings: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """DMOS (ACR-HR differential scores DV = V − V_ref + 5) per (arch, loss) with a 95% t-interval."""
    acr = ratings[ratings["kind"] == "rating"]
    if acr.empty or reference.empty:
        return pd.DataFrame(columns=DMOS_COLUMNS)
    per_image = reference.groupby(["participant", "image_id"])["score"].mean()
    per_participant = reference.groupby("participant")["score"].mean()
    ref = [per_image.get((p, i), per_participant.get(p, np.nan)) for p, i in zip(acr["participant"], acr["image_id"])]
    dv = acr.assign(dv=acr["score"].to_numpy() - np.asarray(ref, dtype=float) + 5).dropna(subset=["dv"])
    rows = []
    for (arch, loss), g in dv.groupby(["arch", "loss"], sort=True):
        mean, sd, low, high = _t_ci(g["dv"].to_numpy())
        rows.append({"arch": arch, "loss": loss, "n": len(g), "n_participants": g["participant"].nunique(),
                     "dmos": mean, "sd": sd, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=DMOS_COLUMNS)


def bt500_screening(ratings: pd.DataFrame) -> pd.DataFrame:
    """ITU-R BT.500 β2 observer screening over presentations (kind, image, run); one row per participant."""
    from scipy import stats

    if ratings.empty:
        return pd.DataFrame(columns=SCREEN_COLUMNS)
    r = ratings.copy()
    keys = ["kind", "image_id", "run"]
    grp = r.groupby(keys)["score"]
    r["u"] = grp.transform("mean")
    r["s"] = grp.transform(lambda x: np.std(x, ddof=1) if len(x) > 1 else 0.0)
    beta2 = grp.apply(lambda x: stats.kurtosis(x, fisher=False, bias=True) if len(x) > 1 and np.ptp(x) > 0 else np.nan)
    r["beta2"] = [beta2.get(tuple(k), np.nan) for k in r[keys].itertuples(index=False)]
    c = np.where((r["beta2"] >= 2) & (r["beta2"] <= 4), 2.0, np.sqrt(20.0))
    r["P"] = (r["s"] > 0) & (r["score"] >= r["u"] + c * r["s"])
    r["Q"] = (r["s"] > 0) & (r["score"] <= r["u"] - c * r["s"])
    rows = []
    for pid, g in r.groupby("participant", sort=True):
        p, q, n = int(g["P"].sum()), int(g["Q"].sum()), len(g)
        ratio = (p + q) / n
        asym = abs(p - q) / (p + q) if p + q else np.nan
        rejected = bool(ratio > 0.05 and p + q and asym < 0.3)
        reason = (f"BT.500 screening: {p + q} of {n} ratings outside the presentations' limits ((P+Q)/N = {ratio:.3f} > 0.05) "
                  f"and not one-sided (|P−Q|/(P+Q) = {asym:.2f} < 0.3)") if rejected else ""
        rows.append({"participant": pid, "n": n, "p": p, "q": q, "ratio": ratio, "asymmetry": asym,
                     "rejected": rejected, "reason": reason})
    return pd.DataFrame(rows, columns=SCREEN_COLUMNS)


def mixed_model(ratings: pd.DataFrame) -> pd.DataFrame:
    """score ~ C(loss) with crossed participant and image random intercepts (MixedLM) per (kind, arch)."""
    import statsmodels.formula.api as smf

    rows = []
    for (kind, arch), g in ratings.groupby(["kind", "arch"], sort=True):
        if g["loss"].nunique() < 2 or len(g) < 10:
            continue
        data = g.assign(group=1).reset_index(drop=True)
        vc = {"participant": "0 + C(participant)", "image": "0 + C(image_id)"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny data; the fit is reported as is
            fit = smf.mixedlm("score ~ C(loss)", data, groups="group", vc_formula=vc, re_formula="0").fit(reml=True)
        ci = fit.conf_int()
        for term in fit.fe_params.index:
            rows.append({"kind": kind, "arch": arch, "model": "mixedlm", "term": term, "estimate": float(fit.fe_params[term]),
                         "se": float(fit.bse_fe[term]), "p": float(fit.pvalues[term]), "ci_low": float(ci.loc[term, 0]),
                         "ci_high": float(ci.loc[term, 1]), "n": len(g),
                         "note": f"crossed random intercepts participant+image; reference loss {sorted(g['loss'].unique())[0]}; "
                                 f"converged={bool(fit.converged)}"})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def ordinal_model(ratings: pd.DataFrame) -> pd.DataFrame:
    """Cumulative-logit model of score on loss (OrderedModel) per (kind, arch); loss terms vs the first loss."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    rows = []
    for (kind, arch), g in ratings.groupby(["kind", "arch"], sort=True):
        losses = sorted(g["loss"].unique())
        if len(losses) < 2 or g["score"].nunique() < 2 or len(g) < 10:
            continue
        exog = pd.get_dummies(g["loss"], dtype=float)[losses[1:]]
        endog = pd.Series(pd.Categorical(g["score"], categories=sorted(g["score"].unique()), ordered=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = OrderedModel(endog, exog.reset_index(drop=True), distr="logit").fit(method="bfgs", disp=False)
        ci = fit.conf_int()
        for term in losses[1:]:
            rows.append({"kind": kind, "arch": arch, "model": "ordered_logit", "term": term, "estimate": float(fit.params[term]),
                         "se": float(fit.bse[term]), "p": float(fit.pvalues[term]), "ci_low": float(ci.loc[term, 0]),
                         "ci_high": float(ci.loc[term, 1]), "n": len(g),
                         "note": f"log cumulative odds of a higher rating vs {losses[0]}; no random effects"})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)
