"""Trial kinds as modules (study/trials/): registry, unknown kinds refused, designs balanced per kind,
screen descriptions, keys → choices, and simulated observers with a known preference per kind."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, mannwhitneyu

from percept.contracts import ContractError, InputError
from percept.contracts import design as design_c
from percept.contracts import kinds as kinds_c
from percept.contracts import responses as responses_c
from study import trials
from study.design import DesignConfig, build_design
from study.observers import ObserverConfig, simulate
from test_study_support import make_manifest

ALL = ("triplet", "ranking", "pair", "rating", "rating_ref", "jnd")


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    manifest = make_manifest(root, n_images=8)
    return build_design(manifest, root, DesignConfig(kinds=ALL, pairs=(("mse", "ms_ssim"),), lists=1, practice=3,
                                                     catch=0.15, seed=4, jnd_ms=(400, 200, 300)))


def _list(design, k):
    df = design_c.read_design(design)
    return df[df["list_id"] == k].sort_values("trial").reset_index(drop=True)


def test_registry_matches_the_contract_and_every_kind_has_a_catch():
    reg = trials.registry()
    assert list(reg) == list(kinds_c.KINDS)
    for name in kinds_c.MAIN_KINDS:
        catch = reg[name].catch_kind
        assert catch in kinds_c.CATCH_KINDS, name
        assert kinds_c.KINDS[catch].catch_of in (name, "triplet")  # ranking lists use the triplet's catch
    assert design_c.KINDS == tuple(kinds_c.KINDS)


def test_unknown_kind_is_refused_everywhere(design, tmp_path):
    with pytest.raises(InputError, match="unknown trial kind 'bogus'"):
        trials.get("bogus")
    with pytest.raises(ContractError, match="unknown trial kind 'bogus'"):
        kinds_c.spec("bogus")
    with pytest.raises(InputError, match="--kinds"):
        build_design(json.loads(design.with_suffix(".json").read_text())["manifest"], tmp_path,
                     DesignConfig(kinds=("triplet", "bogus")))
    # A design or response file naming an unknown kind is refused, not read as a triplet.
    text = design.read_text().replace(",triplet,", ",bogus,", 1)
    bad = tmp_path / "design.csv"
    bad.write_text(text)
    with pytest.raises(ContractError, match="kind"):
        design_c.read_design(bad)
    paths = simulate(design, 1, "haarpsi", seed=0)
    resp = paths[0].read_text()
    kind = responses_c.read_responses(paths[0])["kind"].iloc[0]
    (tmp_path / "r.csv").write_text(resp.replace(f",{kind},", ",bogus,", 1))
    with pytest.raises(ContractError, match="kind"):
        responses_c.read_responses(tmp_path / "r.csv")


def test_each_kind_is_balanced_and_mirrored(design):
    meta = json.loads(design.with_suffix(".json").read_text())
    assert meta["timing"]["jnd"] == {"first_ms": 400, "gap_ms": 200, "second_ms": 300}
    assert set(meta["catch"]["kinds"]) == {"catch", "pair_catch", "rating_catch", "rating_ref_catch", "jnd_catch"}
    base, mirror = _list(design, 0), _list(design, 1)
    main = base[base["block"] == "main"]
    assert set(main["kind"]) == set(ALL) | set(meta["catch"]["kinds"])
    for kind in ("triplet", "pair"):  # each loss on each side equally often (±1)
        sides = Counter(main.loc[main["kind"] == kind, "left_loss"])
        assert abs(sides["mse"] - sides["ms_ssim"]) <= 1 and sum(sides.values()) == 8, kind
    jnd = main[main["kind"] == "jnd"]  # the original first on half the trials of each loss (±1)
    for loss in ("mse", "mae", "ms_ssim"):
        of_loss = jnd[(jnd["left_loss"] == loss) | (jnd["right_loss"] == loss)]
        first = (of_loss["left_run"] == "original").sum()
        assert len(of_loss) == 8 and abs(2 * first - 8) <= 1, loss
    for kind in ("rating", "rating_ref"):  # every image rated once per loss, one slot only
        rows = main[main["kind"] == kind]
        assert len(rows) == 24 and rows.groupby(["image_id", "left_loss"]).size().eq(1).all()
        assert (rows["right_run"] == "").all()
    # Catch rows: known answers, degraded copies written beside the design.
    for row in main[main["kind"].isin(kinds_c.CATCH_KINDS)].itertuples():
        assert row.answer in kinds_c.KINDS[row.kind].answers
        for slot in ("left", "right"):
            if getattr(row, f"{slot}_run") == "degraded":
                assert (design.parent / getattr(row, f"{slot}_path")).is_file()
    # The mirrored list: sides and jnd order swapped, ratings unchanged.
    m = mirror[mirror["block"] == "main"]
    for (_, a), (_, b) in zip(main.iterrows(), m.iterrows()):
        if a["kind"] in ("rating", "rating_ref", "rating_catch", "rating_ref_catch"):
            assert (a["left_run"], a["left_path"], a["answer"]) == (b["left_run"], b["left_path"], b["answer"])
        else:
            assert (a["left_run"], a["right_run"]) == (b["right_run"], b["left_run"]), a["kind"]


def test_screen_descriptions_are_json_and_keys_become_choices(design):
    base = _list(design, 0)
    timing = json.loads(design.with_suffix(".json").read_text())["timing"]
    n_images = {"triplet": 3, "catch": 3, "ranking": 4, "pair": 2, "pair_catch": 2, "rating": 1, "rating_catch": 1,
                "rating_ref": 2, "rating_ref_catch": 2, "jnd": 0, "jnd_catch": 0}
    for kind, row in base.groupby("kind").first().iterrows():
        trial = dict(row, kind=kind)
        screen = json.loads(json.dumps(trials.get(kind).screen(trial, timing)))
        assert screen["kind"] == kind and len(screen["images"]) == n_images[kind], kind
        assert all(img["row"] in ("top", "middle", "bottom") and img["col"] in (-1, 0, 1) for img in screen["images"])
        if kind.startswith("jnd"):
            assert [f["ms"] for f in screen["sequence"]] == [400, 200, 300]
            assert [f["images"][0]["path"] for f in screen["sequence"][::2]] == [trial["left_path"], trial["right_path"]]
    row = dict(base[base["kind"] == "pair"].iloc[0])
    assert trials.get("pair").press(row, [], "right") == ("right", row["right_run"])
    assert trials.get("pair").press(row, [], "1") is None
    row = dict(base[base["kind"] == "rating"].iloc[0])
    assert trials.get("rating").press(row, [], "4") == ("4", "4") and trials.get("rating").press(row, [], "6") is None
    row = dict(base[base["kind"] == "jnd"].iloc[0])
    assert trials.get("jnd").press(row, [], "d") == ("d", "different")
    assert trials.get("jnd").press(row, [], "s") == ("s", "same")


def _responses(paths):
    return pd.concat([responses_c.read_responses(p) for p in paths], ignore_index=True)


def test_preference_observer_known_truth_in_every_kind(design):
    cfg = ObserverConfig(observer="preference", target="ms_ssim", logit=1.5, participant_sd=0.0, image_sd=0.0, lapse=0.0)
    df = _responses(simulate(design, 6, config=cfg, seed=3))
    df = df[df["block"] == "main"]
    for kind in ("triplet", "pair"):
        rows = df[df["kind"] == kind]
        k = int((rows["choice"].str.contains("ms_ssim")).sum())
        assert binomtest(k, len(rows), 0.5).pvalue < 0.01 and k > len(rows) / 2, kind
    for kind in ("rating", "rating_ref"):
        rows = df[df["kind"] == kind].assign(score=lambda d: d["choice"].astype(int))
        target, other = rows.loc[rows["left_loss"] == "ms_ssim", "score"], rows.loc[rows["left_loss"] != "ms_ssim", "score"]
        assert mannwhitneyu(target, other, alternative="greater").pvalue < 0.01, kind
    jnd = df[df["kind"] == "jnd"]
    loss = np.where(jnd["left_run"] == "original", jnd["right_loss"], jnd["left_loss"])
    diff = (jnd["choice"] == "different").to_numpy()
    assert diff[loss == "ms_ssim"].mean() < diff[loss != "ms_ssim"].mean() - 0.2
    # With no lapses every catch trial of every kind is answered correctly.
    catch = df[df["kind"].isin(kinds_c.CATCH_KINDS)]
    assert len(catch) and all(kinds_c.catch_correct(r.kind, r.answer, r.choice, {"left": r.left_run, "right": r.right_run})
                              for r in catch.merge(design_c.read_design(design)[["list_id", "trial", "answer"]],
                                                   on=["list_id", "trial"]).itertuples())


def test_metric_observers_answer_every_kind(design):
    df = _responses(simulate(design, 2, "haarpsi", seed=1, first=20))
    assert set(df["kind"]) >= set(ALL)
    assert df.loc[df["kind"].isin(["rating", "rating_ref"]), "choice"].isin(list("12345")).all()
    assert df.loc[df["kind"] == "jnd", "choice"].isin(["same", "different"]).all()


def test_answers_expand_into_what_statistics_consume():
    shown = {"left": "a", "right": "b", "third": "c"}
    assert kinds_c.expand("ranking", "c>a>b", shown)["wins"] == [("c", "a"), ("c", "b"), ("a", "b")]
    assert kinds_c.expand("pair", "b", shown)["wins"] == [("b", "a")]
    assert trials.get("triplet").expand({"choice": "a", "left_run": "a", "right_run": "b"})["wins"] == [("a", "b")]
    assert kinds_c.expand("rating_ref", "4", {"left": "a"})["rating"] == 4
    assert kinds_c.expand("jnd", "different", {"left": "original", "right": "a"})["different"] is True
    with pytest.raises(ContractError, match="not one of"):
        kinds_c.expand("rating", "7", {"left": "a"})
    with pytest.raises(ContractError, match="was not shown"):
        kinds_c.expand("pair", "z", shown)


def test_cli_designs_simulates_analyzes_and_reports_every_kind(tmp_path):
    import subprocess
    import sys

    from test_study_support import REPO

    manifest = make_manifest(tmp_path, n_images=4)

    def percept(*args):
        r = subprocess.run([sys.executable, "-m", "percept", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    percept("design", "--manifest", str(manifest), "--out", str(tmp_path), "--kinds", ",".join(ALL),
            "--pairs", "mse:ms_ssim", "--practice", "2", "--jnd-ms", "500,100,400")
    design = tmp_path / "study" / "design.csv"
    assert json.loads(design.with_suffix(".json").read_text())["timing"]["jnd"]["gap_ms"] == 100
    assert set(ALL) <= set(design_c.read_design(design)["kind"])
    percept("simulate", "--design", str(design), "--participants", "4", "--observer", "haarpsi")
    percept("analyze", "--study", str(tmp_path / "study"), "--boot", "5")
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert set(ALL) <= set(summary["kinds"]["present"]) and "jnd.csv" in summary["kinds"]["files"]
    percept("report", "--out", str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "percept", "design", "--manifest", str(manifest), "--out", str(tmp_path / "x"),
                        "--kinds", "triplet,bogus"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "bogus" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "percept", "design", "--manifest", str(manifest), "--out", str(tmp_path / "x"),
                        "--kinds", "jnd", "--jnd-ms", "500,x,500"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--jnd-ms" in r.stderr and "Traceback" not in r.stderr
