"""`percept train` under torchrun: 2 CPU processes (gloo) match one process, and a killed 2-process run resumes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from autoencoders import train as tr
from ae_support import blob_images

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,  # three torchrun launches of two processes each: about a minute on 2 cores
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="torch.distributed with gloo is needed")]

# Rank 0 kills itself (SIGKILL, no cleanup) when the given epoch starts, i.e. right after the previous
# epoch's checkpoint; torchrun then tears the other rank down, as when a node is lost.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from autoencoders import train as tr
    from percept.cli import main

    real = tr._progress

    def progress(loader, cfg, epoch):
        if epoch == int(os.environ["KILL_AT_EPOCH"]) and os.environ["RANK"] == "0":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(loader, cfg, epoch)

    tr._progress = progress
    raise SystemExit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return blob_images(tmp_path_factory.mktemp("imgs"), seed=2)  # 11 train images: global batches of 3, 3, 3, 2, split 1 + 2 (and 1 + 1) across two ranks


def tiny(images, out: Path, **overrides) -> tr.TrainConfig:
    cfg = tr.TrainConfig(data=f"folder:{images}", image_size=32, arch="conv", loss="mse", epochs=2, batch_size=3,
                         lr=1e-2, width=0.05, code_size=4, out=str(out), progress=False, device="cpu", eval_images=4)
    return replace(cfg, **overrides)


def flags(cfg: tr.TrainConfig) -> list[str]:
    return ["train", "--data", cfg.data, "--image-size", str(cfg.image_size), "--arch", cfg.arch, "--loss", cfg.loss,
            "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr), "--width",
            str(cfg.width), "--code-size", str(cfg.code_size), "--out", cfg.out, "--no-progress", "--device", "cpu",
            "--eval-images", str(cfg.eval_images)] + (["--resume"] if cfg.resume else [])


def torchrun(script: list[str], argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *script, *argv]
    return subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def assert_close(a: dict, b: dict, exact: bool = False) -> None:
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    for key in a["model"]:
        if exact:
            assert torch.equal(a["model"][key], b["model"][key]), key
        else:  # the ranks' gradients are averaged in another order than one process sums them: float rounding
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-6, msg=key)


def test_two_processes_match_one_and_a_killed_run_resumes_with_two_or_one(images, tmp_path, monkeypatch):
    one = tr.train(tiny(images, tmp_path / "one"))

    straight_cfg = tiny(images, tmp_path / "two")
    done = torchrun(["-m", "percept"], flags(straight_cfg), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    two = straight_cfg.run_dir
    # Same seed, same global batch of 3: the same training. Without weighting each rank's mean by its share of the
    # batch (1 of 3, 2 of 3) the weights differ by 0.12 here; with it by < 1e-6 (measured).
    assert_close(weights(one), weights(two))
    record = json.loads((two / "config.json").read_text())
    assert record["processes"] == 2 and record["status"] == "finished"
    metrics = pd.read_csv(two / "metrics.csv")
    assert metrics[["epoch", "split"]].values.tolist() == [[e, s] for e in (1, 2) for s in ("train", "test")]
    assert done.stdout.count("epoch 2/2") == 1  # rank 0 alone reports (and writes)

    # The killed run lives at a relative --out under two working folders, so a copy resumes with the same settings.
    killed_cfg = tiny(images, Path("exp"))
    (tmp_path / "killer.py").write_text(KILLER)
    (tmp_path / "a").mkdir()
    killed = torchrun([str(tmp_path / "killer.py")], flags(killed_cfg), tmp_path / "a", KILL_AT_EPOCH="1")
    assert killed.returncode != 0
    run_a = tmp_path / "a" / killed_cfg.run_dir
    record = json.loads((run_a / "config.json").read_text())
    assert record["status"] == "running" and record["epochs_done"] == 1 and weights(run_a)["epoch"] == 1
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    resumed = torchrun(["-m", "percept"], flags(replace(killed_cfg, resume=True)), tmp_path / "a")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1" in resumed.stdout
    assert_close(weights(two), weights(run_a), exact=True)  # the same number of processes: bit for bit

    # The same killed run continued by one process (a changed number of processes): same training up to rounding.
    monkeypatch.chdir(tmp_path / "b")
    assert_close(weights(two), weights(tr.train(replace(killed_cfg, resume=True))))


def test_grid_under_torchrun_trains_each_run_with_both_processes_and_a_busy_run_on_neither(images, tmp_path):
    """Two runs of a grid under torchrun; the first is locked by this test (another trainer holds it).

    Rank 0 alone takes the locks, so without agreeing on the outcome rank 0 would skip the locked run while
    rank 1 trained it, and the two would pair up across different runs (mae with mse) — silently wrong."""
    from autoencoders import grid

    out = tmp_path / "exp"
    argv = ["grid", "--data", f"folder:{images}", "--image-size", "32", "--archs", "conv", "--losses", "mae,mse",
            "--seeds", "0", "--epochs", "2", "--batch-size", "3", "--lr", "0.01", "--width", "0.05", "--code-size", "4",
            "--eval-images", "4", "--device", "cpu", "--no-progress", "--images", "2", "--spares", "0", "--out", str(out)]
    # The run compared with one process is the mse one: mae's sign() gradient turns float rounding (this process's
    # threads differ from the ranks') into differences past the tolerance.
    busy_cfg = tiny(images, out, loss="mae", resume=True)
    free_cfg = tiny(images, out, loss="mse")
    with grid.run_lock(busy_cfg):
        done = torchrun(["-m", "percept"], argv, tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "grid: 2 run(s): 1 trained, 0 skipped, 0 failed, 1 busy" in done.stdout, done.stdout[-3000:]
    assert done.stdout.count("another percept command is writing here") >= 1
    assert not (busy_cfg.run_dir / "checkpoint.pt").exists()  # neither process trained the locked run
    record = json.loads((free_cfg.run_dir / "config.json").read_text())
    assert record["processes"] == 2 and record["status"] == "finished"
    assert_close(weights(tr.train(tiny(images, tmp_path / "one", loss="mse"))), weights(free_cfg.run_dir))
    from percept.contracts.manifest import read_manifest

    manifest = read_manifest(out / "reconstructions" / "manifest.csv", check_files=True)
    assert set(manifest["run"]) == {free_cfg.run_name, "flat"}  # exported once, by rank 0

    again = torchrun(["-m", "percept"], argv, tmp_path)  # the lock released: the busy run trains, the other is skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert "grid: 2 run(s): 1 trained, 1 skipped" in again.stdout
    assert json.loads((busy_cfg.run_dir / "config.json").read_text())["processes"] == 2
