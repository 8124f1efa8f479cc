"""Headline family: declared from the design, Holm across it, the main test's intervals; degenerate runs; observers."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from analysis import family as fam
from analysis import preferences as pr
from analysis import rankings as rk
from analysis.load import load_study
from percept import cli
from percept.contracts.manifest import read_manifest, write_manifest
from test_analysis_fakestudy import make_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    exp = tmp_path_factory.mktemp("family")
    folder = make_study(exp, n_images=8, archs=("fc", "conv"), pairs=(("ms_ssim", "mse"), ("ms_ssim", "mae")),
                        ranking=True, n_participants=6, effect=0.6, sd_participant=0.3, sd_image=0.3, seed=2)
    return load_study(folder, warn=lambda msg: None)


def test_family_is_declared_from_the_design_and_holm_adjusted(study):
    family = fam.declared_family(study.design)
    assert len(family) == 2 * 2 + 2  # 2 archs × 2 pairs of triplets + one Friedman test per arch
    assert "all" not in set(family["arch"])
    trials = pr.triplet_table(study.responses)
    models = pr.model_table(trials, bayes=False, lme4=False)
    friedman, _ = rk.ranking_tests(rk.ranking_table(study.responses), "participant")
    table = fam.family_table(family, models, friedman)
    assert table["p_holm"].to_numpy() == pytest.approx(multipletests(table["p"], method="holm")[1])
    # the headline interval is the cluster-robust logit's, mapped to a probability
    m = models[(models["estimator"] == "cluster_logit") & (models["arch"] == "fc") & (models["pair"] == "ms_ssim:mse")].iloc[0]
    row = table[(table["arch"] == "fc") & (table["pair"] == "ms_ssim:mse")].iloc[0]
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert (row["ci_low"], row["prob_a"], row["ci_high"]) == pytest.approx((expit(m["ci_low"]), expit(m["estimate"]),
                                                                            expit(m["ci_high"])))
    lines = fam.headline_lines(table, rk.rank_distribution(rk.ranking_table(study.responses)), True)
    assert len(lines) == 6 and all("over the 6 declared tests" in line for line in lines)
    assert any("cluster-robust logit, 95% CI" in line for line in lines)


def test_a_declared_test_without_data_keeps_its_place_with_p_1(study):
    family = pd.DataFrame({"test": ["triplet cluster_logit"] * 2, "arch": ["fc", "vae"], "pair": ["ms_ssim:mse"] * 2})
    models = pr.model_table(pr.triplet_table(study.responses), bayes=False, lme4=False)
    table = fam.family_table(family, models, pd.DataFrame())
    vae = table.set_index("arch").loc["vae"]
    assert np.isnan(vae["p"]) and "no data" in vae["note"]
    fc_p = table.set_index("arch").loc["fc", "p"]
    assert table.set_index("arch").loc["fc", "p_holm"] == pytest.approx(min(1.0, 2 * fc_p))


def test_degenerate_runs_leave_the_family_and_the_responses(study):
    degenerate = {"fc-mae-s0"}
    family = fam.declared_family(study.design, degenerate)
    assert ("fc", "ms_ssim:mae") not in set(zip(family["arch"], family["pair"]))
    # rankings of fc show mae too, so fc's Friedman test leaves the family; conv's stays
    assert set(family.loc[family["test"] == "ranking friedman", "arch"]) == {"conv"}
    kept, dropped = fam.drop_degenerate(study.responses, degenerate)
    assert dropped > 0 and not fam.shown_runs(kept).apply(lambda r: "fc-mae-s0" in r).any()


def test_analyze_flags_degenerate_runs_and_writes_premise_and_family(tmp_path):
    folder = make_study(tmp_path, n_images=6, archs=("fc",), pairs=(("ms_ssim", "mse"), ("ms_ssim", "mae")),
                        n_participants=4, effect=0.5)
    man_path = tmp_path / "reconstructions" / "manifest.csv"
    man = read_manifest(man_path)
    flat = man.drop_duplicates("image_id").assign(run="flat", arch="baseline", loss="flat", mse=0.5, mae=0.6,
                                                   psnr=3.0, ssim=0.01, ms_ssim=0.01)
    man = pd.concat([man, flat], ignore_index=True)
    man["label"] = man["label"].astype("string").fillna("")
    man["degenerate"] = (man["run"] == "fc-mae-s0").astype(int)
    write_manifest(man, man_path)
    assert cli.main(["analyze", "--study", str(folder), "--no-bayes", "--boot", "0"]) == 0
    a = tmp_path / "analysis"
    summary = json.loads((a / "summary.json").read_text())
    assert summary["degenerate_runs"] == ["fc-mae-s0"] and summary["n_degenerate_trials_dropped"] == 4 * 6
    assert [t["pair"] for t in summary["family"]["tests"]] == ["ms_ssim:mse"]
    assert set(pd.read_csv(a / "pairwise.csv")["pair"]) == {"ms_ssim:mse"}
    premise = pd.read_csv(a / "premise.csv")
    assert "flat" in set(premise["rival"]) and (premise.loc[premise["loss"] == "mae", "answer"] == "degenerate").all()
    assert {v["loss"] for v in summary["premise"]["verdicts"]} == {"mse", "mae", "ms_ssim"}
    assert cli.main(["report", "--out", str(tmp_path)]) == 0
    page = (a / "report.html").read_text()
    for text in ("Degenerate runs left out", "declared tests", "flat baseline", "p_holm", "human_pairwise",
                 "Simulated observers: test-generator (4 sessions)", "is not built in"):
        assert text in page, text


def test_observer_info_reads_records_defensively():
    man = pd.DataFrame({"loss": ["mse", "ms_ssim", "flat"]})
    recs = [{"simulated": True, "observer": "ms_ssim noise=0.5 participant_sd=0.2"},
            {"simulated": True, "observer": "haarpsi noise=0.5", "observer_trained_on": []},
            {"simulated": True, "observer": "psnr", "observer_params": {"observer": "psnr"}},
            {"simulated": False, "observer": None}]
    info = fam.observer_info(recs, man)
    by = {o["observer"]: o for o in info["observers"]}
    assert by["ms_ssim"]["trained_on"] == ["ms_ssim"] and by["ms_ssim"]["source"] == "inferred from the manifest"
    assert by["haarpsi"]["trained_on"] == [] and by["haarpsi"]["source"] == "session record"
    assert by["psnr"]["trained_on"] == ["mse"]  # PSNR is a monotone function of per-image MSE
    assert info["built_in"] == ["ms_ssim", "mse"]
    assert fam.observer_info([{"simulated": True, "observer": "haarpsi", "observer_trained_on": False}], man)["built_in"] == []
    assert fam.observer_info(recs[3:], man) == {"observers": [], "built_in": []}
