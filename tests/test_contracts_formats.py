"""The contracts added for issue 8: run folder, session record, codes' run, analysis outputs, PNGs, paths, names."""
from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percept.contracts import ContractError
from percept.contracts import analysis_outputs as ao
from percept.contracts import codes as codes_c
from percept.contracts import design as design_c
from percept.contracts import manifest as manifest_c
from percept.contracts import provenance
from percept.contracts import responses as responses_c
from percept.contracts import run as run_c
from percept.contracts.paths import check_png, inside

# --------------------------------------------------------------------------------------------
# PNGs and paths


def _rgb(h=8, w=8) -> np.ndarray:
    return (np.arange(h * w * 3).reshape(h, w, 3) % 256).astype(np.uint8)


def test_check_png_accepts_8bit_rgb_of_the_stated_size(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    assert check_png(tmp_path / "a.png", 8) == (8, 8)
    assert check_png(tmp_path / "a.png", (8, 8)) == (8, 8)
    with pytest.raises(ContractError, match=r"a\.png: image is 8×8 pixels, expected 9×9"):
        check_png(tmp_path / "a.png", 9)


@pytest.mark.parametrize("kind, message", [
    ("L", "PNG is grey, not 8-bit RGB"),
    ("RGBA", "PNG is RGBA, not 8-bit RGB"),
    ("P", "PNG is palette, not 8-bit RGB"),
    ("I;16", "PNG is grey, not 8-bit RGB"),
    ("rgb16", "PNG has 16 bits per channel, not 8"),
    ("jpeg", "JPEG bytes under an image name"),
    ("truncated", "PNG data is corrupt"),
    ("text", "not PNG bytes"),
])
def test_check_png_refuses_other_images_in_one_line(tmp_path, kind, message):
    from test_contracts_corruption import png_rgb16

    path = tmp_path / "x.png"
    img = Image.fromarray(_rgb())
    if kind in ("L", "RGBA", "P"):
        img.convert(kind).save(path)
    elif kind == "I;16":
        Image.fromarray(_rgb()[..., 0].astype(np.uint16) * 257).save(path)
    elif kind == "rgb16":
        path.write_bytes(png_rgb16(_rgb().astype(np.uint16) * 257))
    elif kind == "jpeg":
        img.save(path, format="JPEG")
    elif kind == "truncated":
        img.save(path)
        path.write_bytes(path.read_bytes()[:-20])
    else:
        path.write_text("hello")
    with pytest.raises(ContractError) as err:
        check_png(path, 8)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_paths_stay_inside_the_experiment(tmp_path):
    study = tmp_path / "study"
    assert inside(tmp_path, study, "../reconstructions/a.png", "w") == tmp_path / "reconstructions" / "a.png"
    for bad in ("../../elsewhere/a.png", "/etc/passwd", "~/x.png", "a/../../../b.png", ""):
        with pytest.raises(ContractError, match="w: path"):
            inside(tmp_path, study, bad, "w")


# --------------------------------------------------------------------------------------------
# Shared helpers


def test_provenance_json_versions_and_hash(tmp_path):
    import hashlib

    path = provenance.write_json(tmp_path / "a.json", {"x": math.nan, "y": np.float32(1.5), "p": tmp_path, "z": [math.inf]})
    assert json.loads(path.read_text()) == {"x": None, "y": 1.5, "p": str(tmp_path), "z": [None]}
    assert provenance.file_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    v = provenance.versions(("numpy", "no-such-package-xyz"))
    assert v["numpy"] == np.__version__ and v["no-such-package-xyz"] == "not installed" and "python" in v


# --------------------------------------------------------------------------------------------
# Model run folder

CFG = {"data": "photos", "arch": "fc", "loss": "mse", "seed": 0, "image_size": 8, "code_size": 2, "width": 0.01,
       "train_split": "train", "eval_split": "test"}
GUARD = {"metric": "mse", "model": {"mse": 0.01}, "flat": {"mse": 0.05}, "beats_flat": True, "output_spread": 0.1,
         "degenerate": False, "warnings": []}
ROW = {"epoch": 1, "split": "test", "loss": 0.01, "mse": 0.01, "mae": 0.05, "psnr": 20.0, "ssim": 0.8, "ms_ssim": 0.9,
       "images_per_s": 100.0, "seconds": 1.0}


def _run(tmp_path, **record):
    run_dir = tmp_path / "models" / "fc-mse-s0"
    run_c.write_run_record(run_dir, {"run": "fc-mse-s0", "status": "finished", "config": dict(CFG), **record})
    return run_dir


def test_run_record_round_trip_and_refusals(tmp_path):
    run_dir = _run(tmp_path, guard=GUARD)
    assert run_c.read_run_record(run_dir)["guard"]["beats_flat"] is True
    other = tmp_path / "models" / "fc-mse-s1"
    other.mkdir()
    (other / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(ContractError, match="key 'run' is 'fc-mse-s0' but the folder is 'fc-mse-s1'"):
        run_c.read_run_record(other)
    cases = [({"config": {**CFG, "arch": "conv"}}, "does not match config arch 'conv'"),
             ({"config": {**CFG, "image_size": "96"}}, "key 'config.image_size' must be int"),
             ({"status": "done"}, "key 'status' is 'done'"),
             ({"guard": {**GUARD, "model": {"mse": math.nan}}}, "guard.model.mse"),
             ({"guard": {**GUARD, "beats_flat": "yes"}}, "key 'guard.beats_flat' must be bool"),
             ({"guard": {k: v for k, v in GUARD.items() if k != "flat"}}, "key 'guard' lacks flat"),
             ({"run": "../x"}, "run name '../x' is not a safe name")]
    for change, message in cases:
        with pytest.raises(ContractError, match=re.escape(message)):
            run_c.write_run_record(run_dir, {"run": "fc-mse-s0", "status": "finished", "config": CFG, **change})
    assert run_c.read_run_record(run_dir)["status"] == "finished"  # a refused write left the file as it was


def test_composed_losses_get_a_safe_run_name_and_sr_style_records_their_own_rule(tmp_path):
    assert run_c.loss_name("ms_ssim") == "ms_ssim"
    assert run_c.loss_name("mse+0.1*vgg_feature") == "mse_plus_0p1xvgg_feature"
    assert run_c.loss_name("mse + 1e-5*tv") == "mse_plus_1em5xtv"
    long = "+".join(f"0.{i}1*{t}" for i, t in enumerate(("mse", "mae", "ssim", "ms_ssim", "vgg_feature", "vgg_style", "tv")))
    assert re.fullmatch(r"loss_[0-9a-f]{10}", run_c.loss_name(long)) and run_c.loss_name(long) == run_c.loss_name(long)
    name = run_c.run_name("fc", "mse+0.1*vgg_feature", 0)
    assert run_c.run_from_name(name) == ("fc", "mse_plus_0p1xvgg_feature")
    cfg = {**CFG, "arch": "fc", "loss": "mse+0.1*vgg_feature"}
    run_c.write_run_record(tmp_path / name, {"run": name, "status": "finished", "config": cfg})
    with pytest.raises(ContractError, match=re.escape("expected 'fc-mse_plus_0p1xvgg_feature-s0'")):
        run_c.write_run_record(tmp_path / "x", {"run": "fc-mse-s0", "status": "finished", "config": cfg})
    # Super-resolution: `sr<f>` in a name is arch sr at scale f; `sr<f>-bicubic` its baseline.
    assert run_c.run_from_name("sr4-mse-s0") == ("sr", "mse") and run_c.run_from_name("sr2-bicubic") == ("sr", "bicubic")
    with pytest.raises(ContractError, match="not <arch>-<loss>-s<seed>"):
        run_c.run_from_name("sr3-bicubic")
    sr = {"scale": 4, "loss": "mse", "seed": 0, "image_size": 96, "data": "photos", "train_split": "train",
          "eval_split": "test", "channels": 16, "blocks": 1}
    run_c.write_run_record(tmp_path / "sr4-mse-s0", {"run": "sr4-mse-s0", "kind": "superres", "status": "running", "config": sr})
    for change, message in [({"config": {**sr, "scale": 2}}, "expected 'sr2-mse-s0'"),
                            ({"config": {**sr, "scale": 3}}, "key 'config.scale' is 3"),
                            ({"config": {k: v for k, v in sr.items() if k != "blocks"}}, "key 'config' lacks blocks"),
                            ({"kind": "gan"}, "key 'kind' is 'gan'")]:
        with pytest.raises(ContractError, match=re.escape(message)):
            run_c.write_run_record(tmp_path / "y", {"run": "sr4-mse-s0", "kind": "superres", "status": "running",
                                                    "config": sr, **change})
    style = {"style": "a/stripes.png", "seed": 1, "image_size": 32, "train_split": "train"}
    run_c.write_run_record(tmp_path / "stripes-s1", {"run": "stripes-s1", "kind": "style", "status": "finished",
                                                     "config": style})
    with pytest.raises(ContractError, match="expected '<style>-s2'"):
        run_c.write_run_record(tmp_path / "z", {"run": "stripes-s1", "kind": "style", "status": "finished",
                                                "config": {**style, "seed": 2}})


def test_metrics_in_range_name_row_and_column(tmp_path):
    run_dir = _run(tmp_path)
    run_c.write_metrics(run_dir / "metrics.csv", [dict(ROW, split="train"), dict(ROW, kl=0.3)])
    df = run_c.read_metrics(run_dir)
    assert df["kl"].isna().tolist() == [True, False]  # kl is logged by VAE rows only
    for col, value, message in [("ssim", 1.2, "row 3, column 'ssim': 1.2"), ("mse", -0.1, "row 3, column 'mse'"),
                                ("psnr", math.nan, "row 3, column 'psnr'"), ("kl", -1.0, "row 3, column 'kl'"),
                                ("split", "valid", "row 3, column 'split': 'valid' is not one of")]:
        run_c.write_metrics(run_dir / "metrics.csv", [dict(ROW, split="train"), dict(ROW, **{col: value})])
        with pytest.raises(ContractError, match=re.escape(message)):
            run_c.read_metrics(run_dir)


def test_checkpoint_agrees_with_its_config(tmp_path):
    import torch

    from autoencoders.models import build_model

    run_dir = _run(tmp_path)
    model = build_model("fc", 8, 2, width=0.01)
    state = {"format": run_c.CHECKPOINT_FORMAT, "version": run_c.CHECKPOINT_VERSION, "config": dict(CFG),
             "model_spec": model.describe(), "model": model.state_dict()}

    def save(s):
        buf = io.BytesIO()
        torch.save(s, buf)
        (run_dir / "checkpoint.pt").write_bytes(buf.getvalue())

    save(state)
    record, loaded = run_c.read_run(run_dir)
    assert record["run"] == "fc-mse-s0" and set(loaded["model"]) == set(model.state_dict())
    save({**state, "config": {**CFG, "loss": "ssim"}})
    with pytest.raises(ContractError, match="checkpoint has loss 'ssim' but config.json says 'mse'"):
        run_c.read_run(run_dir)
    save({**state, "model_spec": {**model.describe(), "code_size": 3}})
    with pytest.raises(ContractError, match="model_spec has code_size 3"):
        run_c.read_run(run_dir)
    bad = dict(model.state_dict())
    name = next(iter(bad))
    bad[name] = torch.full_like(bad[name], float("nan"))
    save({**state, "model": bad})
    with pytest.raises(ContractError, match=f"weight '{name}'.*NaN"):
        run_c.read_run(run_dir)
    save(state)
    data = bytearray((run_dir / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: torch would load it without noticing
    (run_dir / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.raises(ContractError, match="checkpoint"):
        run_c.read_run(run_dir)


# --------------------------------------------------------------------------------------------
# Codes


def test_codes_store_their_run_and_old_files_are_read_from_the_name(tmp_path, capsys):
    path = codes_c.write_codes(tmp_path / "vae-ms_ssim-s2.npz", np.ones((2, 3)), np.array([0, 1]), ["a", "b"], ["train"] * 2)
    with np.load(path) as z:
        assert (str(z["run"]), str(z["arch"]), str(z["loss"])) == ("vae-ms_ssim-s2", "vae", "ms_ssim")
    renamed = tmp_path / "conv-mse-s0.npz"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ContractError, match="holds the codes of run 'vae-ms_ssim-s2', but the file is named 'conv-mse-s0.npz'"):
        codes_c.read_codes(renamed)
    np.savez(tmp_path / "fc-mae-s1.npz", codes=np.ones((2, 3)), labels=np.array([0, 1]), image_ids=np.array(["a", "b"]),
             splits=np.array(["test", "test"]))
    old = codes_c.read_codes(tmp_path / "fc-mae-s1.npz")
    assert (old.run, old.arch, old.loss) == ("fc-mae-s1", "fc", "mae")
    assert "taken from its name: arch 'fc', loss 'mae'" in capsys.readouterr().err
    (tmp_path / "mystery.npz").write_bytes((tmp_path / "fc-mae-s1.npz").read_bytes())
    with pytest.raises(ContractError, match="run name 'mystery' is not <arch>-<loss>-s<seed>"):
        codes_c.read_codes(tmp_path / "mystery.npz")
    with pytest.raises(ContractError, match="disagrees with its stored arch 'conv'"):
        codes_c.write_codes(tmp_path / "fc-mse-s0.npz", np.ones((1, 2)), np.array([0]), ["a"], ["t"], arch="conv", loss="mse")


# --------------------------------------------------------------------------------------------
# Manifest


def _manifest(tmp_path, **change) -> pd.DataFrame:
    rows = []
    for i in range(2):
        for run in ("conv-mse-s0", "flat"):
            rows.append(dict(image_id=f"im{i}", split="test", label=i, original_path=f"originals/{i}.png", run=run,
                             arch="baseline" if run == "flat" else "conv", loss="flat" if run == "flat" else "mse",
                             recon_path=f"{run}/{i}.png", mse=0.01, mae=0.05, psnr=20.0, ssim=0.8, ms_ssim=0.9,
                             haarpsi=0.7, delta_e=2.0))
    df = pd.DataFrame(rows)
    for key, value in change.items():
        df[key] = df[key].astype(object)
        df.loc[1, key] = value
    return df


def test_manifest_ranges_names_and_paths(tmp_path):
    rec = tmp_path / "exp" / "reconstructions"
    path = manifest_c.write_manifest(_manifest(tmp_path), rec / "manifest.csv")
    assert set(manifest_c.read_manifest(path)["run"]) == {"conv-mse-s0", "flat"}
    cases = [({"haarpsi": 1.2}, "row 3, column 'haarpsi'"), ({"delta_e": -1.0}, "row 3, column 'delta_e'"),
             ({"ssim": 1.5}, "row 3, column 'ssim'"), ({"mse": -0.5}, "row 3, column 'mse'"),
             ({"arch": "conv"}, "row 3: run 'flat' is not of arch 'conv'"),
             ({"run": "a b"}, "row 3, column 'run': 'a b' is not a safe name"),
             ({"recon_path": "../../../etc/passwd"}, "row 3, column 'recon_path': path '../../../etc/passwd' leads outside"),
             ({"recon_path": "/tmp/x.png"}, "must be relative")]
    for change, message in cases:
        manifest_c.write_manifest(_manifest(tmp_path, **change), path)
        with pytest.raises(ContractError, match=re.escape(message)):
            manifest_c.read_manifest(path)


def test_manifest_check_files_refuses_rgba_and_other_sizes(tmp_path):
    rec = tmp_path / "exp" / "reconstructions"
    path = manifest_c.write_manifest(_manifest(tmp_path), rec / "manifest.csv")
    for rel in ("originals/0.png", "originals/1.png", "conv-mse-s0/0.png", "conv-mse-s0/1.png", "flat/0.png", "flat/1.png"):
        (rec / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb()).save(rec / rel)
    manifest_c.read_manifest(path, check_files=True)
    Image.fromarray(_rgb()).convert("RGBA").save(rec / "flat/1.png")
    with pytest.raises(ContractError, match=r"flat/1\.png: PNG is RGBA"):
        manifest_c.read_manifest(path, check_files=True)
    Image.fromarray(_rgb(8, 9)).save(rec / "flat/1.png")
    with pytest.raises(ContractError, match=r"flat/1\.png: image is 9×8 pixels, expected 8×8"):
        manifest_c.read_manifest(path, check_files=True)


# --------------------------------------------------------------------------------------------
# Design


def _design(n_practice=1) -> pd.DataFrame:
    base = dict(list_id=0, kind="triplet", arch="conv", image_id="i0", pair="mse:mae",
                reference_path="../reconstructions/o.png", left_run="conv-mse-s0", left_loss="mse",
                left_path="../reconstructions/a.png", right_run="conv-mae-s0", right_loss="mae",
                right_path="../reconstructions/b.png", third_run="", third_loss="", third_path="", answer="")
    return pd.DataFrame([dict(base, trial=t, block="practice" if t < n_practice else "main") for t in range(4)])


META = {"lists": 1, "trials_per_list": [4], "kinds": ["triplet"], "practice": 1,
        "runs": {"conv/mse": "conv-mse-s0", "conv/mae": "conv-mae-s0"}, "images": ["i0"]}


def test_design_agrees_with_design_json(tmp_path):
    path = design_c.write_design(_design(), tmp_path / "study" / "design.csv", META)
    df, meta = design_c.read_design_pair(path)
    assert len(df) == 4 and meta["lists"] == 1
    cases = [({"lists": 2}, "do not match design.json's 2 list"), ({"trials_per_list": [5]}, "trials_per_list [5]"),
             ({"kinds": ["ranking"]}, "trial kind(s) triplet are not in"), ({"practice": 2}, "1 practice trial(s), design.json says 2"),
             ({"runs": {**META["runs"], "conv/mse": "conv-mse-s1"}}, "runs give 'conv-mse-s1'"),
             ({"images": ["i9"]}, "image(s) i0 are not in"), ({"lists": "1"}, "key 'lists' must be int")]
    for change, message in cases:
        design_c.write_design(_design(), path, {**META, **change})
        with pytest.raises(ContractError, match=re.escape(message)):
            design_c.read_design_pair(path)


def test_design_order_slots_and_paths_refused_before_writing(tmp_path):
    path = tmp_path / "study" / "design.csv"
    gap = _design()
    gap.loc[3, "trial"] = 7
    late = _design()
    late.loc[3, "block"] = "practice"
    pair = _design()
    pair.loc[2, "pair"] = "mse:ssim"
    loss = _design()
    loss.loc[2, "left_loss"] = "ssim"
    outside = _design()
    outside.loc[1, "left_path"] = "../../other/a.png"
    flat = _design()
    flat.loc[2, ["arch", "left_run", "left_loss"]] = ["baseline", "flat", "flat"]
    for df, message in [(gap, "trial indices are not 0..3 without gaps"), (late, "practice trial after the main block"),
                        (pair, "row 4, column 'pair'"), (loss, "row 4, column 'left_run': run 'conv-mse-s0' is not of arch"),
                        (outside, "row 3, column 'left_path': path '../../other/a.png' leads outside"),
                        (flat, "row 4, column 'arch': the 'baseline' (flat) runs are never shown to people")]:
        with pytest.raises(ContractError, match=re.escape(message)):
            design_c.write_design(df, path, META)
        assert not path.exists()  # refused before anything was written


# --------------------------------------------------------------------------------------------
# Responses and the session record


def _responses(**change) -> pd.DataFrame:
    row = dict(participant="P01", session="1", list_id=0, trial=0, block="main", kind="triplet", image_id="i0", arch="conv",
               left_run="conv-mse-s0", left_loss="mse", right_run="conv-mae-s0", right_loss="mae", third_run="",
               third_loss="", key="left", choice="conv-mse-s0", rt=0.8, onset=3.0,
               wallclock="2026-11-23T10:00:00.000+00:00", simulated=0)
    return pd.DataFrame([row, {**row, "trial": 1, "onset": 5.0, **change}])


SESSION = {"participant": "P01", "session": "1", "list_id": 0, "simulated": False, "completed": True, "n_answered": 2,
           "started": "2026-11-23T10:00:00.000+00:00", "ended": None}


def test_response_file_agrees_with_its_name_and_record(tmp_path):
    path = tmp_path / "P01-1.csv"
    _responses().to_csv(path, index=False)
    responses_c.write_session(tmp_path / "P01-1.json", SESSION)
    df, rec = responses_c.read_session_files(path)
    assert len(df) == 2 and rec["completed"] is True
    cases = [({"rt": math.inf}, "row 3, column 'rt': inf"), ({"rt": 7200.0}, "row 3, column 'rt': 7200"),
             ({"onset": -1.0}, "row 3, column 'onset'"), ({"wallclock": "2026-11-23 10:00"}, "row 3, column 'wallclock'"),
             ({"participant": "P02"}, "row 3, column 'participant': 'P02' differs"),
             ({"simulated": 1}, "row 3, column 'simulated': 1 but P01-1.json says simulated false")]
    for change, message in cases:
        _responses(**change).to_csv(path, index=False)
        with pytest.raises(ContractError, match=re.escape(message)):
            responses_c.read_session_files(path)
    other = tmp_path / "P02-1.csv"
    _responses().to_csv(other, index=False)
    with pytest.raises(ContractError, match="the file name says otherwise"):
        responses_c.read_responses(other)


def test_session_record_is_checked_when_written_and_read(tmp_path):
    for change, message in [({"simulated": "no"}, "key 'simulated' must be true or false"),
                            ({"participant": "../P"}, "key 'participant' is '../P'"),
                            ({"started": "yesterday"}, "key 'started' is 'yesterday'"),
                            ({"n_answered": -1}, "key 'n_answered' must be an integer")]:
        with pytest.raises(ContractError, match=message):
            responses_c.write_session(tmp_path / "P01-1.json", {**SESSION, **change})
    with pytest.raises(ContractError, match="under another file name"):
        responses_c.write_session(tmp_path / "P09-1.json", SESSION)
    (tmp_path / "P01-1.json").write_text(json.dumps({**SESSION, "n_answered": 5}))
    _responses().to_csv(tmp_path / "P01-1.csv", index=False)
    with pytest.raises(ContractError, match="'n_answered' is 5 but P01-1.csv holds only 2"):
        responses_c.read_session_files(tmp_path / "P01-1.csv")


# --------------------------------------------------------------------------------------------
# Analysis outputs


def _summary(exp, **change) -> dict:
    return {"study": exp / "study", "manifest": exp / "reconstructions" / "manifest.csv", "simulated": False, "n_rows": 3,
            "warnings": [], "headline": ["a line"], "figures": {"p": "preferences.png"}, "versions": {}, "options": {},
            **change}


def test_summary_paths_are_relative_to_the_experiment(tmp_path):
    exp = tmp_path / "exp"
    ao.write_summary(exp / "analysis", _summary(exp))
    raw = json.loads((exp / "analysis" / "summary.json").read_text())
    assert raw["study"] == "study" and raw["manifest"] == "reconstructions/manifest.csv"
    moved = tmp_path / "moved"
    (exp).rename(moved)  # a moved experiment folder still finds its study
    summary = ao.read_summary(moved)
    assert ao.summary_path(moved, summary, "study") == moved.resolve() / "study"
    raw["study"] = str(moved.resolve() / "study")  # an old summary with an absolute path inside the experiment
    (moved / "analysis" / "summary.json").write_text(json.dumps(raw))
    assert ao.read_summary(moved)["study"] == "study"
    for change, message in [({"study": "../../elsewhere"}, "key 'study': path '../../elsewhere' leads outside"),
                            ({"study": "/etc"}, "key 'study': /etc is outside the experiment folder"),
                            ({"n_rows": "3"}, "key 'n_rows' must be int"),
                            ({"figures": {"p": "../../x.png"}}, "key 'figures.p'")]:
        (moved / "analysis" / "summary.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(ContractError, match=message):
            ao.read_summary(moved)
    with pytest.raises(ContractError, match="outside the experiment folder"):
        ao.write_summary(moved / "analysis", _summary(moved, study=tmp_path / "other" / "study"))


def test_tables_the_report_reads_are_checked(tmp_path):
    adir = tmp_path / "analysis"
    adir.mkdir()
    assert ao.read_table(adir, "pairwise") is None
    good = pd.DataFrame({"arch": ["fc"], "pair": ["a:b"], "loss_a": ["a"], "loss_b": ["b"], "n": [4], "wins_a": [3],
                         "wins_b": [1], "prop_a": [0.75], "ci_low": [0.3], "ci_high": [0.95], "p_binom": [0.6]})
    good.to_csv(adir / "pairwise.csv", index=False)
    assert ao.read_table(adir, "pairwise")["prop_a"].iloc[0] == 0.75
    good.assign(prop_a=1.5).to_csv(adir / "pairwise.csv", index=False)
    with pytest.raises(ContractError, match=r"pairwise\.csv: row 2, column 'prop_a': 1\.5 is not in \[0, 1\]"):
        ao.read_table(adir, "pairwise")
    good.drop(columns="wins_b").to_csv(adir / "pairwise.csv", index=False)
    with pytest.raises(ContractError, match="lacks column\\(s\\) wins_b"):
        ao.read_table(adir, "pairwise")
    with pytest.raises(ContractError, match="not an analysis table"):
        ao.read_table(adir, "nonsense")
