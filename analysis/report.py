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

from percept.contracts.analysis_outputs import read_summary, read_table, summary_path
from percept.contracts.manifest import FLAT_RUN
from percept.contracts.tables import atomic_write

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
                      "Bayes — subject-specific log-odds; posterior mean ± 1.96 SD. <b>Anti-conservative</b>: its SD was "
                      "~2.7× smaller than lme4's SE in a simulation and its nominal 95% interval covered ~60% (issue 7) and 67% of 100 simulated studies (benchmarks/coverage.py), "
                      "so no p value is reported; shown for its variance components (sd_participant, sd_image) only",
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
    # counts read back from a CSV with empty cells come as floats: show them as integers
    counts = {c for c in cols if (c == "n" or c.startswith("n_")) and pd.api.types.is_float_dtype(df[c])
              and np.all(np.mod(df[c].dropna(), 1) == 0)}
    for _, row in df[cols].head(max_rows).iterrows():
        cells = "".join(f'<td class="{"t" if c in text_cols else ""}">'
                        f'{_e(_fmt(int(row[c]) if c in counts and pd.notna(row[c]) else row[c], digits))}</td>'
                        for c in cols)
        body.append(f"<tr>{cells}</tr>")
    more = f'<p class="note">… {len(df) - max_rows} more rows in the CSV</p>' if len(df) > max_rows else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


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


def _metric_section(manifest_path: Path | None, premise_rows: pd.DataFrame | None, unit: str = "image") -> str:
    from analysis.agreement import metric_directions, metric_means
    from analysis.premise import COLUMNS, premise_table, verdicts
    from percept.contracts.manifest import read_manifest

    if manifest_path is None or not Path(manifest_path).is_file():
        return '<p class="note">The manifest is not available, so the per-run metric table is skipped.</p>'
    man = read_manifest(manifest_path)
    means = metric_means(man)
    directions = metric_directions(man)
    arrows = ", ".join(f"{m} {'↑' if up else '↓'}" for m, up in directions.items())
    parts = [f"<p>Mean objective metrics of each run's reconstructions of the held-out images shown in the study "
             f"(from the manifest; [0,1] images, data range 1; {_e(arrows)} is better). The row <i>flat</i> "
             "(arch <i>baseline</i>) is a patch of each image's own mean colour: a model that does not beat it is not "
             "a reconstruction.</p>",
             table(means, ["run", "arch", "loss", "n_images", "degenerate", *directions], digits=4)]
    if "psnr_y" in directions:
        parts.append('<p class="note">psnr_y and ssim_y: on the ITU-R BT.601 Y channel with a border of the scale '
                     "factor in pixels cropped (the super-resolution convention); psnr, ssim and ms_ssim: on RGB over "
                     "the whole image. The bicubic run is the baseline a super-resolution network must beat.</p>")
    if "lpips" not in directions:
        # Said once, here: the agreement table below simply has no lpips rows.
        parts.append('<p class="note">LPIPS is not in this manifest: the VGG-16 weights were not present when it was '
                     "exported (put torchvision's vgg16-397923af.pth in $TORCH_HOME/hub/checkpoints/, or pass "
                     "--vgg-weights, and export again).</p>")
    if not (man["run"] == FLAT_RUN).any():
        parts.append('<div class="warn">The manifest has no flat-baseline rows (run <code>flat</code>, arch '
                     "<code>baseline</code>); rerun <code>percept reconstruct</code> to test models against it.</div>")
    bad = means.loc[means["degenerate"] == 1, "run"].tolist()
    if bad:
        parts.append(f'<div class="warn">Degenerate runs (the training guard, or no better than the flat baseline on '
                     f"their own metric): {_e(', '.join(bad))}. They are flagged here and left out of the premise "
                     "claims and of every comparison by people.</div>")
    if premise_rows is None or (premise_rows.empty and len(premise_rows.columns) == 0):
        premise_rows = premise_table(man, unit=unit)
    premise_rows = premise_rows.reindex(columns=COLUMNS)
    if premise_rows.empty:
        parts.append('<p class="note">No run was trained on a loss that has an own metric (mse, mae, ssim, ms_ssim, '
                     "mix).</p>")
        return "".join(parts)
    unit = str(premise_rows["unit"].dropna().iloc[0]) if premise_rows["unit"].notna().any() else unit
    v = verdicts(premise_rows)
    parts.append("<h3>Is each model best on the metric it was trained on?</h3>"
                 "<p>For each architecture and trained loss: per-image differences of its own metric (mse and PSNR "
                 "for mse, mae for mae, ssim for ssim, ms_ssim for ms_ssim and mix) against every other loss of the "
                 "architecture and against the flat baseline, on the same held-out images. Seeds are averaged per "
                 f"image first; diff &gt; 0 favours the model; 95% paired t interval over {_e(unit)}s. "
                 "<b>yes</b>: better than every rival with the CI excluding 0; <b>no</b>: some rival significantly "
                 "better; <b>undecided</b> otherwise; <b>degenerate</b>: no claim. The table lists the closest "
                 "rival (smallest lower bound); premise.csv has every comparison.</p>")
    parts.append(table(v, digits=4))
    counts = v["answer"].value_counts()
    parts.append("<p>" + ", ".join(f"{_e(a)}: {int(counts.get(a, 0))}" for a in ("yes", "no", "undecided", "degenerate")
                                   if counts.get(a, 0)) + f" of {len(v)} model–metric checks.</p>")
    single = sorted(set(v.loc[v["n_seeds"] < 2, "loss"].astype(str) + " (" + v.loc[v["n_seeds"] < 2, "arch"].astype(str) + ")"))
    if single:
        parts.append(f'<p class="note">One seed only for {_e(", ".join(single))}: seed-to-seed variation is not '
                     "covered by these intervals; train a second seed.</p>")
    parts.append(table(premise_rows, ["arch", "loss", "metric", "rival", "n_seeds", "n_units", "own_mean", "rival_mean",
                                      "mean_diff", "ci_low", "ci_high", "p", "answer", "note"], digits=4))
    return "".join(parts)


def _observer_note(summary: dict) -> str:
    """Which metric the simulated observers used, and whether agreement with a training loss is built in."""
    info = summary.get("observers") or {}
    obs = info.get("observers") or []
    if not obs:
        return ""
    names = ", ".join(f"{o.get('observer')} ({o.get('sessions')} sessions)" for o in obs)
    built = info.get("built_in") or []
    if built:
        verdict = (f"<b>built in</b> for the model(s) trained on {_e(', '.join(built))}: the observers judge by the "
                   "metric those models were trained to optimise, so a preference for them is circular")
    else:
        verdict = "not built in: no model was trained on the observers' metric"
    return (f'<div class="warn">Simulated observers: {_e(names)}. Agreement with a training loss is {verdict}. '
            "The agreement of the observers' own metric with these judgments is built in by construction.</div>")


def report(out_dir: str | Path) -> Path:
    """Write runs/EXP/analysis/report.html from the analysis outputs and return its path."""
    from analysis import plots

    out_dir = Path(out_dir)
    adir = out_dir / "analysis"
    summary = read_summary(out_dir)  # its paths are relative to the experiment folder: nothing to guess
    figs = adir / "figures"
    study_dir = summary_path(out_dir, summary, "study")
    manifest_path = summary_path(out_dir, summary, "manifest")

    csv = {name: read_table(adir, name) for name in ("exclusions", "pairwise", "models", "per_image", "rankings",
                                                           "friedman", "ranking_posthoc", "scale", "agreement",
                                                           "classification", "power", "premise", "family",
                                                           "classification_pairs")}
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
    fam = csv["family"]
    if fam is not None and not fam.empty:
        declared = (summary.get("family") or {}).get("declared", "")
        body.append(f"<p>The headline tests form one family, declared {_e(declared)}. Intervals are the main test's "
                    "(two-way cluster-robust logit) 95% CIs, as the probability of choosing loss A at balanced sides; "
                    "p_holm is Holm's adjustment across the whole family (statsmodels multipletests). For Friedman "
                    "tests the estimate is Kendall's W.</p>")
        body.append(table(fam, ["test", "arch", "pair", "n", "prob_a", "ci_low", "ci_high", "estimate", "p", "p_holm",
                                "reject", "note"]))
    if summary.get("degenerate_runs"):
        body.append(f'<div class="warn">Degenerate runs left out of every human comparison: '
                    f"{_e(', '.join(summary['degenerate_runs']))} ({_e(summary.get('n_degenerate_trials_dropped', 0))} "
                    "judged trials dropped).</div>")
    body.append(_observer_note(summary))

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

    body += report_sections(adir, summary, table, lambda path: read_table(adir, path.stem), _img)  # pairs, ratings and jnd, when the study has them
    body.append("<h2>Objective metrics per run</h2>")
    body.append(_metric_section(Path(manifest_path) if manifest_path else None, csv["premise"],
                                summary.get("options", {}).get("premise_unit", "image")))

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
                    "runs), a metric that calls A closer scores the fraction of people choosing A (ties 0.5), i.e. the "
                    "chance it agrees with one random judge; averaged over comparisons, 95% CI by bootstrap over "
                    "comparisons. <b>The ceiling to compare with is human_pairwise</b>, the unbiased chance that two "
                    "different people agree (over units with ≥ 2 judgments, n_units_multi). human_ceiling is BAPPS's "
                    "mean p²+(1−p)², biased upwards with few judgments (it is 1 for a single judgment): shown last, "
                    "for comparison with the literature only. Rankings contribute their three implied pairs.</p>")
        body.append(_observer_note(summary))
        body.append(_img(figs / "agreement.png", "metric agreement"))
        body.append(table(ag, ["source", "arch", "metric", "n_units", "n_judgments", "agreement", "ci_low", "ci_high",
                               "human_pairwise", "n_units_multi", "human_ceiling"]))

    body.append("<h2>Classification of learned codes</h2>")
    cl = csv["classification"]
    if cl is None or cl.empty:
        body.append('<p class="note">No classification results (run <code>percept classify --codes runs/EXP/codes</code>).</p>')
    else:
        body.append("<p>Multinomial logistic regression (scikit-learn, lbfgs) on standardised train codes, accuracy on "
                    "the test codes; a raw-pixel baseline and chance lines (train-majority class and 1/K). Patches cut "
                    "from one photograph are not independent, so when test images share a source photograph the 95% "
                    "CI is a cluster bootstrap over sources (ci_method; n_sources; marked rough below 10 sources, where a "
                    "percentile cluster bootstrap undercovers), else the Wilson interval "
                    "(wilson_low/high is always shown). Runs flagged degenerate (manifest) or with collapsed codes are "
                    "marked in <i>flag</i> and left out of the Holm family of paired comparisons.</p>")
        body.append(_img(figs / "classification.png", "classification accuracy"))
        body.append(table(cl, ["kind", "run", "n_train", "n_test", "n_sources", "dim", "accuracy", "ci_low", "ci_high",
                               "ci_method", "wilson_low", "wilson_high", "flag", "note"]))
        cp = csv["classification_pairs"]
        if cp is not None and not cp.empty:
            body.append("<p>Paired comparisons of runs of one architecture on the same test images: McNemar's exact "
                        "test on the images only one run classifies correctly (statsmodels; it assumes independent "
                        "images), the accuracy difference with a paired bootstrap 95% CI (resampling sources, or "
                        "images when each is its own source), and Holm's adjustment across unflagged pairs.</p>")
            body.append(table(cp, ["arch", "run_a", "run_b", "n_test", "n_sources", "accuracy_a", "accuracy_b", "diff",
                                   "ci_low", "ci_high", "ci_method", "only_a_right", "only_b_right", "p_mcnemar",
                                   "p_holm", "flag"]))

    pw_ = csv["power"]
    if pw_ is not None and not pw_.empty:
        real = "pair" in pw_.columns and pw_["pair"].notna().all()
        body.append("<h2>Power</h2><p>Power of the main test (two-way cluster-robust logit) by simulation, for the "
                    "smallest effect of interest stated by the user (sesoi: the population-averaged proportion choosing "
                    "loss A), never for the study's own estimate. "
                    + ("Each simulated study answers the design's real lists with their real sides (participant k "
                       "answers list k mod L); power_holm_first is the power at α / (family size), the first step of "
                       "Holm's procedure. " if real else "Hypothetical balanced design (every participant judges every "
                       "image once, sides alternating). ")
                    + f"Setting: {_e(pw_['source'].iloc[0])}. Share of simulated studies with p &lt; α, Monte Carlo "
                    "Wilson 95% CI.</p>")
        body.append(_img(figs / "power.png", "power"))
        body.append(table(pw_, ["arch", "pair", "participants", "images", "lists", "trials", "sims", "test", "sesoi",
                                "power", "ci_low", "ci_high", "power_holm_first", "family_size", "effect",
                                "sd_participant", "sd_image", "balanced"]))

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
