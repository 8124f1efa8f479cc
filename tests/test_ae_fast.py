"""autoencoders.train's fast path: device-resident batches, sync-free steps, batched NaN checks, bf16, resume."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from autoencoders import losses
from autoencoders import models
from autoencoders import train as tr
from autoencoders.data import batch_bounds, epoch_order, load_dataset
from percept.contracts import InputError
from ae_support import blob_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return blob_images(tmp_path_factory.mktemp("imgs"), seed=1)  # 11 train, 3 test (split by name hash): 3 steps per epoch at batch 4


def tiny(images, tmp_path, **overrides) -> tr.TrainConfig:
    cfg = tr.TrainConfig(data=f"folder:{images}", image_size=32, arch="conv", loss="ms_ssim", epochs=2, batch_size=4,
                         lr=5e-3, width=0.05, code_size=4, out=str(tmp_path / "exp"), progress=False, device="cpu",
                         eval_images=4)
    return replace(cfg, **overrides)


def _state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def _assert_same_training(a, b):
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pid, slot in a["optimizer"]["state"].items():
        for name, value in slot.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][name]), (pid, name)


def test_epoch_order_is_the_dataloaders_over_several_epochs():
    loader_gen, own_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    loader = DataLoader(list(range(11)), batch_size=4, shuffle=True, generator=loader_gen)
    for _ in range(3):
        seen = [i for batch in loader for i in batch.tolist()]
        assert epoch_order(11, own_gen).tolist() == seen
    assert torch.equal(loader_gen.get_state(), own_gen.get_state())  # and the generator ends where the loader's does


def test_batch_bounds_split_each_global_batch_across_ranks():
    whole = batch_bounds(11, 4)
    assert [(s, e) for s, e, _, _ in whole] == [(0, 4), (4, 8), (8, 11)]
    parts = [batch_bounds(11, 4, r, 3) for r in range(3)]
    for b, (start, stop, _, _) in enumerate(whole):
        slices = [(p[b][2], p[b][3]) for p in parts]
        assert slices[0][0] == start and slices[-1][1] == stop  # the ranks' slices tile the global batch
        assert all(slices[i][1] == slices[i + 1][0] for i in range(2))
    assert [p[2][3] - p[2][2] for p in parts] == [1, 1, 1]
    assert [p[0][3] - p[0][2] for p in (batch_bounds(1, 4, 0, 2), batch_bounds(1, 4, 1, 2))] == [0, 1]  # empty slice


def test_device_resident_and_dataloader_paths_give_the_same_weights(images, tmp_path):
    on = tr.train(tiny(images, tmp_path / "on", device_data="on", check_every=2))
    off = tr.train(tiny(images, tmp_path / "off", device_data="off"))
    # Same order, same float conversion (uint8 / 255) and the same ops: bit for bit on one device.
    _assert_same_training(_state(on), _state(off))
    rec_on, rec_off = (json.loads((r / "config.json").read_text()) for r in (on, off))
    assert rec_on["device_data"].startswith("on") and rec_off["device_data"] == "off (asked)"
    assert rec_on["precision"] == "fp32" and rec_on["processes"] == 1


def test_steps_read_nothing_back_from_the_device_between_checks(images, tmp_path, monkeypatch):
    """Values read back to Python inside the step loop: one per check plus the epoch's loss, whatever the step count."""
    reads, running = [], []  # running: the TrainSteps whose epoch is under way
    real_run = tr.TrainSteps.run_epoch

    def run_epoch(self, *args, **kwargs):
        running.append(self)
        try:
            return real_run(self, *args, **kwargs)
        finally:
            running.pop()

    monkeypatch.setattr(tr.TrainSteps, "run_epoch", run_epoch)
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counted(t, *a, _real=real, _name=name, **k):
            if running:
                # Adam keeps its step counts on the CPU on purpose and reads them there: not device values.
                steps = {id(s["step"]) for s in running[-1].optimizer.state.values() if "step" in s}
                if id(t) not in steps:
                    reads.append(_name)
            return _real(t, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    tr.train(tiny(images, tmp_path / "a", epochs=2, check_every=100))  # 3 steps per epoch, one check at its end
    assert reads == ["tolist", "__float__"] * 2
    reads.clear()
    tr.train(tiny(images, tmp_path / "b", epochs=1, check_every=2))  # checks after steps 2 and 3
    assert reads == ["tolist", "tolist", "__float__"]


_REAL_GET_LOSS = losses.get_loss


class _PoisonedLoss(torch.nn.Module):
    """MSE that returns NaN at one training step (counted over grad-enabled calls)."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls, self.inner = at, 0, _REAL_GET_LOSS("mse")

    def forward(self, recon, target):
        if torch.is_grad_enabled():
            self.calls += 1
        value = self.inner(recon, target)
        return value * float("nan") if self.calls == self.at else value


def test_a_nan_between_checks_is_reported_with_its_own_step(images, tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "get_loss", lambda name, **kw: _PoisonedLoss(at=5))
    cfg = tiny(images, tmp_path, loss="mse", epochs=3, check_every=3)  # epoch 2 = steps 4-6, checked after step 6
    with pytest.raises(tr.TrainingDiverged) as err:
        tr.train(cfg)
    data = load_dataset(cfg.data, "train", image_size=32)
    g = torch.Generator().manual_seed(cfg.seed)
    epoch_order(len(data), g)
    first = data.image_id(int(epoch_order(len(data), g)[4]))  # epoch 2's batch 1 starts at position 4
    assert str(err.value).startswith(f"the loss is nan at step 5 (epoch 2, batch 1, first image {first});")
    assert _state(cfg.run_dir)["epoch"] == 1  # epoch 2 was never saved: the last good checkpoint stays
    record = json.loads((cfg.run_dir / "config.json").read_text())
    assert record["status"] == "failed" and "step 5 " in record["error"]


def _poison(out, how: str):
    """A blown-up output: everywhere ±inf and NaN (0 · inf), one NaN pixel, or one +inf and one −inf (sum NaN)."""
    if how == "all":
        return out * float("inf")
    out = out.clone()
    if how == "one_nan":
        out[0, 0, 0, 0] = float("nan")
    else:
        out[0, 0, 0, 0], out[-1, -1, -1, -1] = float("inf"), float("-inf")
    return out


@pytest.mark.parametrize("how", ["all", "one_nan", "inf_and_minus_inf"])
def test_a_non_finite_reconstruction_is_named_at_the_epoch_end_check(images, tmp_path, monkeypatch, how):
    real_build = models.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        forward, calls = model.forward, [0]

        def poisoned(x):
            out = forward(x)
            if model.training:
                calls[0] += 1
                if calls[0] == 2:
                    out = _poison(out, how)
            return out

        model.forward = poisoned
        return model

    monkeypatch.setattr(models, "build_model", build)
    cfg = tiny(images, tmp_path, arch="fc", epochs=1)  # check_every 100: the only check is at the epoch's end
    with pytest.raises(tr.TrainingDiverged, match=r"^the reconstruction holds NaN/Inf at step 2 \(epoch 1, batch 1, "):
        tr.train(cfg)
    assert not (cfg.run_dir / "checkpoint.pt").exists()


def test_bf16_autocast_runs_on_cpu_and_changes_the_arithmetic(images, tmp_path):
    bf16 = tr.train(tiny(images, tmp_path / "bf", precision="bf16", epochs=1))
    fp32 = tr.train(tiny(images, tmp_path / "fp", precision="fp32", epochs=1))
    a, b = _state(bf16)["model"], _state(fp32)["model"]
    assert all(torch.isfinite(v).all() for v in a.values()) and all(v.dtype == torch.float32 for v in a.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast was on: the convolutions ran in bfloat16
    record = json.loads((bf16 / "config.json").read_text())
    assert record["precision"] == "bf16" and record["status"] == "finished"


def test_resume_is_bit_identical_with_batched_checks_and_a_switched_data_path(images, tmp_path, monkeypatch):
    straight = tr.train(tiny(images, tmp_path / "a", arch="vae", check_every=2, device_data="on"))
    cfg = tiny(images, tmp_path / "b", arch="vae", check_every=2, device_data="off")
    real = tr._progress

    def progress(loader, c, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # killed after the first checkpoint
        return real(loader, c, epoch)

    monkeypatch.setattr(tr, "_progress", progress)
    with pytest.raises(KeyboardInterrupt):
        tr.train(cfg)
    monkeypatch.undo()
    resumed = tr.train(replace(cfg, resume=True, device_data="on", check_every=5))  # how, not what: may differ
    _assert_same_training(_state(straight), _state(resumed))


def test_new_settings_are_checked_in_one_line():
    with pytest.raises(InputError, match="--precision 'fp16'; choose from auto, fp32, bf16"):
        tr.validate(tr.TrainConfig(precision="fp16"))
    with pytest.raises(InputError, match="--device-data 'gpu'; choose from auto, on, off"):
        tr.validate(tr.TrainConfig(device_data="gpu"))
    with pytest.raises(InputError, match="--check-every must be ≥ 1"):
        tr.validate(tr.TrainConfig(check_every=0))
    assert tr.autocast_dtype("auto", torch.device("cpu")) is None
    assert tr.autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_device_images_read_a_memory_mapped_file_and_auto_leaves_it_on_disk(tmp_path):
    from autoencoders.data import DeviceImages, ImageSet, is_memory_mapped, to_float

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(10, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "x.bin"
    raw.transpose(0, 1, 3, 2).tofile(path)  # stored column-major, as STL-10's files are
    mapped = np.memmap(path, dtype=np.uint8, mode="r", shape=(10, 3, 8, 8)).transpose(0, 1, 3, 2)
    assert is_memory_mapped(mapped) and not is_memory_mapped(raw)
    on_device = DeviceImages(mapped, torch.device("cpu"))  # copied chunk by chunk, never through a whole-file read
    index = torch.tensor([7, 0, 3])
    assert torch.equal(on_device.batch(index), to_float(raw[[7, 0, 3]]))
    assert on_device.batch(index, channels_last=True).is_contiguous(memory_format=torch.channels_last)
    data = ImageSet("folder:x", "train", mapped, np.full(10, -1), [str(i) for i in range(10)])
    resident, note = tr._resident_images(tr.TrainConfig(device_data="auto"), data, torch.device("cpu"))
    assert resident is None and note == "off (a memory-mapped file stays on disk)"
    resident, note = tr._resident_images(tr.TrainConfig(device_data="on"), data, torch.device("cpu"))
    assert resident is not None and note.startswith("on")


def test_channels_last_auto_is_nhwc_on_cuda_only_and_recorded(tmp_path):
    """auto keeps CPU runs contiguous (their float rounding unchanged from runs trained before the fast
    path); on/off are taken as given; a bad value is one line; config.json records what was used."""
    import json

    from autoencoders import train as tr
    from percept.contracts import InputError

    assert tr.use_channels_last("auto", torch.device("cpu")) is False
    assert tr.use_channels_last("auto", torch.device("cuda")) is True
    assert tr.use_channels_last("on", torch.device("cpu")) is True
    with pytest.raises(InputError, match="--channels-last 'yes'; choose from auto, on, off"):
        tr.validate(tr.TrainConfig(channels_last="yes"))
    run = tr.train(tr.TrainConfig(data="photos", arch="conv", loss="mse", epochs=1, batch_size=16, width=0.05,
                                  eval_images=4, out=str(tmp_path), progress=False, channels_last="on"))
    assert json.loads((run / "config.json").read_text())["channels_last"] is True
