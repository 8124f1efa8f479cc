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
- Metric agreement per (kind, arch) and pooled: Spearman and Pearson correlation of the MOS per
  (image, run) with each manifest metric, oriented so that +1 is perfect agreement (a lower-is-better
  metric's correlation has its sign flipped), with percentile 95% CIs from resampling images.
- R cross-checks, only where Rscript with lme4 and ordinal is installed (Debian r-cran-lme4,
  r-cran-ordinal), as the triplets' glmer: `lmer` (lme4::lmer, the same linear mixed model, REML,
  Wald z) and `clmm` (ordinal::clmm, the cumulative logit with crossed participant and image random
  intercepts, Laplace, Wald z). Their terms carry MixedLM's and OrderedModel's names, row for row;
  both parametrisations make a positive loss term a higher rating.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import InputError
from percept.contracts import kinds as kinds_c

RATING_COLUMNS = ["participant", "image_id", "kind", "arch", "loss", "run", "score", "simulated"]
MOS_COLUMNS = ["kind", "arch", "loss", "n", "n_participants", "mos", "sd", "ci_low", "ci_high"]
DMOS_COLUMNS = ["arch", "loss", "n", "n_participants", "dmos", "sd", "ci_low", "ci_high"]
SCREEN_COLUMNS = ["participant", "n", "p", "q", "ratio", "asymmetry", "rejected", "reason"]
AGREEMENT_COLUMNS = ["kind", "arch", "metric", "higher_is_better", "n_units", "n_images", "spearman", "spearman_low",
                     "spearman_high", "pearson", "pearson_low", "pearson_high"]
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


R_PACKAGES = ("lme4", "ordinal")


def r_models_available() -> bool:
    """Whether Rscript with lme4 and ordinal can be called (R is an optional, Debian-installed extra)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False
    test = " && ".join(f"requireNamespace('{p}', quietly = TRUE)" for p in R_PACKAGES)
    proc = subprocess.run([rscript, "-e", f"quit(status = !({test}))"], capture_output=True, timeout=120)
    return proc.returncode == 0


# One R run fits every (kind, arch) group: g is the group, loss a factor whose first level is the reference
# (levels L000, L001, ... stand for the sorted loss names; participants and images are integer codes, so no
# name is ever quoted into R). A group whose fit fails gets a row with its message instead of stopping the
# others; R's warnings (singular fit, convergence) go into the note.
_R_SCRIPT = r"""
args <- commandArgs(TRUE)
d <- read.csv(args[1], colClasses = c(g = "integer", score = "integer", participant = "character",
                                       image_id = "character", loss = "character"))
out <- list()
for (k in sort(unique(d$g))) {
  s <- d[d$g == k, ]
  s$loss <- factor(s$loss, levels = sort(unique(s$loss)))
  s$participant <- factor(s$participant); s$image_id <- factor(s$image_id)
  for (model in c("lmer", "clmm")) {
    msgs <- character(0)
    res <- tryCatch(withCallingHandlers({
      if (model == "lmer") {
        m <- lme4::lmer(score ~ loss + (1 | participant) + (1 | image_id), data = s, REML = TRUE)
        co <- summary(m)$coefficients
        v <- as.data.frame(lme4::VarCorr(m))
        sds <- sprintf("sd participant=%.4g image=%.4g residual=%.4g", v$sdcor[v$grp == "participant"],
                       v$sdcor[v$grp == "image_id"], v$sdcor[v$grp == "Residual"])
        data.frame(term = rownames(co), estimate = co[, 1], se = co[, 2], stringsAsFactors = FALSE)
      } else {
        s$y <- factor(s$score, levels = sort(unique(s$score)), ordered = TRUE)
        m <- ordinal::clmm(y ~ loss + (1 | participant) + (1 | image_id), data = s, link = "logit")
        co <- summary(m)$coefficients
        keep <- grepl("^loss", rownames(co))
        vc <- ordinal::VarCorr(m)
        sds <- sprintf("sd participant=%.4g image=%.4g", attr(vc$participant, "stddev"), attr(vc$image_id, "stddev"))
        data.frame(term = rownames(co)[keep], estimate = co[keep, 1], se = co[keep, 2], stringsAsFactors = FALSE)
      }
    }, warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") }),
    error = function(e) { msgs <<- c(msgs, paste("failed:", conditionMessage(e))); NULL })
    if (is.null(res)) { res <- data.frame(term = NA, estimate = NA, se = NA); sds <- "" }
    res$g <- k; res$model <- model
    res$note <- paste(c(sds, msgs), collapse = "; ")
    out[[length(out) + 1]] <- res
  }
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
"""


def r_models(ratings: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """lme4::lmer and ordinal::clmm with crossed participant and image intercepts per (kind, arch), through Rscript."""
    from scipy import stats

    groups = [(kind, arch, g) for (kind, arch), g in ratings.groupby(["kind", "arch"], sort=True)
              if g["loss"].nunique() >= 2 and g["score"].nunique() >= 2 and len(g) >= 10]  # as MixedLM/OrderedModel
    if not groups:
        return pd.DataFrame(columns=MODEL_COLUMNS)
    parts = []
    for k, (_, _, g) in enumerate(groups):
        losses = sorted(g["loss"].unique())
        code = {loss: f"L{i:03d}" for i, loss in enumerate(losses)}  # zero-padded: R's sort keeps L000 the reference
        parts.append(pd.DataFrame({"g": k, "score": g["score"].astype(int).to_numpy(),
                                   "participant": pd.factorize(g["participant"])[0],  # codes: no name reaches R
                                   "image_id": pd.factorize(g["image_id"])[0],
                                   "loss": g["loss"].map(code).to_numpy()}))
    with tempfile.TemporaryDirectory() as tmp:
        data, script, result = Path(tmp) / "ratings.csv", Path(tmp) / "fit.R", Path(tmp) / "fits.csv"
        pd.concat(parts, ignore_index=True).to_csv(data, index=False)
        script.write_text(_R_SCRIPT)
        try:
            proc = subprocess.run([shutil.which("Rscript") or "Rscript", str(script), str(data), str(result)],
                                  capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(f"Rscript lmer/clmm on the ratings could not run: {str(exc).splitlines()[0]}") from None
        if proc.returncode != 0 or not result.exists():
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise InputError(f"Rscript lmer/clmm on the ratings failed (exit {proc.returncode}): {last}")
        fits = pd.read_csv(result, keep_default_na=False, na_values=["NA"])
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for f in fits.itertuples(index=False):
        kind, arch, g = groups[int(f.g)]
        losses = sorted(g["loss"].unique())
        term = str(f.term) if pd.notna(f.term) else ""
        if term.startswith("loss"):  # R's lossL3 → the loss name, as MixedLM ("C(loss)[T.x]") and OrderedModel ("x") call it
            name = losses[int(term[len("lossL"):])]
            term = f"C(loss)[T.{name}]" if f.model == "lmer" else name
        elif term == "(Intercept)":
            term = "Intercept"
        elif term:
            raise InputError(f"Rscript {f.model}: unexpected term {term!r} in its output")
        est, se = float(f.estimate), float(f.se)
        how = ("REML, Wald z (lme4 gives no df)" if f.model == "lmer"
               else "log cumulative odds of a higher rating, Laplace, Wald z")
        rows.append({"kind": kind, "arch": arch, "model": f.model, "term": term, "estimate": est, "se": se,
                     "p": float(2 * stats.norm.sf(abs(est / se))) if se > 0 else float("nan"),
                     "ci_low": est - z * se, "ci_high": est + z * se, "n": len(g),
                     "note": f"R {f.model}, crossed random intercepts participant+image; reference loss {losses[0]}; {how}"
                             + (f"; {f.note}" if f.note else "")})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def metric_agreement(ratings: pd.DataFrame, manifest: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman and Pearson of per-(image, run) MOS with each manifest metric, oriented, image-bootstrap 95% CIs."""
    from scipy import stats

    from analysis.agreement import metric_directions

    if ratings.empty:
        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    directions = metric_directions(manifest)
    metrics = manifest.set_index(["image_id", "run"])[list(directions)].apply(pd.to_numeric, errors="coerce")
    metrics = metrics[~metrics.index.duplicated()]
    mos = ratings.groupby(["kind", "arch", "image_id", "run"], sort=True)["score"].mean().reset_index()
    groups = [((kind, arch), g) for (kind, arch), g in mos.groupby(["kind", "arch"], sort=True)]
    for kind, g in mos.groupby("kind", sort=True):
        if g["arch"].nunique() > 1:
            groups.append(((kind, "all"), g))
    rng = np.random.default_rng(seed)
    rows = []
    for (kind, arch), g in groups:
        g = g[pd.MultiIndex.from_arrays([g["image_id"], g["run"]]).isin(metrics.index)]
        images = np.unique(g["image_id"])
        if len(g) < 3 or len(images) < 2:
            continue
        members = [np.flatnonzero(g["image_id"].to_numpy() == im) for im in images]
        # Each resample draws images with replacement and keeps all their (image, run) units.
        boots = [np.concatenate([members[j] for j in rng.integers(0, len(images), len(images))]) for _ in range(n_boot)]
        y = g["score"].to_numpy(float)
        for metric, higher in directions.items():
            x = metrics.loc[list(zip(g["image_id"], g["run"])), metric].to_numpy(float)
            ok = np.isfinite(x)
            sign = 1.0 if higher else -1.0
            row = {"kind": kind, "arch": arch, "metric": metric, "higher_is_better": bool(higher), "n_units": int(ok.sum()),
                   "n_images": len(images)}
            for name, corr in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
                const = ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0
                row[name] = np.nan if const else sign * float(corr(x[ok], y[ok])[0])
                vals = [_corr(x[i], y[i], name == "spearman") for i in (b[ok[b]] for b in boots)]
                vals = [v for v in vals if np.isfinite(v)]
                # a resample of constant values has no correlation: too many of those and the CI is not given
                lo, hi = np.percentile(vals, [2.5, 97.5]) if len(vals) >= 0.9 * n_boot and not const else (np.nan, np.nan)
                lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)  # the CI of the flipped correlation
                row[f"{name}_low"], row[f"{name}_high"] = float(lo), float(hi)
            rows.append(row)
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def _corr(x: np.ndarray, y: np.ndarray, ranks: bool) -> float:
    """Pearson correlation (of midranks when `ranks`: Spearman's rho, as scipy), NaN when either side is constant."""
    from scipy.stats import rankdata

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    if ranks:
        x, y = rankdata(x), rankdata(y)
    return float(np.corrcoef(x, y)[0, 1])
