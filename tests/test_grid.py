"""`percept grid`: configs expand to the right runs; a real small grid skips, resumes, goes on after a failure, exports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoencoders import cli as ae_cli
from autoencoders import grid
from percept import commands

REPO = Path(__file__).resolve().parents[1]
GRID = next(c for c in ae_cli.COMMANDS if c.name == "grid")
TRAIN = next(c for c in ae_cli.COMMANDS if c.name == "train")


def configs(*argv: str) -> tuple[grid.GridConfig, list]:
    """The grid settings and the runs' TrainConfigs that `percept grid ARGV` would use."""
    g, make = commands.configs_from(GRID, list(argv))
    return g, grid.run_configs(g, make)


def test_paper_config_is_the_paper_grid_on_stl10():
    g, runs = configs("--config", str(REPO / "configs" / "paper.toml"))
    names = [r.run_name for r in runs]
    assert names == [f"{a}-{l}-s{s}" for s in (0, 1, 2) for a in ("fc", "conv", "vae") for l in ("mse", "mae", "ms_ssim")]
    for r in runs:
        assert (r.data, r.train_split, r.eval_split, r.code_size, r.width) == ("stl10", "train+unlabeled", "test", 128, 1.0)
        assert r.resume and not r.overwrite and r.out == "runs/paper"
    assert g.n == 1000 and g.encode_splits == ("train", "test")
    # `percept train` reads the same [train] table: one run of the grid, the same settings
    (one,) = commands.configs_from(TRAIN, ["--config", str(REPO / "configs" / "paper.toml"), "--arch", "conv",
                                           "--loss", "ms_ssim", "--seed", "1", "--out", "runs/paper", "--resume"])
    assert one == next(r for r in runs if r.run_name == "conv-ms_ssim-s1")


def test_photos_small_config_is_the_demos_grid():
    from percept.demo import DemoConfig

    g, runs = configs("--config", str(REPO / "configs" / "photos_small.toml"))
    demo = DemoConfig()
    assert [r.run_name for r in runs] == [f"{a}-{l}-s{s}" for a, l, s in demo.runs()]
    assert len(runs) == 20 and "fc-ssim-s1" in [r.run_name for r in runs]
    r = runs[0]
    assert (r.data, r.epochs, r.batch_size, r.width, r.warmup_epochs) == (
        "photos", demo.epochs, demo.batch_size, demo.width, demo.warmup_epochs)
    assert g.n == demo.images and g.spares == demo.spares


def test_dry_run_lists_every_run_and_trains_nothing(tmp_path, capsys):
    code = ae_cli.main(["grid", "--config", str(REPO / "configs" / "paper.toml"), "--dry-run", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "27 runs: 0 done, 0 running, 0 failed, 0 stopped, 27 pending" in out
    assert all(f"{a}-{l}-s{s} " in out for s in (0, 1, 2) for a in ("fc", "conv", "vae") for l in ("mse", "mae", "ms_ssim"))
    assert "would train 27 of 27" in out and "time left: not known" in out
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("table, key", [("grid", "sedes"), ("train", "epoch"), ("train", "arch")])
def test_unknown_or_per_run_keys_are_refused_in_one_line(tmp_path, capsys, table, key):
    toml = tmp_path / "g.toml"
    toml.write_text(f"[grid]\nseeds = [0]\n[{table}]\n{key} = 1\n" if table == "train" else f"[grid]\n{key} = [0]\n")
    assert ae_cli.main(["grid", "--config", str(toml), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(toml) in err and f"[{table}] has unknown key(s) {key};" in err


def test_a_bad_axis_value_is_one_line_before_anything_trains(tmp_path, capsys):
    assert ae_cli.main(["grid", "--archs", "conv,cnn", "--out", str(tmp_path)]) == 2
    assert "--arch 'cnn' is not an architecture" in capsys.readouterr().err
    assert ae_cli.main(["grid", "--extra-runs", "conv", "--out", str(tmp_path)]) == 2
    assert "extra run 'conv' is not '<arch>-<loss>'" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_missing_stl10_files_are_one_line_before_any_run(tmp_path, capsys):
    argv = ["grid", "--config", str(REPO / "configs" / "paper.toml"), "--out", str(tmp_path / "exp"),
            "--data-root", str(tmp_path / "data")]
    assert ae_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unlabeled_X.bin" in err and "test_X.bin" in err and "--download" in err
    assert not (tmp_path / "exp" / "models").exists() and not (tmp_path / "exp" / "grid").exists()


def test_train_flags_rebuild_the_same_config():
    _, runs = configs("--config", str(REPO / "configs" / "photos_small.toml"), "--loss-options", '{"alpha": 0.5}',
                      "--lr", "0.0003", "--no-verify")
    for r in runs[:3]:
        (again,) = commands.configs_from(TRAIN, grid.train_flags(r))
        assert again == r


def _epochs_done(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "config.json").read_text()).get("epochs_done", 0)
    except (OSError, ValueError):  # not written yet (it is replaced atomically, never half-written)
        return 0


def _wait_for_epoch(run_dir: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    end = time.monotonic() + seconds
    while _epochs_done(run_dir) < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{run_dir} did not finish an epoch"
        time.sleep(0.02)


def test_a_real_grid_resumes_a_killed_run_goes_on_after_a_failure_and_exports(tmp_path):
    """Two tiny runs on the photos; the second needs VGG-16 weights that are not there, so it fails for real."""
    out = tmp_path / "exp"
    argv = ["grid", "--archs", "conv", "--losses", "mse,mse+0.1*vgg_feature", "--seeds", "0", "--epochs", "2",
            "--width", "0.0625", "--batch-size", "32", "--eval-images", "8", "--n", "4", "--spares", "1",
            "--no-progress", "--vgg-weights", str(tmp_path / "no_vgg16.pth"), "--out", str(out)]
    _, runs = configs(*argv[1:])
    ok, bad = (r.run_name for r in runs)
    assert bad == "conv-mse_plus_0p1xvgg_feature-s0"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "percept", *argv]

    # 1. killed after its first epoch: seen running (its lock held) while it trains, stopped after
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_epoch(out / "models" / ok, proc)
        states, lines = grid.overview(runs)
        assert states[0].state == "running" and states[0].note == f"pid {proc.pid}", lines
    finally:
        proc.kill()
        proc.communicate()
    states, lines = grid.overview(runs)
    assert states[0].state == "stopped" and states[0].epochs_done == 1 and states[1].state == "pending"
    # time left from the measured epoch: the stopped run's one epoch to go, and the other run's two at that pace
    seconds = states[0].epoch_seconds
    assert seconds > 0 and lines[-1].startswith(f"time left ≈ {grid._duration(3 * seconds)} (estimated"), lines
    killed_at = states[0].epochs_done

    # 2. two jobs (one `percept train` process each): the killed run resumes, the other fails, exports follow
    second = subprocess.run(cmd + ["--jobs", "2", "--threads-per-job", "1"], env=env, capture_output=True, text=True)
    assert second.returncode == 1, second.stderr
    assert f"grid: {bad}: FAILED: VGG-16 weights not found at {tmp_path / 'no_vgg16.pth'}" in second.stdout
    assert "grid: 2 run(s): 1 trained, 0 skipped, 1 failed" in second.stdout
    log = (out / "grid" / "logs" / f"{ok}.log").read_text()
    assert f"resuming after epoch {killed_at}" in log and "epoch 2/2" in log
    record = json.loads((out / "models" / ok / "config.json").read_text())
    assert record["status"] == "finished" and record["epochs_done"] == 2
    from percept.contracts.codes import read_codes
    from percept.contracts.manifest import read_manifest
    from percept.contracts.run import read_metrics

    assert list(read_metrics(out / "models" / ok)["epoch"]) == [1, 1, 2, 2]
    manifest = read_manifest(out / "reconstructions" / "manifest.csv", check_files=True)
    assert set(manifest["run"]) == {ok, "flat"} and len(manifest[manifest["run"] == ok]) == 5  # 4 + 1 spare
    assert read_codes(out / "codes" / f"{ok}.npz") is not None and not (out / "codes" / f"{bad}.npz").exists()
    state = json.loads((out / "grid" / "state.json").read_text())
    assert list(state["failures"]) == [bad]

    # 3. again, one job in this process's way: the finished run is skipped (not retrained), exports kept
    checkpoint = (out / "models" / ok / "checkpoint.pt").stat().st_mtime_ns
    third = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert third.returncode == 1, third.stderr
    assert "grid: 1 finished run(s) skipped" in third.stdout and f"train {ok}: epoch" not in third.stdout
    assert "reconstruct: " in third.stdout and "already covers these 1 run(s); kept" in third.stdout
    assert "FAILED: VGG-16 weights not found" in third.stdout
    assert (out / "models" / ok / "checkpoint.pt").stat().st_mtime_ns == checkpoint
    status = subprocess.run(cmd + ["--status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "2 runs: 1 done, 0 running, 1 failed, 0 stopped, 0 pending" in status.stdout
    row = next(line for line in status.stdout.splitlines() if line.startswith(ok + " "))
    assert row.split()[1:3] == ["done", "2/2"] and float(row.split()[3].replace(",", "")) > 0  # images/s
    # the same run asked for with other settings is reported and kept, never trained over
    import dataclasses

    assert grid._verdict(runs[0]) == "done"
    other = grid._verdict(dataclasses.replace(runs[0], lr=0.01))
    assert "finished with other settings (lr: saved 0.001 vs now 0.01); it is kept" in other


def test_a_run_in_training_is_seen_by_its_lock_and_not_trained_twice(tmp_path, capsys):
    _, (run,) = configs("--archs", "conv", "--losses", "mse", "--out", str(tmp_path))
    assert grid.lock_holder(run.run_dir) is None and grid.inspect_run(run).state == "pending"
    with grid.run_lock(run):
        assert grid.lock_holder(run.run_dir) == f"pid {os.getpid()}"
        assert grid.inspect_run(run).state == "running"
        # a second trainer of the same run, here `percept train`, is refused at once in one line
        assert ae_cli.main(["train", "--arch", "conv", "--loss", "mse", "--out", str(tmp_path), "--resume"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "another percept command is writing here" in err and f"pid {os.getpid()}" in err
    assert grid.lock_holder(run.run_dir) is None and not run.run_dir.exists()
