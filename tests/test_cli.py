"""The `percept` dispatcher and the demo's reuse-or-overwrite rule."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from percept import cli, demo
from percept.contracts import InputError


def test_unknown_command_lists_valid_ones(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err and "report" in err


def test_no_command_prints_usage(capsys):
    assert cli.main([]) == 2
    assert "usage: percept COMMAND" in capsys.readouterr().out


def test_input_error_is_one_line(monkeypatch, capsys):
    class Boom:
        @staticmethod
        def main(argv):
            raise InputError("bad value 'x' for --loss")

    monkeypatch.setattr(cli.importlib, "import_module", lambda name: Boom)
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err
    assert err == "percept train: error: bad value 'x' for --loss\n"


def test_console_script_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "percept", "--help"], capture_output=True, text=True, check=True)
    assert "percept COMMAND" in proc.stdout


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="was not made by `percept demo`"):
        demo.prepare(tmp_path, demo.DemoConfig(), fresh=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_demo_reuses_same_settings_and_overwrites_changed_ones(tmp_path, capsys):
    out = tmp_path / "demo"
    cfg = demo.DemoConfig(epochs=1)
    state = demo.prepare(out, cfg, fresh=False)
    state["done"] = ["train fc-mse"]
    demo._save_state(out, state)
    (out / "models").mkdir()
    assert demo.prepare(out, cfg, fresh=False)["done"] == ["train fc-mse"]
    assert (out / "models").is_dir()
    fresh = demo.prepare(out, demo.DemoConfig(epochs=2), fresh=False)
    assert fresh["done"] == [] and not (out / "models").exists()
    assert "settings changed: overwriting" in capsys.readouterr().out
    assert json.loads((out / demo.STATE_FILE).read_text())["config"]["epochs"] == 2


def test_demo_chain_order():
    chain = demo.steps(demo.DemoConfig(), demo.Path("runs/x"))
    names = [name for name, _, _ in chain]
    grid = [f"{a}-{l}" for a in ("fc", "conv", "vae") for l in ("mse", "mae", "ms_ssim")] + ["fc-ssim"]
    assert names[:20] == [f"train {run}-s{s}" for s in (0, 1) for run in grid]  # two seeds, fc-ssim for Snell's triplets
    assert names[20:27] == ["reconstruct", "encode", "design", "simulate", "analyze", "classify", "report"]
    # then super-resolution in its own experiment folder runs/x/sr, through the same commands
    assert names[27:] == ["superres train mse", "superres train ms_ssim", "superres export", "superres design",
                          "superres simulate", "superres analyze", "superres report"]
    argv = dict((name, argv) for name, _, argv in chain)
    assert argv["train fc-ms_ssim-s1"][argv["train fc-ms_ssim-s1"].index("--warmup-epochs") + 1] == "1"
    assert argv["simulate"][argv["simulate"].index("--observer") + 1] == "haarpsi"
    assert argv["reconstruct"][argv["reconstruct"].index("--spares") + 1] == "4"
    value = lambda step, flag: argv[step][argv[step].index(flag) + 1]  # noqa: E731
    assert argv["superres train ms_ssim"][:2] == ["superres", "train"] and value("superres train ms_ssim", "--scale") == "4"
    assert value("superres train mse", "--out") == value("superres export", "--out") == str(demo.Path("runs/x/sr"))
    assert value("superres design", "--manifest") == str(demo.Path("runs/x/sr/reconstructions/manifest.csv"))
    assert set(value("superres design", "--pairs").split(",")) == {"mse:ms_ssim", "mse:bicubic", "ms_ssim:bicubic"}
    assert value("superres simulate", "--observer") == "haarpsi" and value("superres report", "--out") == str(demo.Path("runs/x/sr"))
    assert "superres" not in " ".join(n for n, _, _ in demo.steps(demo.DemoConfig(superres=False), demo.Path("runs/x")))


def test_demo_trusts_only_finished_runs(tmp_path):
    cfg = demo.DemoConfig()
    for run in (tmp_path / "models" / "fc-mse-s1", tmp_path / "sr" / "superres" / "sr4-ms_ssim-s0"):
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"status": "running"}))
        (run / "checkpoint.pt").write_bytes(b"weights")
    assert not demo._intact("train fc-mse-s1", tmp_path, cfg) and not demo._intact("superres train ms_ssim", tmp_path, cfg)
    for run in (tmp_path / "models" / "fc-mse-s1", tmp_path / "sr" / "superres" / "sr4-ms_ssim-s0"):
        (run / "config.json").write_text(json.dumps({"status": "finished"}))
    assert demo._intact("train fc-mse-s1", tmp_path, cfg) and demo._intact("superres train ms_ssim", tmp_path, cfg)
    assert not demo._intact("train fc-mse-s0", tmp_path, cfg) and not demo._intact("superres train mse", tmp_path, cfg)
    assert not demo._intact("superres export", tmp_path, cfg)  # no manifest in runs/x/sr yet



def test_demo_expects_one_codes_file_per_training(tmp_path, monkeypatch):
    import percept.contracts.codes as codes_c
    import percept.contracts.pixels as pixels_c

    monkeypatch.setattr(codes_c, "read_codes", lambda path: None)
    monkeypatch.setattr(pixels_c, "read_pixels", lambda path: None)
    cfg = demo.DemoConfig()
    (tmp_path / "codes").mkdir()
    names = [f"{a}-{l}-s{s}" for a, l, s in cfg.runs()]
    for name in names[:-1]:
        (tmp_path / "codes" / f"{name}.npz").write_bytes(b"")
    assert len(names) == 20 and not demo._intact("encode", tmp_path, cfg)
    (tmp_path / "codes" / f"{names[-1]}.npz").write_bytes(b"")
    assert demo._intact("encode", tmp_path, cfg)


@pytest.mark.slow
def test_a_second_demo_with_the_same_settings_reuses_every_step(tmp_path):
    """The whole chain, small: a rerun must trust nothing it cannot read back, and redo nothing it can."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "percept", "demo", "--out", str(tmp_path / "d"), "--archs", "conv",
            "--losses", "mse,mae,ms_ssim", "--extra-runs", "conv-mse", "--seeds", "0", "--epochs", "3",
            "--warmup-epochs", "0", "--images", "4", "--spares", "2", "--participants", "2", "--lists", "1", "--no-superres"]
    first = subprocess.run(argv, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(argv, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    steps = [line for line in second.stdout.splitlines() if line.startswith("demo: [")]
    assert len(steps) == 10 and all(line.endswith("reusing finished outputs") for line in steps), steps
