"""`percept analyze | classify | power | report`: the analysis stage's commands and Python entry points.

Python: `analyze(study_dir) -> Path`, `classify(codes_dir) -> Path`, `power(study_dir, ...) -> Path`
and `report(out_dir) -> Path` (re-exported from analysis.report) do what the commands do.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
import pandas as pd

from analysis.load import ExclusionRules
from percept import commands
from percept.commands import Command
from percept.contracts import InputError
from percept.contracts.staging import locked, reading, staged_dir
from percept.contracts.tables import atomic_write_csv

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


def analyze(study_dir: str | Path, *, out_dir: str | Path | None = None, **options) -> Path:
    """Run every preference analysis of a study; its outputs replace the old ones all together or not at all."""
    from analysis.load import analysis_dir

    out = Path(out_dir) if out_dir else analysis_dir(study_dir)
    with reading(study_dir), staged_dir(out, keep=True) as staging:
        _analyze(study_dir, out_dir=staging, **options)
    return out


def _analyze(study_dir: str | Path, *, rules: ExclusionRules | None = None, exclude_simulated: bool = False, rank_unit: str = "participant",
            n_boot: int = 200, bayes: bool = True, lme4: bool | None = None, seed: int = 0,
            out_dir: str | Path | None = None, premise_unit: str = "image") -> Path:
    """Run every preference analysis of a study folder; write CSVs, figures and summary.json; return the folder."""
    from analysis import agreement as ag
    from analysis import family as fam
    from analysis import premise
    from analysis import plots, preferences as pr, rankings as rk, scaling as sc
    from analysis.load import ExclusionRules, analysis_dir, load_study, versions
    from percept.contracts.analysis_outputs import write_summary

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

    # Runs the manifest marks degenerate leave every human comparison before any statistic (INTERFACES item 3).
    degenerate = premise.degenerate_runs(study.manifest) if study.manifest is not None else set()
    responses, n_dropped = fam.drop_degenerate(study.responses, degenerate)
    if responses[responses["kind"] != "catch"].empty and n_dropped:
        raise InputError(f"{study_dir}: every judged trial shows a degenerate run ({', '.join(sorted(degenerate))}); "
                         "nothing left to compare")
    trials = pr.triplet_table(responses)
    pairwise = pr.pairwise_table(trials)
    per_image = pr.per_image_table(trials)
    models = pr.model_table(trials, bayes=bayes, lme4=lme4)
    ranks = rk.ranking_table(responses)
    dist = rk.rank_distribution(ranks)
    friedman, posthoc = rk.ranking_tests(ranks, rank_unit)
    scale = pd.concat([sc.bradley_terry(trials, n_boot, seed), sc.plackett_luce(ranks, n_boot, seed)], ignore_index=True)
    if study.manifest is not None:
        agreement = pd.concat([ag.agreement_table(ag.pairs_from_triplets(trials), study.manifest, "triplet", seed=seed),
                               ag.agreement_table(ag.pairs_from_rankings(ranks), study.manifest, "ranking", seed=seed)],
                              ignore_index=True)
        premise_rows = premise.premise_table(study.manifest, unit=premise_unit)
    else:
        agreement = pd.DataFrame(columns=ag.COLUMNS)
        premise_rows = pd.DataFrame(columns=premise.COLUMNS)
    family = fam.family_table(fam.declared_family(study.design, degenerate), models, friedman)

    tables = {"exclusions.csv": study.participants, "pairwise.csv": pairwise, "models.csv": models,
              "per_image.csv": per_image, "rankings.csv": dist, "friedman.csv": friedman,
              "ranking_posthoc.csv": posthoc, "scale.csv": scale, "agreement.csv": agreement,
              "premise.csv": premise_rows, "family.csv": family}
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

    # pairs without reference, ratings and same/different, each in its own tables (trials showing degenerate runs left out)
    other_kinds = analyze_kinds(responses, out, n_boot=n_boot, seed=seed, manifest=study.manifest, lme4=lme4)
    counts = responses["kind"].value_counts().to_dict()
    summary = {
        "study": str(Path(study_dir).resolve()),
        "manifest": str(study.manifest_path) if study.manifest_path else None,
        "simulated": study.simulated,
        "n_simulated_rows": int(responses["simulated"].sum()),
        "n_rows": int(len(responses)),
        "trials": {k: int(v) for k, v in counts.items()},
        "n_practice_dropped": study.n_practice,
        "degenerate_runs": sorted(degenerate),
        "n_degenerate_trials_dropped": n_dropped,
        "participants": {"total": int(len(study.participants)), "included": int(study.participants["included"].sum()),
                         "excluded": study.participants.loc[~study.participants["included"], ["participant", "reasons"]]
                         .to_dict("records")},
        "response_files": list(study.files),
        "warnings": list(study.warnings),
        "main_test": "cluster_logit: logit of choosing loss A on side (±1), two-way (participant, image) "
                     "cluster-robust SE, t test on min(clusters)-1 df",
        "family": {"correction": "holm", "alpha": 0.05,
                   "declared": "from design.csv before the responses: one cluster_logit per (arch, pair) of main "
                               "triplets, one Friedman test per arch with main rankings; comparisons showing a "
                               "degenerate run left out; pooled 'all' rows outside the family",
                   "tests": family.to_dict("records")},
        "preferences": models.to_dict("records"),
        "friedman": friedman.to_dict("records"),
        "premise": {"unit": premise_unit, "verdicts": premise.verdicts(premise_rows).to_dict("records")},
        "observers": fam.observer_info(list(study.sessions), study.manifest),
        "headline": fam.headline_lines(family, dist, study.simulated) + [
            line + (" [simulated observers]" if study.simulated else "") for line in other_kinds["headline"]],
        "kinds": other_kinds,
        "figures": {k: v for k, v in figures.items() if v},
        "options": {"rules": asdict(rules), "exclude_simulated": exclude_simulated, "rank_unit": rank_unit,
                    "n_boot": n_boot, "bayes": bayes, "lme4": bool(models["estimator"].eq("lme4_glmer").any())
                    if len(models) else False, "seed": seed, "premise_unit": premise_unit},
        "versions": versions(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_summary(out, summary)  # study and manifest paths relative to the experiment folder
    return out


def classify(codes_dir: str | Path, *, out_dir: str | Path | None = None, **options) -> Path:
    """Classify every codes file; the outputs replace the old ones all together or not at all; return the csv."""
    out = Path(out_dir) if out_dir else Path(codes_dir).resolve().parent / "analysis"
    with reading(codes_dir), staged_dir(out, keep=True) as staging:
        path = _classify(codes_dir, out_dir=staging, **options)
    return out / path.name


def _classify(codes_dir: str | Path, *, pixels: str | Path | None = None, manifest: str | Path | None = None,
              out_dir: str | Path | None = None, c: float = 1.0, max_iter: int = 1000, seed: int = 0,
              n_boot: int = 2000) -> Path:
    """Classify every codes file; write classification.csv, classification_pairs.csv (+ .json, figure); return the csv."""
    from analysis import plots
    from analysis.classify import classification
    from analysis.load import versions, write_json

    if c <= 0 or max_iter < 1:
        raise InputError(f"--C must be > 0 and --max-iter ≥ 1 (got {c}, {max_iter})")
    if n_boot < 100:
        raise InputError(f"--boot must be at least 100 for a 95% bootstrap interval, got {n_boot}")
    t0 = time.perf_counter()
    table, pairs = classification(codes_dir, pixels=pixels, manifest=manifest, c=c, max_iter=max_iter, seed=seed,
                                  n_boot=n_boot)
    out = Path(out_dir) if out_dir else Path(codes_dir).resolve().parent / "analysis"
    path = _write(table, out / "classification.csv")
    _write(pairs, out / "classification_pairs.csv")
    fig = _figure(plots.classification_plot, table, out / "figures" / "classification.png")
    write_json({"codes": str(Path(codes_dir).resolve()), "pixels": str(pixels) if pixels else None,
                "options": {"C": c, "max_iter": max_iter, "seed": seed, "n_boot": n_boot,
                            "model": "StandardScaler + multinomial LogisticRegression (lbfgs)"},
                "intervals": "accuracy: cluster bootstrap over source photographs when test images share a source, "
                             "else Wilson; pairs: McNemar exact (statsmodels, images independent) and a paired "
                             "cluster bootstrap of the accuracy difference, Holm across unflagged pairs",
                "flagged": table.loc[table["flag"].fillna("") != "", ["run", "flag"]].to_dict("records"),
                "figure": fig, "versions": versions(), "seconds": round(time.perf_counter() - t0, 2)},
               out / "classification.json")
    return path


def power(study_dir: str | Path, participants: list[int], images: list[int] | None = None, *,
          out_dir: str | Path | None = None, **options) -> Path:
    """Power per number of participants; the outputs replace the old ones all together or not at all."""
    from analysis.load import analysis_dir

    out = Path(out_dir) if out_dir else analysis_dir(study_dir)
    with reading(study_dir), staged_dir(out, keep=True) as staging:
        path = _power(study_dir, participants, images, out_dir=staging, **options)
    return out / path.name


def _power(study_dir: str | Path, participants: list[int], images: list[int] | None = None, *, sims: int = 200,
           alpha: float = 0.05, test: str = "cluster_logit", arch: str | None = None, pair: str | None = None,
           sesoi: float | None = None, effect: float | None = None, sd_participant: float | None = None,
           sd_image: float | None = None, rules: ExclusionRules | None = None, exclude_simulated: bool = False,
           seed: int = 0, out_dir: str | Path | None = None) -> Path:
    """Power per number of participants for a stated smallest effect (SESOI), on the design's lists; return power.csv.

    The random-effect SDs come from the study's mixed-model fit unless both are given (then no responses are
    needed); the effect is `sesoi` (default DEFAULT_SESOI) or a given subject-specific log-odds `effect`, never
    the study's estimate. Without `images` every declared (arch, pair) of the design is simulated on its real
    lists and sides; with `images` a hypothetical balanced design of that many images is used instead.
    """
    from dataclasses import replace

    from analysis import family as fam, plots, preferences as pr
    from analysis.load import analysis_dir, load_study, versions, write_json
    from analysis.power import DEFAULT_SESOI, PowerSetting, design_power, effect_for_proportion, power_grid, \
        setting_from_models
    from analysis.premise import degenerate_runs
    from percept.contracts.design import read_design, read_design_meta
    from percept.contracts.manifest import read_manifest

    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    if sesoi is not None and effect is not None:
        raise InputError("give either --sesoi (a preference proportion) or --effect (log-odds), not both")
    t0 = time.perf_counter()
    study_dir = Path(study_dir)
    design = read_design(study_dir / "design.csv")
    if sd_participant is None or sd_image is None:
        study = load_study(study_dir, rules, exclude_simulated=exclude_simulated)
        trials = pr.triplet_table(study.responses)
        if trials.empty:
            raise InputError(f"{study_dir}: no triplet trials to fit the random-effect SDs; give --sd-participant "
                             "and --sd-image")
        fitted = setting_from_models(pr.model_table(trials, bayes=True, lme4=False), arch, pair)
        setting = PowerSetting(0.0, fitted.sd_participant, fitted.sd_image, fitted.side_bias,
                               f"SDs and side bias from {fitted.source}")
        given = {k: v for k, v in (("sd_participant", sd_participant), ("sd_image", sd_image)) if v is not None}
        if given:
            setting = replace(setting, **given, source=setting.source + " with " + ", ".join(given) + " given")
    else:
        setting = PowerSetting(0.0, sd_participant, sd_image, 0.0, "SDs given")
    if effect is not None:
        setting = replace(setting, effect=effect, source=setting.source + "; effect (log-odds) given")
    else:
        sesoi = DEFAULT_SESOI if sesoi is None else sesoi
        setting = replace(setting, effect=effect_for_proportion(sesoi, setting.sd_participant, setting.sd_image),
                          sesoi=sesoi, source=setting.source + f"; SESOI {sesoi:g}")

    # degenerate runs leave the family here as in `analyze`
    meta = read_design_meta(study_dir / "design.csv") if (study_dir / "design.json").is_file() else {}
    rel = meta.get("manifest")
    degenerate = degenerate_runs(read_manifest(study_dir / rel)) if rel and (study_dir / rel).is_file() else set()
    family = fam.declared_family(design, degenerate)
    declared = family[family["test"] == "triplet cluster_logit"]
    if arch is not None:
        declared = declared[declared["arch"] == arch]
    if pair is not None:
        declared = declared[declared["pair"] == pair]
    if images is not None:
        table = power_grid(participants, images, setting, sims=sims, alpha=alpha, test=test, seed=seed)
    elif declared.empty:
        raise InputError(f"{study_dir / 'design.csv'}: no declared triplet comparison for arch={arch or 'any'} "
                         f"pair={pair or 'any'}")
    else:
        table = pd.concat([design_power(design, r.arch, r.pair, participants, setting, sims=sims, alpha=alpha,
                                        family_size=max(1, len(family)), test=test, seed=seed)
                           for r in declared.itertuples()], ignore_index=True)
    out = Path(out_dir) if out_dir else analysis_dir(study_dir)
    path = _write(table, out / "power.csv")
    fig = _figure(plots.power_plot, table, out / "figures" / "power.png")
    write_json({"study": str(study_dir.resolve()), "setting": asdict(setting), "figure": fig,
                "family": family.to_dict("records"),
                "options": {"participants": participants, "images": images, "sims": sims, "alpha": alpha,
                            "test": test, "seed": seed, "sesoi": sesoi, "effect": effect}, "versions": versions(),
                "seconds": round(time.perf_counter() - t0, 2)}, out / "power.json")
    return path


def report(out_dir: str | Path) -> Path:
    """Write runs/EXP/analysis/report.html from the analysis outputs; return its path."""
    from analysis.report import report as _report

    # One file written atomically; the lock keeps it from reading an analysis folder mid-swap.
    with locked(Path(out_dir) / "analysis"):
        return _report(out_dir)


# --------------------------------------------------------------------------------------------
# The commands: (config dataclasses, run function); percept.commands makes the flags from the fields.


def _where(out: Path | None, given: Path | None, sub: str, flag: str) -> Path:
    """`given` if set, else <out>/<sub>; neither is one line."""
    if given is not None:
        return given
    if out is None:
        raise InputError(f"give --out runs/EXP (or {flag} PATH)")
    return out / sub


@dataclass(frozen=True)
class AnalyzeConfig:
    """Settings of `percept analyze` (the exclusion rules are ExclusionRules' fields)."""

    out: Path | None = field(default=None, metadata={
        "help": "experiment folder runs/EXP: reads <out>/study, writes <out>/analysis"})
    study: Path | None = field(default=None, metadata={
        "help": "study folder to read instead of <out>/study (without --out: writes its sibling analysis/)"})
    exclude_simulated: bool = field(default=False, metadata={"help": "drop rows written by scripted observers"})
    rank_unit: str = field(default="participant", metadata={
        "help": "blocks of the Friedman test", "choices": ("participant", "image", "trial")})
    boot: int = field(default=200, metadata={"help": "participant-bootstrap resamples for the scale CIs"})
    bayes: bool = field(default=True, metadata={
        "help": "also fit the Bayesian mixed GLM (the cluster-robust logit is always fitted)"})
    lme4: bool | None = field(default=None, metadata={"help": "also fit R's lme4 glmer (and lmer/clmm on ratings); none: when Rscript is installed"})
    seed: int = field(default=0, metadata={"help": "seeds the bootstraps and the metric-agreement resampling"})
    premise_unit: str = field(default="image", metadata={
        "help": "unit of the premise test's paired CIs: held-out image, or source photograph",
        "choices": ("image", "source")})


@dataclass(frozen=True)
class ClassifyConfig:
    """Settings of `percept classify`."""

    out: Path | None = field(default=None, metadata={
        "help": "experiment folder runs/EXP: reads <out>/codes, writes <out>/analysis"})
    codes: Path | None = field(default=None, metadata={"help": "folder of <run>.npz to read instead of <out>/codes"})
    pixels: Path | None = field(default=None, metadata={
        "help": "pixels npz for the pixel baseline; none: pixels.npz beside the codes folder"})
    manifest: Path | None = field(default=None, metadata={
        "help": "manifest whose originals give the pixel baseline; none: ../reconstructions/manifest.csv"})
    c: float = field(default=1.0, metadata={"help": "inverse L2 strength of the logistic regression", "flag": "--C"})
    max_iter: int = field(default=1000, metadata={"help": "lbfgs iterations: enough for standardised codes"})
    seed: int = field(default=0, metadata={"help": "random_state of the logistic regression"})
    boot: int = field(default=2000, metadata={"help": "bootstrap resamples for the source-clustered CIs"})


@dataclass(frozen=True)
class PowerConfig:
    """Settings of `percept power` (the exclusion rules are ExclusionRules' fields)."""

    out: Path | None = field(default=None, metadata={
        "help": "experiment folder runs/EXP: fits <out>/study, writes <out>/analysis"})
    study: Path | None = field(default=None, metadata={"help": "study folder to fit instead of <out>/study"})
    participants: tuple[int, ...] = field(default=(10, 20, 40), metadata={"help": "numbers of participants to try"})
    images: tuple[int, ...] | None = field(default=None, metadata={
        "help": "numbers of images of a hypothetical balanced design; none: the design's real lists and sides"})
    sesoi: float | None = field(default=None, metadata={
        "help": "smallest effect of interest, as the proportion of all choices going to loss A; none: 0.60"})
    sims: int = field(default=200, metadata={"help": "simulated studies per cell: power ± 3.5 points"})
    alpha: float = field(default=0.05, metadata={"help": "significance level of each simulated test"})
    test: str = field(default="cluster_logit", metadata={
        "help": "the test whose power is estimated", "choices": ("cluster_logit", "participant_t")})
    arch: str | None = field(default=None, metadata={"help": "architecture whose fit to use; none: all pooled"})
    pair: str | None = field(default=None, metadata={
        "help": "pair 'lossA:lossB' whose fit to use; none: the one with most trials"})
    effect: float | None = field(default=None, metadata={"help": "subject-specific log-odds of choosing A, instead of --sesoi (never taken from the fit)"})
    sd_participant: float | None = field(default=None, metadata={
        "help": "participant random-intercept SD; none: from the fit"})
    sd_image: float | None = field(default=None, metadata={"help": "image random-intercept SD; none: from the fit"})
    exclude_simulated: bool = field(default=False, metadata={"help": "drop rows written by scripted observers"})
    seed: int = field(default=0, metadata={"help": "seeds the simulated studies"})


@dataclass(frozen=True)
class ReportConfig:
    """Settings of `percept report`."""

    out: Path = field(metadata={"help": "experiment folder runs/EXP: reads <out>/analysis, writes report.html there"})


def _one_thread(fn):
    """Run `fn` with one BLAS thread: the matrices are small and the machine may be shared."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return fn()


def run_analyze(cfg: AnalyzeConfig, rules: ExclusionRules) -> int:
    """`percept analyze`."""
    study = _where(cfg.out, cfg.study, "study", "--study")
    out = _one_thread(lambda: analyze(study, rules=rules, exclude_simulated=cfg.exclude_simulated,
                                      rank_unit=cfg.rank_unit, n_boot=cfg.boot, bayes=cfg.bayes, lme4=cfg.lme4,
                                      seed=cfg.seed, out_dir=cfg.out / "analysis" if cfg.out else None,
                                      premise_unit=cfg.premise_unit))
    print(f"analyze: wrote {out}")
    return 0


def run_classify(cfg: ClassifyConfig) -> int:
    """`percept classify`."""
    codes = _where(cfg.out, cfg.codes, "codes", "--codes")
    path = _one_thread(lambda: classify(codes, pixels=cfg.pixels, manifest=cfg.manifest, c=cfg.c,
                                        max_iter=cfg.max_iter, seed=cfg.seed, n_boot=cfg.boot,
                                        out_dir=cfg.out / "analysis" if cfg.out else None))
    print(f"classify: wrote {path}")
    return 0


def run_power(cfg: PowerConfig, rules: ExclusionRules) -> int:
    """`percept power`."""
    study = _where(cfg.out, cfg.study, "study", "--study")
    path = _one_thread(lambda: power(study, list(cfg.participants), list(cfg.images) if cfg.images else None, sims=cfg.sims, alpha=cfg.alpha,
                                     test=cfg.test, arch=cfg.arch, pair=cfg.pair, sesoi=cfg.sesoi, effect=cfg.effect,
                                     sd_participant=cfg.sd_participant, sd_image=cfg.sd_image, rules=rules,
                                     exclude_simulated=cfg.exclude_simulated, seed=cfg.seed,
                                     out_dir=cfg.out / "analysis" if cfg.out else None))
    print(f"power: wrote {path}")
    return 0


def run_report(cfg: ReportConfig) -> int:
    """`percept report`."""
    print(f"report: wrote {report(cfg.out)}")
    return 0


COMMANDS = (
    Command("analyze", (AnalyzeConfig, ExclusionRules), run_analyze,
            description="Writes <out>/analysis/{*.csv, summary.json, figures/}."),
    Command("classify", (ClassifyConfig,), run_classify,
            description="Writes <out>/analysis/classification.csv (+ .json, figure)."),
    Command("power", (PowerConfig, ExclusionRules), run_power,
            description="Writes <out>/analysis/power.csv (+ .json, figure)."),
    Command("report", (ReportConfig,), run_report, description="Reads <out>/analysis; writes report.html there."),
)


def main(argv: list[str] | None = None) -> int:
    """Entry point: argv starts with the subcommand (analyze | classify | power | report)."""
    return commands.main(COMMANDS, argv, package="analysis")
