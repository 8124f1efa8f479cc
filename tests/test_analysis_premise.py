"""The premise test: paired per-image differences, seeds averaged, flat baseline as a rival, yes/no/undecided."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import premise as pm
from percept.contracts import InputError


def manifest_rows(values: dict[str, np.ndarray], arch: str = "fc", n_photos: int = 1) -> pd.DataFrame:
    """Manifest-like rows: {run: per-image metric values}; mse/psnr/ssim/ms_ssim/mae all derived from one quality."""
    rows = []
    for run, q in values.items():
        flat = run == "flat"
        loss = "flat" if flat else pm.RUN_PATTERN.match(run)["loss"]
        for i, v in enumerate(q):
            mse = float(np.exp(-v))
            rows.append({"image_id": f"photos:test:p{i % n_photos}:{i:04d}", "run": run,
                         "arch": "baseline" if flat else arch, "loss": loss, "mse": mse, "mae": mse ** 0.5,
                         "psnr": -10 * np.log10(mse), "ssim": 1 - mse, "ms_ssim": 1 - mse})
    return pd.DataFrame(rows)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_paired_ci_equals_scipy_ttest(rng):
    d = rng.normal(0.3, 1.0, 25)
    mean, low, high, p = pm.paired_ci(d)
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(0.95)
    assert (mean, low, high, p) == pytest.approx((d.mean(), ci.low, ci.high, res.pvalue), rel=1e-12)
    # paired t on two samples is the one-sample t on their difference
    a, b = rng.normal(size=25), rng.normal(size=25)
    assert pm.paired_ci(a - b)[3] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_yes_when_the_model_beats_every_rival_and_the_flat_baseline(rng):
    n = 40
    base = rng.normal(3.0, 0.5, n)  # image difficulty shared by every model: pairing removes it
    man = manifest_rows({"fc-mse-s0": base + 0.5 + rng.normal(0, 0.05, n), "fc-mse-s1": base + 0.5 + rng.normal(0, 0.05, n),
                         "fc-ms_ssim-s0": base + rng.normal(0, 0.05, n), "fc-ms_ssim-s1": base + rng.normal(0, 0.05, n),
                         "flat": base - 1.0})
    t = pm.premise_table(man)
    mse = t[(t["loss"] == "mse") & (t["metric"] == "mse")]
    assert set(mse["rival"]) == {"ms_ssim", "flat"} and set(mse["rival_kind"]) == {"loss", "flat baseline"}
    assert (mse["answer"] == "yes").all() and (mse["n_seeds"] == 2).all() and (mse["ci_low"] > 0).all()
    # PSNR is checked alongside MSE
    assert (t[(t["loss"] == "mse") & (t["metric"] == "psnr")]["answer"] == "yes").all()
    # ms_ssim is worse on its own metric here (lower quality => lower ms_ssim): a clear no
    assert (t[t["loss"] == "ms_ssim"]["answer"] == "no").all()


def test_seeds_are_averaged_per_image_before_differencing(rng):
    n = 12
    a0, a1, b0 = (rng.normal(2, 0.3, n) for _ in range(3))
    man = manifest_rows({"fc-mse-s0": a0, "fc-mse-s1": a1, "fc-mae-s0": b0})
    row = pm.premise_table(man).query("loss == 'mse' and metric == 'mse' and rival == 'mae'").iloc[0]
    own = (np.exp(-a0) + np.exp(-a1)) / 2
    d = -(own - np.exp(-b0))  # mse: lower is better, so the sign flips
    res = stats.ttest_1samp(d, 0.0)
    assert row["mean_diff"] == pytest.approx(d.mean()) and row["p"] == pytest.approx(res.pvalue)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(res.confidence_interval()))
    assert row["n_seeds"] == 2 and row["n_seeds_rival"] == 1 and row["n_units"] == n


def test_undecided_when_a_rival_is_indistinguishable(rng):
    n = 30
    base = rng.normal(3, 0.5, n)
    man = manifest_rows({"fc-mse-s0": base + rng.normal(0, 0.3, n), "fc-mae-s0": base + rng.normal(0, 0.3, n),
                         "flat": base - 2})
    t = pm.premise_table(man)
    g = t[(t["loss"] == "mse") & (t["metric"] == "mse")].set_index("rival")
    assert g.loc["flat", "ci_low"] > 0 and g.loc["mae", "ci_low"] < 0 < g.loc["mae", "ci_high"]
    assert (g["answer"] == "undecided").all()
    assert pm.answer(g.reset_index()) == "undecided"


def test_answer_logic_on_constructed_intervals():
    def rows(*cis):
        return pd.DataFrame({"ci_low": [c[0] for c in cis], "ci_high": [c[1] for c in cis]})

    assert pm.answer(rows((0.1, 0.5), (0.01, 0.2))) == "yes"
    assert pm.answer(rows((0.1, 0.5), (-0.3, -0.01))) == "no"
    assert pm.answer(rows((0.1, 0.5), (-0.1, 0.2))) == "undecided"
    assert pm.answer(rows((-0.1, 0.5), (-0.3, -0.2))) == "no"  # one significantly better rival decides
    assert pm.answer(rows()) == "no rivals"


def test_degenerate_runs_are_left_out_and_flagged(rng):
    n = 20
    base = rng.normal(3, 0.5, n)
    man = manifest_rows({"fc-mse-s0": base + 1, "fc-ms_ssim-s0": base + 5, "fc-mae-s0": base, "flat": base - 1})
    man["degenerate"] = (man["run"] == "fc-ms_ssim-s0").astype(int)
    t = pm.premise_table(man)
    assert (t.loc[t["loss"] == "ms_ssim", "answer"] == "degenerate").all()
    mse = t[(t["loss"] == "mse") & (t["metric"] == "mse")]
    # the (better) degenerate run is no rival, so mse wins against mae and flat
    assert set(mse["rival"]) == {"mae", "flat"} and (mse["answer"] == "yes").all()
    assert mse["note"].str.contains("degenerate rival").all()
    assert pm.degenerate_runs(man) == {"fc-ms_ssim-s0"}
    assert pm.degenerate_runs(man.drop(columns="degenerate")) == set()
    man.loc[0, "degenerate"] = 2
    with pytest.raises(InputError, match="column 'degenerate'"):
        pm.degenerate_runs(man)


def test_source_unit_averages_patches_of_one_photograph(rng):
    n = 24
    base = rng.normal(3, 0.5, n)
    man = manifest_rows({"fc-mse-s0": base + 0.2 + rng.normal(0, 0.2, n), "fc-mae-s0": base}, n_photos=4)
    by_img = pm.premise_table(man, unit="image").query("loss == 'mse' and metric == 'mse'").iloc[0]
    by_src = pm.premise_table(man, unit="source").query("loss == 'mse' and metric == 'mse'").iloc[0]
    assert by_img["n_units"] == n and by_src["n_units"] == 4
    assert by_src["ci_high"] - by_src["ci_low"] > by_img["ci_high"] - by_img["ci_low"]
    assert pm.source_of("photos:test:chelsea:0003") == "photos:chelsea" and pm.source_of("stl10:test:00042") == "stl10:test:00042"
    with pytest.raises(InputError, match="premise unit"):
        pm.premise_table(man, unit="trial")


def test_verdicts_give_one_row_per_model_metric(rng):
    n = 20
    base = rng.normal(3, 0.5, n)
    man = manifest_rows({"fc-mse-s0": base + 1, "fc-mix-s0": base, "fc-vgg-s0": base, "flat": base - 1})
    v = pm.verdicts(pm.premise_table(man))
    # mix is judged on ms_ssim; vgg has no own metric and gets no row
    assert set(zip(v["loss"], v["metric"])) == {("mse", "mse"), ("mse", "psnr"), ("mix", "ms_ssim")}
    assert v.set_index(["loss", "metric"]).loc[("mse", "mse"), "answer"] == "yes"


def test_known_difference_is_recovered_by_the_interval():
    # MSE values set directly: the mse model is better than the mae model by exactly delta per image on average
    rng = np.random.default_rng(11)
    n, delta = 60, 0.004
    base = rng.uniform(0.01, 0.05, n)
    rows = []
    for run, shift in (("fc-mse-s0", 0.0), ("fc-mae-s0", delta)):
        for i, b in enumerate(base):
            mse = b + shift + rng.normal(0, 0.002)
            rows.append({"image_id": f"stl10:test:{i:05d}", "run": run, "arch": "fc", "loss": run.split("-")[1],
                         "mse": mse, "mae": 0.1, "psnr": -10 * np.log10(mse), "ssim": 0.5, "ms_ssim": 0.5})
    row = pm.premise_table(pd.DataFrame(rows)).query("loss == 'mse' and metric == 'mse'").iloc[0]
    assert row["ci_low"] < delta < row["ci_high"] and row["answer"] == "yes"
    assert row["mean_diff"] == pytest.approx(delta, abs=3 * 0.002 * np.sqrt(2 / n))
