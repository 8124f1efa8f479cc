"""Statistics of the new kinds (analysis/ratings.py, analysis/jnd.py, analysis/kinds.py): numbers equal direct
scipy/statsmodels calls, BT.500 screening flags a random rater, known truths are recovered, null data keeps ~5%."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import jnd as jn
from analysis import ratings as rt


def _ratings(rng, n_participants=12, n_images=10, effect=0.0, losses=("mae", "ms_ssim", "mse"), sd_p=0.5, sd_i=0.5):
    """Crossed participant and image effects; `effect` added to ms_ssim's latent quality; cut into 1..5."""
    bp, bi = rng.normal(0, sd_p, n_participants), rng.normal(0, sd_i, n_images)
    rows = []
    for p in range(n_participants):
        for i in range(n_images):
            for loss in losses:
                latent = bp[p] + bi[i] + (effect if loss == "ms_ssim" else 0.0) + rng.normal(0, 1)
                score = int(np.clip(np.round(3 + latent), 1, 5))
                rows.append({"participant": f"p{p}", "image_id": f"i{i}", "kind": "rating", "arch": "conv", "loss": loss,
                             "run": f"conv-{loss}-s0", "score": score, "simulated": 1})
    return pd.DataFrame(rows, columns=rt.RATING_COLUMNS)


def test_mos_and_dmos_equal_direct_scipy():
    r = _ratings(np.random.default_rng(0), effect=1.0)
    mos = rt.mos_table(r).set_index("loss")
    for loss, g in r.groupby("loss"):
        x = g["score"].to_numpy(float)
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert mos.loc[loss, "mos"] == pytest.approx(x.mean()) and mos.loc[loss, "ci_low"] == pytest.approx(low)
        assert mos.loc[loss, "ci_high"] == pytest.approx(high)
    ref = pd.DataFrame({"participant": ["p0", "p0", "p1"], "image_id": ["i0", "i1", "i5"], "score": [5, 3, 4]})
    dm = rt.dmos_table(r, ref).set_index("loss")
    sub = r[r["participant"].isin(["p0", "p1"])]
    # p0 rated i0 and i1's originals (their own ratings there, their mean 4 elsewhere); p1 rated one original (4).
    refv = [5 if (p, i) == ("p0", "i0") else 3 if (p, i) == ("p0", "i1") else 4 for p, i in zip(sub["participant"], sub["image_id"])]
    dv = sub["score"].to_numpy() - np.array(refv) + 5
    for loss in ("mse", "ms_ssim"):
        x = dv[(sub["loss"] == loss).to_numpy()]
        assert dm.loc[loss, "dmos"] == pytest.approx(x.mean()) and dm.loc[loss, "n"] == len(x)


def test_bt500_screening_rejects_a_random_rater_with_a_reason():
    rng = np.random.default_rng(1)
    r = _ratings(rng, n_participants=25, sd_p=0.2, effect=1.0)
    noisy = r["participant"] == "p3"
    r.loc[noisy, "score"] = rng.choice([1, 5], noisy.sum())  # extremes at random: outside the limits often, both ways
    r.loc[r["participant"] == "p5", "score"] = 5  # one-sided: BT.500 keeps a shifted but consistent rater
    screen = rt.bt500_screening(r).set_index("participant")
    assert screen.loc["p3", "rejected"] and "BT.500" in screen.loc["p3", "reason"]
    assert screen.loc["p5", "q"] == 0 and not screen.loc["p5", "rejected"]
    assert screen["rejected"].sum() == 1
    # P and Q of the rejected rater, recomputed directly from each presentation's mean, SD and β2.
    p = q = 0
    for _, g in r.groupby(["kind", "image_id", "run"]):
        x = g["score"].to_numpy(float)
        u, sd = x.mean(), x.std(ddof=1)
        beta2 = stats.kurtosis(x, fisher=False) if np.ptp(x) > 0 else np.nan
        c = 2.0 if 2 <= beta2 <= 4 else np.sqrt(20)
        mine = g.loc[g["participant"] == "p3", "score"].iloc[0]
        p, q = p + int(sd > 0 and mine >= u + c * sd), q + int(sd > 0 and mine <= u - c * sd)
    assert (screen.loc["p3", "p"], screen.loc["p3", "q"]) == (p, q)


def test_models_equal_direct_statsmodels_and_recover_the_effect():
    import statsmodels.formula.api as smf
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    r = _ratings(np.random.default_rng(2), effect=1.0)
    mixed = rt.mixed_model(r).set_index("term")
    fit = smf.mixedlm("score ~ C(loss)", r.assign(group=1), groups="group", re_formula="0",
                      vc_formula={"participant": "0 + C(participant)", "image": "0 + C(image_id)"}).fit(reml=True)
    assert mixed.loc["C(loss)[T.ms_ssim]", "estimate"] == pytest.approx(fit.fe_params["C(loss)[T.ms_ssim]"], rel=1e-6)
    assert mixed.loc["C(loss)[T.ms_ssim]", "p"] < 0.01 and mixed.loc["C(loss)[T.ms_ssim]", "ci_low"] > 0
    assert mixed.loc["C(loss)[T.mse]", "ci_low"] < 0 < mixed.loc["C(loss)[T.mse]", "ci_high"]
    ordinal = rt.ordinal_model(r).set_index("term")
    exog = pd.get_dummies(r["loss"], dtype=float)[["ms_ssim", "mse"]]
    direct = OrderedModel(pd.Series(pd.Categorical(r["score"], ordered=True)), exog, distr="logit").fit(method="bfgs", disp=False)
    assert ordinal.loc["ms_ssim", "estimate"] == pytest.approx(direct.params["ms_ssim"], rel=1e-4)
    assert ordinal.loc["ms_ssim", "p"] < 0.01


def test_mixed_model_keeps_about_five_percent_false_positives_on_null_data():
    rng = np.random.default_rng(3)
    p = [rt.mixed_model(_ratings(rng, n_participants=8, n_images=6, losses=("mae", "mse"))).set_index("term")
         .loc["C(loss)[T.mse]", "p"] for _ in range(40)]
    rate = float(np.mean(np.array(p) < 0.05))
    assert rate <= 0.15, rate  # 40 null datasets: 5% expected, 0.15 is beyond the binomial 99th percentile


def _ordinal_ratings(rng, effects, n_participants=16, n_images=12, sd_p=0.7, sd_i=0.7, cuts=(-2.0, -0.7, 0.7, 2.0)):
    """Ratings from a cumulative logit with crossed random intercepts: clmm's own model, so `effects` is its truth."""
    bp, bi = rng.normal(0, sd_p, n_participants), rng.normal(0, sd_i, n_images)
    rows = []
    for p in range(n_participants):
        for i in range(n_images):
            for loss, effect in effects.items():
                latent = bp[p] + bi[i] + effect + rng.logistic(0, 1)
                rows.append({"participant": f"p{p}", "image_id": f"i{i}", "kind": "rating", "arch": "conv", "loss": loss,
                             "run": f"conv-{loss}-s0", "score": 1 + int(np.sum(latent > np.array(cuts))), "simulated": 1})
    return pd.DataFrame(rows, columns=rt.RATING_COLUMNS)


def _responses(ratings: pd.DataFrame) -> pd.DataFrame:
    """Rating trials as responses rows (the columns the kinds' tables read)."""
    return pd.DataFrame({"participant": ratings["participant"], "image_id": ratings["image_id"], "kind": ratings["kind"],
                         "arch": ratings["arch"], "pair": "", "left_loss": ratings["loss"], "left_run": ratings["run"],
                         "right_loss": "", "right_run": "", "answer": "", "choice": ratings["score"].astype(str),
                         "simulated": 1})


R_MISSING = "R with lme4 and ordinal is not installed (Debian: r-base-core r-cran-lme4 r-cran-ordinal)"


@pytest.mark.skipif(not rt.r_models_available(), reason=R_MISSING)
def test_lmer_agrees_with_mixedlm_on_simulated_ratings():
    r = _ratings(np.random.default_rng(2), effect=1.0)
    mixed = rt.mixed_model(r).set_index("term")
    fits = rt.r_models(r)
    lmer = fits[fits["model"] == "lmer"].set_index("term")
    assert list(lmer.index) == list(mixed.index)  # Intercept and the loss terms, named alike
    # The same REML model of the same data: the fixed effects agree to the optimisers' tolerance.
    assert np.allclose(lmer["estimate"], mixed["estimate"], atol=0.01), (lmer["estimate"], mixed["estimate"])
    assert np.allclose(lmer["se"], mixed["se"], rtol=0.05), (lmer["se"], mixed["se"])
    # The simulated truth: ms_ssim rated higher than mae, mse not different from mae.
    assert lmer.loc["C(loss)[T.ms_ssim]", "ci_low"] > 0 and lmer.loc["C(loss)[T.ms_ssim]", "p"] < 0.01
    assert lmer.loc["C(loss)[T.mse]", "ci_low"] < 0 < lmer.loc["C(loss)[T.mse]", "ci_high"]
    assert (lmer["n"] == len(r)).all() and lmer["note"].str.contains("sd participant=").all()


@pytest.mark.skipif(not rt.r_models_available(), reason=R_MISSING)
def test_clmm_recovers_the_simulated_truth_and_agrees_with_orderedmodel():
    truth = {"mae": 0.0, "ms_ssim": 1.2, "mse": -0.6}
    r = _ordinal_ratings(np.random.default_rng(7), truth)
    fits = rt.r_models(r)
    clmm = fits[fits["model"] == "clmm"].set_index("term")
    ordered = rt.ordinal_model(r).set_index("term")
    assert sorted(clmm.index) == sorted(ordered.index) == ["ms_ssim", "mse"]
    for loss in ("ms_ssim", "mse"):
        assert clmm.loc[loss, "ci_low"] < truth[loss] < clmm.loc[loss, "ci_high"], (loss, clmm.loc[loss])
        assert clmm.loc[loss, "p"] < 0.01
        # OrderedModel ignores the participant and image effects: same sign, attenuated towards 0 (population-averaged).
        ratio = ordered.loc[loss, "estimate"] / clmm.loc[loss, "estimate"]
        assert 0.5 < ratio <= 1.05, (loss, ratio)


@pytest.mark.skipif(not rt.r_models_available(), reason=R_MISSING)
def test_r_models_fit_each_kind_and_arch_and_analyze_kinds_writes_them(tmp_path):
    from analysis.kinds import analyze_kinds

    a = _ratings(np.random.default_rng(4), n_participants=6, n_images=5, effect=1.0)
    b = a.assign(arch="fc", score=np.clip(a["score"] + (a["loss"] == "mse"), 1, 5))
    fits = rt.r_models(pd.concat([a, b], ignore_index=True))
    assert set(zip(fits["arch"], fits["model"])) == {(x, m) for x in ("conv", "fc") for m in ("lmer", "clmm")}
    fc = fits[(fits["arch"] == "fc") & (fits["model"] == "lmer")].set_index("term")
    assert fc.loc["C(loss)[T.mse]", "estimate"] > fits[(fits["arch"] == "conv") & (fits["model"] == "lmer")].set_index(
        "term").loc["C(loss)[T.mse]", "estimate"]  # fc's mse was shifted up by one point
    analyze_kinds(_responses(a), tmp_path, n_boot=5, lme4=True)
    written = pd.read_csv(tmp_path / "ratings_models.csv")
    assert set(written["model"]) == {"mixedlm", "ordered_logit", "lmer", "clmm"}


def test_r_models_are_skipped_without_r_and_a_failing_rscript_is_one_line(monkeypatch, tmp_path):
    from percept.contracts import InputError

    monkeypatch.setattr(rt.shutil, "which", lambda name: None)
    assert rt.r_models_available() is False
    monkeypatch.setattr(rt.shutil, "which", lambda name: "/bin/false")  # an Rscript that fails
    with pytest.raises(InputError, match=r"^Rscript lmer/clmm on the ratings failed \(exit 1\): no message$"):
        rt.r_models(_ratings(np.random.default_rng(0)))
    monkeypatch.setattr(rt.shutil, "which", lambda name: str(tmp_path / "no" / "Rscript"))  # asked for, not there
    with pytest.raises(InputError, match=r"^Rscript lmer/clmm on the ratings could not run: .*No such file"):
        rt.r_models(_ratings(np.random.default_rng(0)))
    monkeypatch.setattr(rt.shutil, "which", lambda name: None)
    from analysis.kinds import analyze_kinds

    r = _ratings(np.random.default_rng(0), n_participants=4, n_images=4)
    analyze_kinds(_responses(r), tmp_path, n_boot=5)
    assert set(pd.read_csv(tmp_path / "ratings_models.csv")["model"]) == {"mixedlm", "ordered_logit"}


def test_metric_agreement_equals_direct_scipy_and_is_oriented():
    rng = np.random.default_rng(8)
    images, runs = [f"i{i}" for i in range(12)], ["conv-mae-s0", "conv-mse-s0", "conv-ms_ssim-s0"]
    q = pd.DataFrame([(im, run, rng.normal()) for im in images for run in runs], columns=["image_id", "run", "q"])
    manifest = q.assign(arch="conv", loss=q["run"].str.split("-").str[1], psnr=30 + 3 * q["q"], mse=np.exp(-q["q"]),
                        ms_ssim=-q["q"], ssim=rng.normal(size=len(q)), mae=0.1)
    # psnr agrees, mse agrees (lower is better), ms_ssim is reversed, ssim is noise, mae is constant
    rows = [{"participant": f"p{p}", "image_id": u.image_id, "kind": "rating", "arch": "conv", "loss": u.run.split("-")[1],
             "run": u.run, "score": int(np.clip(np.round(3 + u.q + rng.normal(0, 0.7)), 1, 5)), "simulated": 1}
            for p in range(8) for u in q.itertuples()]
    ratings = pd.DataFrame(rows, columns=rt.RATING_COLUMNS)
    table = rt.metric_agreement(ratings, manifest, n_boot=300, seed=0).set_index("metric")
    mos = ratings.groupby(["image_id", "run"])["score"].mean().rename("mos").reset_index().merge(manifest, on=["image_id", "run"])
    assert table.loc["psnr", "spearman"] == pytest.approx(stats.spearmanr(mos["psnr"], mos["mos"])[0])
    assert table.loc["psnr", "pearson"] == pytest.approx(stats.pearsonr(mos["psnr"], mos["mos"])[0])
    assert table.loc["mse", "spearman"] == pytest.approx(-stats.spearmanr(mos["mse"], mos["mos"])[0])  # lower is better: flipped
    assert table.loc["mse", "spearman"] == pytest.approx(table.loc["psnr", "spearman"])  # same order of the units
    for metric in ("psnr", "mse"):
        row = table.loc[metric]
        assert 0.5 < row["spearman_low"] < row["spearman"] < row["spearman_high"], row
    assert table.loc["ms_ssim", "spearman_high"] < 0  # a metric ordering the units backwards
    assert table.loc["ssim", "spearman_low"] < 0 < table.loc["ssim", "spearman_high"]  # noise: the CI covers 0
    assert np.isnan(table.loc["mae", "spearman"]) and np.isnan(table.loc["mae", "pearson_low"])  # constant: no correlation
    assert (table["n_units"].drop("mae") == 36).all() and (table["n_images"] == 12).all()


def _jnd(rng, p_diff):
    rows = []
    for loss, prob in p_diff.items():
        for i in range(6):
            for p in range(8):
                rows.append({"participant": f"p{p}", "image_id": f"i{i}", "arch": "conv", "loss": loss, "run": loss,
                             "different": int(rng.random() < prob), "original_first": p % 2, "simulated": 1})
    return pd.DataFrame(rows, columns=jn.TRIAL_COLUMNS)


def test_jnd_numbers_equal_direct_calls():
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(4)
    t = _jnd(rng, {"mse": 0.8, "ms_ssim": 0.3})
    same = pd.Series((rng.random(20) < 0.1).astype(int))
    s = jn.jnd_summary(t, same).set_index("loss")
    for loss, g in t.groupby("loss"):
        k, n = int(g["different"].sum()), len(g)
        low, high = proportion_confint(k, n, method="wilson")
        assert (s.loc[loss, "ci_low"], s.loc[loss, "ci_high"]) == pytest.approx((low, high))
        d = stats.norm.ppf((k + 0.5) / (n + 1)) - stats.norm.ppf((same.sum() + 0.5) / 21)
        assert s.loc[loss, "d_prime"] == pytest.approx(d)
        assert s.loc[loss, "d_ci_low"] < d < s.loc[loss, "d_ci_high"]
    assert s.loc["mse", "d_prime"] > s.loc["ms_ssim", "d_prime"]
    per = jn.per_image_tests(t, same)
    sub = per[per["loss"] == "mse"]
    assert sub["p_holm"].tolist() == pytest.approx(multipletests(sub["p"], method="holm")[1].tolist())
    assert sub["p_bh"].tolist() == pytest.approx(multipletests(sub["p"], method="fdr_bh")[1].tolist())


def test_jnd_per_image_tests_keep_about_five_percent_on_null_data():
    rng = np.random.default_rng(5)
    p = np.concatenate([jn.per_image_tests(_jnd(rng, {"mse": 0.2}), pd.Series([0] * 8 + [1] * 2))["p"]
                        .to_numpy() for _ in range(20)])  # truth: P(different) = 0.2 = the false-alarm rate
    assert np.mean(p < 0.05) <= 0.1


def test_analyze_recovers_a_known_preference_in_every_new_kind(tmp_path):
    from analysis.cli import analyze
    from analysis.report import report
    from study.design import DesignConfig, build_design
    from study.observers import ObserverConfig, simulate
    from test_study_support import make_manifest

    design = build_design(make_manifest(tmp_path, n_images=8), tmp_path,
                          DesignConfig(kinds=("pair", "rating", "rating_ref", "jnd"), pairs=(("mse", "ms_ssim"),),
                                       lists=1, practice=0, catch=0.1, seed=0))
    simulate(design, 8, config=ObserverConfig(observer="preference", target="ms_ssim", logit=2.0, lapse=0.0), seed=0)
    out = analyze(tmp_path / "study", n_boot=10, bayes=False, lme4=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kinds"]["present"] == sorted(summary["trials"]) and "pairs_pairwise.csv" in summary["kinds"]["files"]
    mos = pd.read_csv(out / "ratings_mos.csv")
    for kind, g in mos.groupby("kind"):
        g = g.set_index("loss")
        assert g.loc["ms_ssim", "ci_low"] > g.drop("ms_ssim")["ci_high"].max(), kind
    pw = pd.read_csv(out / "pairs_pairwise.csv").iloc[0]
    assert pw["loss_a"] == "mse" and pw["ci_high"] < 0.5  # ms_ssim preferred without reference too
    assert set(pd.read_csv(out / "pairs_agreement.csv")["metric"]) >= {"mse", "ms_ssim"}
    assert set(pd.read_csv(out / "ratings_agreement.csv")["kind"]) == {"rating", "rating_ref"}
    pm = pd.read_csv(out / "pairs_models.csv")
    assert (pm.loc[pm["estimator"] == "cluster_logit", "p"] < 0.05).all()
    j = pd.read_csv(out / "jnd.csv").set_index("loss")
    assert j.loc["ms_ssim", "ci_high"] < j.drop("ms_ssim")["ci_low"].min()
    assert summary["kinds"]["figures"] == ["jnd.png", "pairs.png", "ratings_mos.png"]
    assert all((out / "figures" / f).is_file() for f in summary["kinds"]["figures"])
    html = report(tmp_path).read_text()
    assert "Trial kinds run: " in html and "Ratings (ACR / DCR)" in html and "Same / different" in html
    assert "metric agreement" in html and "lmer/clmm cross-check was not run" in html  # lme4=False
    assert 'alt="MOS per loss"' in html and 'alt="proportion different"' in html
