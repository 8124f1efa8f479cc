"""autoencoders.train: run files, resume bit-for-bit, NaN stop, checkpoint errors, configs."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from autoencoders import cli as ae_cli
from autoencoders import losses
from autoencoders import train as tr
from percept import cli, commands
from percept.contracts import InputError


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(14):
        # smooth random blobs: learnable, unlike pure noise
        base = rng.random((4, 4, 3))
        img = np.kron(base, np.ones((10, 10, 1)))[:36, :40]
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"im{i:02d}.png")
    return folder


def tiny(images, tmp_path, **overrides) -> tr.TrainConfig:
    cfg = tr.TrainConfig(data=f"folder:{images}", image_size=32, arch="fc", loss="mse", epochs=2, batch_size=4,
                         lr=5e-3, width=0.02, code_size=4, out=str(tmp_path / "exp"), progress=False, device="cpu")
    return replace(cfg, **overrides)


def _state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def test_run_writes_metrics_config_and_checkpoint(images, tmp_path):
    run_dir = tr.train(tiny(images, tmp_path, arch="conv", loss="ms_ssim"))
    assert run_dir == tmp_path / "exp" / "models" / "conv-ms_ssim-s0"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert tuple(metrics.columns) == tr.METRIC_COLUMNS
    assert metrics[["epoch", "split"]].values.tolist() == [[1, "train"], [1, "test"], [2, "train"], [2, "test"]]
    assert metrics[["loss", "mse", "mae", "psnr", "ssim", "ms_ssim", "images_per_s"]].notna().all().all()
    test_rows = metrics[metrics.split == "test"]
    assert np.allclose(test_rows["loss"], 1 - test_rows["ms_ssim"], atol=1e-6)  # eval loss = 1 - MS-SSIM
    record = json.loads((run_dir / "config.json").read_text())
    assert record["status"] == "finished" and record["device"] == "cpu" and record["epochs_done"] == 2
    assert record["config"]["loss"] == "ms_ssim" and record["config"]["width"] == 0.02
    assert {"python", "torch", "torchvision", "numpy", "percept"} <= set(record["versions"])
    assert "git_commit" in record and record["data"]["eval"]["n"] >= 1
    state = _state(run_dir)
    assert state["epoch"] == 2 and state["step"] == 2 * -(-record["data"]["train"]["n"] // 4)
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "data_order"}


def _kill_at_epoch(monkeypatch, kill_epoch):
    real = tr._progress

    def progress(loader, cfg, epoch):
        if epoch == kill_epoch:
            raise KeyboardInterrupt  # as if the process were killed at the start of this epoch
        return real(loader, cfg, epoch)

    monkeypatch.setattr(tr, "_progress", progress)


def test_resumed_run_ends_with_the_same_weights(images, tmp_path, monkeypatch):
    straight = tr.train(tiny(images, tmp_path / "a", arch="vae", epochs=2))
    cfg = tiny(images, tmp_path / "b", arch="vae", epochs=2)
    _kill_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tr.train(cfg)
    monkeypatch.undo()
    record = json.loads((cfg.run_dir / "config.json").read_text())
    assert record["status"] == "running" and record["epochs_done"] == 1
    with pytest.raises(InputError, match="unfinished run .*--resume"):
        tr.train(cfg)
    resumed = tr.train(replace(cfg, resume=True))
    a, b = _state(straight), _state(resumed)
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pid, slot in a["optimizer"]["state"].items():
        for name, value in slot.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][name]), (pid, name)
    ma, mb = pd.read_csv(straight / "metrics.csv"), pd.read_csv(resumed / "metrics.csv")
    assert np.array_equal(ma[["loss", "mse", "ssim"]].to_numpy(), mb[["loss", "mse", "ssim"]].to_numpy())


def test_finished_run_is_not_retrained_without_overwrite(images, tmp_path):
    cfg = tiny(images, tmp_path, epochs=1)
    tr.train(cfg)
    with pytest.raises(InputError, match="already finished.*new --out or --seed, or --overwrite"):
        tr.train(cfg)
    before = (cfg.run_dir / "checkpoint.pt").read_bytes()
    assert tr.train(replace(cfg, resume=True)) == cfg.run_dir  # same settings: nothing to resume, nothing retrained
    assert (cfg.run_dir / "checkpoint.pt").read_bytes() == before
    with pytest.raises(InputError, match="already finished"):
        tr.train(replace(cfg, resume=True, epochs=2))
    tr.train(replace(cfg, overwrite=True, lr=1e-3))
    assert (cfg.run_dir / "checkpoint.pt").read_bytes() != before
    assert json.loads((cfg.run_dir / "config.json").read_text())["config"]["lr"] == 1e-3


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(images, tmp_path, monkeypatch, capsys):
    real_get_loss = losses.get_loss
    calls = {"n": 0}

    class PoisonedAtStep5(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = real_get_loss("mse")

        def forward(self, recon, target):
            if torch.is_grad_enabled():  # training steps only, not the no-grad evaluation
                calls["n"] += 1
            value = self.inner(recon, target)
            return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(losses, "get_loss", lambda name, **kw: PoisonedAtStep5())
    digests = []
    real_save = tr.save_checkpoint

    def save(path, state):
        real_save(path, state)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())

    monkeypatch.setattr(tr, "save_checkpoint", save)
    out = tmp_path / "exp"
    code = cli.main(["train", "--data", f"folder:{images}", "--image-size", "32", "--arch", "fc", "--width", "0.02",
                     "--code-size", "4", "--batch-size", "4", "--epochs", "3", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    # 11 train images in batches of 4: 3 steps per epoch, so step 5 is epoch 2, batch 1.
    assert err.startswith("percept train: error: the loss is nan at step 5 (epoch 2, batch 1, first image folder:train:")
    assert "last good checkpoint (epoch 1) is kept" in err and err.count("\n") == 1
    run_dir = out / "models" / "fc-mse-s0"
    assert len(digests) == 1 and hashlib.sha256((run_dir / "checkpoint.pt").read_bytes()).hexdigest() == digests[0]
    assert _state(run_dir)["epoch"] == 1
    record = json.loads((run_dir / "config.json").read_text())
    assert record["status"] == "failed" and "step 5" in record["error"]


def test_corrupt_or_foreign_checkpoint_is_one_clear_error(images, tmp_path, capsys):
    cfg = tiny(images, tmp_path, epochs=1)
    run_dir = tr.train(cfg)
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"checkpoint\.pt: not a readable checkpoint"):
        tr.load_checkpoint(ckpt)
    assert cli.main(["reconstruct", "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("percept reconstruct: error: ") and str(ckpt) in err and err.count("\n") == 1
    torch.save({"weights": torch.zeros(3)}, ckpt)
    with pytest.raises(InputError, match="not a percept autoencoder checkpoint"):
        tr.load_model(run_dir)
    torch.save({"evil": object()}, ckpt)  # needs unpickling of arbitrary objects: refused by weights_only
    with pytest.raises(InputError, match="not a readable checkpoint"):
        tr.load_checkpoint(ckpt)
    # through the command: one line that names the file and never advises turning weights_only off
    assert cli.main(["reconstruct", "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and err.count("\n") == 1
    assert "weights_only" not in err and "can still be loaded" not in err.lower()


def train_config(*argv: str) -> tr.TrainConfig:
    """The TrainConfig `percept train ARGV` resolves to (defaults < --config table < flags)."""
    (cfg,) = commands.configs_from(ae_cli.COMMANDS[0], argv)
    return cfg


def test_config_file_then_flags(tmp_path):
    # The [train] table is required now (one --config file may hold a table per command).
    toml = tmp_path / "exp.toml"
    toml.write_text('[train]\narch = "vae"\nepochs = 7\nlr = 0.01\nbeta = 0.5\nloss-options = {alpha = 0.5}\n')
    cfg = train_config("--config", str(toml), "--epochs", "2", "--loss", "mix")
    assert (cfg.arch, cfg.epochs, cfg.lr, cfg.beta, cfg.loss) == ("vae", 2, 0.01, 0.5, "mix")
    assert cfg.loss_options == {"alpha": 0.5} and cfg.width == tr.TrainConfig().width
    toml.write_text('[train]\nepochs = "many"\n')
    with pytest.raises(InputError, match=r"\[train\] epochs: must be an integer, got 'many'"):
        train_config("--config", str(toml))
    toml.write_text("[train]\nepoch = 3\n")
    with pytest.raises(InputError, match="unknown key.*epoch; valid keys: data, arch"):
        train_config("--config", str(toml))
    toml.write_text("epochs = 3\n")
    with pytest.raises(InputError, match="key 'epochs' is outside any table; put it under \\[train\\]"):
        train_config("--config", str(toml))


def test_bad_names_list_the_valid_ones(capsys):
    assert cli.main(["train", "--loss", "perceptual", "--out", "x"]) == 2
    assert "--loss 'perceptual' is not a loss; choose from mse, mae, ssim, ms_ssim, mix" in capsys.readouterr().err
    with pytest.raises(InputError, match="choose from fc, conv, vae"):
        tr.validate(tr.TrainConfig(arch="mlp"))
    with pytest.raises(InputError, match="train_split 'unlabeled' is not a split of photos"):
        tr.validate(tr.TrainConfig(train_split="unlabeled"))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            tr.resolve_device("cuda")


def test_example_configs_parse():
    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        cfg = train_config("--config", str(path))
        assert cfg.code_size == 128 and cfg.epochs >= 1, path
