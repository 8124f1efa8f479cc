"""Classification of codes: paired McNemar tests, intervals clustered by source photograph, flagged runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from ae_support import three_classes
from analysis import classify as cl
from percept.contracts.codes import write_codes
from percept.contracts.manifest import write_manifest


def test_cluster_bootstrap_equals_resampling_whole_sources_by_hand():
    rng = np.random.default_rng(3)
    hits = rng.integers(0, 2, 30)
    sources = np.repeat(["a", "b", "c", "d", "e"], [3, 9, 6, 8, 4])
    low, high = cl.cluster_bootstrap(hits, sources, n_boot=300, seed=5)
    # the same draws, done the slow way: concatenate the drawn sources' images and take the mean
    codes, uniques = pd.factorize(pd.Series(sources))
    draw = np.random.default_rng(5).integers(0, len(uniques), size=(300, len(uniques)))
    means = [np.concatenate([hits[codes == j] for j in d]).mean() for d in draw]
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    # paired differences: the same resampled sources for both columns
    other = rng.integers(0, 2, 30)
    low, high = cl.cluster_bootstrap(np.column_stack([hits, other]), sources, n_boot=300, seed=5)
    diffs = [np.concatenate([hits[codes == j] for j in d]).mean() - np.concatenate([other[codes == j] for j in d]).mean()
             for d in draw]
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def _photo_codes(tmp_path, degenerate_run: str | None = None):
    """Three 'photos' (label = photo) with 8 test patches each; one informative run, one noise, one collapsed."""
    rng = np.random.default_rng(0)
    ids, labels, splits = [], [], []
    for photo in range(3):
        for k in range(40):
            split = "test" if k < 8 else "train"
            ids.append(f"photos:{split}:ph{photo}:{k:04d}")
            labels.append(photo)
            splits.append(split)
    labels = np.array(labels)
    runs = {"fc-mse-s0": rng.normal(size=(120, 5)) + 2.5 * np.eye(3, 5)[labels],
            "fc-ms_ssim-s0": rng.normal(size=(120, 5)),
            "fc-mae-s0": np.ones((120, 5))}
    for run, codes in runs.items():
        write_codes(tmp_path / "codes" / f"{run}.npz", codes, labels, ids, np.array(splits))
    if degenerate_run:
        rows = [{"image_id": i, "split": s, "label": str(l), "original_path": "o.png", "run": r, "arch": "fc",
                 "loss": r.split("-")[1], "recon_path": "r.png", "mse": 0.1, "mae": 0.1, "psnr": 10.0, "ssim": 0.5,
                 "ms_ssim": 0.5, "degenerate": int(r == degenerate_run)}
                for i, s, l in zip(ids, splits, labels) if s == "test" for r in runs]
        write_manifest(pd.DataFrame(rows), tmp_path / "reconstructions" / "manifest.csv")
    return tmp_path / "codes"


def test_intervals_cluster_by_source_photograph_and_runs_are_flagged(tmp_path):
    table, pairs = cl.classification(_photo_codes(tmp_path, degenerate_run="fc-ms_ssim-s0"), n_boot=500)
    codes = table[table["kind"] == "codes"].set_index("run")
    assert (codes["n_sources"] == 3).all() and (codes["n_test"] == 24).all()
    assert (codes["ci_method"] == "cluster bootstrap by source (only 3 sources: rough)").all()
    assert codes.loc["fc-mae-s0", "flag"].startswith("collapsed codes")
    assert codes.loc["fc-ms_ssim-s0", "flag"] == "degenerate run (manifest)" and codes.loc["fc-mse-s0", "flag"] == ""
    # McNemar on the same test images equals statsmodels on the 2×2 table of the two runs' hits
    row = pairs[(pairs["run_a"] == "fc-ms_ssim-s0") & (pairs["run_b"] == "fc-mse-s0")].iloc[0]
    a, b = codes.loc["fc-ms_ssim-s0", "accuracy"], codes.loc["fc-mse-s0", "accuracy"]
    assert row["diff"] == pytest.approx(a - b) and row["ci_method"].startswith("paired cluster bootstrap by source")
    n11 = round(24 * a) - row["only_a_right"]
    n00 = 24 - n11 - row["only_a_right"] - row["only_b_right"]
    ref = mcnemar([[n11, row["only_a_right"]], [row["only_b_right"], n00]], exact=True).pvalue
    assert row["p_mcnemar"] == pytest.approx(ref)
    # every pair here shows a flagged run: none enters the Holm family
    assert len(pairs) == 3 and pairs["p_holm"].isna().all() and (pairs["flag"] != "").all()


def test_holm_across_unflagged_pairs_and_wilson_without_shared_sources(tmp_path):
    rng = np.random.default_rng(2)
    n = 90
    labels, ids, splits = three_classes(n, test_every=3, id_format="stl10:test:{:05d}")
    for run, scale in (("conv-mse-s0", 3.0), ("conv-mae-s0", 1.0), ("conv-ssim-s0", 0.0)):
        write_codes(tmp_path / "codes" / f"{run}.npz", rng.normal(size=(n, 4)) + scale * np.eye(3, 4)[labels],
                    labels, ids, splits)
    table, pairs = cl.classification(tmp_path / "codes", n_boot=200)
    assert (table.loc[table["kind"] == "codes", "ci_method"] == "wilson").all()
    assert (table["ci_low"].fillna(0) == table["wilson_low"].fillna(0)).all()
    assert len(pairs) == 3 and (pairs["ci_method"] == "paired bootstrap by image").all()
    assert pairs["p_holm"].to_numpy() == pytest.approx(multipletests(pairs["p_mcnemar"], method="holm")[1])
    best = pairs[(pairs["run_a"] == "conv-mse-s0") & (pairs["run_b"] == "conv-ssim-s0")].iloc[0]
    assert best["diff"] > 0.3 and best["ci_low"] > 0 and best["p_mcnemar"] < 0.01
