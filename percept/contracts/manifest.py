"""Reconstruction manifest `reconstructions/manifest.csv`: one row per (image, model).

Paths are relative to the manifest's folder; images are lossless 8-bit RGB PNGs. Besides the
trained runs, every image has a row of the flat baseline (`run = "flat"`, `arch = "baseline"`,
`loss = "flat"`: a patch of the image's own per-channel mean colour), which designs never show.

The columns after COLUMNS (OPTIONAL_COLUMNS) were added later; a manifest without them still
reads, with `delta_e` and `haarpsi` NaN, `degenerate` 0 and `use` "main". The metric columns of
OPTIONAL_METRICS are written only when they could be computed (`lpips` needs the VGG-16 weights;
`psnr_y`, `ssim_y` are super-resolution's) and stay absent, not filled, when missing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts.paths import check_name, check_png, inside
from percept.contracts.provenance import file_hash  # noqa: F401 (re-exported: later stages hash the manifest)
from percept.contracts.run import check_metric_columns, run_from_name
from percept.contracts.tables import ContractError, atomic_write_csv, check_finite, read_csv_checked

COLUMNS = (
    "image_id",  # stable id, e.g. "stl10:test:00042" or "photos:test:chelsea:0003"
    "split",  # the dataset split the image came from
    "label",  # integer class, or "" when the dataset has none
    "original_path",  # PNG of the original, relative to the manifest
    "run",  # model run name "<arch>-<loss>-s<seed>"
    "arch",  # fc | conv | vae
    "loss",  # the training loss's registry name
    "recon_path",  # PNG of the reconstruction, relative to the manifest
    "mse",  # per-image metrics on [0,1] float images (data_range = 1)
    "mae",
    "psnr",
    "ssim",
    "ms_ssim",
)
OPTIONAL_COLUMNS = (
    "delta_e",  # mean CIEDE2000 colour difference (skimage.color, of rgb2lab), ≥ 0, lower is better
    "haarpsi",  # HaarPSI (piq.haarpsi, data_range 1), in [0, 1], higher is better; no model is trained on it
    "degenerate",  # 1: the run's guard says degenerate, or it does not beat the flat baseline on its own metric
    "use",  # main (for main trials) | spare (held-out extras, reserved for practice trials)
)
# Metric columns present only where they could be computed: validated where present, never filled in.
OPTIONAL_METRICS = (
    "lpips",  # LPIPS v0.1 VGG (Zhang et al. 2018) on the VGG-16 weights, ≥ 0, lower is better; absent without weights
    "psnr_y",  # super-resolution: PSNR on the BT.601 Y channel, border of `scale` px cropped, higher is better
    "ssim_y",  # super-resolution: SSIM on that Y channel, in [-1, 1], higher is better
)
# (low, high, infinity allowed) of each optional metric; psnr_y is +inf for a perfect reconstruction, as psnr is.
_OPTIONAL_RANGES = {"lpips": (0.0, float("inf"), False), "psnr_y": (float("-inf"), float("inf"), True),
                    "ssim_y": (-1.0, 1.0, False)}
METRICS = ("mse", "mae", "psnr", "ssim", "ms_ssim")  # always present
EXTRA_METRICS = ("delta_e", "haarpsi")  # present in manifests written since the flat baseline was added
ALL_METRICS = METRICS + EXTRA_METRICS
# For each metric, whether a higher value means a closer reconstruction.
HIGHER_IS_BETTER = {"mse": False, "mae": False, "psnr": True, "ssim": True, "ms_ssim": True,
                    "delta_e": False, "haarpsi": True, "lpips": False, "psnr_y": True, "ssim_y": True}
USES = ("main", "spare")
# The flat baseline's rows.
FLAT_RUN, BASELINE_ARCH, FLAT_LOSS = "flat", "baseline", "flat"
# The manifest metric each training loss optimises (mix = α·(1−MS-SSIM) + (1−α)·L1 is judged by MS-SSIM);
# losses not listed (vgg) optimise none of them.
OWN_METRIC = {"mse": "mse", "mae": "mae", "ssim": "ssim", "ms_ssim": "ms_ssim", "mix": "ms_ssim"}


def trained_on(loss: str, metric: str) -> bool:
    """Whether a model trained with `loss` was optimised for `metric` (PSNR is a monotone function of MSE)."""
    own = OWN_METRIC.get(loss)
    return own is not None and (own == metric or (metric == "psnr" and own == "mse"))


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate the columns and write the manifest atomically (optional, then extra columns after the contract's)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: manifest to write lacks column(s) {', '.join(missing)}")
    # A metric column that is empty throughout was filled in by read_manifest for an older manifest: leave it out,
    # so reading and writing back an older manifest round-trips instead of writing empty cells the reader refuses.
    optional = [c for c in OPTIONAL_COLUMNS + OPTIONAL_METRICS
                if c in df.columns and not (c in EXTRA_METRICS + OPTIONAL_METRICS and df[c].isna().all())]
    extra = [c for c in df.columns if c not in COLUMNS + OPTIONAL_COLUMNS + OPTIONAL_METRICS]
    return atomic_write_csv(df[list(COLUMNS) + optional + extra], path)


def read_manifest(path: str | Path, *, check_files: bool = False) -> pd.DataFrame:
    """Read and validate a manifest; metrics become floats, `label` an Int64 column (NA when empty).

    The optional columns are validated where present (delta_e ≥ 0, haarpsi in [0, 1], degenerate
    0|1 per run, use main|spare per image) and filled with their defaults where absent.
    """
    path = Path(path)
    df = read_csv_checked(
        path,
        COLUMNS,
        numeric=METRICS,
        nonempty=("image_id", "split", "original_path", "run", "arch", "loss", "recon_path"),
        what="reconstruction manifest",
    )
    if df.empty:
        raise ContractError(f"{path}: reconstruction manifest has no rows")
    # psnr is +inf for a perfect reconstruction, which is legitimate; the others must be finite.
    check_finite(df, [m for m in METRICS if m != "psnr"], path)
    _check_values(df, path)
    labels = pd.to_numeric(df["label"].where(df["label"] != ""), errors="coerce")
    vals = labels.to_numpy(dtype="float64", na_value=np.nan)
    whole = np.isfinite(vals) & (vals == np.round(vals)) & (np.abs(vals) < 2**31)
    bad = pd.Series(~whole & (df["label"] != "").to_numpy(), index=df.index)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}, column 'label': {df['label'].iloc[i]!r} is not an integer")
    df["label"] = labels.astype("Int64")
    dup = df.duplicated(["image_id", "run"])
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}: image {df['image_id'].iloc[i]!r} appears twice for run {df['run'].iloc[i]!r}")
    _optional_columns(df, path)
    if check_files:
        check_images(df, path)
    return df


def _first_bad(mask: pd.Series) -> int:
    return int(mask.to_numpy().nonzero()[0][0])


def _optional_columns(df: pd.DataFrame, path: Path) -> None:
    """Validate the later columns where present and fill the defaults of older manifests, in place."""
    for col, low, high in (("delta_e", 0.0, float("inf")), ("haarpsi", 0.0, 1.0)):
        if col not in df.columns:
            df[col] = float("nan")
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        # Checked per value so the message names the row: not a number, not finite, or out of range.
        bad = values.isna() | ~values.between(low, high) | values.isin([float("inf"), float("-inf")])
        if bad.any():
            i = _first_bad(bad)
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {df[col].iloc[i]!r} is not a finite number in "
                                f"[{low:g}, {high:g}]")
        df[col] = values.astype("float64")
    for col in OPTIONAL_METRICS:  # left absent when missing: a reader tells "not computed" from a value
        if col not in df.columns:
            continue
        low, high, infinite = _OPTIONAL_RANGES[col]
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ~values.between(low, high)
        if not infinite:
            bad |= values.isin([float("inf"), float("-inf")])
        if bad.any():
            i = _first_bad(bad)
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {df[col].iloc[i]!r} is not a "
                                f"{'' if infinite else 'finite '}number in [{low:g}, {high:g}]")
        df[col] = values.astype("float64")
    if "degenerate" in df.columns:
        bad = ~df["degenerate"].isin(["0", "1"])
        if bad.any():
            i = _first_bad(bad)
            raise ContractError(f"{path}: row {i + 2}, column 'degenerate': {df['degenerate'].iloc[i]!r} is not 0 or 1")
        df["degenerate"] = df["degenerate"].astype("int64")
    else:
        df["degenerate"] = 0
    if "use" in df.columns:
        bad = ~df["use"].isin(USES)
        if bad.any():
            i = _first_bad(bad)
            raise ContractError(f"{path}: row {i + 2}, column 'use': {df['use'].iloc[i]!r} is not one of {', '.join(USES)}")
    else:
        df["use"] = "main"
    # One value per image (use) and per run (degenerate): mixed values would make designs draw inconsistently.
    for col, key in (("use", "image_id"), ("degenerate", "run")):
        mixed = df.groupby(key, sort=False)[col].transform("nunique") > 1
        if mixed.any():
            i = _first_bad(mixed)
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {key} {df[key].iloc[i]!r} has more than one "
                                f"value of {col}")
    # The flat baseline's run, arch and loss go together: run_from_name in _check_values refuses any mix.


def _check_values(df: pd.DataFrame, path: Path) -> None:
    """Metrics in range, safe run names, and image paths that stay inside the experiment folder."""
    check_metric_columns(df, path, list(METRICS))  # the optional metric columns: _optional_columns
    for i, (run, arch, loss) in enumerate(zip(df["run"], df["arch"], df["loss"])):
        for col, value in (("run", run), ("arch", arch), ("loss", loss)):
            check_name(value, f"row {i + 2}, column '{col}':", path)
        if run_from_name(run, path) != (arch, loss):
            raise ContractError(f"{path}: row {i + 2}: run {run!r} is not of arch {arch!r} and loss {loss!r}")
    root = path.resolve().parent.parent  # runs/<exp>/reconstructions/manifest.csv → runs/<exp>
    for col in ("original_path", "recon_path"):
        for i, rel in enumerate(df[col]):
            inside(root, path.resolve().parent, rel, f"{path}: row {i + 2}, column '{col}'")


def check_images(df: pd.DataFrame, path: str | Path) -> None:
    """Refuse any image of the manifest that is missing or not an 8-bit RGB PNG of the originals' size."""
    path = Path(path)
    paths = list(pd.unique(pd.concat([df["original_path"], df["recon_path"]])))
    missing = [p for p in paths if not (path.parent / p).is_file()]
    if missing:
        raise ContractError(f"{path}: {len(missing)} image file(s) missing, e.g. {path.parent / missing[0]}")
    size = check_png(path.parent / paths[0])  # every image has the size of the first original
    for p in paths[1:]:
        check_png(path.parent / p, size)


def resolve(manifest_path: str | Path, relative: str) -> Path:
    """Absolute path of an image named in the manifest."""
    return Path(manifest_path).resolve().parent / relative
