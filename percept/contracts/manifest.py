"""Reconstruction manifest `reconstructions/manifest.csv`: one row per (image, model).

Paths are relative to the manifest's folder; images are lossless 8-bit RGB PNGs.
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
METRICS = ("mse", "mae", "psnr", "ssim", "ms_ssim")
# For each metric, whether a higher value means a closer reconstruction.
HIGHER_IS_BETTER = {"mse": False, "mae": False, "psnr": True, "ssim": True, "ms_ssim": True}


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate the columns and write the manifest atomically (extra columns kept after the contract's)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: manifest to write lacks column(s) {', '.join(missing)}")
    extra = [c for c in df.columns if c not in COLUMNS]
    return atomic_write_csv(df[list(COLUMNS) + extra], path)


def read_manifest(path: str | Path, *, check_files: bool = False) -> pd.DataFrame:
    """Read and validate a manifest; metrics become floats, `label` an Int64 column (NA when empty)."""
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
    if check_files:
        check_images(df, path)
    return df


def _check_values(df: pd.DataFrame, path: Path) -> None:
    """Metrics in range, safe run names, and image paths that stay inside the experiment folder."""
    extra = [m for m in ("delta_e", "haarpsi") if m in df.columns]
    for m in extra:  # INTERFACES item 2: optional metric columns, numbers when present
        df[m] = pd.to_numeric(df[m], errors="coerce")
        bad = df[m].isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ContractError(f"{path}: row {i + 2}, column '{m}': not a number")
    check_metric_columns(df, path, list(METRICS) + extra)
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
