"""study.observers: simulated responses in the real format, and generators whose truth can be recovered."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from percept.contracts import InputError
from percept.contracts import manifest as manifest_c
from percept.contracts import responses as responses_c
from study.design import DesignConfig, build_design
from study.observers import ObserverConfig, simulate
from test_study_support import make_manifest


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    manifest = make_manifest(root, n_images=10)
    return build_design(manifest, root, DesignConfig(lists=2, practice=2, catch=0.1, seed=3))


def _all(paths) -> pd.DataFrame:
    return pd.concat([responses_c.read_responses(p) for p in paths], ignore_index=True)


def test_files_follow_the_contract_and_are_marked(design):
    paths = simulate(design, 3, "ms_ssim", noise=0.5, seed=1)
    assert [p.name for p in paths] == ["sim01-1.csv", "sim02-1.csv", "sim03-1.csv"]
    df = _all(paths)
    assert (df["simulated"] == 1).all()
    assert df.groupby("participant")["list_id"].first().tolist() == [0, 1, 2]  # 2 lists and their mirrors
    rec = responses_c.read_session(paths[0].with_suffix(".json"))
    assert rec["simulated"] is True and rec["observer"].startswith("ms_ssim noise=0.5")
    assert rec["completed"] is True and rec["n_answered"] == rec["n_trials"] == int((df["participant"] == "sim01").sum())
    assert set(responses_c.SESSION_KEYS) <= set(rec)
    again = simulate(design, 3, "ms_ssim", noise=0.5, seed=1)  # same seed, same answers; replacing own files
    pd.testing.assert_frame_equal(df.drop(columns="wallclock"), _all(again).drop(columns="wallclock"))


def test_noiseless_metric_observer_follows_the_metric(design):
    cfg = ObserverConfig(observer="mse", noise=0.0, participant_sd=0.0, image_sd=0.0, side_sd=0.0, lapse=0.0)
    df = _all(simulate(design, 2, config=cfg, seed=0))
    meta = json.loads(design.with_suffix(".json").read_text())
    man = manifest_c.read_manifest(design.parent / meta["manifest"]).set_index(["image_id", "run"])["mse"]
    trip = df[df["kind"] == "triplet"]
    for row in trip.itertuples():
        best = min((row.left_run, row.right_run), key=lambda r: man[(row.image_id, r)])
        assert row.choice == best
    for row in df[df["kind"] == "ranking"].itertuples():
        runs = row.choice.split(">")
        assert [man[(row.image_id, r)] for r in runs] == sorted(man[(row.image_id, r)] for r in runs)
    catch = df[df["kind"] == "catch"]
    assert len(catch) and (catch["choice"] == "original").all()


def test_preference_observer_recovers_the_known_probability(design):
    # No participant or image spread: every triplet involving ms_ssim is a Bernoulli(logistic(β)) draw.
    cfg = ObserverConfig(observer="preference", prob=0.7, participant_sd=0.0, image_sd=0.0, target="ms_ssim")
    df = _all(simulate(design, 40, config=cfg, seed=5))
    trip = df[(df["kind"] == "triplet") & ((df["left_loss"] == "ms_ssim") | (df["right_loss"] == "ms_ssim"))]
    chose = trip["choice"].str.contains("ms_ssim")
    assert binomtest(int(chose.sum()), len(chose), 0.7).pvalue > 0.001
    assert abs(chose.mean() - 0.7) < 0.05
    other = df[(df["kind"] == "triplet") & (df["left_loss"] != "ms_ssim") & (df["right_loss"] != "ms_ssim")]
    assert binomtest(int((other["key"] == "left").sum()), len(other), 0.5).pvalue > 0.001
    # Rankings: Plackett–Luce pairwise marginals equal the same logistic.
    rank = df[df["kind"] == "ranking"]
    above = [o.index("conv-ms_ssim-s0") < o.index("conv-mse-s0") for o in rank["choice"].str.split(">")]
    assert abs(np.mean(above) - 0.7) < 0.06
    rec = json.loads((design.parent / "responses" / "sim01-1.json").read_text())
    assert rec["truth"]["beta"] == pytest.approx(np.log(0.7 / 0.3)) and rec["truth"]["participant_effect"] == 0.0


def test_preference_truth_has_participant_and_image_effects(design):
    cfg = ObserverConfig(observer="preference", logit=0.5, participant_sd=0.8, image_sd=0.6)
    paths = simulate(design, 6, config=cfg, seed=2)
    recs = [json.loads(p.with_suffix(".json").read_text())["truth"] for p in paths]
    effects = [r["participant_effect"] for r in recs]
    assert len(set(effects)) == 6 and np.std(effects) > 0.1
    assert recs[0]["image_effects"] == recs[5]["image_effects"]  # shared by all participants
    assert len(recs[0]["image_effects"]) == 10 + 2  # the main images and the 2 spare (practice) ones


def test_random_observer_and_lapses(design):
    cfg = ObserverConfig(observer="random", lapse=1.0)
    df = _all(simulate(design, 30, config=cfg, seed=9))
    trip = df[df["kind"] != "ranking"]
    assert binomtest(int((trip["key"] == "left").sum()), len(trip), 0.5).pvalue > 0.001
    catch = df[df["kind"] == "catch"]
    assert 0.2 < (catch["choice"] == "original").mean() < 0.8  # lapse 1: catch answered at random


def test_refuses_human_files_and_bad_parameters(design):
    human = design.parent / "responses" / "sim07-1.csv"
    human.parent.mkdir(exist_ok=True)
    human.write_text("participant\n")
    (human.with_suffix(".json")).write_text(json.dumps({"participant": "sim07", "session": "1", "simulated": False, "completed": False}))
    with pytest.raises(InputError, match="sim07-1.csv: exists and is not marked simulated"):
        simulate(design, 1, "ms_ssim", first=7)
    assert human.read_text() == "participant\n"
    with pytest.raises(InputError, match="--observer"):
        simulate(design, 1, "lpips")
    with pytest.raises(InputError, match="needs --logit or --prob"):
        simulate(design, 1, "preference")
    with pytest.raises(InputError, match="--prob: 1.5"):
        simulate(design, 1, config=ObserverConfig(observer="preference", prob=1.5))
    with pytest.raises(InputError, match="--noise"):
        simulate(design, 1, "ms_ssim", noise=-1.0)


@pytest.mark.parametrize("metric", ["haarpsi", "delta_e"])
def test_colour_metric_observers_follow_their_column_and_name_what_is_built_in(design, metric):
    cfg = ObserverConfig(observer=metric, noise=0.0, participant_sd=0.0, image_sd=0.0, side_sd=0.0, lapse=0.0)
    paths = simulate(design, 2, config=cfg, seed=0)
    df = _all(paths)
    meta = json.loads(design.with_suffix(".json").read_text())
    man = manifest_c.read_manifest(design.parent / meta["manifest"]).set_index(["image_id", "run"])[metric]
    better = max if metric == "haarpsi" else min  # haarpsi higher is better, delta_e lower
    trip = df[df["kind"] == "triplet"]
    assert len(trip) and all(row.choice == better((row.left_run, row.right_run), key=lambda r: man[(row.image_id, r)])
                             for row in trip.itertuples())
    rec = responses_c.read_session(paths[0].with_suffix(".json"))
    assert rec["observer_metric"] == metric and rec["observer_trained_on"] == []  # no model is trained on it


def test_metric_observer_on_a_training_loss_records_the_runs_trained_on_it(design):
    paths = simulate(design, 1, "ms_ssim", seed=0)
    rec = responses_c.read_session(paths[0].with_suffix(".json"))
    assert rec["observer_metric"] == "ms_ssim" and rec["observer_trained_on"] == ["conv-ms_ssim-s0"]
    rec = responses_c.read_session(simulate(design, 1, "psnr", seed=0)[0].with_suffix(".json"))
    assert rec["observer_trained_on"] == ["conv-mse-s0"]  # PSNR is a function of MSE
    cfg = ObserverConfig(observer="preference", prob=0.6)
    rec = responses_c.read_session(simulate(design, 1, config=cfg, seed=0)[0].with_suffix(".json"))
    assert rec["observer_metric"] is None and rec["observer_trained_on"] == []
    assert ObserverConfig().observer == "haarpsi"


def test_haarpsi_observer_refuses_a_manifest_that_predates_it(tmp_path):
    manifest = make_manifest(tmp_path, n_images=3)
    old = pd.read_csv(manifest).drop(columns=["haarpsi", "delta_e", "degenerate", "use"])
    old.to_csv(manifest, index=False)
    design = build_design(manifest, tmp_path, DesignConfig(practice=0))
    with pytest.raises(InputError, match="--observer haarpsi: the design's manifest has no haarpsi column"):
        simulate(design, 1, "haarpsi")
    assert simulate(design, 1, "mse")  # the older metrics still judge
