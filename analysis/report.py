"""`percept report --out runs/EXP`: one self-contained HTML page from the analysis outputs.

It reads only runs/EXP/analysis/ (CSV, JSON, PNG) plus the design and manifest, which give the
per-run metric table and the example-triplet grid. Figures are embedded as base64 PNG; there
are no external links, stylesheets or scripts, and every text taken from a data file is escaped.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import InputError
from percept.contracts.tables import atomic_write, read_json

CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f2f2f2}td.t,th.t{text-align:left}.banner{background:#b00020;color:#fff;padding:.8em 1em;font-size:1.15em;
font-weight:bold;border-radius:4px;margin:1em 0}.warn{background:#fff4e5;border-left:4px solid #e69500;padding:.5em .8em;margin:.5em 0}
.note{color:#555;font-size:.9em}img{max-width:100%;border:1px solid #eee;margin:.4em 0}ul.headline li{margin:.2em 0}
.yes{color:#1b7837;font-weight:bold}.no{color:#b00020;font-weight:bold}
"""

ESTIMATOR_TEXT = {
    "cluster_logit": "logistic regression of choosing loss A on side, two-way cluster-robust (participant, image) "
                     "SE, t test on min(clusters)−1 df — population-averaged log-odds; <b>the main test</b>",
    "bayes_mixed_vb": "statsmodels BinomialBayesMixedGLM, crossed participant and image random intercepts, variational "
                      "Bayes — subject-specific log-odds; posterior mean ± SD. Its SD was ~2.7× smaller than lme4's SE "
                      "in a simulation, so its interval and p are anti-conservative: a cross-check only",
    "lme4_glmer": "R lme4::glmer (Laplace), crossed random intercepts, Wald z — the field's reference, run through Rscript",
}


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x, digits: int = 3) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return "–"
        if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e5):
            return f"{x:.2e}"
        return f"{x:.{digits}f}"
    return str(x)


def table(df: pd.DataFrame, columns: list[str] | None = None, digits: int = 3, max_rows: int = 60) -> str:
    """An escaped HTML table of `df` (numbers formatted, text left-aligned)."""
    if df is None or df.empty:
        return '<p class="note">(no rows)</p>'
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    text_cols = {c for c in cols if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])}
    head = "".join(f'<th class="{"t" if c in text_cols else ""}">{_e(c)}</th>' for c in cols)
    body = []
    for _, row in df[cols].head(max_rows).iterrows():
        cells = "".join(f'<td class="{"t" if c in text_cols else ""}">{_e(_fmt(row[c], digits))}</td>' for c in cols)
        body.append(f"<tr>{cells}</tr>")
    more = f'<p class="note">… {len(df) - max_rows} more rows in the CSV</p>' if len(df) > max_rows else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _load_images(paths: list[Path]) -> list[np.ndarray] | None:
    from PIL import Image

    out = []
    for p in paths:
        if not p.is_file():
            return None
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def example_triplets(study_dir: Path, per_image: pd.DataFrame, n: int = 6) -> list[dict]:
    """Up to n triplets (the most and least preferred images of each arch and pair) with their images and votes."""
    from percept.contracts.design import read_design

    design_path = study_dir / "design.csv"
    if per_image is None or per_image.empty or not design_path.is_file():
        return []
    design = read_design(design_path)
    trip = design[(design["kind"] == "triplet") & (design["block"] == "main")]
    picks = []
    groups = list(per_image.groupby(["arch", "pair"], sort=True))
    per_group = max(1, n // max(1, len(groups)))
    for (arch, pair), g in groups:
        g = g.sort_values(["prop_a", "n"], ascending=[False, False])
        chosen = [("most", g.iloc[0])] + ([("least", g.iloc[-1])] if per_group > 1 and len(g) > 1 else [])
        picks += [(arch, pair, which, r) for which, r in chosen]
    examples = []
    for arch, pair, which, r in picks[:n]:
        rows = trip[(trip["arch"] == arch) & (trip["pair"] == pair) & (trip["image_id"] == r["image_id"])]
        if rows.empty:
            continue
        d = rows.iloc[0]
        loss_a, loss_b = pair.split(":")
        a_slot, b_slot = ("left", "right") if d["left_loss"] == loss_a else ("right", "left")
        images = _load_images([study_dir / d[f"{a_slot}_path"], study_dir / d["reference_path"], study_dir / d[f"{b_slot}_path"]])
        if images is None:
            continue
        examples.append({"left": images[0], "original": images[1], "right": images[2],
                         "left_title": f"{arch} {loss_a}", "right_title": f"{arch} {loss_b}",
                         "caption": f"{int(r['wins_a'])} of {int(r['n'])} chose {loss_a} ({which} preferred)"})
    return examples


def _metric_section(manifest_path: Path | None) -> str:
    from analysis.agreement import best_on_own_metric, metric_means
    from percept.contracts.manifest import HIGHER_IS_BETTER, read_manifest

    if manifest_path is None or not Path(manifest_path).is_file():
        return '<p class="note">The manifest is not available, so the per-run metric table is skipped.</p>'
    man = read_manifest(manifest_path)
    means = metric_means(man)
    best = best_on_own_metric(man)
    arrows = ", ".join(f"{m} {'↑' if up else '↓'}" for m, up in HIGHER_IS_BETTER.items())
    parts = [f"<p>Mean objective metrics of each run's reconstructions of the held-out images shown in the study "
             f"(from the manifest; [0,1] images, data range 1; {_e(arrows)} is better).</p>",
             table(means, ["run", "arch", "loss", "n_images", "mse", "mae", "psnr", "ssim", "ms_ssim"], digits=4)]
    if best.empty:
        parts.append('<p class="note">No run was trained on a loss that is also one of the metrics.</p>')
        return "".join(parts)
    parts.append("<p><b>Is each model best on the metric it was trained on?</b></p><ul>")
    for arch, g in best.groupby("arch", sort=True):
        for r in g.itertuples():
            verdict = ('<span class="yes">yes</span>' if r.is_best else
                       f'<span class="no">no</span> — the {_e(r.best_loss)} model is better ({_e(_fmt(r.best_value, 4))})')
            parts.append(f"<li>{_e(arch)}: the {_e(r.loss)} model's mean {_e(r.metric)} is {_e(_fmt(r.value, 4))}: "
                         f"best of its architecture? {verdict}</li>")
    n_yes, n_all = int(best["is_best"].sum()), len(best)
    parts.append(f"</ul><p>{n_yes} of {n_all} models are best on their own training metric.</p>")
    return "".join(parts)


def report(out_dir: str | Path) -> Path:
    """Write runs/EXP/analysis/report.html from the analysis outputs and return its path."""
    from analysis import plots

    out_dir = Path(out_dir)
    adir = out_dir / "analysis"
    summary_path = adir / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"{summary_path}: no analysis summary; run `percept analyze --study {out_dir / 'study'}` first")
    summary = read_json(summary_path, "no analysis summary")
    figs = adir / "figures"
    study_dir = out_dir / "study" if (out_dir / "study").is_dir() else Path(summary.get("study", out_dir / "study"))
    manifest_path = summary.get("manifest")
    if not manifest_path or not Path(manifest_path).is_file():
        # the experiment folder may have moved since the analysis: look beside it
        beside = out_dir / "reconstructions" / "manifest.csv"
        manifest_path = str(beside) if beside.is_file() else None

    csv = {name: _csv(adir / f"{name}.csv") for name in ("exclusions", "pairwise", "models", "per_image", "rankings",
                                                           "friedman", "ranking_posthoc", "scale", "agreement",
                                                           "classification", "power")}
    examples = example_triplets(study_dir, csv["per_image"])
    grid = plots.example_grid(examples, figs / "examples.png")
    if grid is None:
        (figs / "examples.png").unlink(missing_ok=True)

    body = []
    title = f"percept report: {out_dir.resolve().name}"
    body.append(f"<h1>{_e(title)}</h1>")
    body.append('<p class="note">Do perceptual losses make reconstructions people prefer? (after Snell et al., ICIP 2017)</p>')
    if summary.get("simulated"):
        body.append(f'<div class="banner">SIMULATED DATA: {summary.get("n_simulated_rows", "some")} of '
                    f'{summary.get("n_rows", "?")} analysed responses were written by scripted observers, not people. '
                    "No conclusion about human perception follows from this report.</div>")
    for w in summary.get("warnings", []):
        body.append(f'<div class="warn">warning: {_e(w)}</div>')
    if summary.get("headline"):
        body.append("<h2>Summary</h2><ul class='headline'>" +
                    "".join(f"<li>{_e(line)}</li>" for line in summary["headline"]) + "</ul>")

    # design and exclusions
    parts = summary.get("participants", {})
    rules = summary.get("options", {}).get("rules", {})
    trials = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted(summary.get("trials", {}).items()))
    body.append("<h2>Design and exclusions</h2>")
    body.append(f"<p>Study folder <code>{_e(summary.get('study', ''))}</code>; {_e(len(summary.get('response_files', [])))} "
                f"response files; analysed main-block trials: {trials}; practice trials dropped: "
                f"{_e(summary.get('n_practice_dropped', 0))}. Participants: {_e(parts.get('total', '?'))}, included "
                f"{_e(parts.get('included', '?'))}.</p>")
    body.append(f"<p>Exclusion rules: catch-trial accuracy below {_e(rules.get('catch_threshold'))}; choosing one side "
                f"on at least {_e(rules.get('side_bias'))} of 2AFC trials (with ≥ {_e(rules.get('min_side_trials'))} "
                f"such trials); more than {_e(rules.get('max_fast_fraction'))} of answers faster than "
                f"{_e(rules.get('fast_rt'))} s. Simulated rows "
                f"{'were excluded' if summary.get('options', {}).get('exclude_simulated') else 'were kept'}.</p>")
    body.append(table(csv["exclusions"], ["participant", "sessions", "n_trials", "n_catch", "catch_accuracy",
                                          "side_fraction", "median_rt", "fast_fraction", "simulated", "included",
                                          "reasons"]))

    from analysis.kinds import report_sections

    body += report_sections(adir, summary, table, _csv, _img)  # pairs, ratings and jnd, when the study has them
    body.append("<h2>Objective metrics per run</h2>")
    body.append(_metric_section(Path(manifest_path) if manifest_path else None))

    body.append("<h2>Pairwise preferences (triplets)</h2>")
    pw = csv["pairwise"]
    if pw is None or pw.empty:
        body.append('<p class="note">This study has no triplet trials.</p>')
    else:
        body.append("<p>Each triplet shows the original in the centre and two reconstructions by one architecture. "
                    "prop_a is the proportion choosing loss A with its Wilson 95% CI; p_binom is the exact two-sided "
                    "binomial test of 50%, treating trials as independent (they are not: see the models). "
                    "The row 'all' pools the architectures.</p>")
        body.append(_img(figs / "preferences.png", "preference bars"))
        body.append(table(pw, ["arch", "pair", "n", "wins_a", "wins_b", "prop_a", "ci_low", "ci_high", "p_binom",
                               "n_participants", "n_images", "left_fraction"]))
        body.append("<h3>Models with participant and image effects</h3><p>Estimate: log-odds of choosing loss A over B "
                    "at balanced sides (a side covariate ±1 takes out any bias towards the left image; side_estimate is "
                    "that bias in log-odds). prob_a = logistic(estimate). Which estimator gives which number:</p><ul>")
        for est in dict.fromkeys(csv["models"]["estimator"]) if csv["models"] is not None else []:
            body.append(f"<li><b>{_e(est)}</b>: {ESTIMATOR_TEXT.get(est, _e(est))}</li>")
        body.append("</ul>")
        if csv["models"] is not None and "lme4_glmer" not in set(csv["models"]["estimator"]):
            body.append('<p class="note">R with lme4 was not available, so the glmer cross-check was not run.</p>')
        body.append(table(csv["models"], ["arch", "pair", "estimator", "n", "estimate", "se", "ci_low", "ci_high", "p",
                                          "prob_a", "side_estimate", "sd_participant", "sd_image", "note"]))
        pi = csv["per_image"]
        body.append("<h3>Per image</h3><p>Proportion preferring loss A per image (the paper's per-triplet histogram), "
                    "with exact binomial tests per image corrected across the images of each architecture and pair "
                    "(Holm: family-wise; BH: false discovery rate).</p>")
        body.append(_img(figs / "per_image.png", "per-image histogram"))
        if pi is not None and not pi.empty:
            sig = pi.groupby(["arch", "pair"]).agg(images=("image_id", "size"), judgments_per_image=("n", "mean"),
                                                   holm_significant=("p_holm", lambda p: int((p < 0.05).sum())),
                                                   bh_significant=("p_bh", lambda p: int((p < 0.05).sum()))).reset_index()
            body.append(table(sig, digits=1))

    body.append("<h2>Rankings</h2>")
    rk = csv["rankings"]
    if rk is None or rk.empty:
        body.append('<p class="note">This study has no ranking trials.</p>')
    else:
        unit = summary.get("options", {}).get("rank_unit", "participant")
        body.append(f"<p>Each ranking trial orders the three reconstructions of one image, best first (paper Fig. 2b). "
                    f"Friedman test over blocks = {_e(unit)}s (mean rank per {_e(unit)}), Kendall's W as effect size, "
                    "then pairwise Wilcoxon signed-rank tests with Holm's correction.</p>")
        body.append(_img(figs / "ranks.png", "rank distributions"))
        body.append(table(csv["friedman"]))
        body.append(table(csv["ranking_posthoc"], ["arch", "loss_a", "loss_b", "n_blocks", "mean_rank_a", "mean_rank_b",
                                                   "wilcoxon_w", "p", "p_holm"]))

    body.append("<h2>Scale values</h2>")
    sc = csv["scale"]
    if sc is None or sc.empty:
        body.append('<p class="note">No scale values (no triplets or rankings).</p>')
    else:
        body.append("<p>Bradley–Terry scores from triplets and Plackett–Luce scores from rankings (choix's iterative "
                    "Luce spectral ranking, L2-like regularisation 0.01), as log-worths with mean 0 per architecture. "
                    "95% intervals: participant bootstrap percentiles.</p>")
        body.append(_img(figs / "scale.png", "scale values"))
        body.append(table(sc))

    body.append("<h2>Agreement of objective metrics with people</h2>")
    ag = csv["agreement"]
    if ag is None or ag.empty:
        body.append('<p class="note">No metric agreement (the manifest is unavailable or there are no judgments).</p>')
    else:
        body.append("<p>2AFC agreement as in BAPPS (Zhang et al. 2018): per comparison (image, architecture, pair of "
                    "runs), a metric that calls A closer scores the fraction of people choosing A (ties 0.5); averaged "
                    "over comparisons, 95% CI by bootstrap over comparisons. human_ceiling = mean p²+(1−p)² (BAPPS; "
                    "it is 1 for a single judgment); human_pairwise = chance two different people agree (units with ≥ 2 "
                    "judgments). Rankings contribute their three implied pairs.</p>")
        body.append(_img(figs / "agreement.png", "metric agreement"))
        body.append(table(ag))

    body.append("<h2>Classification of learned codes</h2>")
    cl = csv["classification"]
    if cl is None or cl.empty:
        body.append('<p class="note">No classification results (run <code>percept classify --codes runs/EXP/codes</code>).</p>')
    else:
        body.append("<p>Multinomial logistic regression (scikit-learn, lbfgs) on standardised train codes, accuracy on "
                    "the test codes with a Wilson 95% CI; a raw-pixel baseline and chance lines (train-majority class "
                    "and 1/K).</p>")
        body.append(_img(figs / "classification.png", "classification accuracy"))
        body.append(table(cl))

    pw_ = csv["power"]
    if pw_ is not None and not pw_.empty:
        body.append("<h2>Power</h2><p>Power by simulation from the fitted variance components "
                    f"({_e(pw_['source'].iloc[0])}): share of simulated studies with p &lt; α, Monte Carlo Wilson 95% CI.</p>")
        body.append(_img(figs / "power.png", "power"))
        body.append(table(pw_, ["participants", "images", "trials", "sims", "test", "power", "ci_low", "ci_high", "effect",
                                "sd_participant", "sd_image"]))

    body.append("<h2>Example triplets</h2>")
    if grid is not None:
        body.append("<p>For each architecture and pair, the image where people most (and, with few pairs, least) "
                    "preferred loss A: loss A's reconstruction left, the original centre, loss B's right (on screen "
                    "the sides were counterbalanced).</p>")
        body.append(_img(grid, "example triplets"))
    else:
        body.append('<p class="note">No example triplets (no triplet trials, or the images are not available).</p>')

    versions = summary.get("versions", {})
    body.append("<h2>Methods and software</h2>")
    body.append("<p>Practice trials are removed; participants are excluded by the rules above before any statistic. "
                "Triplet outcomes are modelled as the probability of choosing loss A over loss B with a side covariate. "
                "The main inferential test is the two-way cluster-robust logit (statsmodels), chosen because it kept "
                "close to lme4's standard error in simulation; the Bayesian mixed GLM is shown for its variance "
                "components and as a cross-check. Proportions carry Wilson intervals; per-image tests are exact "
                "binomial tests with Holm and Benjamini–Hochberg corrections (statsmodels). Rankings: scipy's Friedman "
                "and Wilcoxon tests. Scaling: choix. Classification: scikit-learn. Figures: matplotlib.</p>")
    body.append("<p>Software: " + ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(versions.items())) + ".</p>")
    opts = json.dumps(summary.get("options", {}), sort_keys=True)
    body.append(f'<p class="note">Options: {_e(opts)}. Analysis took {_e(summary.get("seconds", "?"))} s.</p>')

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    return atomic_write(adir / "report.html", page)
