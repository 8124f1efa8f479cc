"""STL-10 at full size: a 2.76 GB `unlabeled_X.bin` (sparse on disk) is read batch by batch, never whole."""
from __future__ import annotations

import dataclasses
import json
import os
import tracemalloc

import numpy as np
import pytest

from autoencoders import data

IMAGE = 3 * 96 * 96
N_TRAIN, N_UNLABELED = 5000, 100_000  # the official release's sizes


def _rss() -> dict[str, int]:
    """Resident bytes of this process: RssAnon (its own memory) and RssFile (mapped file pages the kernel may drop)."""
    with open("/proc/self/status") as fh:
        return {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in fh) if k in ("RssAnon", "RssFile")}


def _sparse(path, n_images: int, known: dict[int, bytes]) -> None:
    """A file of n_images STL-10 images that costs no disk: a hole, plus `known` images at their real offsets."""
    with open(path, "wb") as fh:
        fh.truncate(n_images * IMAGE)
        for index, raw in known.items():
            fh.seek(index * IMAGE)
            fh.write(raw)


@pytest.fixture
def full_size(tmp_path):
    """data/stl10_binary with full-size train and unlabeled files; returns (root, {global index: (3, 96, 96) image})."""
    rng = np.random.default_rng(7)
    folder = tmp_path / data.STL10_FOLDER
    folder.mkdir()
    raw = {name: {i: rng.integers(0, 256, IMAGE, dtype=np.uint8).tobytes() for i in idx}
           for name, idx in (("train_X.bin", (0, 4999)), ("unlabeled_X.bin", (0, 12345, 99_999)))}
    _sparse(folder / "train_X.bin", N_TRAIN, raw["train_X.bin"])
    _sparse(folder / "unlabeled_X.bin", N_UNLABELED, raw["unlabeled_X.bin"])
    labels = rng.integers(1, 11, N_TRAIN, dtype=np.uint8)  # 1..10 on disk
    labels.tofile(folder / "train_y.bin")
    if os.stat(folder / "unlabeled_X.bin").st_blocks * 512 > 64 * 2**20:
        pytest.skip("this file system does not keep sparse files sparse")
    # The official layout: each image is 3 channels stored column by column (column-major 96×96).
    expected = {}
    for name, offset in (("train_X.bin", 0), ("unlabeled_X.bin", N_TRAIN)):
        for i, b in raw[name].items():
            expected[offset + i] = np.frombuffer(b, np.uint8).reshape(3, 96, 96).transpose(0, 2, 1)
    return tmp_path, expected, labels.astype(np.int64) - 1


def test_full_size_unlabeled_file_is_read_in_batches_without_loading_it(full_size):
    import torch

    root, expected, labels = full_size
    assert (root / data.STL10_FOLDER / "unlabeled_X.bin").stat().st_size == 2_764_800_000
    # Warm up what any loader run loads (torch's DataLoader, its kernels) so only the data counts below.
    next(iter(data.make_loader(data.ImageSet("x", "x", np.zeros((2, 3, 96, 96), np.uint8), [0, 0], ["a", "b"]), 2,
                               shuffle=False)))
    rss0 = _rss()
    tracemalloc.start()
    try:
        ds = data.load_dataset("stl10", "train+unlabeled", root=root, verify=False)
        assert len(ds) == N_TRAIN + N_UNLABELED and ds.images.shape == (105_000, 3, 96, 96)
        # the known images at their real offsets, through the dataset, its tensors and the project's loader
        for index, image in expected.items():
            assert np.array_equal(ds.images[index], image), index
        assert ds.image_id(N_TRAIN + 12345) == "stl10:unlabeled:12345" and ds.image_id(4999) == "stl10:train:04999"
        assert ds.labels[N_TRAIN + 99_999] == -1 and np.array_equal(ds.labels[:N_TRAIN], labels)
        picked = [4999, N_TRAIN + 99_999, 17, N_TRAIN, N_TRAIN + 12345]
        x = ds.tensor(picked)
        assert torch.equal((x[0] * 255).round().to(torch.uint8), torch.from_numpy(expected[4999].copy()))
        assert torch.equal((x[4] * 255).round().to(torch.uint8), torch.from_numpy(expected[N_TRAIN + 12345].copy()))
        assert float(x[2].abs().sum()) == 0.0  # a hole of the sparse file reads as zeros
        loader = data.make_loader(ds, 256, shuffle=True, generator=torch.Generator().manual_seed(0))
        seen = 0
        for batch, (images, _, idx) in enumerate(loader):
            for j, i in enumerate(idx.tolist()):
                if i in expected:
                    assert torch.equal((images[j] * 255).round().to(torch.uint8), torch.from_numpy(expected[i].copy()))
            seen += len(images)
            if batch == 7:
                break
        assert seen == 8 * 256
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = _rss()
    anon, mapped = rss["RssAnon"] - rss0["RssAnon"], rss["RssFile"] - rss0["RssFile"]
    print(f"tracemalloc peak {peak / 2**20:.1f} MiB; resident growth: anonymous {anon / 2**20:.1f} MiB, "
          f"mapped file pages {mapped / 2**20:.1f} MiB")
    # 2.76 GB on disk; what was allocated and what stayed the process's own are a few batches' worth
    # (mapped file pages are page cache the kernel may take back; they are bounded by what was touched).
    assert peak < 64 * 2**20, f"peak Python/numpy allocation {peak / 2**20:.0f} MiB"
    assert anon < 256 * 2**20, f"anonymous resident memory grew {anon / 2**20:.0f} MiB"
    assert mapped < 1024 * 2**20, f"mapped file pages grew {mapped / 2**20:.0f} MiB"


def test_stacked_splits_index_like_one_array(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    data.write_stl10_fixture(tmp_path, {"train_X.bin": a, "unlabeled_X.bin": b}, {"train_y.bin": [1, 2, 3, 4]})
    ds = data.load_stl10(tmp_path, "train+unlabeled", verify=False)
    whole = np.concatenate([a, b])
    assert isinstance(ds.images, data.StackedImages) and len(ds) == 7
    for index in (0, 3, 4, 6, -1, slice(2, 6), slice(None, None, 2), [6, 0, 4, 4], np.arange(7) % 2 == 0):
        assert np.array_equal(ds.images[index], whole[index]), index
    assert np.array_equal(np.asarray(ds.images), whole)
    assert list(ds.labels) == [1, 2, 3, 4, -1, -1, -1]
    with pytest.raises(IndexError):
        ds.images[7]
    with pytest.raises(IndexError):
        ds.images[[0, 9]]


def test_checksums_are_computed_once_per_file_version(tmp_path):
    from percept.contracts.provenance import file_hash

    folder = data.write_stl10_fixture(tmp_path, {"test_X.bin": np.zeros((2, 3, 96, 96), np.uint8)}, {"test_y.bin": [0, 1]})
    path = folder / "test_X.bin"
    first = data._md5(path)
    assert first == file_hash(path, "md5") and data._md5(path) == first
    st = path.stat()
    with open(path, "r+b") as fh:  # the same size and inode, other bytes: a new modification time tells
        fh.write(b"\x01")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data._md5(path) == file_hash(path, "md5") != first


def test_training_on_train_plus_unlabeled_uses_the_stacked_memory_maps(tmp_path):
    """configs/paper.toml trains on train+unlabeled: the stacked memory maps have a size and stay on disk on the CPU."""
    from autoencoders import train as tr

    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (5, 3, 96, 96), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)
    data.write_stl10_fixture(tmp_path, {"train_X.bin": a, "unlabeled_X.bin": b, "test_X.bin": a[:3]},
                             {"train_y.bin": [1, 2, 3, 4, 5], "test_y.bin": [0, 1, 2]})
    stacked = data.load_stl10(tmp_path, "train+unlabeled", verify=False).images
    assert stacked.nbytes == a.nbytes + b.nbytes and data.is_memory_mapped(stacked)
    assert not data.is_memory_mapped(data.StackedImages([a, b]))  # in RAM: may be used where it is
    cfg = tr.TrainConfig(data="stl10", data_root=str(tmp_path), train_split="train+unlabeled", eval_split="test",
                         arch="fc", loss="mse", epochs=1, batch_size=4, width=0.05, code_size=4, eval_images=3,
                         verify=False, progress=False, device="cpu", out=str(tmp_path / "exp"))
    record = json.loads((tr.train(cfg) / "config.json").read_text())
    assert record["status"] == "finished" and record["device_data"] == "off (a memory-mapped file stays on disk)"
    # Resident on the device (what a GPU gets): the stacked parts are uploaded chunk by chunk, the same training.
    on = tr.train(dataclasses.replace(cfg, device_data="on", out=str(tmp_path / "on")))
    assert json.loads((on / "config.json").read_text())["device_data"].startswith("on")
    import torch

    for key, value in torch.load(on / "checkpoint.pt", weights_only=True)["model"].items():
        assert torch.equal(value, torch.load(tmp_path / "exp" / "models" / on.name / "checkpoint.pt",
                                             weights_only=True)["model"][key]), key
