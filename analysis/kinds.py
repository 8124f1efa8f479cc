"""Statistics and report sections of the kinds beyond Snell's triplets and rankings: pairs, ratings, jnd.

`analyze_kinds` writes, only for kinds present in the data:
- pairs (no reference): pairs_pairwise.csv (counts, Wilson CIs, exact tests as for triplets),
  pairs_models.csv (the triplets' cluster-robust logit), pairs_scale.csv (Bradley–Terry) and
  pairs_agreement.csv (objective metrics' agreement with the choices, when the manifest is there),
  reported separately from the triplets;
- ratings: ratings_screening.csv (ITU-R BT.500 β2), and with screened-out participants dropped
  ratings_mos.csv, ratings_dmos.csv, ratings_models.csv (MixedLM and OrderedModel, and R's lmer and
  clmm where Rscript with lme4 and ordinal is installed), and with the manifest ratings_agreement.csv
  (Spearman/Pearson of MOS per (image, run) with each objective metric, image-bootstrap CIs);
- jnd: jnd.csv (proportion different, Wilson CI, d′) and jnd_per_image.csv (Holm / BH).
with a figure each under figures/ (pairs.png, ratings_mos.png, jnd.png), and returns the summary's
`kinds` block. `report_sections` turns those files into HTML.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import kinds as kinds_c
from percept.contracts.tables import atomic_write_csv

FIGURES = ("pairs.png", "ratings_mos.png", "jnd.png")
FILES = ("pairs_pairwise", "pairs_scale", "pairs_models", "pairs_agreement", "ratings_mos", "ratings_dmos", "ratings_screening", "ratings_models",
         "ratings_agreement",
         "jnd", "jnd_per_image")


def analyze_kinds(responses: pd.DataFrame, out: Path, *, n_boot: int = 200, seed: int = 0,
                  manifest: pd.DataFrame | None = None, lme4: bool | None = None) -> dict:
    """Write the pair, rating and jnd tables present in `responses` under `out`; return the summary block.

    `lme4`: also fit R's lmer and clmm on the ratings (None: when Rscript with lme4 and ordinal is there)."""
    from analysis import agreement as ag
    from analysis import jnd as jn
    from analysis import preferences as pr
    from analysis import ratings as rt
    from analysis import scaling as sc

    present = sorted(set(responses["kind"]))
    for kind in present:
        kinds_c.spec(kind)  # an unknown kind is refused, never folded into another
    block: dict = {"present": present, "headline": []}
    tables: dict[str, pd.DataFrame] = {}
    if "pair" in present:
        trials = pr.triplet_table(responses, kind="pair")
        tables["pairs_pairwise"] = pr.pairwise_table(trials)
        tables["pairs_scale"] = sc.bradley_terry(trials, n_boot, seed)
        tables["pairs_models"] = pr.model_table(trials, bayes=False, lme4=False)  # the triplets' main test, cluster-robust logit
        if manifest is not None:  # which objective metric picks what people picked without the original
            tables["pairs_agreement"] = ag.agreement_table(ag.pairs_from_triplets(trials), manifest, "pair", seed=seed)
        for r in tables["pairs_pairwise"].itertuples():
            block["headline"].append(f"{r.arch} pairs (no reference): {r.prop_a:.0%} chose {r.loss_a} over {r.loss_b} "
                                     f"(95% CI {r.ci_low:.0%}–{r.ci_high:.0%}, n={r.n})")
    ratings = rt.rating_table(responses)
    if len(ratings):
        screen = rt.bt500_screening(ratings)
        rejected = set(screen.loc[screen["rejected"], "participant"])
        kept = ratings[~ratings["participant"].isin(rejected)]
        reference = rt.reference_table(responses)
        reference = reference[~reference["participant"].isin(rejected)]
        tables["ratings_screening"] = screen
        tables["ratings_mos"] = rt.mos_table(kept)
        tables["ratings_dmos"] = rt.dmos_table(kept, reference)
        models = [rt.mixed_model(kept), rt.ordinal_model(kept)]
        if rt.r_models_available() if lme4 is None else lme4:  # R's lmer and clmm cross-check the statsmodels fits
            models.append(rt.r_models(kept))
        tables["ratings_models"] = pd.concat(models, ignore_index=True)
        block["ratings_r_models"] = bool(len(models) == 3)
        if manifest is not None:  # which objective metric orders the images as the raters' MOS does
            tables["ratings_agreement"] = rt.metric_agreement(kept, manifest, seed=seed)
        block["ratings_screened_out"] = screen.loc[screen["rejected"], ["participant", "reason"]].to_dict("records")
        for r in tables["ratings_mos"].itertuples():
            block["headline"].append(f"{r.arch} {r.kind}: {r.loss} MOS {r.mos:.2f} (95% CI {r.ci_low:.2f}–{r.ci_high:.2f}, "
                                     f"n={r.n})")
    trials = jn.jnd_table(responses)
    if len(trials):
        same = jn.same_pairs(responses)
        tables["jnd"] = jn.jnd_summary(trials, same)
        tables["jnd_per_image"] = jn.per_image_tests(trials, same)
        for r in tables["jnd"].itertuples():
            block["headline"].append(f"{r.arch} jnd: {r.loss} told apart from the original on {r.prop_different:.0%} "
                                     f"(95% CI {r.ci_low:.0%}–{r.ci_high:.0%}, n={r.n}); d′={r.d_prime:.2f}")
    for name in FILES:
        path = out / f"{name}.csv"
        if name in tables:
            atomic_write_csv(tables[name], path)
        else:
            path.unlink(missing_ok=True)  # a stale table of an earlier analysis must not be reported
    block["files"] = sorted(f"{n}.csv" for n in tables)
    block["figures"] = _figures(tables, out / "figures")
    return block


def interval_plot(df: pd.DataFrame, value: str, ylabel: str, path: Path, *, ylim: tuple[float, float] | None = None) -> Path | None:
    """Points with 95% CI bars per loss, one panel per (kind, arch); None when there is nothing to draw."""
    from analysis.plots import _colour, _err, _figure, _save

    if df is None or df.empty:
        return None
    df = df.assign(kind=df["kind"] if "kind" in df.columns else "")
    panels = list(df.groupby(["kind", "arch"], sort=True))
    fig = _figure(3.2 * len(panels) + 0.5, 3.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, ((kind, arch), g) in zip(axes, panels):
        x = np.arange(len(g))
        for i, r in enumerate(g.itertuples()):
            ax.errorbar([i], [getattr(r, value)], yerr=_err([getattr(r, value)], [r.ci_low], [r.ci_high]), fmt="o",
                        color=_colour(r.loss, i), capsize=4)
        ax.set_xticks(x, g["loss"].tolist())
        ax.set_title(f"{arch} {kind}".strip(), fontsize=10)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _figures(tables: dict[str, pd.DataFrame], figs: Path) -> list[str]:
    """Draw the figures of the tables present; remove stale ones; the names drawn."""
    from analysis.plots import preference_bars

    drawn = {
        "pairs.png": preference_bars(tables["pairs_pairwise"], figs / "pairs.png") if "pairs_pairwise" in tables else None,
        "ratings_mos.png": interval_plot(tables.get("ratings_mos"), "mos", "MOS (1–5, 95% CI)", figs / "ratings_mos.png",
                                         ylim=(1, 5)),
        "jnd.png": interval_plot(tables.get("jnd"), "prop_different", "proportion 'different' (95% CI)", figs / "jnd.png",
                                 ylim=(0, 1)),
    }
    for name, path in drawn.items():
        if path is None:
            (figs / name).unlink(missing_ok=True)
    return sorted(name for name, path in drawn.items() if path is not None)


def report_sections(adir: Path, summary: dict, table, read_csv, img) -> list[str]:
    """HTML sections for the pair, rating and jnd tables in `adir` (with the report's `table`, `_csv` and `_img` helpers)."""
    body = []
    kinds = summary.get("kinds", {}).get("present")
    if kinds:
        import html

        names = kinds if isinstance(kinds, list) else [kinds]
        body.append(f"<p>Trial kinds run: {html.escape(', '.join(map(str, names)))}.</p>")  # read from a file: escaped
    csv = {name: read_csv(adir / f"{name}.csv") for name in FILES}
    if csv["pairs_pairwise"] is not None:
        body.append("<h2>Pair comparisons without reference</h2><p>Two reconstructions side by side, no original "
                    "(\u201cwhich looks better?\u201d); counted, tested and scaled like the triplets, reported separately.</p>")
        body.append(img(adir / "figures" / "pairs.png", "pairs without reference") + table(csv["pairs_pairwise"]))
        for name in ("pairs_models", "pairs_scale", "pairs_agreement"):
            body.append(table(csv[name]) if csv[name] is not None else "")
    if csv["ratings_mos"] is not None:
        body.append("<h2>Ratings (ACR / DCR)</h2><p>MOS per loss with 95% t-intervals (ITU-T P.910); DMOS from the hidden "
                    "reference (ACR catch trials showing the original); participants screened by ITU-R BT.500's β2 "
                    "procedure are left out of MOS, DMOS and models. Mixed model: crossed random intercepts for "
                    "participant and image (statsmodels MixedLM); ordinal: cumulative logit (OrderedModel). Where R is "
                    "installed, the same models from R cross-check them: <b>lmer</b> (lme4, REML) and <b>clmm</b> "
                    "(ordinal, cumulative logit with crossed participant and image random intercepts); Wald z for both.</p>")
        rm = csv["ratings_models"]
        if rm is not None and not (rm["model"].isin(["lmer", "clmm"]).any() if "model" in rm.columns else False):
            body.append('<p class="note">R with lme4 and ordinal was not available, so the lmer/clmm cross-check was not run.</p>')
        body.append(img(adir / "figures" / "ratings_mos.png", "MOS per loss"))
        for name in ("ratings_mos", "ratings_dmos", "ratings_screening", "ratings_models"):
            body.append(f"<h3>{name.replace('ratings_', '')}</h3>" + table(csv[name]))
        if csv["ratings_agreement"] is not None:
            body.append("<h3>metric agreement</h3><p>Correlation of the MOS of each (image, run) with each objective "
                        "metric, signed so that +1 means the metric orders reconstructions as the raters did (a "
                        "lower-is-better metric's sign is flipped); 95% CIs resample images.</p>" + table(csv["ratings_agreement"]))
    if csv["jnd"] is not None:
        body.append("<h2>Same / different (jnd)</h2><p>Proportion \u201cdifferent\u201d with Wilson 95% CIs; d′ = z(H) − z(F) "
                    "with F from catch trials showing the original twice (yes/no model, log-linear correction); per-image "
                    "exact binomial tests against F with Holm and Benjamini–Hochberg adjustment.</p>")
        body.append(img(adir / "figures" / "jnd.png", "proportion different") + table(csv["jnd"]) + table(csv["jnd_per_image"]))
    return body
