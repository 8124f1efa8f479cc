"""study.design: counterbalancing, coverage, catch and practice trials, seeds, and refusals."""
from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percept.contracts import ContractError, InputError
from percept.contracts import design as design_c
from study.design import DesignConfig, build_design, degrade, order_no_repeats, parse_pairs
from test_study_support import make_manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("exp"), n_images=8)


@pytest.fixture(scope="module")
def two_arch_manifest(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("exp2"), n_images=4, archs=("conv", "fc"))


def _build(manifest, tmp_path, **kw):
    # The design's paths must stay inside its experiment folder: copy the shared manifest's folder into it.
    shutil.copytree(manifest.parent, tmp_path / "reconstructions", dirs_exist_ok=True)
    path = build_design(tmp_path / "reconstructions" / manifest.name, tmp_path, DesignConfig(**kw))
    return design_c.read_design(path, check_files=True), json.loads(path.with_suffix(".json").read_text()), path


def test_lists_cover_every_item_once_and_balance_sides(manifest, tmp_path):
    df, meta, path = _build(manifest, tmp_path, lists=3, practice=2, images=6, seed=4)
    main = df[df["block"] == "main"]
    trip = main[main["kind"] == "triplet"]
    # Every image × pair exactly once over all lists.
    items = Counter(zip(trip["image_id"], trip["pair"]))
    assert set(items.values()) == {1}
    assert len(items) == 6 * 3 and set(trip["image_id"]) == set(meta["images"])
    assert sorted(set(main.loc[main["kind"] == "ranking", "image_id"])) == sorted(meta["images"])
    # Each loss of a pair on the left as often as on the right, per list (±1 when odd).
    for (_, pair), grp in trip.groupby(["list_id", "pair"]):
        first = pair.split(":")[0]
        left = int((grp["left_loss"] == first).sum())
        assert abs(left - (len(grp) - left)) <= 1
    # The Latin square: with K = 3 lists and 4 conditions each list shows every image in a triplet.
    for _, grp in trip.groupby("list_id"):
        assert set(grp["image_id"]) == set(meta["images"])
    assert (path.parent / meta["manifest"]).resolve() == (tmp_path / "reconstructions" / manifest.name).resolve() and len(meta["manifest_sha256"]) == 64
    for key in ("seed", "kinds", "pairs", "images", "lists", "catch", "practice", "counterbalancing", "created", "versions"):
        assert key in meta


def test_no_image_twice_in_a_row_and_practice_first(manifest, tmp_path):
    df, _, _ = _build(manifest, tmp_path, lists=2, practice=3, seed=1)
    for _, grp in df.sort_values(["list_id", "trial"]).groupby("list_id"):
        ids = grp["image_id"].tolist()
        assert all(a != b for a, b in zip(ids, ids[1:]))
        assert grp["trial"].tolist() == list(range(len(grp)))
        blocks = grp["block"].tolist()
        assert blocks[:3] == ["practice"] * 3 and set(blocks[3:]) == {"main"}
        assert set(grp.loc[grp["block"] == "practice", "kind"]) == {"triplet", "ranking"}


def test_ranking_slot_orders_rotate(manifest, tmp_path):
    df, _, _ = _build(manifest, tmp_path, kinds=("ranking",), lists=1, images=6, practice=0, catch=0.0)
    rank = df[df["kind"] == "ranking"]
    orders = [tuple(r[f"{s}_loss"] for s in design_c.RANKING_SCREEN_ORDER) for _, r in rank.iterrows()]
    assert sorted(orders) == sorted(itertools.permutations(("mse", "mae", "ms_ssim")))  # 6 images: each order once
    for slot in design_c.SLOTS:
        assert Counter(rank[f"{slot}_loss"]) == {"mse": 2, "mae": 2, "ms_ssim": 2}
    assert (rank["pair"] == "").all() and (rank["third_path"] != "").all()


def test_catch_trials_show_original_and_strong_degradation(manifest, tmp_path):
    df, meta, path = _build(manifest, tmp_path, catch=0.2, practice=0, lists=1)
    catch = df[df["kind"] == "catch"]
    n_main = int((df["block"] == "main").sum())
    assert len(catch) == round(0.2 / 0.8 * (n_main - len(catch)))  # a fifth of the main block
    assert Counter(catch["answer"])["left"] in (len(catch) // 2, (len(catch) + 1) // 2)
    for _, row in catch.iterrows():
        good, bad = row["answer"], "right" if row["answer"] == "left" else "left"
        assert row[f"{good}_run"] == row[f"{good}_loss"] == "original" and row[f"{good}_path"] == row["reference_path"]
        assert row[f"{bad}_run"] == "degraded" and row[f"{bad}_path"].startswith("stimuli/catch/")
        orig = np.asarray(Image.open(path.parent / row["reference_path"]), dtype=float) / 255
        deg = np.asarray(Image.open(path.parent / row[f"{bad}_path"]), dtype=float) / 255
        recons = [np.asarray(Image.open(path.parent / p), dtype=float) / 255
                  for p in df.loc[(df["image_id"] == row["image_id"]) & (df["kind"] == "triplet"), ["left_path", "right_path"]].to_numpy().ravel()]
        # Far worse than any reconstruction of the same image, so the answer is never in doubt.
        worst = max(np.sqrt(np.mean((orig - r) ** 2)) for r in recons)
        assert deg.shape == orig.shape and np.sqrt(np.mean((orig - deg) ** 2)) > 1.5 * worst
    assert (catch["arch"] == "").all() and meta["catch"]["per_list"] == [len(catch)]


def test_seeded_and_reproducible(manifest, tmp_path):
    a, _, _ = _build(manifest, tmp_path / "a", lists=2, seed=7)
    b, _, _ = _build(manifest, tmp_path / "b", lists=2, seed=7)
    c, _, _ = _build(manifest, tmp_path / "c", lists=2, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_archs_compare_within_architecture(two_arch_manifest, tmp_path):
    df, meta, _ = _build(two_arch_manifest, tmp_path, practice=0, catch=0.0)
    assert meta["archs"] == ["conv", "fc"]
    for _, row in df.iterrows():
        for slot in ("left", "right", "third"):
            if row[f"{slot}_run"]:
                assert row[f"{slot}_run"].startswith(row["arch"] + "-")
    assert set(df["arch"]) == {"conv", "fc"}
    only, _, _ = _build(two_arch_manifest, tmp_path / "fc", practice=0, catch=0.0, archs=("fc",))
    assert set(only["arch"]) == {"fc"}


def test_refusals_name_the_problem(manifest, two_arch_manifest, tmp_path):
    with pytest.raises(InputError, match="'mse' is not 'lossA:lossB'"):
        parse_pairs("mse,mae:ms_ssim")
    with pytest.raises(InputError, match="same pair twice"):
        parse_pairs("mse:mae,mae:mse")
    with pytest.raises(InputError, match="has no run with loss ssim"):
        _build(manifest, tmp_path, pairs=(("mse", "ssim"),))
    with pytest.raises(InputError, match="--images: 99 asked but only 8"):
        _build(manifest, tmp_path, images=99)
    with pytest.raises(InputError, match="--archs: vae not in"):
        _build(two_arch_manifest, tmp_path, archs=("vae",))
    with pytest.raises(InputError, match="--kinds"):
        _build(manifest, tmp_path, kinds=("pairs",))
    broken = tmp_path / "broken"
    m2 = make_manifest(broken, n_images=2)
    (m2.parent / "conv-mae-s0" / "0001.png").unlink()
    with pytest.raises(ContractError, match="missing"):
        _build(m2, tmp_path / "b2")


def test_order_no_repeats_finds_the_only_order_or_refuses():
    rng = np.random.default_rng(0)
    items = [{"image_id": "a"}] * 3 + [{"image_id": "b"}] * 2
    out = [it["image_id"] for it in order_no_repeats(items, rng)]
    assert out == ["a", "b", "a", "b", "a"]
    with pytest.raises(InputError, match="twice in a row"):
        order_no_repeats([{"image_id": "a"}] * 3 + [{"image_id": "b"}], rng)


def test_degrade_is_strong_and_in_range():
    rng = np.random.default_rng(0)
    img = np.zeros((96, 96, 3), np.float32)
    img[::2] = 1.0  # fine stripes: blur removes them
    out = degrade(img, rng, blur_sigma=4.0, noise_sd=0.2)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert abs(out[::2].mean() - out[1::2].mean()) < 0.05
