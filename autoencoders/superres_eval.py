"""`percept superres evaluate`: every finished super-resolution run scored on a folder of full-size images.

This is how Set5 and Set14 (or any folder of photographs) are scored, as the super-resolution
literature does it: every image of the folder at its own size (no train/test split, no resizing),
cropped at the bottom and right to a multiple of the scale (MATLAB's `modcrop`), made
low-resolution by Johnson et al.'s pipeline (`superres.degrade`: Gaussian blur σ = 1, antialiased
bicubic ↓f, 8 bits), super-resolved by each run and by bicubic upsampling, rounded to 8 bits and
scored with `superres.sr_metrics`: PSNR/SSIM on RGB over the whole image, PSNR/SSIM on the BT.601
Y channel with a border of f pixels cropped, MS-SSIM where the image allows 2 scales, LPIPS where
the VGG-16 weights are present.

Writes `<out>/evaluations/<name>/`: `scores.csv` (one row per image and method), `table.csv` and
`table.md` (means per method), `originals/` and `<method>/` PNGs and `contact_sheet.png`; the
folder is replaced at once or not at all. Images of different sizes cannot go into the
reconstruction manifest (one size per study), so this is an evaluation, not a study export.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percept.contracts import InputError

SCORE_COLUMNS = ("image_id", "method", "loss", "width", "height", "psnr", "ssim", "ms_ssim", "psnr_y", "ssim_y", "lpips")
TABLE_METRICS = ("psnr", "ssim", "psnr_y", "ssim_y", "ms_ssim", "lpips")


@dataclass
class SREvaluateConfig:
    """What `percept superres evaluate` scores and where it writes."""

    out: str = "runs/sr"  # experiment folder holding superres/; writes <out>/evaluations/<name>/
    images: str = ""  # folder:PATH of full-size images, e.g. folder:data/Set5 (every image, any size)
    name: str = ""  # the evaluation's folder name; "" = the image folder's own name
    device: str = "auto"  # cuda when available, else cpu
    vgg_weights: str = ""  # VGG-16 state dict for the lpips column; "" = torchvision's cache
    lpips: bool = True  # score LPIPS when the VGG-16 weights are present (left empty, said once, if not)


def modcrop(hr, scale: int):
    """Crop (N,3,H,W) at the bottom and right to a multiple of `scale` (MATLAB modcrop); one line if nothing is left."""
    h, w = hr.shape[-2:]
    h2, w2 = h - h % scale, w - w % scale
    if h2 < 4 * scale or w2 < 4 * scale:
        raise InputError(f"image {w}×{h} is too small for ×{scale}: needs at least {4 * scale} px a side")
    return hr[..., :h2, :w2]


def full_size_images(images: str) -> list[tuple[str, Path]]:
    """(relative name, path) of every image in `folder:PATH`, sorted; one line when it is not such a folder."""
    from autoencoders.data import IMAGE_EXTENSIONS, parse_source

    if not images:
        raise InputError("--images: name a folder of full-size images, e.g. folder:data/Set5")
    kind, path = parse_source(images)
    if kind != "folder":
        raise InputError(f"--images {images}: evaluate takes folder:PATH (full-size images, e.g. Set5); "
                         f"the runs' own held-out split is scored by `superres train` and `superres export`")
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"--images {images}: not a folder")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not names:
        raise InputError(f"--images {images}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return [(n, root / n) for n in names]


def evaluate_folder(config: SREvaluateConfig) -> Path:
    """Score every finished run and bicubic on every image of the folder; return `<out>/evaluations/<name>/table.md`."""
    from percept.contracts.paths import check_name
    from percept.contracts.staging import staged_dir

    files = full_size_images(config.images)
    name = config.name or re.sub(r"[^A-Za-z0-9_-]+", "_", Path(config.images[len("folder:"):]).resolve().name).strip("_-")
    check_name(name or "?", "--name")
    target = Path(config.out) / "evaluations" / name
    with staged_dir(target) as staging:
        _evaluate(config, files, staging)
    return target / "table.md"


def _evaluate(config: SREvaluateConfig, files: list[tuple[str, Path]], folder: Path) -> None:
    import pandas as pd
    import torch

    from autoencoders import superres as S
    from autoencoders.data import to_float, to_uint8
    from autoencoders.export import contact_sheet, safe_names, save_png, shared_data
    from autoencoders.style import read_rgb
    from autoencoders.train import resolve_device
    from percept.contracts.run import loss_name
    from percept.contracts.tables import atomic_write_csv

    runs = S.finished_sr_runs(config.out)
    scale = shared_data(runs, also=("scale",))["scale"]
    device = resolve_device(config.device)
    lpips_fn = S._lpips_or_none(config, device)
    methods = [(f"sr{scale}-bicubic", "bicubic", None)]
    methods += [(run, loss_name(record["config"]["loss"]), S.load_srnet(path, device)) for run, path, record in runs]
    stems = safe_names([n for n, _ in files])
    rows, originals, outputs = [], [], {m: [] for m, _, _ in methods}
    for (rel, path), stem in zip(files, stems):
        hr = modcrop(read_rgb(path), scale).to(device)  # (1,3,H,W), H and W multiples of the scale
        lr = S.degrade(hr, scale)
        hr_u8 = to_uint8(hr)
        save_png(folder / "originals" / f"{stem}.png", hr_u8[0])
        originals.append(hr_u8[0])
        for method, loss, model in methods:
            with torch.no_grad():
                sr_u8 = to_uint8(S.bicubic_up(lr, scale) if model is None else model(lr))  # scored as saved: 8 bits
                m = S.sr_metrics(to_float(sr_u8.transpose(0, 3, 1, 2)).to(device), hr, scale, lpips_fn)
            save_png(folder / method / f"{stem}.png", sr_u8[0])
            outputs[method].append(sr_u8[0])
            rows.append({"image_id": rel, "method": method, "loss": loss, "width": hr.shape[-1], "height": hr.shape[-2],
                         **{k: float(m[k][0]) for k in SCORE_COLUMNS[5:]}})
    scores = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    atomic_write_csv(scores, folder / "scores.csv")
    order = [m for m, _, _ in methods]
    table = scores.groupby("method", sort=False)[list(TABLE_METRICS)].mean().reindex(order).reset_index()
    table.insert(1, "images", len(files))
    atomic_write_csv(table, folder / "table.csv")
    (folder / "table.md").write_text(_markdown(table, config, scale))
    print((folder / "table.md").read_text(), end="")
    # Lists, not arrays: the images differ in size; the sheet draws each in its own panel.
    contact_sheet(folder / "contact_sheet.png", originals, [(m, outputs[m]) for m in order], [n for n, _ in files])


def _markdown(table, config: SREvaluateConfig, scale: int) -> str:
    """The means as a Markdown table with what was measured, how."""
    head = "| method | images | " + " | ".join(TABLE_METRICS) + " |\n|---|--:|" + "--:|" * len(TABLE_METRICS) + "\n"
    body = "".join(f"| {r['method']} | {r['images']} | " + " | ".join(
        "" if np.isnan(r[k]) else (f"{r[k]:.2f}" if k.startswith("psnr") else f"{r[k]:.4f}") for k in TABLE_METRICS) + " |\n"
        for _, r in table.iterrows())
    note = (f"\n×{scale} on {config.images}: full-size images cropped to a multiple of {scale}; PSNR/SSIM on RGB over "
            f"the whole image, psnr_y/ssim_y on BT.601 Y with a {scale} px border cropped; 8-bit outputs.\n")
    return head + body + note
