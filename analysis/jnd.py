"""Same/different (jnd) trials: proportion "different" per loss with Wilson CIs, d′ with a CI, per-image tests.

- Proportion "different" per (arch, loss) with the Wilson 95% CI (statsmodels proportion_confint).
- d′ = z(H) − z(F) (yes/no model, independent observations): H the proportion "different" on
  the loss's trials, F on jnd_catch trials showing the original twice ("same" pairs), pooled over
  the study; rates use the log-linear correction (k + 0.5)/(n + 1) (Hautus 1995) so 0 and 1 stay
  finite. Its 95% CI is d′ ± 1.96·√(H(1−H)/(n_H φ(z_H)²) + F(1−F)/(n_F φ(z_F)²)) (Gourevitch &
  Galanter 1967). The differencing model of same/different tasks would give larger d′; this is
  the plain yes/no sensitivity, stated as such in the report.
- Per image: a two-sided exact binomial test of the image's "different" count against F (0.5 when
  the study has no same-pair catch trials), Holm and Benjamini–Hochberg adjusted per (arch, loss).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from percept.contracts import kinds as kinds_c

TRIAL_COLUMNS = ["participant", "image_id", "arch", "loss", "run", "different", "original_first", "simulated"]
SUMMARY_COLUMNS = ["arch", "loss", "n", "k_different", "prop_different", "ci_low", "ci_high", "false_alarm", "n_same",
                   "d_prime", "d_ci_low", "d_ci_high"]
IMAGE_COLUMNS = ["arch", "loss", "image_id", "n", "k_different", "prop_different", "null_p", "p", "p_holm", "p_bh"]


def jnd_table(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per jnd trial: the reconstruction shown against the original and whether 'different' was answered."""
    t = responses[responses["kind"].isin(kinds_c.of_family("same_different"))]
    first = t["left_run"] == kinds_c.ORIGINAL_RUN
    return pd.DataFrame({"participant": t["participant"], "image_id": t["image_id"], "arch": t["arch"],
                         "loss": np.where(first, t["right_loss"], t["left_loss"]),
                         "run": np.where(first, t["right_run"], t["left_run"]),
                         "different": (t["choice"] == "different").astype(int), "original_first": first.astype(int),
                         "simulated": t["simulated"]}, columns=TRIAL_COLUMNS).reset_index(drop=True)


def same_pairs(responses: pd.DataFrame) -> pd.Series:
    """'different' (0/1) on jnd_catch trials that showed the original twice: the false-alarm trials."""
    t = responses[(responses["kind"] == "jnd_catch") & (responses["answer"] == "same")]
    return (t["choice"] == "different").astype(int).reset_index(drop=True)


def d_prime(k_h: int, n_h: int, k_f: int, n_f: int) -> tuple[float, float, float]:
    """(d′, CI low, CI high) from hits and false alarms, log-linear corrected; NaN without false-alarm trials."""
    from scipy.stats import norm

    if n_h == 0 or n_f == 0:
        return np.nan, np.nan, np.nan
    h, f = (k_h + 0.5) / (n_h + 1), (k_f + 0.5) / (n_f + 1)
    zh, zf = norm.ppf(h), norm.ppf(f)
    d = zh - zf
    se = np.sqrt(h * (1 - h) / (n_h * norm.pdf(zh) ** 2) + f * (1 - f) / (n_f * norm.pdf(zf) ** 2))
    return float(d), float(d - 1.96 * se), float(d + 1.96 * se)


def jnd_summary(trials: pd.DataFrame, same: pd.Series) -> pd.DataFrame:
    """Per (arch, loss): proportion 'different' with Wilson CI, and d′ against the same-pair false-alarm rate."""
    from statsmodels.stats.proportion import proportion_confint

    rows = []
    k_f, n_f = int(same.sum()), int(len(same))
    for (arch, loss), g in trials.groupby(["arch", "loss"], sort=True):
        k, n = int(g["different"].sum()), len(g)
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        d, dl, dh = d_prime(k, n, k_f, n_f)
        rows.append({"arch": arch, "loss": loss, "n": n, "k_different": k, "prop_different": k / n, "ci_low": low,
                     "ci_high": high, "false_alarm": k_f / n_f if n_f else np.nan, "n_same": n_f,
                     "d_prime": d, "d_ci_low": dl, "d_ci_high": dh})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def per_image_tests(trials: pd.DataFrame, same: pd.Series) -> pd.DataFrame:
    """Exact binomial test per image of 'different' against the false-alarm rate, Holm and BH adjusted per (arch, loss)."""
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    null = float(same.mean()) if len(same) else 0.5
    null = min(max(null, 1e-6), 1 - 1e-6)  # a 0 or 1 false-alarm rate would make every test degenerate
    rows = []
    for (arch, loss), g in trials.groupby(["arch", "loss"], sort=True):
        part = []
        for image, gi in g.groupby("image_id", sort=True):
            k, n = int(gi["different"].sum()), len(gi)
            part.append({"arch": arch, "loss": loss, "image_id": image, "n": n, "k_different": k, "prop_different": k / n,
                         "null_p": null, "p": binomtest(k, n, null).pvalue})
        p = np.array([r["p"] for r in part])
        holm = multipletests(p, method="holm")[1]
        bh = multipletests(p, method="fdr_bh")[1]
        for r, ph, pb in zip(part, holm, bh):
            rows.append({**r, "p_holm": float(ph), "p_bh": float(pb)})
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)
