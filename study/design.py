"""Trial lists for the study: triplets, rankings, catch and practice trials, counterbalanced and seeded.

The scheme (also written into design.json):

- Runs. The flat baseline (arch "baseline") and runs the manifest marks degenerate are never
  shown (each dropped run is named). Of several seeds of one (arch, loss) the lowest is shown,
  or the one given by `stimulus_seed`.
- Plans. Each architecture has its own kinds, triplet pairs and ranking losses: the global
  settings, overridden per architecture (`fc=ssim:mse;conv=mse:ms_ssim`), or the `snell` preset
  (fc: SSIM vs MSE triplets; conv and vae: rankings of MS-SSIM, MSE and MAE, as in the paper).
- Items. For every architecture and chosen image: one triplet per loss pair of its plan and one
  ranking of its three ranking losses. Images are drawn (seeded) from the manifest's `use=main`
  images that have a reconstruction by every run needed.
- Lists. K base lists partition the items (every image × pair × architecture once over the base
  lists, likewise every ranking). Item (image j, condition c) goes to base list (j + c) mod K, a
  Latin square: with K equal to the number of conditions each list shows every image once per kind.
- Mirrored pairs (default). Base list k is written as list 2k and again as list 2k + 1 with every
  left/right swapped (ranking positions reversed, catch answers swapped), so each item is seen
  with each side arrangement by consecutive participants: sides are balanced per item across
  participants, not only per list. Without mirroring base list k is list k.
- Sides. Within each list and (architecture, pair), the items' sides alternate in a shuffled
  order, so each loss of the pair is on the left as often as on the right (±1 when odd).
- Ranking slots. Within each list and architecture, the six orders of the three losses over the
  screen positions are cycled in a shuffled order, so each loss is at each position equally often.
- Catch trials. A share of the main block is catch trials: the original on one side, a strongly
  degraded copy (Gaussian blur + noise) on the other; correct answer = the original. Sides alternate.
- Practice trials. Only from the manifest's `use=spare` images (never the main set; refused when
  there are none), marked block=practice and excluded from analysis.
- Order. The main block is shuffled per list so that no image appears twice in a row.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import InputError
from percept.contracts import design as design_c
from percept.contracts import kinds as kinds_c
from percept.contracts import manifest as manifest_c
from study import trials

DEFAULT_PAIRS = (("mse", "ms_ssim"), ("mae", "ms_ssim"), ("mse", "mae"))
DEFAULT_RANKING_LOSSES = ("mse", "mae", "ms_ssim")
KIND_NAMES = kinds_c.MAIN_KINDS  # kinds a design can ask for (each a module in study/trials/)
CATCH_DIR = "stimuli/catch"
RUN_NAME = re.compile(r"-s(\d+)$")  # run names are <arch>-<loss>-s<seed>


@dataclass(frozen=True)
class ArchPlan:
    """What one architecture's reconstructions are judged on."""

    kinds: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    ranking_losses: tuple[str, ...]

    def losses(self) -> list[str]:
        """Every loss this plan shows (each kind says which of its losses it shows), sorted."""
        return sorted(set().union(*(trials.get(k).losses(self) for k in self.kinds)))

    def as_dict(self) -> dict:
        """The plan as written into design.json: pairs and ranking losses only where a kind uses them."""
        uses = {field for k in self.kinds for field in trials.get(k).plan_fields}
        return {"kinds": list(self.kinds), "pairs": [f"{a}:{b}" for a, b in self.pairs] if "pairs" in uses else [],
                "ranking_losses": list(self.ranking_losses) if "ranking_losses" in uses else []}


# Snell et al. 2017: fc judged in SSIM-vs-MSE triplets; conv and the deep VAE in rankings of MS-SSIM, MSE, MAE.
PRESETS = {
    "snell": {
        "fc": ArchPlan(("triplet",), (("ssim", "mse"),), ()),
        "conv": ArchPlan(("ranking",), (), ("ms_ssim", "mse", "mae")),
        "vae": ArchPlan(("ranking",), (), ("ms_ssim", "mse", "mae")),
    },
}


@dataclass(frozen=True)
class DesignConfig:
    """Settings of `percept design`; each default follows the issue or the paper."""

    kinds: tuple[str, ...] = ("triplet", "ranking")  # the paper's two judgment types (any of KIND_NAMES)
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS  # MS-SSIM vs each pixel loss, and the pixel losses
    ranking_losses: tuple[str, ...] = DEFAULT_RANKING_LOSSES  # the paper's ranking triple
    images: int | None = None  # None: every image with all runs needed
    lists: int = 1  # participant lists that together cover every item
    catch: float = 0.1  # share of the main block that is catch trials
    practice: int = 4  # practice trials at the start of every list
    seed: int = 0  # seeds the choice of images, sides, slot orders and trial order
    archs: tuple[str, ...] | None = None  # None: every architecture in the manifest
    blur_sigma: float = 4.0  # catch degradation: Gaussian blur σ in pixels (96 px images)
    noise_sd: float = 0.1  # catch degradation: Gaussian noise SD on [0,1] images
    # Per-architecture overrides of kinds, pairs and ranking losses: ((arch, value), ...).
    arch_kinds: tuple[tuple[str, tuple[str, ...]], ...] = ()
    arch_pairs: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    arch_ranking_losses: tuple[tuple[str, tuple[str, ...]], ...] = ()
    preset: str | None = None  # "snell": the paper's plan (sets kinds, pairs, ranking losses and archs)
    stimulus_seed: int | None = None  # None: show the lowest seed of each (arch, loss)
    mirror: bool = True  # each list followed by its left/right mirror: sides balanced per item
    jnd_ms: tuple[int, int, int] = (1000, 250, 1000)  # jnd: first image, blank gap, second image (ms; BAPPS)


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """Parse 'mse:ms_ssim,mae:ms_ssim' into loss pairs."""
    pairs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise InputError(f"--pairs: {item!r} is not 'lossA:lossB' with two different losses (e.g. mse:ms_ssim)")
        pairs.append((parts[0], parts[1]))
    if len(set(frozenset(p) for p in pairs)) != len(pairs):
        raise InputError(f"--pairs: {text!r} names the same pair twice")
    return tuple(pairs)


def _split_per_arch(text: str, flag: str) -> tuple[str | None, dict[str, str]]:
    """'default;arch=value;arch2=value' → (default or None, {arch: value}); a segment without '=' is the default."""
    default, per_arch = None, {}
    for segment in (seg.strip() for seg in text.split(";")):
        if not segment:
            continue
        if "=" in segment:
            arch, _, value = (part.strip() for part in segment.partition("="))
            if not arch or not value or arch in per_arch:
                raise InputError(f"{flag}: {segment!r} is not 'arch=value' naming each architecture once")
            per_arch[arch] = value
        elif default is None:
            default = segment
        else:
            raise InputError(f"{flag}: {text!r} has two defaults ({default!r} and {segment!r}); name the architecture with arch=")
    return default, per_arch


def _parse_list(text: str, flag: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise InputError(f"{flag}: {text!r} is not a comma-separated list")
    return items


def plan_settings(kinds: str | tuple[str, ...], pairs: str | tuple, ranking_losses: str | tuple[str, ...]) -> dict:
    """DesignConfig keyword arguments from the text of --kinds, --pairs and --ranking-losses (each may be per arch).

    Each takes a default for every architecture and/or `arch=value` segments separated by ';',
    e.g. `--pairs "mse:ms_ssim;fc=ssim:mse"` or `--kinds "fc=triplet;conv=ranking;vae=ranking"`.
    Sequences (from a TOML list) are taken as the default for every architecture.
    """
    out: dict = {}
    for name, value, parse in (("kinds", kinds, lambda t: _parse_list(t, "--kinds")),
                               ("pairs", pairs, parse_pairs),
                               ("ranking_losses", ranking_losses, lambda t: _parse_list(t, "--ranking-losses"))):
        if not isinstance(value, str):
            value = ",".join(v if isinstance(v, str) else ":".join(v) for v in value)
        default, per_arch = _split_per_arch(value, "--" + name.replace("_", "-"))
        if default is not None:
            out[name] = parse(default)
        out[f"arch_{name}"] = tuple((arch, parse(v)) for arch, v in per_arch.items())
    return out


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def run_seed(run: str, seed_column: object = "") -> int | None:
    """A run's seed: from its name `<arch>-<loss>-s<seed>`, else the manifest's `seed` column, else None."""
    match = RUN_NAME.search(run)
    if match:
        return int(match.group(1))
    try:
        return int(str(seed_column))
    except ValueError:
        return None


def _runs_by_arch_loss(manifest: pd.DataFrame, stimulus_seed: int | None = None) -> tuple[dict[tuple[str, str], str], dict]:
    """One run per (arch, loss): the lowest seed, or `stimulus_seed`; also {(arch, loss): [seeds]} of every run."""
    seed_col = manifest["seed"] if "seed" in manifest.columns else pd.Series("", index=manifest.index)
    table = pd.DataFrame({"arch": manifest["arch"], "loss": manifest["loss"], "run": manifest["run"],
                          "seed": [run_seed(r, c) for r, c in zip(manifest["run"], seed_col)]}).drop_duplicates("run")
    chosen, seeds = {}, {}
    for (arch, loss), grp in table.groupby(["arch", "loss"], sort=True):
        # Lowest seed first; runs without a seed after all seeded ones, by name.
        grp = grp.assign(key=grp["seed"].fillna(float("inf"))).sort_values(["key", "run"])
        seeds[(arch, loss)] = [int(v) for v in grp["seed"].dropna()]
        if stimulus_seed is None:
            chosen[(arch, loss)] = grp["run"].iloc[0]
        else:
            match = grp[grp["seed"] == stimulus_seed]
            if len(match):
                chosen[(arch, loss)] = match["run"].iloc[0]
    return chosen, seeds


def versions() -> dict[str, str]:
    """Versions of the software that made an output."""
    from percept.contracts.provenance import versions as _versions

    return _versions(("numpy", "pandas", "scipy", "pillow"))


def degrade(image: np.ndarray, rng: np.random.Generator, blur_sigma: float, noise_sd: float) -> np.ndarray:
    """A strongly degraded copy of an (H, W, 3) float [0,1] image: Gaussian blur, then Gaussian noise."""
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(image, sigma=(blur_sigma, blur_sigma, 0), mode="reflect")
    return np.clip(blurred + rng.normal(0.0, noise_sd, image.shape), 0.0, 1.0).astype(np.float32)


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _save_rgb(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(array * 255.0).astype(np.uint8)).save(path, format="PNG")


def order_no_repeats(items: list[dict], rng: np.random.Generator) -> list[dict]:
    """Shuffle items so that no image_id appears twice in a row; raise if that cannot be done."""
    if not items:
        return []
    for _ in range(50):
        order = [items[i] for i in rng.permutation(len(items))]
        out, rest = [], order
        while rest:
            cand = [k for k, it in enumerate(rest) if not out or it["image_id"] != out[-1]["image_id"]]
            if not cand:
                break
            k = cand[int(rng.integers(len(cand)))]
            out.append(rest.pop(k))
        if not rest:
            return out
    # Randomised greedy failed: place the image with most trials left first, which succeeds whenever possible.
    rest = [items[i] for i in rng.permutation(len(items))]
    out = []
    while rest:
        counts = pd.Series([it["image_id"] for it in rest]).value_counts(sort=False)
        last = out[-1]["image_id"] if out else None
        options = counts if last is None else counts.drop(last, errors="ignore")
        if options.empty:
            raise InputError(f"cannot order a list without showing image {last!r} twice in a row: use more images or fewer pairs per list")
        best = options.idxmax()
        out.append(rest.pop(next(k for k, it in enumerate(rest) if it["image_id"] == best)))
    return out


def _check_plan(arch: str, plan: ArchPlan) -> None:
    """Refuse a plan that cannot make trials, naming the architecture."""
    where = f" for {arch}" if arch else ""
    unknown = [k for k in plan.kinds if k not in KIND_NAMES]
    if unknown or not plan.kinds:
        raise InputError(f"--kinds{where}: {','.join(plan.kinds)!r} must name kinds among {', '.join(KIND_NAMES)}")
    if len(set(plan.kinds)) != len(plan.kinds):
        raise InputError(f"--kinds{where}: {','.join(plan.kinds)!r} names a kind twice")
    for kind in plan.kinds:
        trials.get(kind).check_plan(plan, where)


def _drop_unshowable(manifest: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The manifest without the flat baseline and degenerate runs; {run: why} of those dropped, each printed on a line."""
    dropped: dict[str, str] = {}
    for run, grp in manifest.groupby("run", sort=True):
        if (grp["arch"] == manifest_c.BASELINE_ARCH).any():
            dropped[run] = "the flat baseline (arch 'baseline') is never shown"
        elif (grp["degenerate"] == 1).any():
            dropped[run] = "degenerate in the manifest (its guard, or it does not beat the flat baseline on its own metric)"
        else:
            continue
        print(f"design: dropping {run}: {dropped[run]}", file=sys.stderr)
    kept = manifest[~manifest["run"].isin(list(dropped))]
    if kept.empty:
        raise InputError(f"{path}: no run left to show after dropping {len(dropped)} run(s) "
                         f"({', '.join(dropped)}); nothing to design")
    return kept, dropped


def _resolve_plans(cfg: DesignConfig, available: list[str], path: Path) -> dict[str, ArchPlan]:
    """{arch: plan} of the architectures to show, from the preset or the global settings and per-arch overrides."""
    if cfg.preset is not None:
        if cfg.preset not in PRESETS:
            raise InputError(f"--preset: {cfg.preset!r} is not one of {', '.join(PRESETS)}")
        plans = dict(PRESETS[cfg.preset])
        if cfg.archs is not None:
            outside = [a for a in cfg.archs if a not in plans]
            if outside:
                raise InputError(f"--archs: {','.join(outside)} not in preset {cfg.preset!r} ({', '.join(plans)})")
            plans = {a: plans[a] for a in cfg.archs}
        return dict(sorted(plans.items()))
    overrides = {"kinds": dict(cfg.arch_kinds), "pairs": dict(cfg.arch_pairs), "ranking_losses": dict(cfg.arch_ranking_losses)}
    for name, table in overrides.items():
        unknown = [a for a in table if a not in available]
        if unknown:
            raise InputError(f"--{name.replace('_', '-')}: architecture {unknown[0]!r} has no run to show in {path} "
                             f"(it has {', '.join(available)})")
    archs = available
    if cfg.archs is not None:
        missing = [a for a in cfg.archs if a not in available]
        if missing:
            raise InputError(f"--archs: {','.join(missing)} not in {path} (it has {', '.join(available)})")
        archs = sorted(cfg.archs)
    return {a: ArchPlan(kinds=tuple(overrides["kinds"].get(a, cfg.kinds)), pairs=tuple(overrides["pairs"].get(a, cfg.pairs)),
                        ranking_losses=tuple(overrides["ranking_losses"].get(a, cfg.ranking_losses))) for a in archs}


def mirror_row(row: dict) -> dict:
    """The same trial as its kind mirrors it: sides swapped (catch answer too), ranking positions reversed, jnd order swapped."""
    return trials.get(row["kind"]).mirror(row)


def build_design(manifest_path: str | Path, out: str | Path, cfg: DesignConfig = DesignConfig(), *,
                 overwrite: bool = False) -> Path:
    """Write `<out>/study/design.csv` + design.json (+ catch stimuli), all at once or not at all; return the csv path.

    Refused while study/responses/ holds response files (they were collected with the current design);
    with `overwrite` people's files are moved to study/responses-archived-<time>/ and simulated ones dropped.
    """
    from percept.contracts.staging import human_response_files, move_aside, reading, staged_dir

    study = Path(out) / "study"
    held = sorted((study / "responses").glob("*.csv")) if (study / "responses").is_dir() else []
    # people's CSVs and session records in responses/ (archives of earlier designs stay where they are)
    people = [f for f in human_response_files(study) if f.parent == study / "responses"] if held else []
    n_people = sum(f.suffix == ".csv" for f in people)
    if held and not overwrite:
        raise InputError(f"{study / 'responses'} holds {len(held)} response file(s) ({n_people} of people) collected "
                         f"with {study / 'design.csv'}; a new design would orphan them; use another --out, or "
                         f"--overwrite to move people's files to {study}/responses-archived-<time>/ and drop simulated ones")
    archived: list[Path] = []

    def clear(staging: Path) -> None:
        # Outputs this command regenerates, and responses that belong to the old design.
        for name in ("design.csv", "design.json"):
            (staging / name).unlink(missing_ok=True)
        shutil.rmtree(staging / CATCH_DIR.split("/")[0], ignore_errors=True)
        if (staging / "responses").is_dir():
            humans = [staging / "responses" / f.name for f in people]
            folder = move_aside(humans, staging)
            if folder is not None:
                archived.append(study / folder.name)
            shutil.rmtree(staging / "responses")

    with reading(Path(manifest_path).parent), staged_dir(study, keep=True, prepare=clear) as staging:
        path = _build_design(Path(manifest_path), staging, cfg)
    if archived:
        print(f"design: moved {n_people} people's response file(s) (+ records) to {archived[0]}; "
              f"dropped {len(held) - n_people} simulated one(s)")
    elif held:
        print(f"design: dropped {len(held)} simulated response file(s) of the old design")
    return study / path.name


def _build_design(manifest_path: Path, study_dir: Path, cfg: DesignConfig) -> Path:
    """Build the design into `study_dir` (a staging folder); return the csv path."""
    if cfg.lists < 1:
        raise InputError(f"--lists: {cfg.lists} must be at least 1")
    if not 0.0 <= cfg.catch < 1.0:
        raise InputError(f"--catch: {cfg.catch} must be a share in [0, 1)")
    if cfg.practice < 0:
        raise InputError(f"--practice: {cfg.practice} must be 0 or more")
    if cfg.images is not None and cfg.images < 1:
        raise InputError(f"--images: {cfg.images} must be at least 1")
    if len(cfg.jnd_ms) != 3 or not all(isinstance(v, int) and v >= 0 for v in cfg.jnd_ms) or not (cfg.jnd_ms[0] and cfg.jnd_ms[2]):
        raise InputError(f"--jnd-ms: {cfg.jnd_ms} must be three whole ms (first image > 0, gap ≥ 0, second image > 0)")
    if cfg.preset is None:
        _check_plan("", ArchPlan(cfg.kinds, cfg.pairs, cfg.ranking_losses))

    manifest = manifest_c.read_manifest(manifest_path, check_files=True)
    kept, dropped = _drop_unshowable(manifest, manifest_path)
    plans = _resolve_plans(cfg, sorted(kept["arch"].unique()), manifest_path)
    for arch, plan in plans.items():
        _check_plan(arch, plan)
    archs = list(plans)
    runs, seeds = _runs_by_arch_loss(kept, cfg.stimulus_seed)
    lacking = [(a, lo) for a in archs for lo in plans[a].losses() if (a, lo) not in runs]
    if lacking:
        gone = [r for r, why in dropped.items() if not why.startswith("the flat")]
        note = f"; dropped as degenerate: {', '.join(gone)}" if gone else ""
        if cfg.stimulus_seed is not None:
            note += f"; --stimulus-seed {cfg.stimulus_seed}: seeds available " + ", ".join(
                f"{a}/{lo} {seeds.get((a, lo)) or 'none'}" for a, lo in lacking)
        if cfg.preset is not None:
            raise InputError(f"--preset {cfg.preset}: missing run(s) {', '.join(f'{a}/{lo}' for a, lo in lacking)} "
                             f"in {manifest_path}{note}; train them (percept train --arch A --loss L)")
        arch = lacking[0][0]
        have = sorted(lo for (a, lo) in runs if a == arch)
        raise InputError(f"{manifest_path}: architecture {arch!r} has no run with loss "
                         f"{', '.join(lo for a, lo in lacking if a == arch)} (it has {', '.join(have) or 'none'}){note}; "
                         "filter with --archs or change --pairs/--ranking-losses")
    used_runs = sorted({runs[(a, lo)] for a in archs for lo in plans[a].losses()})
    for arch in archs:
        for loss in plans[arch].losses():
            if len(seeds.get((arch, loss), [])) > 1:
                print(f"design: seeds {seeds[(arch, loss)]} of {arch}/{loss} in the manifest; showing {runs[(arch, loss)]}",
                      file=sys.stderr)

    # Images that have every needed run, in manifest order: main ones for the main block, spare ones for practice.
    shown = kept[kept["run"].isin(used_runs)]
    complete = shown.groupby("image_id", sort=False)["run"].nunique()
    use = kept.drop_duplicates("image_id").set_index("image_id")["use"]
    full = [i for i in pd.unique(kept["image_id"]) if complete.get(i, 0) == len(used_runs)]
    eligible = [i for i in full if use[i] == "main"]
    spare = [i for i in full if use[i] == "spare"]
    if not eligible:
        raise InputError(f"{manifest_path}: no main image has a reconstruction by every run needed ({', '.join(used_runs)})")
    if cfg.practice and not spare:
        raise InputError(f"--practice {cfg.practice}: {manifest_path} has no spare image (use=spare) with every run needed; "
                         "practice never uses main images: re-export with `percept reconstruct --spares K` or use --practice 0")
    rng = np.random.default_rng(cfg.seed)
    n_images = len(eligible) if cfg.images is None else cfg.images
    if n_images > len(eligible):
        raise InputError(f"--images: {n_images} asked but only {len(eligible)} image(s) have every run needed")
    picked = sorted(rng.choice(len(eligible), size=n_images, replace=False).tolist())
    images = [eligible[k] for k in picked]

    paths: dict[tuple[str, str], str] = {}
    for row in shown.itertuples(index=False):
        paths[(row.run, row.image_id)] = _rel(manifest_path.parent / row.recon_path, study_dir)
        paths[("original", row.image_id)] = _rel(manifest_path.parent / row.original_path, study_dir)

    # Conditions (kind, arch, parameter): kinds in registry order, then architectures, then each kind's own.
    conditions = [cond for k in KIND_NAMES for a in archs if k in plans[a].kinds for cond in trials.get(k).conditions(a, plans[a])]
    kinds = [k for k in KIND_NAMES if any(cd[0] == k for cd in conditions)]
    if cfg.preset is None:  # practice alternates kinds in the order given
        kinds = [k for k in cfg.kinds if k in kinds] + [k for k in kinds if k not in cfg.kinds]
    image_order = [images[i] for i in rng.permutation(len(images))]
    per_list: list[list[tuple]] = [[] for _ in range(cfg.lists)]
    for j, image_id in enumerate(image_order):
        for c, cond in enumerate(conditions):
            per_list[(j + c) % cfg.lists].append((cond, image_id))

    rows = []
    # Each kind's own catch trials (the triplet's for rankings), shared out in turn.
    catch_kinds = list(dict.fromkeys(trials.get(k).catch_kind for k in kinds))
    for base_id, items in enumerate(per_list):
        main = []
        for cond in conditions:
            members = [img for (cd, img) in items if cd == cond]
            main += trials.get(cond[0]).main_rows(cond, members, rng, plans[cond[1]], runs, paths)
        # `catch` is the share of the main block: n / (items + n) ≈ catch.
        n_catch = int(round(cfg.catch / (1.0 - cfg.catch) * len(main))) if cfg.catch > 0 else 0
        n_catch = max(n_catch, 1) if cfg.catch > 0 and main else n_catch
        catch_pool = [images[i] for i in rng.permutation(len(images))]
        catch_imgs = [catch_pool[k % len(catch_pool)] for k in range(n_catch)]
        for j, kind in enumerate(catch_kinds):
            main += trials.get(kind).catch_rows(catch_imgs[j::len(catch_kinds)], rng, paths)
        main = order_no_repeats(main, rng)

        practice = []
        pool = [spare[i] for i in rng.permutation(len(spare))]
        for k in range(cfg.practice):
            img = pool[k % len(pool)]
            # Practice alternates the kinds so that every task is tried before the main block.
            of_kind = [cd for cd in conditions if cd[0] == kinds[k % len(kinds)]]
            cond = of_kind[int(rng.integers(len(of_kind)))]
            practice.append(trials.get(cond[0]).practice_row(cond, img, rng, plans[cond[1]], runs, paths))
        try:
            practice = order_no_repeats(practice, rng)
        except InputError:
            pass  # a single spare image: practice repeats it, which is harmless (excluded from analysis)
        if practice and main and practice[-1]["image_id"] == main[0]["image_id"]:
            main = _fix_boundary(practice[-1]["image_id"], main)  # cannot happen with spares; kept as a guard
        list_rows = [dict(r, block="practice") for r in practice] + [dict(r, block="main") for r in main]
        # Base list k is list 2k, its mirror list 2k + 1 (or list k without mirroring).
        copies = [(2 * base_id, list_rows), (2 * base_id + 1, [mirror_row(r) for r in list_rows])] if cfg.mirror else [(base_id, list_rows)]
        for list_id, list_trials in copies:
            for t, row in enumerate(list_trials):
                rows.append(dict(row, list_id=list_id, trial=t))

    # Catch stimuli: the original itself, and a degraded copy written beside the design.
    catch_images = {r["image_id"] for r in rows for slot in design_c.SLOTS if r[f"{slot}_run"] == kinds_c.DEGRADED_RUN}
    catch_rng = np.random.default_rng([cfg.seed, 1])
    study_dir.mkdir(parents=True, exist_ok=True)
    for img in sorted(catch_images):
        src = study_dir / paths[("original", img)]
        rel = f"{CATCH_DIR}/{_safe_name(img)}.png"
        _save_rgb(degrade(_load_rgb(src), catch_rng, cfg.blur_sigma, cfg.noise_sd), study_dir / rel)
        paths[("degraded", img)] = rel
    for row in rows:
        for slot in design_c.SLOTS:
            if row[f"{slot}_run"] == kinds_c.DEGRADED_RUN:
                row[f"{slot}_path"] = paths[("degraded", row["image_id"])]

    df = pd.DataFrame(rows, columns=list(design_c.COLUMNS))
    n_lists = 2 * cfg.lists if cfg.mirror else cfg.lists
    meta = {
        "seed": cfg.seed,
        "kinds": kinds,
        "pairs": list(dict.fromkeys(p for arch in archs for p in plans[arch].as_dict()["pairs"])),
        "ranking_losses": list(dict.fromkeys(lo for arch in archs for lo in plans[arch].as_dict()["ranking_losses"])),
        "plan": {arch: plans[arch].as_dict() for arch in archs},
        "preset": cfg.preset,
        "archs": archs,
        "runs": {f"{a}/{lo}": runs[(a, lo)] for a in archs for lo in plans[a].losses()},
        "stimulus_seed": cfg.stimulus_seed if cfg.stimulus_seed is not None else "lowest",
        "seeds": {f"{a}/{lo}": seeds[(a, lo)] for a in archs for lo in plans[a].losses()},
        "dropped_runs": dropped,
        "images": images,
        "n_images": len(images),
        "practice_images": sorted(set(df.loc[df["block"] == "practice", "image_id"])),
        "lists": cfg.lists,
        "mirror": cfg.mirror,
        "n_lists": n_lists,
        "mirror_of": {str(2 * k + 1): 2 * k for k in range(cfg.lists)} if cfg.mirror else {},
        "trials_per_list": [int((df["list_id"] == k).sum()) for k in range(n_lists)],
        "catch": {"share": cfg.catch, "per_list": [int(((df["list_id"] == k) & df["kind"].isin(kinds_c.CATCH_KINDS)).sum())
                                                   for k in range(n_lists)],
                  "kinds": catch_kinds,
                  "degradation": {"blur_sigma_px": cfg.blur_sigma, "noise_sd": cfg.noise_sd}, "runs": list(design_c.CATCH_RUNS)},
        "timing": {"jnd": dict(zip(("first_ms", "gap_ms", "second_ms"), cfg.jnd_ms))},
        "practice": cfg.practice,
        "counterbalancing": (
            "items (image x arch x pair; image x arch for rankings) partitioned over K base lists by a Latin square "
            "(list = (image index + condition index) mod K); within each list and arch/pair, each loss on each side "
            "equally often (+-1 if odd); ranking slot orders cycle through all 6 permutations in shuffled order per "
            "list and arch; catch sides alternate; main block shuffled with no image twice in a row; practice first, "
            "from use=spare images only"
            + ("; mirrored list pairs: list 2k+1 is list 2k with every left/right swapped (ranking positions reversed, "
               "catch answers swapped), so each item is shown with each side arrangement by consecutive participants"
               if cfg.mirror else "; no mirrored lists (sides balanced per list only)")),
        "manifest": _rel(manifest_path, study_dir),
        "manifest_sha256": manifest_c.file_hash(manifest_path),
        "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "versions": versions(),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
    }
    return design_c.write_design(df, study_dir / "design.csv", meta)


def _fix_boundary(last_image: str, main: list[dict]) -> list[dict]:
    """Swap the main block's first trial with a later one so practice does not end on the same image."""
    for k in range(1, len(main)):
        swapped = [main[k]] + main[1:k] + [main[0]] + main[k + 1:]
        ids = [last_image] + [it["image_id"] for it in swapped]
        if all(a != b for a, b in zip(ids, ids[1:])):
            return swapped
    raise InputError(f"cannot start the main block without repeating image {last_image!r}: use --practice 0 or more images")


def _safe_name(image_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in image_id)


def load_design(design_path: str | Path, *, check_files: bool = True) -> tuple[pd.DataFrame, dict]:
    """Read design.csv (refusing missing or unreadable images) and its design.json."""
    return design_c.read_design_pair(design_path, check_files=check_files)


def describe(df: pd.DataFrame) -> str:
    """A short text summary of a design: trials per list and kind."""
    counts = df.groupby(["list_id", "block", "kind"]).size().rename("n").reset_index()
    return counts.to_string(index=False)
