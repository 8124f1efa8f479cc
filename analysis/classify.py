"""Linear classification of learned codes, the paper's downstream test of what the codes keep.

For each codes file `codes/<run>.npz` (percept/contracts/codes.py): a multinomial logistic
regression (scikit-learn, lbfgs) on standardised train codes, scored on the test codes. Baselines:
the same classifier on raw pixels of the same images (from `--pixels`, else `pixels.npz` beside the
codes folder as `percept encode` writes it, else the originals the manifest lists when it lists
every image), the majority class of the train labels, and 1/K.

Intervals respect the grouping of test images by source photograph (premise.source_of: the
patches `photos:<split>:<photo>:<k>` of one photograph form one cluster; an STL-10 or folder
image is its own): when there are fewer sources than test images, the 95% interval of an
accuracy is a cluster bootstrap over sources (`ci_method` = "cluster bootstrap by source"),
otherwise the Wilson interval. For the bundled photos the label is the photograph, so resampling
sources resamples classes.

Paired comparisons (`paired_comparisons`): every two runs of one architecture, scored on the same
test images, get McNemar's exact test on the discordant images (statsmodels; it treats images as
independent) and a paired cluster-bootstrap 95% CI of the accuracy difference (same resampled
sources for both runs), Holm-adjusted across the comparisons of unflagged runs. Runs are flagged
when the manifest marks them degenerate or when their codes do not vary across images (collapsed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import InputError
from percept.contracts.codes import read_codes
from percept.contracts.pixels import read_pixels

COLUMNS = ["kind", "run", "arch", "loss", "n_train", "n_test", "n_sources", "dim", "n_classes", "accuracy", "ci_low",
           "ci_high", "ci_method", "wilson_low", "wilson_high", "flag", "note"]
# Below this many clusters a percentile cluster bootstrap is known to undercover; the interval is marked rough.
FEW_SOURCES = 10
PAIR_COLUMNS = ["arch", "run_a", "run_b", "n_test", "n_sources", "accuracy_a", "accuracy_b", "diff", "ci_low", "ci_high",
                "ci_method", "only_a_right", "only_b_right", "p_mcnemar", "p_holm", "flag"]


@dataclass(frozen=True)
class Accuracy:
    """Test accuracy of one classifier with its Wilson 95% interval."""

    correct: int
    n_test: int
    accuracy: float
    ci_low: float
    ci_high: float
    hits: np.ndarray | None = field(default=None, repr=False, compare=False)  # per test image: 1 if right


def _accuracy(correct: int, n: int) -> Accuracy:
    from analysis.preferences import wilson_ci

    low, high = wilson_ci(correct, n)
    return Accuracy(int(correct), int(n), correct / n, float(low), float(high))


def fit_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, c: float = 1.0,
              max_iter: int = 1000, seed: int = 0) -> Accuracy:
    """Standardise on train, fit multinomial logistic regression, return test accuracy with its CI."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from threadpoolctl import threadpool_limits

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    # One BLAS/OpenMP thread: on a busy 2-core machine extra threads spin and made one fit 50x slower.
    with threadpool_limits(limits=1):
        clf.fit(x_train, y_train)
        hits = (clf.predict(x_test) == y_test).astype(int)
    acc = _accuracy(int(hits.sum()), len(y_test))
    return Accuracy(acc.correct, acc.n_test, acc.accuracy, acc.ci_low, acc.ci_high, hits)


def cluster_bootstrap(hits: np.ndarray, sources: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of the mean of `hits` (1-D, or 2-D rows = images for paired differences) resampling whole sources."""
    hits = np.asarray(hits, dtype=float)
    codes, _ = pd.factorize(pd.Series(sources))
    k = codes.max() + 1
    sums = np.zeros((k,) + hits.shape[1:])
    np.add.at(sums, codes, hits)
    counts = np.bincount(codes, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, k, size=(n_boot, k))
    weights = np.stack([np.bincount(d, minlength=k) for d in draw]).astype(float)  # (n_boot, k) times each source drawn
    stat = (weights @ sums.reshape(k, -1)) / (weights @ counts)[:, None]
    stat = stat[:, 0] - stat[:, 1] if stat.shape[1] == 2 else stat[:, 0]
    low, high = np.percentile(stat, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _interval(acc: Accuracy, sources: np.ndarray, n_boot: int, seed: int) -> dict:
    """The accuracy's reported interval: cluster bootstrap by source when images share sources, else Wilson."""
    k = len(set(sources))
    grouped = k < len(sources)
    low, high = cluster_bootstrap(acc.hits, sources, n_boot, seed) if grouped else (acc.ci_low, acc.ci_high)
    method = "cluster bootstrap by source" if grouped else "wilson"
    if grouped and k < FEW_SOURCES:
        method += f" (only {k} sources: rough)"
    return {"n_sources": k, "ci_low": low, "ci_high": high, "wilson_low": acc.ci_low,
            "wilson_high": acc.ci_high, "ci_method": method}


def collapsed(codes: np.ndarray) -> bool:
    """Whether codes barely vary across images (every dimension's SD below 1e-6 of its mean magnitude + 1e-8)."""
    sd = codes.std(axis=0)
    return bool(np.all(sd <= 1e-6 * np.abs(codes).mean(axis=0) + 1e-8))


def paired_comparisons(runs: dict[str, tuple[str, np.ndarray, str]], sources: np.ndarray, *, n_boot: int = 2000,
                       seed: int = 0) -> pd.DataFrame:
    """McNemar exact and a paired cluster-bootstrap CI for every two runs of one architecture: {run: (arch, hits, flag)}."""
    import itertools

    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.multitest import multipletests

    grouped = len(set(sources)) < len(sources)
    rows = []
    for a, b in itertools.combinations(sorted(runs), 2):
        (arch_a, ha, fa), (arch_b, hb, fb) = runs[a], runs[b]
        if arch_a != arch_b:
            continue
        table = [[int(np.sum((ha == 1) & (hb == 1))), int(np.sum((ha == 1) & (hb == 0)))],
                 [int(np.sum((ha == 0) & (hb == 1))), int(np.sum((ha == 0) & (hb == 0)))]]
        p = float(mcnemar(table, exact=True).pvalue)
        if grouped:
            low, high = cluster_bootstrap(np.column_stack([ha, hb]), sources, n_boot, seed)
            k = len(set(sources))
            method = "paired cluster bootstrap by source" + (f" (only {k} sources: rough)" if k < FEW_SOURCES else "")
        else:
            low, high = cluster_bootstrap(np.column_stack([ha, hb]), np.arange(len(ha)), n_boot, seed)
            method = "paired bootstrap by image"
        flag = "; ".join(f"{r}: {f}" for r, f in ((a, fa), (b, fb)) if f)
        rows.append({"arch": arch_a, "run_a": a, "run_b": b, "n_test": len(ha), "n_sources": len(set(sources)),
                     "accuracy_a": float(ha.mean()), "accuracy_b": float(hb.mean()),
                     "diff": float(ha.mean() - hb.mean()), "ci_low": low, "ci_high": high, "ci_method": method,
                     "only_a_right": table[0][1], "only_b_right": table[1][0], "p_mcnemar": p, "p_holm": np.nan,
                     "flag": flag})
    out = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    clean = out["flag"] == ""
    if clean.any():
        out.loc[clean, "p_holm"] = multipletests(out.loc[clean, "p_mcnemar"], method="holm")[1]
    return out


def _split(path: Path, codes) -> tuple[np.ndarray, np.ndarray]:
    labelled = codes.labels >= 0
    train = (codes.splits == "train") & labelled
    test = (codes.splits == "test") & labelled
    if not train.any() or not test.any():
        raise InputError(f"{path}: needs labelled 'train' and 'test' rows (splits present: "
                         f"{', '.join(sorted(set(codes.splits))) or 'none'}; labelled rows: {int(labelled.sum())})")
    if len(np.unique(codes.labels[train])) < 2:
        raise InputError(f"{path}: train codes hold a single class; classification needs at least two")
    return train, test


def pixels_from_manifest(manifest_path: Path, image_ids: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Originals of `image_ids` as N×D float32 in [0,1] when the manifest lists all of them; else (None, why)."""
    from PIL import Image

    from percept.contracts.manifest import read_manifest, resolve
    from percept.contracts.paths import check_png

    if not manifest_path.is_file():
        return None, f"no manifest at {manifest_path}"
    man = read_manifest(manifest_path).drop_duplicates("image_id").set_index("image_id")
    missing = [i for i in image_ids if i not in man.index]
    if missing:
        return None, (f"{len(missing)} of {len(image_ids)} coded images (e.g. {missing[0]}) have no original in "
                      f"{manifest_path}; pass --pixels for a pixel baseline")
    rows = []
    for iid in image_ids:
        check_png(resolve(manifest_path, man.loc[iid, "original_path"]))  # an intact 8-bit RGB PNG, nothing converted
        with Image.open(resolve(manifest_path, man.loc[iid, "original_path"])) as im:
            rows.append(np.asarray(im.convert("RGB"), dtype=np.float32).ravel() / 255.0)  # [0,1], data_range 1
    return np.stack(rows), ""


def classify_codes(codes_dir: str | Path, *, pixels: str | Path | None = None, manifest: str | Path | None = None,
                   c: float = 1.0, max_iter: int = 1000, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Classification table: one row per run, the pixel baseline (or a note why not) and the chance lines."""
    return classification(codes_dir, pixels=pixels, manifest=manifest, c=c, max_iter=max_iter, seed=seed,
                          n_boot=n_boot)[0]


def classification(codes_dir: str | Path, *, pixels: str | Path | None = None, manifest: str | Path | None = None,
                   c: float = 1.0, max_iter: int = 1000, seed: int = 0,
                   n_boot: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy table, paired comparisons between runs of each architecture on the same test images)."""
    from analysis.premise import degenerate_runs, source_of
    from percept.contracts.manifest import read_manifest

    codes_dir = Path(codes_dir)
    files = sorted(codes_dir.glob("*.npz")) if codes_dir.is_dir() else []
    if not files:
        raise InputError(f"{codes_dir}: no codes files (*.npz); run `percept encode` first")
    man_path = Path(manifest) if manifest else codes_dir.resolve().parent / "reconstructions" / "manifest.csv"
    degenerate = degenerate_runs(read_manifest(man_path)) if man_path.is_file() else set()
    rows = []
    first = None
    paired: dict[str, tuple[str, np.ndarray, str]] = {}
    for path in files:
        codes = read_codes(path)
        train, test = _split(path, codes)
        note = ""
        comparable = True
        if first is None:
            first = (path, codes, train, test)
        elif not (np.array_equal(codes.image_ids, first[1].image_ids) and np.array_equal(codes.labels, first[1].labels)):
            note = f"images or labels differ from {first[0].name}: accuracies are not directly comparable"
            comparable = False
        flags = (["degenerate run (manifest)"] if codes.run in degenerate else []) + \
                (["collapsed codes (no variation across images)"] if collapsed(codes.codes[test]) else [])
        acc = fit_score(codes.codes[train], codes.labels[train], codes.codes[test], codes.labels[test], c=c,
                        max_iter=max_iter, seed=seed)
        sources = np.array([source_of(i) for i in codes.image_ids[test]])
        if comparable:
            paired[codes.run] = (codes.arch, acc.hits, "; ".join(flags))
        rows.append({"kind": "codes", "run": codes.run, "arch": codes.arch, "loss": codes.loss,  # stored in the codes file
                     "n_train": int(train.sum()), "n_test": acc.n_test, "dim": codes.codes.shape[1],
                     "n_classes": len(np.unique(codes.labels[train])), "accuracy": acc.accuracy,
                     **_interval(acc, sources, n_boot, seed), "flag": "; ".join(flags), "note": note})
    path0, codes0, train0, test0 = first
    y_train, y_test = codes0.labels[train0], codes0.labels[test0]
    base = {"run": "", "arch": "", "loss": "", "n_train": int(train0.sum()), "n_test": int(test0.sum()),
            "n_classes": len(np.unique(y_train))}
    ids = codes0.image_ids
    if pixels is None and (codes_dir.parent / "pixels.npz").is_file():
        pixels = codes_dir.parent / "pixels.npz"  # written by `percept encode` beside codes/
    if pixels is not None:
        pix_ids, pix = read_pixels(pixels)
        where = {iid: i for i, iid in enumerate(pix_ids)}
        missing = [i for i in ids[train0 | test0] if i not in where]
        if missing:
            raise InputError(f"{pixels}: {len(missing)} coded images lack pixels (e.g. {missing[0]})")
        x, note = pix[[where[i] for i in ids]], f"pixels from {Path(pixels).name}"
    else:
        man_path = Path(manifest) if manifest else codes_dir.resolve().parent / "reconstructions" / "manifest.csv"
        needed = ids[train0 | test0]
        x_needed, why = pixels_from_manifest(man_path, needed)
        x, note = None, why
        if x_needed is not None:
            x = np.zeros((len(ids), x_needed.shape[1]), dtype=np.float32)
            x[train0 | test0] = x_needed
            note = "pixels of the manifest's originals"
    sources0 = np.array([source_of(i) for i in ids[test0]])
    if x is not None:
        acc = fit_score(x[train0], y_train, x[test0], y_test, c=c, max_iter=max_iter, seed=seed)
        rows.append({"kind": "pixels", **base, "dim": x.shape[1], "accuracy": acc.accuracy,
                     **_interval(acc, sources0, n_boot, seed), "flag": "", "note": note})
    else:
        rows.append({"kind": "pixels", **base, "dim": 0, "accuracy": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                     "note": f"pixel baseline skipped: {note}"})
    classes, counts = np.unique(y_train, return_counts=True)
    majority = classes[np.argmax(counts)]
    hits = (y_test == majority).astype(int)
    acc = _accuracy(int(hits.sum()), len(y_test))
    acc = Accuracy(acc.correct, acc.n_test, acc.accuracy, acc.ci_low, acc.ci_high, hits)
    rows.append({"kind": "chance_majority", **base, "dim": 0, "accuracy": acc.accuracy,
                 **_interval(acc, sources0, n_boot, seed), "flag": "",
                 "note": f"always the train majority class {int(majority)}"})
    k = len(classes)
    rows.append({"kind": "chance_uniform", **base, "dim": 0, "accuracy": 1.0 / k, "ci_low": np.nan, "ci_high": np.nan,
                 "note": f"1/K with K = {k} classes"})
    pairs = paired_comparisons(paired, sources0, n_boot=n_boot, seed=seed)
    return pd.DataFrame(rows, columns=COLUMNS), pairs
