"""Trial lists for the study: triplets, rankings, catch and practice trials, counterbalanced and seeded.

The scheme (also written into design.json):

- Items. For every architecture and chosen image: one triplet per loss pair and one ranking
  of the three ranking losses. Images are drawn (seeded) from those that have a reconstruction
  for every loss needed.
- Lists. K lists partition the items (every image × pair × architecture once over all lists,
  likewise every ranking). Item (image j, condition c) goes to list (j + c) mod K, a Latin
  square: with K equal to the number of conditions each list shows every image once per kind.
- Sides. Within each list and (architecture, pair), the items' sides alternate in a shuffled
  order, so each loss of the pair is on the left as often as on the right (±1 when odd).
- Ranking slots. Within each list and architecture, the six orders of the three losses over the
  screen positions are cycled in a shuffled order, so each loss is at each position equally often.
- Catch trials. A share of the main block is catch trials: the original on one side, a strongly
  degraded copy (Gaussian blur + noise) on the other; correct answer = the original. Sides alternate.
- Practice trials. Taken from images outside the main set where the manifest has spare ones
  (else from the main set), marked block=practice and excluded from analysis.
- Order. The main block is shuffled per list so that no image appears twice in a row.
"""
from __future__ import annotations

import itertools
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import InputError
from percept.contracts import design as design_c
from percept.contracts import manifest as manifest_c

DEFAULT_PAIRS = (("mse", "ms_ssim"), ("mae", "ms_ssim"), ("mse", "mae"))
DEFAULT_RANKING_LOSSES = ("mse", "mae", "ms_ssim")
CATCH_DIR = "stimuli/catch"


@dataclass(frozen=True)
class DesignConfig:
    """Settings of `percept design`; each default follows the issue or the paper."""

    kinds: tuple[str, ...] = ("triplet", "ranking")  # the paper's two judgment types
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS  # MS-SSIM vs each pixel loss, and the pixel losses
    ranking_losses: tuple[str, ...] = DEFAULT_RANKING_LOSSES  # the paper's ranking triple
    images: int | None = None  # None: every image with all runs needed
    lists: int = 1  # participant lists that together cover every item
    catch: float = 0.1  # share of the main block that is catch trials
    practice: int = 4  # practice trials at the start of every list
    seed: int = 0
    archs: tuple[str, ...] | None = None  # None: every architecture in the manifest
    blur_sigma: float = 4.0  # catch degradation: Gaussian blur σ in pixels (96 px images)
    noise_sd: float = 0.1  # catch degradation: Gaussian noise SD on [0,1] images


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


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _runs_by_arch_loss(manifest: pd.DataFrame) -> dict[tuple[str, str], str]:
    """One run per (arch, loss): the first by name when several seeds exist (reported by the caller)."""
    runs = manifest[["arch", "loss", "run"]].drop_duplicates().sort_values(["arch", "loss", "run"])
    return {(a, lo): grp["run"].iloc[0] for (a, lo), grp in runs.groupby(["arch", "loss"], sort=True)}


def versions() -> dict[str, str]:
    """Versions of the software that made an output."""
    import PIL
    import scipy

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
           "pandas": pd.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__}
    try:
        from importlib.metadata import version

        out["percept"] = version("percept")
    except ImportError:
        pass
    return out


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


def _blank_row() -> dict:
    return {c: "" for c in design_c.COLUMNS}


def _triplet(arch: str, image_id: str, pair: tuple[str, str], left_loss: str, runs: dict, paths: dict) -> dict:
    right_loss = pair[1] if left_loss == pair[0] else pair[0]
    row = _blank_row()
    row.update(kind="triplet", image_id=image_id, arch=arch, pair=f"{pair[0]}:{pair[1]}",
               reference_path=paths[("original", image_id)])
    for slot, loss in (("left", left_loss), ("right", right_loss)):
        run = runs[(arch, loss)]
        row.update({f"{slot}_run": run, f"{slot}_loss": loss, f"{slot}_path": paths[(run, image_id)]})
    return row


def _ranking(arch: str, image_id: str, screen_losses: tuple[str, ...], runs: dict, paths: dict) -> dict:
    row = _blank_row()
    row.update(kind="ranking", image_id=image_id, arch=arch, reference_path=paths[("original", image_id)])
    for slot, loss in zip(design_c.RANKING_SCREEN_ORDER, screen_losses):
        run = runs[(arch, loss)]
        row.update({f"{slot}_run": run, f"{slot}_loss": loss, f"{slot}_path": paths[(run, image_id)]})
    return row


def _catch(image_id: str, original_left: bool, paths: dict) -> dict:
    row = _blank_row()
    row.update(kind="catch", image_id=image_id, reference_path=paths[("original", image_id)],
               answer="left" if original_left else "right")
    slots = ("left", "right") if original_left else ("right", "left")
    for slot, run in zip(slots, design_c.CATCH_RUNS):
        # The degraded copy's path is filled in once the stimulus is written.
        row.update({f"{slot}_run": run, f"{slot}_loss": run, f"{slot}_path": paths.get((run, image_id), "")})
    return row


def _alternating_sides(n: int, rng: np.random.Generator) -> list[bool]:
    """n booleans, half True (±1), in random order: True puts the pair's first loss on the left."""
    sides = [(k % 2 == 0) for k in range(n)]
    if n % 2 and rng.random() < 0.5:
        sides = [not s for s in sides]
    return [sides[i] for i in rng.permutation(n)]


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
    unknown = [k for k in cfg.kinds if k not in ("triplet", "ranking")]
    if unknown or not cfg.kinds:
        raise InputError(f"--kinds: {','.join(cfg.kinds)!r} must name triplet and/or ranking")
    if cfg.lists < 1:
        raise InputError(f"--lists: {cfg.lists} must be at least 1")
    if not 0.0 <= cfg.catch < 1.0:
        raise InputError(f"--catch: {cfg.catch} must be a share in [0, 1)")
    if cfg.practice < 0:
        raise InputError(f"--practice: {cfg.practice} must be 0 or more")
    if cfg.images is not None and cfg.images < 1:
        raise InputError(f"--images: {cfg.images} must be at least 1")
    if len(set(cfg.ranking_losses)) != 3:
        raise InputError(f"--ranking-losses: {','.join(cfg.ranking_losses)!r} must name three different losses")

    manifest = manifest_c.read_manifest(manifest_path, check_files=True)
    archs = sorted(manifest["arch"].unique())
    if cfg.archs is not None:
        missing = [a for a in cfg.archs if a not in archs]
        if missing:
            raise InputError(f"--archs: {','.join(missing)} not in {manifest_path} (it has {', '.join(archs)})")
        archs = sorted(cfg.archs)
    runs = _runs_by_arch_loss(manifest)
    needed = sorted({lo for p in cfg.pairs for lo in p} if "triplet" in cfg.kinds else set())
    if "ranking" in cfg.kinds:
        needed = sorted(set(needed) | set(cfg.ranking_losses))
    for arch in archs:
        have = sorted(lo for (a, lo) in runs if a == arch)
        lacking = [lo for lo in needed if (arch, lo) not in runs]
        if lacking:
            raise InputError(f"{manifest_path}: architecture {arch!r} has no run with loss {', '.join(lacking)} "
                             f"(it has {', '.join(have)}); filter with --archs or change --pairs/--ranking-losses")
    used_runs = sorted({runs[(a, lo)] for a in archs for lo in needed})
    several = manifest[manifest["arch"].isin(archs) & manifest["loss"].isin(needed)].groupby(["arch", "loss"])["run"].nunique()
    for (arch, loss), n in several[several > 1].items():
        print(f"design: {n} runs of {arch}/{loss} in the manifest; using {runs[(arch, loss)]}", file=sys.stderr)

    # Images that have every needed run, in manifest order.
    shown = manifest[manifest["run"].isin(used_runs)]
    complete = shown.groupby("image_id", sort=False)["run"].nunique()
    eligible = [i for i in pd.unique(manifest["image_id"]) if complete.get(i, 0) == len(used_runs)]
    if not eligible:
        raise InputError(f"{manifest_path}: no image has a reconstruction by every run needed ({', '.join(used_runs)})")
    rng = np.random.default_rng(cfg.seed)
    n_images = len(eligible) if cfg.images is None else cfg.images
    if n_images > len(eligible):
        raise InputError(f"--images: {n_images} asked but only {len(eligible)} image(s) have every run needed")
    picked = sorted(rng.choice(len(eligible), size=n_images, replace=False).tolist())
    images = [eligible[k] for k in picked]
    chosen = set(images)
    spare = [i for i in eligible if i not in chosen]

    paths: dict[tuple[str, str], str] = {}
    for row in shown.itertuples(index=False):
        paths[(row.run, row.image_id)] = _rel(manifest_path.parent / row.recon_path, study_dir)
        paths[("original", row.image_id)] = _rel(manifest_path.parent / row.original_path, study_dir)

    conditions = ([("triplet", a, p) for a in archs for p in cfg.pairs] if "triplet" in cfg.kinds else []) + \
                 ([("ranking", a, None) for a in archs] if "ranking" in cfg.kinds else [])
    image_order = [images[i] for i in rng.permutation(len(images))]
    per_list: list[list[tuple]] = [[] for _ in range(cfg.lists)]
    for j, image_id in enumerate(image_order):
        for c, cond in enumerate(conditions):
            per_list[(j + c) % cfg.lists].append((cond, image_id))

    catch_images = set()
    rows = []
    for list_id, items in enumerate(per_list):
        main = []
        for cond in conditions:
            members = [img for (cd, img) in items if cd == cond]
            kind, arch, pair = cond
            if kind == "triplet":
                for img, first_left in zip(members, _alternating_sides(len(members), rng)):
                    main.append(_triplet(arch, img, pair, pair[0] if first_left else pair[1], runs, paths))
            else:
                perms = list(itertools.permutations(cfg.ranking_losses))
                perms = [perms[i] for i in rng.permutation(len(perms))]
                for k, img in enumerate(members):
                    main.append(_ranking(arch, img, perms[k % len(perms)], runs, paths))
        # `catch` is the share of the main block: n / (items + n) ≈ catch.
        n_catch = int(round(cfg.catch / (1.0 - cfg.catch) * len(main))) if cfg.catch > 0 else 0
        n_catch = max(n_catch, 1) if cfg.catch > 0 and main else n_catch
        catch_pool = [images[i] for i in rng.permutation(len(images))]
        for k, left in enumerate(_alternating_sides(n_catch, rng)):
            img = catch_pool[k % len(catch_pool)]
            catch_images.add(img)
            main.append(_catch(img, left, paths))
        main = order_no_repeats(main, rng)

        practice = []
        pool = spare if spare else images
        pool = [pool[i] for i in rng.permutation(len(pool))]
        for k in range(cfg.practice):
            img = pool[k % len(pool)]
            # Practice alternates the kinds so that every task is tried before the main block.
            kind = cfg.kinds[k % len(cfg.kinds)]
            of_kind = [cd for cd in conditions if cd[0] == kind]
            kind, arch, pair = of_kind[int(rng.integers(len(of_kind)))]
            if kind == "triplet":
                practice.append(_triplet(arch, img, pair, pair[int(rng.integers(2))], runs, paths))
            else:
                perms = list(itertools.permutations(cfg.ranking_losses))
                practice.append(_ranking(arch, img, perms[int(rng.integers(len(perms)))], runs, paths))
        try:
            practice = order_no_repeats(practice, rng)
        except InputError:
            pass  # a single spare image: practice repeats it, which is harmless (excluded from analysis)
        if practice and main and practice[-1]["image_id"] == main[0]["image_id"]:
            main = _fix_boundary(practice[-1]["image_id"], main)
        for row in practice:
            for slot in design_c.SLOTS:  # practice images may come from outside the main set
                run = row[f"{slot}_run"]
                if run and (run, row["image_id"]) not in paths:
                    raise InputError(f"{manifest_path}: practice image {row['image_id']!r} lacks run {run!r}")
        for t, row in enumerate([dict(r, block="practice") for r in practice] + [dict(r, block="main") for r in main]):
            rows.append(dict(row, list_id=list_id, trial=t))

    # Catch stimuli: the original itself, and a degraded copy written beside the design.
    catch_rng = np.random.default_rng([cfg.seed, 1])
    study_dir.mkdir(parents=True, exist_ok=True)
    for img in sorted(catch_images):
        src = study_dir / paths[("original", img)]
        rel = f"{CATCH_DIR}/{_safe_name(img)}.png"
        _save_rgb(degrade(_load_rgb(src), catch_rng, cfg.blur_sigma, cfg.noise_sd), study_dir / rel)
        paths[("degraded", img)] = rel
    for row in rows:
        if row["kind"] == "catch":
            slot = "right" if row["answer"] == "left" else "left"
            row[f"{slot}_path"] = paths[("degraded", row["image_id"])]

    df = pd.DataFrame(rows, columns=list(design_c.COLUMNS))
    meta = {
        "seed": cfg.seed,
        "kinds": list(cfg.kinds),
        "pairs": [f"{a}:{b}" for a, b in cfg.pairs] if "triplet" in cfg.kinds else [],
        "ranking_losses": list(cfg.ranking_losses) if "ranking" in cfg.kinds else [],
        "archs": archs,
        "runs": {f"{a}/{lo}": runs[(a, lo)] for a in archs for lo in needed},
        "images": images,
        "n_images": len(images),
        "lists": cfg.lists,
        "trials_per_list": [int((df["list_id"] == k).sum()) for k in range(cfg.lists)],
        "catch": {"share": cfg.catch, "per_list": [int(((df["list_id"] == k) & (df["kind"] == "catch")).sum()) for k in range(cfg.lists)],
                  "degradation": {"blur_sigma_px": cfg.blur_sigma, "noise_sd": cfg.noise_sd}, "runs": list(design_c.CATCH_RUNS)},
        "practice": cfg.practice,
        "counterbalancing": (
            "items (image x arch x pair; image x arch for rankings) partitioned over lists by a Latin square "
            "(list = (image index + condition index) mod K); within each list and arch/pair, each loss on each side "
            "equally often (+-1 if odd); ranking slot orders cycle through all 6 permutations in shuffled order per "
            "list and arch; catch sides alternate; main block shuffled with no image twice in a row; practice first"),
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
    df = design_c.read_design(design_path, check_files=check_files)
    return df, design_c.read_design_meta(design_path)


def describe(df: pd.DataFrame) -> str:
    """A short text summary of a design: trials per list and kind."""
    counts = df.groupby(["list_id", "block", "kind"]).size().rename("n").reset_index()
    return counts.to_string(index=False)
