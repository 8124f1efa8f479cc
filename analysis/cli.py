"""`percept analyze | classify | power | report`: the analysis stage's commands and Python entry points.

Python: `analyze(study_dir) -> Path`, `classify(codes_dir) -> Path`, `power(study_dir, ...) -> Path`
and `report(out_dir) -> Path` (re-exported from analysis.report) do what the commands do.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from percept.contracts import InputError
from percept.contracts.tables import atomic_write_csv

if TYPE_CHECKING:
    from analysis.load import ExclusionRules

# Figures `analyze` owns; any not redrawn on a rerun is removed, so old and new never mix.
ANALYZE_FIGURES = ("preferences.png", "per_image.png", "ranks.png", "scale.png", "agreement.png")


def _write(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write_csv(df, path)


def _figure(fn, data, path: Path) -> str | None:
    out = fn(data, path)
    if out is None:
        path.unlink(missing_ok=True)
        return None
    return path.name


def analyze(study_dir: str | Path, *, rules: ExclusionRules | None = None, exclude_simulated: bool = False, rank_unit: str = "participant",
            n_boot: int = 200, bayes: bool = True, lme4: bool | None = None, seed: int = 0,
            out_dir: str | Path | None = None) -> Path:
    """Run every preference analysis of a study folder; write CSVs, figures and summary.json; return the folder."""
    from analysis import agreement as ag
    from analysis import plots, preferences as pr, rankings as rk, scaling as sc
    from analysis.load import ExclusionRules, analysis_dir, load_study, versions, write_json

    t0 = time.perf_counter()
    rules = rules or ExclusionRules()
    if rank_unit not in rk.UNITS:
        raise InputError(f"--rank-unit {rank_unit!r} is not one of {', '.join(rk.UNITS)}")
    if n_boot < 0:
        raise InputError(f"--boot must be ≥ 0, got {n_boot}")
    study = load_study(study_dir, rules, exclude_simulated=exclude_simulated)
    out = Path(out_dir) if out_dir else analysis_dir(study_dir)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)

    trials = pr.triplet_table(study.responses)
    pairwise = pr.pairwise_table(trials)
    per_image = pr.per_image_table(trials)
    models = pr.model_table(trials, bayes=bayes, lme4=lme4)
    ranks = rk.ranking_table(study.responses)
    dist = rk.rank_distribution(ranks)
    friedman, posthoc = rk.ranking_tests(ranks, rank_unit)
    scale = pd.concat([sc.bradley_terry(trials, n_boot, seed), sc.plackett_luce(ranks, n_boot, seed)], ignore_index=True)
    if study.manifest is not None:
        agreement = pd.concat([ag.agreement_table(ag.pairs_from_triplets(trials), study.manifest, "triplet", seed=seed),
                               ag.agreement_table(ag.pairs_from_rankings(ranks), study.manifest, "ranking", seed=seed)],
                              ignore_index=True)
    else:
        agreement = pd.DataFrame(columns=ag.COLUMNS)

    tables = {"exclusions.csv": study.participants, "pairwise.csv": pairwise, "models.csv": models,
              "per_image.csv": per_image, "rankings.csv": dist, "friedman.csv": friedman,
              "ranking_posthoc.csv": posthoc, "scale.csv": scale, "agreement.csv": agreement}
    for name, df in tables.items():
        _write(df, out / name)
    figures = {
        "preferences.png": _figure(plots.preference_bars, pairwise, figs / "preferences.png"),
        "per_image.png": _figure(plots.per_image_histogram, per_image, figs / "per_image.png"),
        "ranks.png": _figure(plots.rank_distribution_plot, dist, figs / "ranks.png"),
        "scale.png": _figure(plots.scale_plot, scale, figs / "scale.png"),
        "agreement.png": _figure(plots.agreement_plot, agreement, figs / "agreement.png"),
    }
    from analysis.kinds import analyze_kinds

    other_kinds = analyze_kinds(study.responses, out, n_boot=n_boot, seed=seed, manifest=study.manifest)  # pairs, ratings, jnd
    counts = study.responses["kind"].value_counts().to_dict()
    summary = {
        "study": str(Path(study_dir).resolve()),
        "manifest": str(study.manifest_path) if study.manifest_path else None,
        "simulated": study.simulated,
        "n_simulated_rows": int(study.responses["simulated"].sum()),
        "n_rows": int(len(study.responses)),
        "trials": {k: int(v) for k, v in counts.items()},
        "n_practice_dropped": study.n_practice,
        "participants": {"total": int(len(study.participants)), "included": int(study.participants["included"].sum()),
                         "excluded": study.participants.loc[~study.participants["included"], ["participant", "reasons"]]
                         .to_dict("records")},
        "response_files": list(study.files),
        "warnings": list(study.warnings),
        "main_test": "cluster_logit: logit of choosing loss A on side (±1), two-way (participant, image) "
                     "cluster-robust SE, t test on min(clusters)-1 df",
        "preferences": models.to_dict("records"),
        "friedman": friedman.to_dict("records"),
        "headline": headline(pairwise, models, friedman, dist, study.simulated) + [
            line + (" [simulated observers]" if study.simulated else "") for line in other_kinds["headline"]],
        "kinds": other_kinds,
        "figures": {k: v for k, v in figures.items() if v},
        "options": {"rules": asdict(rules), "exclude_simulated": exclude_simulated, "rank_unit": rank_unit,
                    "n_boot": n_boot, "bayes": bayes, "lme4": bool(models["estimator"].eq("lme4_glmer").any())
                    if len(models) else False, "seed": seed},
        "versions": versions(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(summary, out / "summary.json")
    return out


def headline(pairwise: pd.DataFrame, models: pd.DataFrame, friedman: pd.DataFrame, dist: pd.DataFrame,
             simulated: bool) -> list[str]:
    """A few plain sentences with the main numbers (printed by the demo, shown at the top of the report)."""
    tag = " [simulated observers]" if simulated else ""
    lines = []
    main = models[models["estimator"] == "cluster_logit"].set_index(["arch", "pair"]) if len(models) else None
    for r in pairwise.itertuples():
        p = main.loc[(r.arch, r.pair), "p"] if main is not None and (r.arch, r.pair) in main.index else float("nan")
        # phrase each pair in favour of the loss chosen more often
        win, lose, prop, low, high = ((r.loss_a, r.loss_b, r.prop_a, r.ci_low, r.ci_high) if r.prop_a >= 0.5 else
                                      (r.loss_b, r.loss_a, 1 - r.prop_a, 1 - r.ci_high, 1 - r.ci_low))
        lines.append(f"{r.arch}: {prop:.0%} chose {win} over {lose} "
                     f"(95% CI {low:.0%}–{high:.0%}, n={r.n}; cluster-robust logit p={p:.3g}){tag}")
    for r in friedman.itertuples():
        means = dist[dist["arch"] == r.arch].drop_duplicates("loss").sort_values("mean_rank")
        order = " < ".join(f"{m.loss} ({m.mean_rank:.2f})" for m in means.itertuples())
        lines.append(f"{r.arch} rankings: mean rank {order}; Friedman p={r.p:.3g}, Kendall's W={r.kendall_w:.2f}{tag}")
    return lines


def classify(codes_dir: str | Path, *, pixels: str | Path | None = None, manifest: str | Path | None = None,
             out_dir: str | Path | None = None, c: float = 1.0, max_iter: int = 1000, seed: int = 0) -> Path:
    """Classify every codes file; write classification.csv (+ .json, figure) in the analysis folder; return the csv."""
    from analysis import plots
    from analysis.classify import classify_codes
    from analysis.load import versions, write_json

    if c <= 0 or max_iter < 1:
        raise InputError(f"--C must be > 0 and --max-iter ≥ 1 (got {c}, {max_iter})")
    t0 = time.perf_counter()
    table = classify_codes(codes_dir, pixels=pixels, manifest=manifest, c=c, max_iter=max_iter, seed=seed)
    out = Path(out_dir) if out_dir else Path(codes_dir).resolve().parent / "analysis"
    path = _write(table, out / "classification.csv")
    fig = _figure(plots.classification_plot, table, out / "figures" / "classification.png")
    write_json({"codes": str(Path(codes_dir).resolve()), "pixels": str(pixels) if pixels else None,
                "options": {"C": c, "max_iter": max_iter, "seed": seed, "model": "StandardScaler + multinomial "
                            "LogisticRegression (lbfgs)"}, "figure": fig, "versions": versions(),
                "seconds": round(time.perf_counter() - t0, 2)}, out / "classification.json")
    return path


def power(study_dir: str | Path, participants: list[int], images: list[int], *, sims: int = 200, alpha: float = 0.05,
          test: str = "cluster_logit", arch: str | None = None, pair: str | None = None, effect: float | None = None,
          sd_participant: float | None = None, sd_image: float | None = None, rules: ExclusionRules | None = None,
          exclude_simulated: bool = False, seed: int = 0, out_dir: str | Path | None = None) -> Path:
    """Power per (participants, images) from the study's fitted variance components (overridable); return power.csv."""
    from dataclasses import replace

    from analysis import plots, preferences as pr
    from analysis.load import analysis_dir, load_study, versions, write_json
    from analysis.power import PowerSetting, power_grid, setting_from_models

    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    t0 = time.perf_counter()
    if None in (effect, sd_participant, sd_image):
        study = load_study(study_dir, rules, exclude_simulated=exclude_simulated)
        trials = pr.triplet_table(study.responses)
        if trials.empty:
            raise InputError(f"{study_dir}: no triplet trials to fit; give --effect, --sd-participant and --sd-image")
        setting = setting_from_models(pr.model_table(trials, bayes=True, lme4=False), arch, pair)
    else:
        setting = PowerSetting(effect, sd_participant, sd_image, 0.0, "given")
    overrides = {k: v for k, v in (("effect", effect), ("sd_participant", sd_participant), ("sd_image", sd_image))
                 if v is not None}
    if overrides:
        setting = replace(setting, **overrides, source=setting.source + " with " + ", ".join(overrides) + " given")
    table = power_grid(participants, images, setting, sims=sims, alpha=alpha, test=test, seed=seed)
    out = Path(out_dir) if out_dir else analysis_dir(study_dir)
    path = _write(table, out / "power.csv")
    fig = _figure(plots.power_plot, table, out / "figures" / "power.png")
    write_json({"study": str(Path(study_dir).resolve()), "setting": asdict(setting), "figure": fig,
                "options": {"participants": participants, "images": images, "sims": sims, "alpha": alpha,
                            "test": test, "seed": seed}, "versions": versions(),
                "seconds": round(time.perf_counter() - t0, 2)}, out / "power.json")
    return path


def report(out_dir: str | Path) -> Path:
    """Write runs/EXP/analysis/report.html from the analysis outputs; return its path."""
    from analysis.report import report as _report

    return _report(out_dir)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 10,20,40") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one integer, e.g. 10,20,40")
    return values


def _add_rules(p: argparse.ArgumentParser) -> None:
    from analysis.load import ExclusionRules

    d = ExclusionRules()
    p.add_argument("--exclude-simulated", action="store_true", help="drop rows written by scripted observers")
    p.add_argument("--catch-threshold", type=float, default=d.catch_threshold,
                   help=f"exclude participants below this catch-trial accuracy (default {d.catch_threshold})")
    p.add_argument("--side-bias", type=float, default=d.side_bias,
                   help=f"exclude participants choosing one side on at least this share of 2AFC trials (default {d.side_bias})")
    p.add_argument("--fast-rt", type=float, default=d.fast_rt, help=f"seconds; answers faster are implausible (default {d.fast_rt})")
    p.add_argument("--max-fast-fraction", type=float, default=d.max_fast_fraction,
                   help=f"exclude participants with more implausibly fast answers than this share (default {d.max_fast_fraction})")


def _rules(args):
    from analysis.load import ExclusionRules

    return ExclusionRules(catch_threshold=args.catch_threshold, side_bias=args.side_bias, fast_rt=args.fast_rt,
                          max_fast_fraction=args.max_fast_fraction)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file whose [analyze] / [classify] / [power] table sets defaults; flags override it")


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Make the TOML table of the command (if --config is given) the defaults of its subparser."""
    from percept.contracts.tables import read_toml

    if not argv or argv[0] not in ("analyze", "classify", "power"):
        return
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv[1:])
    if known.config is None:
        return
    table = read_toml(known.config).get(argv[0], {})
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
    dests = {a.dest: a for a in sub._actions}
    values = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(k for k in values if k not in dests or k == "config")
    if unknown:
        raise InputError(f"--config: {known.config} [{argv[0]}] has unknown key(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(d for d in dests if d not in ('help', 'config')))}")
    for key, value in values.items():
        if key in ("participants", "images") and isinstance(value, list):
            value = [int(v) for v in value]
        elif key in ("study", "codes", "pixels", "manifest", "out") and value is not None:
            value = Path(value)
        dests[key].required = False
        sub.set_defaults(**{key: value})


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the four analysis commands."""
    parser = argparse.ArgumentParser(prog="percept", description="Analysis of a percept study.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="preference statistics, rankings, scaling, metric agreement")
    _add_config(p)
    p.add_argument("--study", type=Path, required=True, help="study folder runs/EXP/study (design.csv, responses/)")
    _add_rules(p)
    p.add_argument("--rank-unit", default="participant", choices=("participant", "image", "trial"),
                   help="blocks of the Friedman test (default participant)")
    p.add_argument("--boot", type=int, default=200, help="participant-bootstrap resamples for scale CIs (default 200)")
    p.add_argument("--no-bayes", action="store_true", help="skip the Bayesian mixed GLM (the cluster-robust logit stays)")
    p.add_argument("--no-lme4", action="store_true", help="do not call R's lme4 even when Rscript is installed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the study's sibling analysis/)")

    p = sub.add_parser("classify", help="linear classification of latent codes")
    _add_config(p)
    p.add_argument("--codes", type=Path, required=True, help="folder of codes/<run>.npz")
    p.add_argument("--pixels", type=Path, default=None, help="pixels npz (percept/contracts/pixels.py) for the pixel baseline (default: pixels.npz beside the codes folder)")
    p.add_argument("--manifest", type=Path, default=None, help="manifest whose originals give the pixel baseline "
                   "(default: ../reconstructions/manifest.csv beside the codes folder)")
    p.add_argument("--C", dest="c", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the codes folder's sibling analysis/)")

    p = sub.add_parser("power", help="power by simulation from the fitted variance components")
    _add_config(p)
    p.add_argument("--study", type=Path, required=True)
    p.add_argument("--participants", type=_int_list, default=[10, 20, 40], help="comma-separated (default 10,20,40)")
    p.add_argument("--images", type=_int_list, default=[50, 100], help="comma-separated (default 50,100)")
    p.add_argument("--sims", type=int, default=200, help="simulated studies per cell (default 200)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--test", default="cluster_logit", choices=("cluster_logit", "participant_t"))
    p.add_argument("--arch", default=None, help="architecture whose fit to use (default: all pooled)")
    p.add_argument("--pair", default=None, help="pair 'lossA:lossB' whose fit to use (default: the one with most trials)")
    p.add_argument("--effect", type=float, default=None, help="log-odds of choosing A (overrides the fit)")
    p.add_argument("--sd-participant", type=float, default=None, help="participant random-intercept SD (overrides)")
    p.add_argument("--sd-image", type=float, default=None, help="image random-intercept SD (overrides)")
    _add_rules(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)

    p = sub.add_parser("report", help="one self-contained HTML report")
    p.add_argument("--out", type=Path, required=True, help="experiment folder runs/EXP (reads runs/EXP/analysis)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: argv starts with the subcommand (analyze | classify | power | report)."""
    from threadpoolctl import threadpool_limits

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    _apply_config(parser, argv)
    args = parser.parse_args(argv)
    # The matrices here are small: one BLAS thread avoids oversubscription on a shared 2-core machine.
    with threadpool_limits(limits=1):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.command == "analyze":
        out = analyze(args.study, rules=_rules(args), exclude_simulated=args.exclude_simulated,
                      rank_unit=args.rank_unit, n_boot=args.boot, bayes=not args.no_bayes,
                      lme4=False if args.no_lme4 else None, seed=args.seed, out_dir=args.out)
        print(f"analyze: wrote {out}")
    elif args.command == "classify":
        path = classify(args.codes, pixels=args.pixels, manifest=args.manifest, out_dir=args.out, c=args.c,
                        max_iter=args.max_iter, seed=args.seed)
        print(f"classify: wrote {path}")
    elif args.command == "power":
        path = power(args.study, args.participants, args.images, sims=args.sims, alpha=args.alpha, test=args.test,
                     arch=args.arch, pair=args.pair, effect=args.effect, sd_participant=args.sd_participant,
                     sd_image=args.sd_image, rules=_rules(args), exclude_simulated=args.exclude_simulated,
                     seed=args.seed, out_dir=args.out)
        print(f"power: wrote {path}")
    elif args.command == "report":
        path = report(args.out)
        print(f"report: wrote {path}")
    else:
        raise InputError(f"unknown analysis command {args.command!r}")
    return 0
