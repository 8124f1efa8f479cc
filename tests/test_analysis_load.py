"""Loading a study folder: practice removal, exclusions with reasons, one-line errors naming file, row and column."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ae_support import three_classes
from analysis.classify import classify_codes
from analysis.load import ExclusionRules, analysis_dir, load_study
from percept.contracts import ContractError, InputError
from percept.contracts.codes import write_codes
from test_analysis_fakestudy import make_study


def _quiet(msg):
    pass


@pytest.fixture
def bad_study(tmp_path):
    return make_study(tmp_path, n_images=8, n_participants=5, catch=10, effect=0.3,
                      bad={1: "side", 2: "fast", 3: "catch"})


def test_exclusions_follow_the_rules_and_name_reasons(bad_study):
    s = load_study(bad_study, warn=_quiet)
    p = s.participants.set_index("participant")
    assert list(p.index[p["included"]]) == ["P00", "P04"]
    assert "chose the left image" in p.loc["P01", "reasons"]
    assert "faster than 0.2 s" in p.loc["P02", "reasons"]
    assert "catch accuracy" in p.loc["P03", "reasons"]
    assert set(s.responses["participant"]) == {"P00", "P04"}
    assert (s.responses["block"] == "main").all() and s.n_practice == 5
    assert s.simulated


def test_rules_are_configurable(bad_study):
    lenient = ExclusionRules(catch_threshold=0.0, side_bias=1.0, max_fast_fraction=1.0)
    s = load_study(bad_study, lenient, warn=_quiet)
    # side bias of exactly 100% still meets a threshold of 1.0; the others pass
    assert set(s.participants.loc[s.participants["included"], "participant"]) == {"P00", "P02", "P03", "P04"}
    with pytest.raises(InputError, match="--catch-threshold must be a proportion"):
        ExclusionRules(catch_threshold=80)


def test_exclude_simulated_refuses_when_no_human_data(bad_study):
    with pytest.raises(InputError, match="every response is simulated"):
        load_study(bad_study, exclude_simulated=True, warn=_quiet)


def test_mixed_human_and_simulated_rows(tmp_path):
    from test_analysis_fakestudy import simulate

    folder = make_study(tmp_path, n_images=6, n_participants=4, simulated=1)
    # P00 and P01 are then answered again by people (simulated=0), replacing the scripted files
    simulate(folder / "design.csv", tmp_path / "reconstructions" / "manifest.csv", n_participants=2, simulated=0, seed=9)
    both = load_study(folder, warn=_quiet)
    humans = load_study(folder, exclude_simulated=True, warn=_quiet)
    assert both.simulated and not humans.simulated
    assert set(humans.responses["participant"]) == {"P00", "P01"}


def _one_response_file(tmp_path) -> tuple[Path, Path, pd.DataFrame]:
    """A one-participant study, its response CSV, and that CSV's cells as text for a test to corrupt."""
    folder = make_study(tmp_path, n_images=4, n_participants=1)
    path = folder / "responses" / "P00-1.csv"
    return folder, path, pd.read_csv(path, dtype=str, keep_default_na=False)


def test_malformed_response_names_file_row_and_column(tmp_path):
    folder, path, df = _one_response_file(tmp_path)
    df.loc[3, "rt"] = "soon"
    df.to_csv(path, index=False)
    with pytest.raises(ContractError) as err:
        load_study(folder, warn=_quiet)
    msg = str(err.value)
    assert "P00-1.csv" in msg and "row 5" in msg and "'rt'" in msg and "\n" not in msg


def test_response_contradicting_the_design_is_refused(tmp_path):
    folder, path, df = _one_response_file(tmp_path)
    df.loc[2, "image_id"] = "photos:test:other:9999"
    df.to_csv(path, index=False)
    with pytest.raises(ContractError, match=r"P00-1.csv: row 4, column 'image_id'.*differs from the design"):
        load_study(folder, warn=_quiet)
    df.loc[2, "image_id"] = pd.read_csv(folder / "design.csv")["image_id"].iloc[2]
    df.loc[2, "trial"] = "999"
    df.to_csv(path, index=False)
    with pytest.raises(ContractError, match="trial 999 of list 0 is not in design.csv"):
        load_study(folder, warn=_quiet)


def test_changed_manifest_warns_but_loads(tmp_path):
    folder = make_study(tmp_path, n_images=4, n_participants=1)
    man = tmp_path / "reconstructions" / "manifest.csv"
    man.write_text(man.read_text() + "\n")
    seen = []
    s = load_study(folder, warn=seen.append)
    assert any("changed since the design" in w for w in seen) and s.warnings == tuple(seen)
    assert s.manifest is not None


def test_missing_folder_and_empty_responses(tmp_path):
    with pytest.raises(InputError, match="study folder not found"):
        load_study(tmp_path / "nope")
    folder = make_study(tmp_path, n_images=4, n_participants=1)
    for p in (folder / "responses").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="no response files"):
        load_study(folder, warn=_quiet)
    assert analysis_dir(folder) == (tmp_path / "analysis").resolve()


def _codes(tmp_path, run, labels, codes, ids, splits):
    return write_codes(tmp_path / "codes" / f"{run}.npz", codes, labels, ids, splits)


def test_classification_accuracy_ci_pixels_and_chance(tmp_path):
    from PIL import Image

    from percept.contracts.manifest import write_manifest

    rng = np.random.default_rng(0)
    n = 120
    labels, ids, splits = three_classes(n, test_every=4)
    informative = rng.normal(size=(n, 8)) + 3.0 * np.eye(3, 8)[labels]
    _codes(tmp_path, "fc-mse-s0", labels, informative, ids, splits)
    _codes(tmp_path, "fc-ms_ssim-s0", labels, rng.normal(size=(n, 8)), ids, splits)
    table = classify_codes(tmp_path / "codes")
    codes = table[table["kind"] == "codes"].set_index("run")
    assert codes.loc["fc-mse-s0", "accuracy"] > 0.9 > codes.loc["fc-ms_ssim-s0", "accuracy"]
    assert codes.loc["fc-mse-s0", "arch"] == "fc" and codes.loc["fc-ms_ssim-s0", "loss"] == "ms_ssim"
    from statsmodels.stats.proportion import proportion_confint

    acc = codes.loc["fc-mse-s0"]
    k = round(acc["accuracy"] * acc["n_test"])
    assert (acc["ci_low"], acc["ci_high"]) == pytest.approx(proportion_confint(k, acc["n_test"], method="wilson"))
    pix = table[table["kind"] == "pixels"].iloc[0]
    assert np.isnan(pix["accuracy"]) and "skipped" in pix["note"]
    assert table.loc[table["kind"] == "chance_uniform", "accuracy"].iloc[0] == pytest.approx(1 / 3)
    assert table.loc[table["kind"] == "chance_majority", "accuracy"].iloc[0] == pytest.approx(10 / 30)

    # pixel baseline from the manifest's originals when it lists every coded image
    rows = []
    for i, (iid, lab) in enumerate(zip(ids, labels)):
        arr = np.clip(rng.normal(80 * lab + 40, 20, size=(6, 6, 3)), 0, 255).astype(np.uint8)
        (tmp_path / "reconstructions" / "o").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "reconstructions" / "o" / f"{i}.png")
        rows.append({"image_id": iid, "split": splits[i], "label": str(lab), "original_path": f"o/{i}.png",
                     "run": "fc-mse-s0", "arch": "fc", "loss": "mse", "recon_path": f"o/{i}.png", "mse": 0.0,
                     "mae": 0.0, "psnr": 50.0, "ssim": 1.0, "ms_ssim": 1.0})
    write_manifest(pd.DataFrame(rows), tmp_path / "reconstructions" / "manifest.csv")
    pix = classify_codes(tmp_path / "codes").query("kind == 'pixels'").iloc[0]
    assert pix["accuracy"] > 0.9 and pix["dim"] == 6 * 6 * 3 and "manifest" in pix["note"]


def test_classification_refuses_codes_without_splits(tmp_path):
    _codes(tmp_path, "fc-mse-s0", np.array([0, 1, 0, 1]), np.zeros((4, 2)), list("abcd"), ["train"] * 4)
    with pytest.raises(InputError, match="needs labelled 'train' and 'test' rows"):
        classify_codes(tmp_path / "codes")
    with pytest.raises(InputError, match="no codes files"):
        classify_codes(tmp_path / "missing")


def test_session_record_incomplete_warns(tmp_path):
    folder = make_study(tmp_path, n_images=4, n_participants=1)
    rec = folder / "responses" / "P00-1.json"
    data = json.loads(rec.read_text())
    data["completed"] = False
    rec.write_text(json.dumps(data))
    seen = []
    load_study(folder, warn=seen.append)
    assert any("not completed" in w for w in seen)


def test_classification_uses_pixels_written_beside_the_codes(tmp_path):
    from percept.contracts.pixels import write_pixels

    rng = np.random.default_rng(1)
    n = 90
    labels, ids, splits = three_classes(n, test_every=3)
    _codes(tmp_path, "conv-mse-s0", labels, rng.normal(size=(n, 4)), ids, splits)
    images = np.clip(rng.normal(80 * labels[:, None, None, None] + 40, 20, size=(n, 3, 4, 4)), 0, 255).astype(np.uint8)
    write_pixels(tmp_path / "pixels.npz", images[::-1], ids[::-1])  # order differs from the codes: matched by id
    pix = classify_codes(tmp_path / "codes").query("kind == 'pixels'").iloc[0]
    assert pix["dim"] == 3 * 4 * 4 and pix["accuracy"] > 0.9 and "pixels.npz" in pix["note"]
