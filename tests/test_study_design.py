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
from study.design import DesignConfig, build_design, degrade, order_no_repeats, parse_pairs, plan_settings
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
    # Every image × pair exactly once over the K = 3 base lists (the even ones; odd lists are their mirrors).
    assert sorted(df["list_id"].unique()) == list(range(6)) and meta["n_lists"] == 6
    base = trip[trip["list_id"] % 2 == 0]
    items = Counter(zip(base["image_id"], base["pair"]))
    assert set(items.values()) == {1}
    assert len(items) == 6 * 3 and set(base["image_id"]) == set(meta["images"])
    # Over all lists, each item twice: once with each loss of the pair on the left.
    items = Counter(zip(trip["image_id"], trip["pair"], trip["left_loss"]))
    assert set(items.values()) == {1} and len(items) == 6 * 3 * 2
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
    df, _, _ = _build(manifest, tmp_path, kinds=("ranking",), lists=1, images=6, practice=0, catch=0.0, mirror=False)
    rank = df[df["kind"] == "ranking"]
    orders = [tuple(r[f"{s}_loss"] for s in design_c.RANKING_SCREEN_ORDER) for _, r in rank.iterrows()]
    assert sorted(orders) == sorted(itertools.permutations(("mse", "mae", "ms_ssim")))  # 6 images: each order once
    for slot in design_c.SLOTS:
        assert Counter(rank[f"{slot}_loss"]) == {"mse": 2, "mae": 2, "ms_ssim": 2}
    assert (rank["pair"] == "").all() and (rank["third_path"] != "").all()


def test_catch_trials_show_original_and_strong_degradation(manifest, tmp_path):
    df, meta, path = _build(manifest, tmp_path, catch=0.2, practice=0, lists=1, mirror=False)
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


def test_mirrored_lists_swap_every_side_per_item(manifest, tmp_path):
    df, meta, _ = _build(manifest, tmp_path, lists=2, practice=2, catch=0.1, seed=3)
    assert meta["mirror"] is True and meta["mirror_of"] == {"1": 0, "3": 2} and "mirrored list pairs" in meta["counterbalancing"]
    for odd, even in ((1, 0), (3, 2)):
        a = df[df["list_id"] == even].sort_values("trial").reset_index(drop=True)
        b = df[df["list_id"] == odd].sort_values("trial").reset_index(drop=True)
        assert len(a) == len(b) and (a["image_id"] == b["image_id"]).all() and (a["block"] == b["block"]).all()
        for f in ("run", "loss", "path"):
            assert (a[f"left_{f}"] == b[f"right_{f}"]).all() and (a[f"right_{f}"] == b[f"left_{f}"]).all()
            assert (a[f"third_{f}"] == b[f"third_{f}"]).all()
        catch = a["kind"] == "catch"
        assert catch.any() and (a.loc[catch, "answer"] != b.loc[catch, "answer"]).all()
        rank = a.index[a["kind"] == "ranking"]
        for i in rank:  # ranking: the screen order is reversed
            order = [a.loc[i, f"{s}_loss"] for s in design_c.RANKING_SCREEN_ORDER]
            assert [b.loc[i, f"{s}_loss"] for s in design_c.RANKING_SCREEN_ORDER] == order[::-1]
    # Per item across participants: every triplet item has each loss of its pair on the left exactly once.
    trip = df[df["kind"] == "triplet"]
    left_first = trip["left_loss"] == trip["pair"].str.split(":").str[0]
    assert (left_first.groupby([trip["image_id"], trip["pair"], trip["block"], trip["list_id"] // 2]).mean() == 0.5).all()
    plain, meta2, _ = _build(manifest, tmp_path / "plain", lists=2, practice=2, catch=0.1, seed=3, mirror=False)
    assert sorted(plain["list_id"].unique()) == [0, 1] and meta2["n_lists"] == 2 and meta2["mirror_of"] == {}


def test_practice_only_from_spare_images(tmp_path):
    m = make_manifest(tmp_path / "m", n_images=4, spares=2)
    df, meta, _ = _build(m, tmp_path, lists=1, practice=4, images=3, seed=0)
    practice = set(df.loc[df["block"] == "practice", "image_id"])
    assert practice == {"synthetic:test:0004", "synthetic:test:0005"} == set(meta["practice_images"])
    assert not practice & set(df.loc[df["block"] == "main", "image_id"])
    assert "synthetic:test:0003" not in practice  # a main image left out by --images is not a practice image either
    none = make_manifest(tmp_path / "none", n_images=3, spares=0)
    with pytest.raises(InputError, match="--practice 2: .* has no spare image .*--spares K"):
        _build(none, tmp_path / "n", practice=2)
    df, _, _ = _build(none, tmp_path / "n0", practice=0)
    assert (df["block"] == "main").all()


def test_flat_baseline_and_degenerate_runs_are_never_shown(tmp_path, capsys):
    m = make_manifest(tmp_path / "m", n_images=3, flat=True, degenerate=("conv-mae-s0",))
    df, meta, _ = _build(m, tmp_path, kinds=("triplet",), pairs=(("mse", "ms_ssim"),), practice=1)
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(":")[1].strip() for ln in err if ln.startswith("design: dropping")] == ["dropping conv-mae-s0",
                                                                                           "dropping flat"]
    assert set(meta["dropped_runs"]) == {"flat", "conv-mae-s0"}
    shown = set(df[["left_run", "right_run", "third_run"]].to_numpy().ravel()) - {""}
    assert shown == {"conv-mse-s0", "conv-ms_ssim-s0", "original", "degraded"}
    with pytest.raises(InputError, match="has no run with loss mae .*dropped as degenerate: conv-mae-s0"):
        _build(m, tmp_path / "d")
    every = make_manifest(tmp_path / "all", n_images=2, flat=True, degenerate=("conv-mse-s0", "conv-mae-s0", "conv-ms_ssim-s0"))
    with pytest.raises(InputError, match="no run left to show after dropping 4 run"):
        _build(every, tmp_path / "e")


def test_lowest_seed_is_shown_unless_a_stimulus_seed_is_given(tmp_path, capsys):
    m = make_manifest(tmp_path / "m", n_images=3, seeds=(10, 2))
    df, meta, _ = _build(m, tmp_path, practice=0)
    shown = set(df[["left_run", "right_run", "third_run"]].to_numpy().ravel()) - {"", "original", "degraded"}
    assert shown == {"conv-mse-s2", "conv-mae-s2", "conv-ms_ssim-s2"}  # numerically lowest, not s10 by name
    assert meta["stimulus_seed"] == "lowest" and meta["seeds"]["conv/mse"] == [2, 10]
    assert "seeds [2, 10] of conv/mse in the manifest; showing conv-mse-s2" in capsys.readouterr().err
    df, meta, _ = _build(m, tmp_path / "s10", practice=0, stimulus_seed=10)
    assert set(df["left_run"]) - {"original", "degraded"} <= {"conv-mse-s10", "conv-mae-s10", "conv-ms_ssim-s10"}
    assert meta["runs"]["conv/mae"] == "conv-mae-s10"
    with pytest.raises(InputError, match=r"--stimulus-seed 5: seeds available conv/mae \[2, 10\]"):
        _build(m, tmp_path / "s5", practice=0, stimulus_seed=5)


def test_snell_preset_and_per_arch_plans(tmp_path):
    losses = ("mse", "mae", "ms_ssim", "ssim")
    m = make_manifest(tmp_path / "m", n_images=3, archs=("conv", "fc", "vae"), losses=losses, spares=1)
    df, meta, _ = _build(m, tmp_path / "preset", preset="snell", practice=2, catch=0.0)
    main = df[df["block"] == "main"]
    assert set(main.loc[main["arch"] == "fc", "kind"]) == {"triplet"} and set(main.loc[main["arch"] == "fc", "pair"]) == {"ssim:mse"}
    for arch in ("conv", "vae"):
        rank = main[main["arch"] == arch]
        assert set(rank["kind"]) == {"ranking"} and len(rank) == 3 * 2  # 3 images, each list and its mirror
        assert {frozenset(r) for r in rank[["left_loss", "right_loss", "third_loss"]].to_numpy()} == {frozenset(("ms_ssim", "mse", "mae"))}
    assert meta["preset"] == "snell" and meta["plan"]["fc"] == {"kinds": ["triplet"], "pairs": ["ssim:mse"], "ranking_losses": []}
    assert meta["plan"]["vae"]["ranking_losses"] == ["ms_ssim", "mse", "mae"]
    short = make_manifest(tmp_path / "short", n_images=2, archs=("conv", "fc"), spares=1)
    with pytest.raises(InputError, match="--preset snell: missing run\\(s\\) fc/ssim, vae/mae, vae/ms_ssim, vae/mse in "):
        _build(short, tmp_path / "s", preset="snell")
    with pytest.raises(InputError, match="--preset: 'smell'"):
        _build(short, tmp_path / "s", preset="smell")
    # Any architecture its own kinds and pairs: the same plan written as flags.
    cfg = plan_settings("triplet;conv=ranking;vae=ranking", "fc=ssim:mse", "ms_ssim,mse,mae")
    df2, meta2, _ = _build(m, tmp_path / "own", practice=2, catch=0.0, **cfg)
    assert meta2["plan"] == meta["plan"]
    pd.testing.assert_frame_equal(df2, df)  # the same conditions in the same order: the same trials
    assert plan_settings(("triplet",), "mse:ms_ssim;fc=ssim:mse", ("mse", "mae", "ms_ssim"))["arch_pairs"] == (("fc", (("ssim", "mse"),)),)
    with pytest.raises(InputError, match="--pairs: architecture 'mlp' has no run"):
        _build(m, tmp_path / "x", **plan_settings("triplet", "mlp=ssim:mse", "mse,mae,ms_ssim"))
    with pytest.raises(InputError, match="two defaults"):
        plan_settings("triplet", "mse:mae;ssim:mse", "mse,mae,ms_ssim")
    with pytest.raises(InputError, match="--ranking-losses for conv: 'mse,mae' must name three"):
        _build(m, tmp_path / "y", **plan_settings("ranking", "mse:mae", "mse,mae,ms_ssim;conv=mse,mae"))
