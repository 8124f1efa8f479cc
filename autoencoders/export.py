"""Export finished runs: reconstructions (PNG + manifest.csv + contact sheet) and latent codes.

`reconstruct` writes, under `<out>/reconstructions/`, the originals once (`originals/<id>.png`),
each run's reconstructions of the SAME N held-out images plus K spare ones (`<run>/<id>.png`),
the flat baseline of each (`flat/<id>.png`, the image's own mean colour), lossless 8-bit RGB
PNGs, and `manifest.csv` whose per-image metrics are computed on the 8-bit images actually saved
(with an `lpips` column where the VGG-16 weights are present; left out, said once, where not).
`encode` writes `<out>/codes/<run>.npz` for the train and held-out splits.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from autoencoders.data import spread
from percept.contracts import InputError
from percept.contracts.run import loss_name

if TYPE_CHECKING:
    import torch

    from autoencoders.data import ImageSet

CONTACT_SHEET_ROWS = 12  # images shown in the contact sheet: enough to judge, small enough to view
DEFAULT_N = 100  # the paper's 100 triplets for the fully connected net
DEFAULT_SPARES = 4  # held-out extras for practice trials: the design's default of 4 practice trials


def finished_runs(out: str | Path) -> list[tuple[str, Path, dict]]:
    """(name, folder, record) of each finished run under <out>/models, sorted by name; unfinished ones are named and skipped."""
    from percept.contracts.run import read_run_record

    models = Path(out) / "models"
    folders = sorted(p for p in models.glob("*") if p.is_dir()) if models.is_dir() else []
    runs, skipped = [], []
    for folder in folders:
        if not (folder / "config.json").exists():
            skipped.append(folder.name)
            continue
        record = read_run_record(folder)
        if record["status"] == "finished":
            runs.append((folder.name, folder, record))
        else:
            skipped.append(folder.name)
    if skipped:
        print(f"skipping unfinished run(s): {', '.join(skipped)}")
    if not runs:
        raise InputError(f"{models}: no finished runs to export; train some with `percept train --out {out}`")
    return runs


def shared_data(runs: list[tuple[str, Path, dict]], also: tuple[str, ...] = ()) -> dict:
    """The dataset settings (and the config keys `also`) every run shares; runs on different data, sizes or scales cannot be compared."""
    keys = ("data", "image_size", "eval_split", "train_split") + also
    first = {k: runs[0][2]["config"][k] for k in keys}
    for name, _, record in runs[1:]:
        mine = {k: record["config"][k] for k in keys}
        if mine != first:
            differ = ", ".join(f"{k} {first[k]!r} ({runs[0][0]}) vs {mine[k]!r} ({name})" for k in keys if mine[k] != first[k])
            raise InputError(f"runs under one --out must share dataset and image size{''.join(' and ' + k for k in also)}: {differ}")
    return {**first, "data_root": runs[0][2]["config"]["data_root"], "verify": runs[0][2]["config"].get("verify", True)}


def safe_names(image_ids: Sequence[str]) -> list[str]:
    """File-name stems for image ids: unsafe characters become '_', a short hash keeps them unique."""
    stems = [re.sub(r"[^A-Za-z0-9_-]+", "_", i).strip("_-") or "image" for i in image_ids]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else f"{s}-{hashlib.sha1(i.encode()).hexdigest()[:8]}" for s, i in zip(stems, image_ids)]


def save_png(path: Path, image: np.ndarray) -> None:
    """Write uint8 (H, W, 3) as a lossless 8-bit RGB PNG."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"PNG export needs uint8 (H, W, 3), got {image.dtype} {image.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")  # uint8 (H, W, 3) is RGB


def _batched(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    import torch

    with torch.no_grad():
        return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def flat_baseline(originals_u8: np.ndarray) -> np.ndarray:
    """Each (H, W, 3) uint8 image replaced by a patch of its own per-channel mean colour, rounded to uint8."""
    means = originals_u8.reshape(len(originals_u8), -1, originals_u8.shape[-1]).mean(axis=1)  # (N, 3)
    return np.broadcast_to(np.round(means).astype(np.uint8)[:, None, None, :], originals_u8.shape).copy()


def colour_metrics(recon_u8: np.ndarray, originals_u8: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image (N,) mean CIEDE2000 (`delta_e`) and HaarPSI (`haarpsi`) of uint8 (N, H, W, 3) images."""
    import piq
    import torch
    from skimage.color import deltaE_ciede2000, rgb2lab

    x = recon_u8.astype(np.float64) / 255.0
    y = originals_u8.astype(np.float64) / 255.0
    delta_e = np.array([float(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean()) for a, b in zip(y, x)])
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).float()
    yt = torch.from_numpy(y.transpose(0, 3, 1, 2)).float()
    try:
        haar = piq.haarpsi(xt, yt, data_range=1.0, reduction="none").double().numpy()
    except AssertionError as exc:  # piq validates its inputs with assert; turn that into one line
        raise InputError(f"haarpsi cannot score images of shape {recon_u8.shape[1:]}: {exc}") from None
    # HaarPSI's ratio can exceed 1 by rounding for identical images; the manifest keeps it in [0, 1].
    return {"delta_e": delta_e, "haarpsi": np.clip(haar, 0.0, 1.0)}


def _own_metric_verdict(loss: str, run_metrics: dict[str, np.ndarray], flat_metrics: dict[str, np.ndarray]) -> str | None:
    """Why a run is degenerate by the flat-baseline rule (a sentence), or None when it beats flat or has no own metric."""
    from percept.contracts.manifest import HIGHER_IS_BETTER, OWN_METRIC

    metric = OWN_METRIC.get(loss)
    if metric is None:
        return None
    mine, flat = float(np.mean(run_metrics[metric])), float(np.mean(flat_metrics[metric]))
    beats = mine > flat if HIGHER_IS_BETTER[metric] else mine < flat
    return None if beats else f"mean {metric} {mine:.4g} does not beat the flat baseline's {flat:.4g}"


def _guard_says_degenerate(record: dict) -> bool:
    """The run's own guard (config.json `guard.degenerate`, written by training since it gained one); absent → False."""
    guard = record.get("guard")
    return bool(guard.get("degenerate", False)) if isinstance(guard, dict) else False


def pick_images(size: int, n: int | None, spares: int, command: str) -> tuple[np.ndarray, list[str], int]:
    """(dataset indices, use "main"/"spare" of each, number of main ones): n spread evenly over the split, then `spares` over the rest.

    Spreading keeps a short study sampling every source photo or class rather than the first few.
    """
    if n is not None and n < 1:
        raise InputError(f"--n must be ≥ 1, got {n}")
    if spares < 0:
        raise InputError(f"--spares must be ≥ 0, got {spares}")
    main = spread(size, size if n is None else n)  # distinct, ordered
    rest = np.setdiff1d(np.arange(size), main)
    spare = rest[spread(len(rest), spares)]
    if len(spare) < spares:
        print(f"{command}: only {len(spare)} of {spares} spare image(s): the split has {size} images "
              f"and {len(main)} are main ones")
    return np.concatenate([main, spare]), ["main"] * len(main) + ["spare"] * len(spare), len(main)


def reconstruct(out: str | Path, *, overwrite: bool = False, **options) -> Path:
    """Reconstruct held-out images with every finished run; all of reconstructions/ is replaced at once or not at all.

    Refused when the experiment's study design was built from the current manifest, unless `overwrite`.
    """
    from percept.contracts.staging import staged_dir

    out = Path(out)
    recon_dir = out / "reconstructions"
    if not overwrite:
        refuse_if_design_uses(out, "reconstructing")
    with staged_dir(recon_dir) as staging:
        _reconstruct(out, staging, **options)
    return recon_dir / "manifest.csv"


def refuse_if_design_uses(out: str | Path, doing: str) -> None:
    """Refuse (one line) to replace `<out>/reconstructions/` when the experiment's study design was built from its manifest."""
    from percept.contracts.manifest import file_hash
    from percept.contracts.staging import dependent_design

    out = Path(out)
    manifest = out / "reconstructions" / "manifest.csv"
    design = dependent_design(out)
    if design is None:
        return
    # The design names its manifest relative to study/ and records its SHA-256.
    named = (out / "study" / str(design.get("manifest", ""))).resolve() == manifest.resolve()
    same = manifest.is_file() and design.get("manifest_sha256") == file_hash(manifest)
    if same or (named and not manifest.is_file()):
        raise InputError(f"{manifest} is the manifest {out / 'study' / 'design.json'} was built from; "
                         f"{doing} would change the images that design shows; use another --out, or "
                         f"--overwrite to replace them anyway (then rebuild the design)")


def _reconstruct(out: str | Path, recon_dir: Path, *, split: str | None = None, n: int | None = DEFAULT_N,
                 spares: int = DEFAULT_SPARES, device: str = "auto", batch_size: int = 64,
                 vgg_weights: str | Path | None = None, lpips: bool = True) -> Path:
    """Reconstruct n images of `split` (default: the runs' held-out split) with every finished run; return manifest.csv.

    The n main images are spread evenly over the split (all of it when n is None or ≥ its size), so
    a short study still samples every source photo or class rather than the first few; `spares`
    further images of the split, spread over the rest, are exported with `use = spare` for practice
    trials. Every image also gets a flat-baseline row (run "flat"). A run is marked `degenerate`
    when its config.json guard says so or it does not beat the flat baseline on its own metric
    (mean over all exported images). With `lpips` and the VGG-16 weights (`vgg_weights`, or
    torchvision's cache) every row gets LPIPS; without them the column is left out, said once.
    """
    import pandas as pd

    from autoencoders.data import load_dataset, to_float, to_uint8
    from autoencoders.losses import image_metrics
    from autoencoders.train import load_model, resolve_device
    from percept.contracts.manifest import BASELINE_ARCH, FLAT_LOSS, FLAT_RUN, write_manifest

    out = Path(out)
    runs = finished_runs(out)
    reserved = [name for name, _, _ in runs if name in (FLAT_RUN, "originals")]
    if reserved:
        raise InputError(f"{out / 'models' / reserved[0]}: run name {reserved[0]!r} is reserved in reconstructions/; rename the run folder")
    shared = shared_data(runs)
    split = split or shared["eval_split"]
    dataset = load_dataset(shared["data"], split, root=shared["data_root"], image_size=shared["image_size"],
                           verify=shared["verify"])
    if len(dataset) == 0:
        raise InputError(f"--split {split}: dataset {shared['data']!r} has no images in it")
    indices, uses, n_main = pick_images(len(dataset), n, spares, "reconstruct")
    count = len(indices)
    chosen = dataset.images[indices]  # one gather: from a memory-mapped STL-10 it reads the disk
    originals_u8 = chosen.transpose(0, 2, 3, 1)  # (N, H, W, 3) uint8, exactly what is saved
    originals = to_float(chosen)
    ids = [dataset.image_id(i) for i in indices]
    labels = [int(dataset.labels[i]) for i in indices]
    stems = safe_names(ids)
    dev = resolve_device(device)
    lpips_metric = None
    if lpips:
        from autoencoders.lpips_metric import load_lpips

        lpips_metric = load_lpips(vgg_weights, "reconstruct")

    # recon_dir starts empty (the caller swaps it in), so stale images of removed runs never linger.
    for stem, img in zip(stems, originals_u8):
        save_png(recon_dir / "originals" / f"{stem}.png", img)

    def scored(recon_u8: np.ndarray) -> dict[str, np.ndarray]:
        # Metrics on the quantised images actually saved, so the manifest matches the files.
        metrics = image_metrics(to_float(recon_u8.transpose(0, 3, 1, 2)), originals, data_range=1.0)
        scores = {**{k: v.double().numpy() for k, v in metrics.items()}, **colour_metrics(recon_u8, originals_u8)}
        if lpips_metric is not None:
            from autoencoders.lpips_metric import lpips_values

            scores["lpips"] = lpips_values(lpips_metric, recon_u8, originals_u8)
        return scores

    flat_u8 = flat_baseline(originals_u8)
    flat_metrics = scored(flat_u8)
    exported = [(FLAT_RUN, BASELINE_ARCH, FLAT_LOSS, "", flat_u8, flat_metrics, 0)]
    for name, folder, record in runs:
        model = load_model(folder, dev)
        recon = _batched(lambda x: model.reconstruct(x.to(dev)).float().cpu(), originals, batch_size)
        recon_u8 = to_uint8(recon)  # (N, H, W, 3): the images people will see
        metrics = scored(recon_u8)
        loss = record["config"]["loss"]  # the expression: its own metric, if any, is judged on it
        reasons = (["its config.json guard says degenerate"] if _guard_says_degenerate(record) else []) + \
            [r for r in [_own_metric_verdict(loss, metrics, flat_metrics)] if r]
        if reasons:
            print(f"reconstruct {name}: degenerate: {'; '.join(reasons)}")
        # The manifest names the loss in its safe form (a sum's expression stays in the run's config.json).
        exported.append((name, record["config"]["arch"], loss_name(loss), record["config"]["seed"], recon_u8, metrics,
                         int(bool(reasons))))
        print(f"reconstruct {name}: {count} images, mean ms_ssim {float(metrics['ms_ssim'].mean()):.3f}, "
              f"psnr {float(metrics['psnr'].mean()):.2f} dB, delta_e {float(metrics['delta_e'].mean()):.2f}, "
              f"haarpsi {float(metrics['haarpsi'].mean()):.3f}"
              + (f", lpips {float(metrics['lpips'].mean()):.3f}" if "lpips" in metrics else ""))
    print(f"reconstruct flat baseline: mean ms_ssim {float(flat_metrics['ms_ssim'].mean()):.3f}, "
          f"psnr {float(flat_metrics['psnr'].mean()):.2f} dB")

    rows = []
    for name, arch, loss, seed, images_u8, metrics, degenerate in exported:
        for i, (stem, img) in enumerate(zip(stems, images_u8)):
            save_png(recon_dir / name / f"{stem}.png", img)
            rows.append({
                "image_id": ids[i], "split": split, "label": "" if labels[i] < 0 else labels[i],
                "original_path": f"originals/{stem}.png", "run": name, "arch": arch,
                "loss": loss, "recon_path": f"{name}/{stem}.png",
                **{k: float(v[i]) for k, v in metrics.items()},
                "degenerate": degenerate, "use": uses[i], "seed": seed, "data": shared["data"],
            })
    manifest = write_manifest(pd.DataFrame(rows), recon_dir / "manifest.csv")
    main = slice(0, n_main)  # the contact sheet shows the main images: those people will judge
    # Second title lines, so long run names and their notes do not run into the next column.
    columns = [(nm + ("\n(mean colour)" if nm == FLAT_RUN else "\n(degenerate)" if d else ""), u8[main])
               for nm, _, _, _, u8, _, d in exported]
    contact_sheet(recon_dir / "contact_sheet.png", originals_u8[main], columns, ids[:n_main])
    return manifest


def contact_sheet(path: Path, originals: np.ndarray, columns: list[tuple[str, np.ndarray]], ids: Sequence[str],
                  rows: int = CONTACT_SHEET_ROWS) -> Path:
    """A PNG grid: one row per image (first `rows`), columns = original then each run, titled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = min(rows, len(originals))
    panels = [("original", originals)] + columns
    cell = 1.15  # inches per image; at 100 dpi a 96 px image is shown at about its own size
    fig = Figure(figsize=(cell * len(panels) + 1.6, cell * rows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(panels), squeeze=False)
    for r in range(rows):
        for c, (title, images) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(images[r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r][0].set_ylabel(ids[r].split(":", 1)[-1], fontsize=5, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=1.5 / (cell * len(panels) + 1.6), right=0.99, top=1 - 0.4 / (cell * rows + 0.5),
                        bottom=0.01, wspace=0.05, hspace=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def encode(out: str | Path, **options) -> list[Path]:
    """Write `<out>/codes/<run>.npz` of each finished run and `<out>/pixels.npz`; codes/ is replaced at once or not at all."""
    import os

    from percept.contracts.staging import staged_dir

    out = Path(out)
    pixels_tmp = out / f".pixels.npz.staging-{os.getpid()}"
    try:
        with staged_dir(out / "codes") as staging:
            for stale in out.glob(".pixels.npz.staging-*"):  # left by a killed encode
                stale.unlink()
            paths = _encode(out, staging, pixels_tmp, **options)
        # pixels.npz depends on the data only, not on the runs; it follows the codes by one atomic rename.
        os.replace(pixels_tmp, out / "pixels.npz")
    finally:
        pixels_tmp.unlink(missing_ok=True)
    print(f"encode: raw pixels of the same images → {out / 'pixels.npz'}")
    return [out / "codes" / p.name for p in paths]


def _encode(out: Path, codes_dir: Path, pixels_path: Path, *, splits: Sequence[str] | None = None, device: str = "auto", batch_size: int = 128) -> list[Path]:
    """Write `<out>/codes/<run>.npz` (codes, labels, image_ids, splits) of each finished run; VAE codes are μ."""
    import torch

    from autoencoders.data import load_dataset
    from autoencoders.train import load_model, resolve_device
    from percept.contracts.codes import write_codes
    from percept.contracts.pixels import write_pixels

    out = Path(out)
    runs = finished_runs(out)
    shared = shared_data(runs)
    wanted = list(splits) if splits else list(dict.fromkeys([shared["train_split"], shared["eval_split"]]))
    datasets: list[ImageSet] = [load_dataset(shared["data"], s, root=shared["data_root"], image_size=shared["image_size"],
                                             verify=shared["verify"]) for s in wanted]
    dev = resolve_device(device)
    paths = []
    for name, folder, record in runs:
        model = load_model(folder, dev)
        codes, labels, ids, split_names = [], [], [], []
        for ds in datasets:
            for start in range(0, len(ds), batch_size):
                stop = min(start + batch_size, len(ds))
                x = ds.tensor(range(start, stop)).to(dev)
                with torch.no_grad():
                    codes.append(model.encode(x).float().cpu().numpy())
            labels.append(ds.labels)
            ids += ds.image_ids
            split_names += [ds.split] * len(ds)
        path = write_codes(codes_dir / f"{name}.npz", np.concatenate(codes), np.concatenate(labels), ids, split_names,
                           run=name, arch=record["config"]["arch"], loss=loss_name(record["config"]["loss"]))
        print(f"encode {name}: {len(ids)} codes of size {codes[0].shape[1]} → {out / 'codes' / path.name}")
        paths.append(path)
    # The same images as raw 8-bit pixels, for the classification experiment's pixel baseline.
    write_pixels(pixels_path, np.concatenate([ds.images for ds in datasets]), [i for ds in datasets for i in ds.image_ids])
    return paths
