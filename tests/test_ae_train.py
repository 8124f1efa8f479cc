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

from autoencoders import cli as ae_cli
from autoencoders import losses
from autoencoders import train as tr
from percept import cli, commands
from percept.contracts import InputError
from ae_support import blob_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return blob_images(tmp_path_factory.mktemp("imgs"), seed=0)


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
    assert tuple(metrics.columns) == tr.METRIC_COLUMNS + ("kl",)  # kl: blank for fc and conv
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


def test_warmup_trains_with_mse_first_and_is_recorded(images, tmp_path, monkeypatch):
    real_get_loss = losses.get_loss
    used = []  # (loss name, epoch) of every training step

    class Spy(torch.nn.Module):
        def __init__(self, name, **kw):
            super().__init__()
            self.name, self.inner = name, real_get_loss(name, **kw)

        def forward(self, recon, target):
            if torch.is_grad_enabled():
                used.append(self.name)
            return self.inner(recon, target)

    monkeypatch.setattr(losses, "get_loss", lambda name, **kw: Spy(name, **kw))
    cfg = tiny(images, tmp_path, loss="mae", epochs=3, warmup_epochs=1)
    run_dir = tr.train(cfg)
    per_epoch = len(used) // 3
    assert used == ["mse"] * per_epoch + ["mae"] * 2 * per_epoch
    record = json.loads((run_dir / "config.json").read_text())
    assert record["warmup_epochs"] == 1 and record["config"]["warmup_epochs"] == 1
    with pytest.raises(InputError, match="--warmup-epochs 3 ≥ --epochs 3"):
        tr.validate(replace(cfg, warmup_epochs=3))
    from percept import commands

    train_command = next(c for c in ae_cli.COMMANDS if c.name == "train")
    (parsed,) = commands.configs_from(train_command, ["--warmup-epochs", "2"])
    assert parsed.warmup_epochs == 2


def test_resume_is_bit_identical_across_the_warmup_switch(images, tmp_path, monkeypatch):
    straight = tr.train(tiny(images, tmp_path / "a", arch="vae", loss="ms_ssim", epochs=2, warmup_epochs=1))
    cfg = tiny(images, tmp_path / "b", arch="vae", loss="ms_ssim", epochs=2, warmup_epochs=1)
    _kill_at_epoch(monkeypatch, 1)  # killed right after the warm-up epoch
    with pytest.raises(KeyboardInterrupt):
        tr.train(cfg)
    monkeypatch.undo()
    a, b = _state(straight), _state(tr.train(replace(cfg, resume=True)))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


class _Constant(torch.nn.Module):
    """A 'model' that outputs the same mid-grey image whatever it is given."""

    def forward(self, x):
        return torch.full_like(x, 0.5)


def test_guard_flags_a_constant_model_and_passes_a_trained_one(images, tmp_path):
    cfg = tiny(images, tmp_path, arch="conv", width=0.25, epochs=8, lr=3e-3)
    run_dir = tr.train(cfg)
    g = json.loads((run_dir / "config.json").read_text())["guard"]
    assert g["metric"] == "mse" and set(g["model"]) == set(g["flat"]) >= {"mse", "mae", "psnr", "ssim", "ms_ssim", "delta_e"}
    assert g["model"]["mse"] < g["flat"]["mse"] and g["beats_flat"] is True
    assert g["degenerate"] is False and g["warnings"] == [] and g["output_spread"] > 0.1 * g["input_spread"]
    from autoencoders.data import load_dataset

    data = load_dataset(cfg.data, "test", image_size=32)
    idx = np.arange(len(data))
    const = tr.guard(_Constant(), data, idx, replace(cfg, loss="ms_ssim"), losses.get_loss("ms_ssim"), torch.device("cpu"))
    assert const["output_spread"] == 0.0 and const["degenerate"] is True and const["beats_flat"] is False
    assert len(const["warnings"]) == 2 and "does not beat a flat patch" in const["warnings"][0]
    x = data.tensor(idx)
    flat = tr.flat_baseline(x)
    assert torch.allclose(flat[:, :, 0, 0], x.mean(dim=(2, 3))) and float(flat.std(dim=(2, 3)).max()) < 1e-6
    # the flat values are the flat patch's own metrics on the same images
    assert const["flat"]["mse"] == pytest.approx(float(((flat - x) ** 2).mean()), rel=1e-5)
    perfect = tr.guard_from_outputs(x, x, "mae")
    assert perfect["model"]["delta_e"] == pytest.approx(0.0, abs=1e-9) and perfect["difference"]["model_better"] == "yes"
    assert perfect["model"]["psnr"] is None  # +inf PSNR is written as null, keeping config.json strict JSON


def test_vae_kl_weight_is_scaled_by_the_flat_baseline_and_logged(images, tmp_path):
    run_dir = tr.train(tiny(images, tmp_path, arch="vae", loss="ssim", epochs=1, beta=0.5))
    record = json.loads((run_dir / "config.json").read_text())
    info = record["vae_kl"]
    assert info["kl_weight"] == pytest.approx(0.5 * info["flat_loss"] / info["flat_mse"])
    assert info["flat_loss"] > info["flat_mse"] > 0 and "L_flat(loss) / L_flat(mse)" in info["scheme"]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert (metrics["kl"] > 0).all()
    mse_run = tr.train(tiny(images, tmp_path, arch="vae", loss="mse", epochs=1, beta=0.5))
    assert json.loads((mse_run / "config.json").read_text())["vae_kl"]["kl_weight"] == pytest.approx(0.5)
    conv = tr.train(tiny(images, tmp_path, arch="conv", epochs=1))
    assert pd.read_csv(conv / "metrics.csv")["kl"].isna().all() and "vae_kl" not in json.loads((conv / "config.json").read_text())


def test_configs_saved_before_warmup_existed_resume_as_warmup_0(images, tmp_path):
    from dataclasses import asdict

    cfg = tiny(images, tmp_path)
    old = {k: v for k, v in asdict(cfg).items() if k != "warmup_epochs"}  # a run saved by the previous version
    assert tr._differing(old, cfg) == ""
    assert "warmup_epochs: saved 0 vs now 1" in tr._differing(old, replace(cfg, warmup_epochs=1))


def test_the_demo_reuses_a_finished_run_and_redoes_a_damaged_one(images, tmp_path):
    from percept import demo

    run_dir = tr.train(tiny(images, tmp_path))
    out, step = run_dir.parent.parent, f"train {run_dir.name}"  # the demo's step names carry the seed
    assert demo._intact(step, out, demo.DemoConfig())
    (run_dir / "config.json").write_text("{}")
    assert not demo._intact(step, out, demo.DemoConfig())
