"""autoencoders.data: bundled photos, STL-10 binary files, image folders, loaders."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from autoencoders import data
from percept.contracts import InputError


@pytest.fixture(scope="module")
def photos():
    return data.load_photos("train"), data.load_photos("test")


def test_photos_have_disjoint_train_and_test_regions():
    for name in data.PHOTOS:
        h, w = data._read_photo(name).shape[:2]
        plan = data.plan_patches(name, h, w)
        x0, x1 = plan.test_x
        assert x1 - x0 == data.PHOTO_TEST_COLUMNS * 96
        for y, x in plan.test:
            assert x0 <= x and x + 96 <= x1 and 0 <= y and y + 96 <= plan.height
        for y, x in plan.train:
            # a train patch lies wholly left or wholly right of the held-out band
            assert x + 96 <= x0 or x >= x1, (name, y, x)
            assert 0 <= y and y + 96 <= plan.height and x + 96 <= plan.width
        test_px = {(y + dy, x + dx) for y, x in plan.test for dy in (0, 95) for dx in (0, 95)}
        assert len(test_px) == 4 * len(plan.test)  # test patches do not overlap each other


def test_photos_sizes_ids_labels_and_determinism(photos):
    train, test = photos
    assert 400 <= len(train) <= 2000 and 50 <= len(test) <= 100
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (3, 96, 96)
    assert test.image_id(3) == "photos:test:astronaut:0003"
    assert len(set(train.image_ids)) == len(train) and len(set(test.image_ids)) == len(test)
    assert set(np.unique(test.labels)) == set(range(len(data.PHOTOS)))
    again = data.load_photos("test")
    assert np.array_equal(again.images, test.images) and again.image_ids == test.image_ids
    # mirrored copies are exact flips of their neighbour
    assert np.array_equal(train.images[1], train.images[0][:, :, ::-1])
    # no test patch reappears among the training patches, mirrored or not
    train_keys = {bytes(p) for p in train.images.reshape(len(train), -1)}
    assert not any(bytes(p) in train_keys for p in test.images.reshape(len(test), -1))


def test_dataset_item_is_float_in_unit_range(photos):
    x, label, index = photos[1][5]
    assert x.dtype == torch.float32 and x.shape == (3, 96, 96)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert (label, index) == (0, 5)
    assert torch.equal(x * 255, torch.from_numpy(photos[1].images[5]).float())


def _stl10_arrays(rng, n):
    return rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8), rng.integers(0, 10, size=n)


def test_stl10_fixture_reads_in_official_column_major_order(tmp_path):
    rng = np.random.default_rng(0)
    train_x, train_y = _stl10_arrays(rng, 5)
    test_x, test_y = _stl10_arrays(rng, 3)
    folder = data.write_stl10_fixture(tmp_path, {"train_X.bin": train_x, "test_X.bin": test_x},
                                      {"train_y.bin": train_y, "test_y.bin": test_y})
    raw = np.fromfile(folder / "train_X.bin", dtype=np.uint8)
    # official layout: image 0, channel 0 stored column by column
    assert raw[1] == train_x[0, 0, 1, 0] and raw[96] == train_x[0, 0, 0, 1]
    assert np.fromfile(folder / "train_y.bin", dtype=np.uint8).min() >= 1  # labels 1..10 on disk
    ds = data.load_dataset("stl10", "train", root=tmp_path, verify=False)
    assert np.array_equal(ds.images, train_x)
    assert np.array_equal(ds.labels, train_y)
    assert ds.image_id(4) == "stl10:train:00004"
    test = data.load_stl10(tmp_path, "test", verify=False)
    x, label, index = test[2]
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(test_x[2]))
    assert (label, index) == (int(test_y[2]), 2)


def test_stl10_checksum_step_names_the_bad_file(tmp_path):
    rng = np.random.default_rng(1)
    x, y = _stl10_arrays(rng, 2)
    data.write_stl10_fixture(tmp_path, {"train_X.bin": x}, {"train_y.bin": y})
    with pytest.raises(InputError, match=r"train_X\.bin: MD5 [0-9a-f]{32} differs from the official 918c2871"):
        data.verify_stl10(tmp_path, "train")
    with pytest.raises(InputError, match="train_X.bin: MD5"):
        data.load_stl10(tmp_path, "train")  # the default path verifies before reading


def test_stl10_checksum_step_accepts_matching_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x, y = _stl10_arrays(rng, 2)
    folder = data.write_stl10_fixture(tmp_path, {"test_X.bin": x}, {"test_y.bin": y})
    sums = {name: data._md5(folder / name) for name in ("test_X.bin", "test_y.bin")}
    monkeypatch.setattr(data, "_stl10_checksums", lambda: sums)
    data.verify_stl10(tmp_path, "test")  # no error
    assert len(data.load_stl10(tmp_path, "test")) == 2


def test_stl10_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(InputError) as err:
        data.load_dataset("stl10", "test", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "test_X.bin" in msg and "test_y.bin" in msg and "stl10_binary" in msg and "--download" in msg
    assert "\n" not in msg


def test_stl10_truncated_file_is_refused(tmp_path):
    folder = data.write_stl10_fixture(tmp_path, {"train_X.bin": np.zeros((1, 3, 96, 96), np.uint8)}, {"train_y.bin": [0]})
    with open(folder / "train_X.bin", "ab") as fh:
        fh.write(b"\0" * 10)
    with pytest.raises(InputError, match="not a whole number of 3×96×96 images"):
        data.load_stl10(tmp_path, "train", verify=False)


def _write_images(folder, names, size=(40, 60)):
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(folder / name)


def test_folder_split_is_deterministic_disjoint_and_cropped(tmp_path):
    names = [f"im{i:02d}.png" for i in range(20)]
    _write_images(tmp_path / "imgs", names)
    train = data.load_dataset(f"folder:{tmp_path / 'imgs'}", "train", image_size=32)
    test = data.load_dataset(f"folder:{tmp_path / 'imgs'}", "test", image_size=32)
    ids = {i.split(":")[-1] for i in train.image_ids} | {i.split(":")[-1] for i in test.image_ids}
    assert ids == set(names) and len(train) + len(test) == 20 and len(test) >= 1
    assert test.image_ids[0].startswith("folder:test:") and test.labels.tolist() == [-1] * len(test)
    assert train.images.shape[1:] == (3, 32, 32)
    # the split of a file does not depend on which other files are present
    grown = data.split_files(names + ["zzz.png"])
    assert set(grown["test"]) - {"zzz.png"} == {i.split(":")[-1] for i in test.image_ids}
    # centre crop: a 40×60 image keeps its central 40×40 square
    img = np.asarray(Image.open(tmp_path / "imgs" / names[0]))
    assert np.array_equal(data.read_image(tmp_path / "imgs" / names[0], 40), img[:, 10:50].transpose(2, 0, 1))


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found 0 image file"):
        data.load_dataset(f"folder:{tmp_path / 'empty'}", "train")
    _write_images(tmp_path / "bad", ["a.png", "b.png", "c.png"])
    (tmp_path / "bad" / "b.png").write_bytes(b"not an image")
    split = data.split_files(["a.png", "b.png", "c.png"])
    which = "train" if "b.png" in split["train"] else "test"
    with pytest.raises(InputError, match=r"b\.png: not a readable image"):
        data.load_dataset(f"folder:{tmp_path / 'bad'}", which)
    with pytest.raises(InputError, match="choose from photos, stl10, folder:PATH"):
        data.load_dataset("imagenet", "train")
    with pytest.raises(InputError, match="has no split 'val'"):
        data.load_dataset("photos", "val")


def test_loader_batches_and_pins_only_on_cuda(photos):
    loader = data.make_loader(photos[1], 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    x, labels, index = next(iter(loader))
    assert x.shape == (16, 3, 96, 96) and labels.dtype == torch.int64 and len(set(index.tolist())) == 16
    assert loader.pin_memory is False
    again = data.make_loader(photos[1], 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(next(iter(again))[2], index)
