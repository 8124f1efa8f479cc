"""The manifest's later columns (delta_e, haarpsi, degenerate, use, the flat baseline): validated, and old files still read."""
from __future__ import annotations

import pandas as pd
import pytest

from percept.contracts import ContractError
from percept.contracts import manifest as manifest_c


def _rows(n_images: int = 2, runs=("conv-mse-s0", "conv-ms_ssim-s0", "flat")) -> pd.DataFrame:
    rows = []
    for i in range(n_images):
        for run in runs:
            flat = run == "flat"
            rows.append(dict(image_id=f"photos:test:x:{i:04d}", split="test", label="", original_path=f"originals/{i}.png",
                             run=run, arch="baseline" if flat else "conv", loss="flat" if flat else run.split("-")[1],
                             recon_path=f"{run}/{i}.png", mse=0.01, mae=0.05, psnr=20.0, ssim=0.8, ms_ssim=0.9,
                             delta_e=3.5, haarpsi=0.6, degenerate=0, use="spare" if i == n_images - 1 else "main"))
    return pd.DataFrame(rows)


def _write_raw(df: pd.DataFrame, path) -> object:
    df.to_csv(path, index=False)
    return path


def test_new_columns_round_trip_in_contract_order(tmp_path):
    rows = _rows()
    rows["seed"] = 0  # an extra column stays after the contract's
    df = manifest_c.read_manifest(manifest_c.write_manifest(rows[list(rows.columns[::-1])], tmp_path / "m.csv"))
    assert list(df.columns[:17]) == list(manifest_c.COLUMNS + manifest_c.OPTIONAL_COLUMNS) and df.columns[17] == "seed"
    assert df["delta_e"].dtype == "float64" and df["degenerate"].dtype == "int64"
    assert df.drop_duplicates("image_id")["use"].tolist() == ["main", "spare"]
    assert manifest_c.HIGHER_IS_BETTER["haarpsi"] and not manifest_c.HIGHER_IS_BETTER["delta_e"]


def test_old_manifest_reads_with_defaults(tmp_path):
    old = _rows(runs=("conv-mse-s0",)).drop(columns=list(manifest_c.OPTIONAL_COLUMNS))
    df = manifest_c.read_manifest(_write_raw(old, tmp_path / "old.csv"))
    assert (df["degenerate"] == 0).all() and (df["use"] == "main").all()
    assert df["delta_e"].isna().all() and df["haarpsi"].isna().all()


@pytest.mark.parametrize("col, value, message", [
    ("delta_e", -0.5, "column 'delta_e': '-0.5' is not a finite number in \\[0, inf\\]"),
    ("delta_e", "inf", "column 'delta_e': 'inf'"),
    ("haarpsi", 1.2, "column 'haarpsi': '1.2' is not a finite number in \\[0, 1\\]"),
    ("haarpsi", "", "column 'haarpsi': ''"),
    ("degenerate", 2, "column 'degenerate': '2' is not 0 or 1"),
    ("use", "practice", "column 'use': 'practice' is not one of main, spare"),
])
def test_bad_values_name_row_and_column(tmp_path, col, value, message):
    rows = _rows().astype(object)
    rows.loc[3, col] = value
    with pytest.raises(ContractError, match=f"m\\.csv: row 5, {message}"):
        manifest_c.read_manifest(_write_raw(rows, tmp_path / "m.csv"))


def test_one_use_per_image_one_degenerate_per_run_and_a_consistent_baseline(tmp_path):
    rows = _rows()
    rows.loc[1, "use"] = "spare"  # image 0 main for one run, spare for another
    with pytest.raises(ContractError, match="row 2, column 'use': image_id 'photos:test:x:0000' has more than one"):
        manifest_c.read_manifest(_write_raw(rows, tmp_path / "m.csv"))
    rows = _rows()
    rows.loc[3, "degenerate"] = 1
    with pytest.raises(ContractError, match="column 'degenerate': run 'conv-mse-s0' has more than one"):
        manifest_c.read_manifest(_write_raw(rows, tmp_path / "m.csv"))
    rows = _rows()
    rows.loc[2, "loss"] = "mse"
    with pytest.raises(ContractError, match="row 4: run 'flat' is not of arch 'baseline' and loss 'mse'"):
        manifest_c.read_manifest(_write_raw(rows, tmp_path / "m.csv"))


def test_trained_on_maps_losses_to_the_metrics_they_optimise():
    assert manifest_c.trained_on("mse", "mse") and manifest_c.trained_on("mse", "psnr")
    assert manifest_c.trained_on("mix", "ms_ssim") and not manifest_c.trained_on("mix", "ssim")
    assert not manifest_c.trained_on("ssim", "ms_ssim") and manifest_c.trained_on("ssim", "ssim")
    assert not any(manifest_c.trained_on(loss, m) for loss in ("mse", "mae", "ssim", "ms_ssim", "mix", "vgg", "flat")
                   for m in ("haarpsi", "delta_e"))
    assert manifest_c.ALL_METRICS == manifest_c.METRICS + ("delta_e", "haarpsi")


def test_optional_metrics_are_validated_where_present_and_never_filled_in(tmp_path):
    rows = _rows()
    df = manifest_c.read_manifest(manifest_c.write_manifest(rows, tmp_path / "m.csv"))
    assert not set(manifest_c.OPTIONAL_METRICS) & set(df.columns)  # absent: "not computed", not NaN
    rows["seed"] = 0
    rows["lpips"], rows["psnr_y"], rows["ssim_y"] = 0.25, float("inf"), 0.5
    df = manifest_c.read_manifest(manifest_c.write_manifest(rows, tmp_path / "m.csv"))
    assert list(df.columns[17:21]) == ["lpips", "psnr_y", "ssim_y", "seed"] and df["lpips"].dtype == "float64"
    assert df["psnr_y"].eq(float("inf")).all()  # a perfect reconstruction, as psnr allows
    assert not manifest_c.HIGHER_IS_BETTER["lpips"] and manifest_c.HIGHER_IS_BETTER["ssim_y"]
    rows["lpips"] = float("nan")  # all empty: left out on writing, as for delta_e
    assert "lpips" not in manifest_c.read_manifest(manifest_c.write_manifest(rows, tmp_path / "m.csv")).columns


@pytest.mark.parametrize("col, value, message", [
    ("lpips", -0.1, "column 'lpips': '-0.1' is not a finite number in \\[0, inf\\]"),
    ("lpips", "inf", "column 'lpips': 'inf'"),
    ("lpips", "", "column 'lpips': ''"),
    ("ssim_y", 1.5, "column 'ssim_y': '1.5' is not a finite number in \\[-1, 1\\]"),
    ("psnr_y", "x", "column 'psnr_y': 'x' is not a number"),
])
def test_bad_optional_metric_names_row_and_column(tmp_path, col, value, message):
    rows = _rows().astype(object)
    rows[col] = pd.Series([0.5] * len(rows), dtype=object)
    rows.loc[3, col] = value
    with pytest.raises(ContractError, match=f"m\\.csv: row 5, {message}"):
        manifest_c.read_manifest(_write_raw(rows, tmp_path / "m.csv"))
