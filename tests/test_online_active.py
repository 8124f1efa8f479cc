"""The active pair-selection policy (study/online/active.py): contract with the server, and that it picks informatively."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from percept.contracts import InputError
from study.online.active import ActivePolicy


def row(a: str, b: str, image: str, a_left: bool = True, arch: str = "fc", kind: str = "triplet") -> dict:
    """A main-block design row comparing losses a:b of one architecture on one image."""
    left, right = (a, b) if a_left else (b, a)
    return {"kind": kind, "block": "main", "arch": arch, "pair": f"{a}:{b}", "image_id": image,
            "left_loss": left, "left_run": f"{arch}-{left}-s0", "right_loss": right, "right_run": f"{arch}-{right}-s0"}


PAIRS = (("mse", "ms_ssim"), ("mae", "ms_ssim"), ("mse", "mae"))


def pool_of(n_images: int = 10, pairs=PAIRS, archs=("fc",)) -> list[dict]:
    """Every (arch, pair, image) with both side arrangements, as the mirrored lists give them."""
    return [row(a, b, f"img{m}", left, arch) for arch in archs for a, b in pairs for m in range(n_images)
            for left in (True, False)]


def comparison(r: dict) -> tuple:
    return r["arch"], r["pair"], r["image_id"]


def test_deterministic_distinct_new_indices_until_the_pool_is_spent():
    pool = pool_of(5)
    answered = [(pool[0], pool[0]["left_run"]), (pool[13], pool[13]["right_run"])]
    a = ActivePolicy(pool, seed=3).choose(answered, {1, 2}, 7)
    assert a == ActivePolicy(pool, seed=3).choose(list(answered), {1, 2}, 7)  # a fresh object, same answer
    assert all(isinstance(i, int) for i in a) and len(set(a)) == 7 and not {1, 2} & set(a)
    # seeds only break ties: over several seeds the first pick on an empty study differs somewhere
    assert len({ActivePolicy(pool, seed=s).choose([], set(), 1)[0] for s in range(8)}) > 1
    # one participant drawing batches: every index exactly once, then min(n, what is left), then nothing
    pol, seen, order = ActivePolicy(pool, seed=0), set(), []
    while len(seen) < len(pool):
        got = pol.choose([], seen, 4)
        assert len(got) == min(4, len(pool) - len(seen)) and not seen & set(got)
        seen |= set(got)
        order += got
    assert sorted(order) == list(range(len(pool)))
    assert pol.choose([], seen, 4) == []
    # the mirrored row of a comparison comes only after every fresh comparison was given
    first = [comparison(pool[i]) for i in order[:15]]
    assert len(set(first)) == 15


def test_a_batch_spreads_over_pairs_and_images():
    pool = pool_of(10)
    got = ActivePolicy(pool, seed=1).choose([], set(), 6)
    pairs = [pool[i]["pair"] for i in got]
    assert sorted(pairs) == sorted([f"{a}:{b}" for a, b in PAIRS] * 2)  # two of each pair, not six of one
    assert len({comparison(pool[i]) for i in got}) == 6
    # without the participant discount the posterior update alone spreads the batch (every seed, not by luck of ties)
    for seed in range(6):
        got = ActivePolicy(pool, seed=seed, sd_participant=0.0).choose([], set(), 6)
        assert sorted(Counter(pool[i]["pair"] for i in got).values()) == [2, 2, 2]


def test_picks_the_uncompared_pair_and_the_fresh_image():
    pool = pool_of(10)
    # mse:ms_ssim and mae:ms_ssim were judged 100 times each over every image, mse:mae never
    done = [r for r in pool if r["pair"] != "mse:mae"]
    answered = [(done[k % len(done)], done[k % len(done)]["left_run"]) for k in range(200)]
    got = ActivePolicy(pool, seed=0).choose(answered, set(), 1)
    assert pool[got[0]]["pair"] == "mse:mae"
    # within one pair: img0 judged 30 times, the others never; the next judgment of that pair goes elsewhere
    one = [row("mse", "mae", f"img{m}", left) for m in range(4) for left in (True, False)]
    answered = [(one[k % 2], one[k % 2]["right_run"]) for k in range(30)]
    got = ActivePolicy(one, seed=0).choose(answered, set(), 3)
    assert {one[i]["image_id"] for i in got} == {"img1", "img2", "img3"}


def test_the_side_shown_less_often_comes_next():
    pool = [row("mse", "mae", "img0", True), row("mse", "mae", "img0", False)]
    for answered_row in pool:
        got = ActivePolicy(pool, seed=0).choose([(answered_row, answered_row["left_run"])], set(), 1)
        assert pool[got[0]]["left_loss"] != answered_row["left_loss"]


def test_refuses_non_pairwise_pools_and_foreign_answers():
    rating = {**row("mse", "mae", "img0"), "kind": "rating"}
    with pytest.raises(InputError, match=r"pool row 1, column 'kind': 'rating' is not a pairwise kind"):
        ActivePolicy([row("mse", "mae", "img0"), rating], seed=0)
    with pytest.raises(InputError, match="pool is empty"):
        ActivePolicy([], seed=0)
    with pytest.raises(InputError, match="do not match pair"):
        ActivePolicy([{**row("mse", "mae", "img0"), "pair": "mse:ssim"}], seed=0)
    pol = ActivePolicy(pool_of(2), seed=0)
    r = pool_of(2)[0]
    with pytest.raises(InputError, match="answered item 0: choice 'fc-ssim-s0' was not shown"):
        pol.choose([(r, "fc-ssim-s0")], set(), 1)
    with pytest.raises(InputError, match="not a comparison of the pool"):
        pol.choose([(row("mse", "mae", "img9"), "fc-mse-s0")], set(), 1)
    with pytest.raises(InputError, match="seen index 99"):
        pol.choose([], {99}, 1)
    with pytest.raises(InputError, match="n must be"):
        pol.choose([], set(), -1)


def test_pool_from_a_real_design_file(tmp_path):
    from percept.contracts.design import read_design
    from test_analysis_fakestudy import make_design, make_manifest

    man = make_manifest(tmp_path, 6, archs=("fc", "conv"), pngs=False)
    design = read_design(make_design(tmp_path, man, pairs=PAIRS, catch=2, practice=1))
    records = design.to_dict("records")
    pool = [r for r in records if r["block"] == "main" and r["kind"] == "triplet"]
    pol = ActivePolicy(pool, seed=0)
    assert (pol.n_pairs, pol.n_cells) == (6, 36)  # 2 archs × 3 pairs; × 6 images
    got = pol.choose([], set(), 12)
    assert len({comparison(pool[i]) for i in got}) == 12 and len({pool[i]["arch"] for i in got}) == 2
    with pytest.raises(InputError, match="'catch' is not a pairwise kind"):
        ActivePolicy([r for r in records if r["block"] == "main"], seed=0)


def test_a_simulated_active_study_recovers_the_order_of_the_losses():
    from scipy.special import ndtr

    truth = {"mse": 0.0, "mae": 0.4, "ms_ssim": 1.2}  # population probit scores: ms_ssim > mae > mse
    pool = pool_of(12)
    pol, rng, answered = ActivePolicy(pool, seed=5), np.random.default_rng(0), []
    for _participant in range(20):
        seen: set[int] = set()
        for _ in range(3):
            for i in pol.choose(answered, seen, 8):
                seen.add(i)
                r = pool[i]
                p_left = ndtr(truth[r["left_loss"]] - truth[r["right_loss"]])
                answered.append((r, r["left_run"] if rng.random() < p_left else r["right_run"]))
    post = {loss: v for (kind, arch, loss), v in pol.scores(answered).items()}
    assert post["ms_ssim"][0] > post["mae"][0] > post["mse"][0]
    # the largest difference is near the truth (the prior shrinks a little; 3 SDs of either score plus slack)
    assert abs((post["ms_ssim"][0] - post["mse"][0]) - 1.2) < 3 * (post["ms_ssim"][1] + post["mse"][1])
    counts = {f"{a}:{b}": sum(r["pair"] == f"{a}:{b}" for r, _ in answered) for a, b in PAIRS}
    assert min(counts.values()) > 0.15 * len(answered)  # every pair keeps being asked


def test_triplet_and_pair_kinds_are_separate_scales():
    pool = pool_of(4) + [row(a, b, f"img{m}", left, kind="pair") for a, b in PAIRS for m in range(4) for left in (True, False)]
    pol = ActivePolicy(pool, seed=0)
    assert pol.n_pairs == 6 and {name[0] for name in pol.param_names} == {"triplet", "pair"}
    # many triplet answers tell nothing about the no-reference question: the next pick is a pair trial
    trip = [r for r in pool if r["kind"] == "triplet"]
    answered = [(trip[k % len(trip)], trip[k % len(trip)]["left_run"]) for k in range(120)]
    assert {pool[i]["kind"] for i in pol.choose(answered, set(), 3)} == {"pair"}
