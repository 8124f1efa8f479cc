"""The file contracts: writers and readers agree, and a bad file names file, row and column."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percept.contracts import ContractError
from percept.contracts import codes as codes_c
from percept.contracts import design as design_c
from percept.contracts import manifest as manifest_c
from percept.contracts import responses as responses_c


def _manifest_rows(n_images: int = 2, runs=("conv-mse-s0", "conv-ms_ssim-s0")) -> pd.DataFrame:
    rows = []
    for i in range(n_images):
        for run in runs:
            rows.append(dict(image_id=f"photos:test:x:{i:04d}", split="test", label=i % 2,
                             original_path=f"originals/{i}.png", run=run, arch="conv",
                             loss=run.split("-")[1], recon_path=f"{run}/{i}.png", mse=0.01,
                             mae=0.05, psnr=20.0, ssim=0.8, ms_ssim=0.9))
    return pd.DataFrame(rows)


def test_manifest_round_trip(tmp_path):
    path = manifest_c.write_manifest(_manifest_rows(), tmp_path / "manifest.csv")
    df = manifest_c.read_manifest(path)
    assert list(df.columns[:13]) == list(manifest_c.COLUMNS)
    assert df["mse"].dtype == "float64"
    assert df["label"].tolist() == [0, 0, 1, 1]


def test_manifest_empty_label_is_na(tmp_path):
    rows = _manifest_rows()
    rows["label"] = ""
    df = manifest_c.read_manifest(manifest_c.write_manifest(rows, tmp_path / "m.csv"))
    assert df["label"].isna().all()


def test_manifest_bad_number_names_row_and_column(tmp_path):
    rows = _manifest_rows().astype(object)
    rows.loc[2, "ssim"] = "high"
    path = tmp_path / "m.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(ContractError, match=r"m\.csv: row 4, column 'ssim': 'high' is not a number"):
        manifest_c.read_manifest(path)


def test_manifest_missing_column_and_nan(tmp_path):
    path = tmp_path / "m.csv"
    _manifest_rows().drop(columns="psnr").to_csv(path, index=False)
    with pytest.raises(ContractError, match="lacks column\\(s\\) psnr"):
        manifest_c.read_manifest(path)
    rows = _manifest_rows()
    rows.loc[1, "mse"] = float("nan")
    rows.to_csv(path, index=False)
    with pytest.raises(ContractError, match="row 3, column 'mse'"):
        manifest_c.read_manifest(path)


def test_manifest_duplicate_and_missing_files(tmp_path):
    rows = pd.concat([_manifest_rows(1), _manifest_rows(1)])
    with pytest.raises(ContractError, match="appears twice"):
        manifest_c.read_manifest(manifest_c.write_manifest(rows, tmp_path / "m.csv"))
    path = manifest_c.write_manifest(_manifest_rows(1), tmp_path / "m.csv")
    with pytest.raises(ContractError, match="image file\\(s\\) missing"):
        manifest_c.read_manifest(path, check_files=True)


def test_codes_round_trip_and_errors(tmp_path):
    path = codes_c.write_codes(tmp_path / "conv-mse-s0.npz", np.ones((3, 4)), np.array([0, 1, -1]), ["a", "b", "c"],
                               ["train"] * 3)
    c = codes_c.read_codes(path)
    assert c.codes.dtype == np.float32 and c.codes.shape == (3, 4)
    assert c.labels.tolist() == [0, 1, -1] and c.image_ids.tolist() == ["a", "b", "c"]
    assert (c.run, c.arch, c.loss) == ("conv-mse-s0", "conv", "mse")
    with pytest.raises(ContractError, match="'labels' has shape \\(2,\\)"):
        codes_c.write_codes(tmp_path / "fc-mse-s0.npz", np.ones((3, 4)), np.array([0, 1]), ["a", "b", "c"], ["t"] * 3)
    np.savez(tmp_path / "e.npz", codes=np.ones((2, 2)))
    with pytest.raises(ContractError, match="lacks key\\(s\\) labels"):
        codes_c.read_codes(tmp_path / "e.npz")
    (tmp_path / "f.npz").write_bytes(b"not a zip")
    with pytest.raises(ContractError, match="f.npz"):
        codes_c.read_codes(tmp_path / "f.npz")


def _design_rows() -> pd.DataFrame:
    base = dict(list_id=0, block="main", arch="conv", image_id="i0", reference_path="o.png",
                left_run="conv-mse-s0", left_loss="mse", left_path="a.png",
                right_run="conv-mae-s0", right_loss="mae", right_path="b.png",
                third_run="", third_loss="", third_path="", answer="", pair="mse:mae")
    rank = dict(base, kind="ranking", pair="", third_run="conv-ms_ssim-s0", third_loss="ms_ssim", third_path="c.png")
    return pd.DataFrame([dict(base, trial=0, kind="triplet"), dict(rank, trial=1)])


def test_design_round_trip_and_image_check(tmp_path):
    path = design_c.write_design(_design_rows(), tmp_path / "design.csv", {"seed": 3})
    assert design_c.read_design_meta(path) == {"seed": 3}
    df = design_c.read_design(path)
    assert df["trial"].tolist() == [0, 1]
    assert design_c.image_paths(df) == ["o.png", "a.png", "b.png", "c.png"]
    for name in ("o.png", "a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "c.png").write_bytes(b"garbage")
    with pytest.raises(ContractError, match=r"1 image\(s\) missing or unreadable: .*c\.png"):
        design_c.read_design(path, check_files=True)


def test_design_ranking_needs_third_image(tmp_path):
    rows = _design_rows()
    rows.loc[1, "third_path"] = ""
    path = design_c.write_design(rows, tmp_path / "design.csv", {})
    with pytest.raises(ContractError, match="row 3, column 'third_path'"):
        design_c.read_design(path)


def _response_rows() -> pd.DataFrame:
    base = dict(participant="P01", session="1", list_id=0, block="main", image_id="i0", arch="conv",
                left_run="conv-mse-s0", left_loss="mse", right_run="conv-mae-s0", right_loss="mae",
                third_run="", third_loss="", rt=0.8, onset=3.0, wallclock="2026-11-23T10:00:00+00:00",
                simulated=0)
    return pd.DataFrame([
        dict(base, trial=0, kind="triplet", key="left", choice="conv-mse-s0"),
        dict(base, trial=1, kind="ranking", third_run="conv-ms_ssim-s0", third_loss="ms_ssim",
             key="3,1", choice="conv-ms_ssim-s0>conv-mse-s0>conv-mae-s0"),
    ])


def test_responses_round_trip_and_choice_checks(tmp_path):
    path = tmp_path / "P01-1.csv"
    _response_rows().to_csv(path, index=False)
    df = responses_c.read_responses(path)
    assert df["rt"].tolist() == [0.8, 0.8] and df["simulated"].tolist() == [0, 0]
    bad = _response_rows()
    bad.loc[1, "choice"] = "conv-ms_ssim-s0>conv-mse-s0"
    bad.to_csv(path, index=False)
    with pytest.raises(ContractError, match="row 3, column 'choice'"):
        responses_c.read_responses(path)
    bad = _response_rows()
    bad.loc[0, "choice"] = "conv-vae-s0"
    bad.to_csv(path, index=False)
    with pytest.raises(ContractError, match="row 2, column 'choice'.*not shown"):
        responses_c.read_responses(path)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "P 1", "..", "é"])
def test_ids_reject_path_tricks(bad, tmp_path):
    with pytest.raises(ContractError, match="participant"):
        responses_c.response_path(tmp_path, bad, "1")


def test_ids_accept_plain():
    assert responses_c.check_id("P01_a-2", "participant") == "P01_a-2"


def test_written_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        csv = manifest_c.write_manifest(_manifest_rows(1), tmp_path / "m.csv")
        npz = codes_c.write_codes(tmp_path / "fc-mse-s1.npz", np.ones((1, 2)), np.array([0]), ["a"], ["test"])
    finally:
        os.umask(mask)
    assert stat.S_IMODE(csv.stat().st_mode) == 0o644
    assert stat.S_IMODE(npz.stat().st_mode) == 0o644


def test_pixels_round_trip_and_errors(tmp_path):
    from percept.contracts import pixels as pixels_c

    images = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    ids, rows = pixels_c.read_pixels(pixels_c.write_pixels(tmp_path / "p.npz", images, ["a", "b"]))
    assert ids.tolist() == ["a", "b"] and rows.shape == (2, 12) and rows.dtype == np.float32
    assert rows[1, -1] == pytest.approx(23 / 255)
    with pytest.raises(ContractError, match="pixels must be uint8"):
        pixels_c.write_pixels(tmp_path / "q.npz", images.astype(np.float32), ["a", "b"])
    np.savez(tmp_path / "r.npz", pixels=images.astype(np.float64), image_ids=np.array(["a", "b"]))
    with pytest.raises(ContractError, match="r.npz: 'pixels' must be uint8"):
        pixels_c.read_pixels(tmp_path / "r.npz")


def test_json_and_toml_readers_give_one_clear_error(tmp_path):
    from percept.contracts import InputError
    from percept.contracts.tables import read_json, read_toml

    with pytest.raises(ContractError, match=r"x\.json: session record not found$"):
        read_json(tmp_path / "x.json", "session record not found")
    (tmp_path / "y.json").write_text("{oops")
    with pytest.raises(ContractError, match=r"y\.json: not valid JSON"):
        read_json(tmp_path / "y.json", "")
    (tmp_path / "y.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "y.json", "") == {"a": 1}
    with pytest.raises(InputError, match=r"--config .*c\.toml: file not found"):
        read_toml(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text("[train\n")
    with pytest.raises(InputError, match=r"--config .*c\.toml: not valid TOML"):
        read_toml(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text("[train]\nepochs = 3\n")
    assert read_toml(tmp_path / "c.toml") == {"train": {"epochs": 3}}
