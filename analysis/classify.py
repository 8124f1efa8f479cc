"""Linear classification of learned codes, the paper's downstream test of what the codes keep.

For each codes file `codes/<run>.npz` (percept/contracts/codes.py): a multinomial logistic
regression (scikit-learn, lbfgs) on standardised train codes, scored on the test codes, with a
Wilson 95% interval on test accuracy. Baselines: the same classifier on raw pixels of the same
images (from `--pixels`, else `pixels.npz` beside the codes folder as `percept encode` writes it, else
the originals the manifest lists when it lists every image), the
majority class of the train labels, and 1/K.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import InputError
from percept.contracts.codes import read_codes
from percept.contracts.pixels import read_pixels

COLUMNS = ["kind", "run", "arch", "loss", "n_train", "n_test", "dim", "n_classes", "accuracy", "ci_low", "ci_high",
           "note"]


@dataclass(frozen=True)
class Accuracy:
    """Test accuracy of one classifier with its Wilson 95% interval."""

    correct: int
    n_test: int
    accuracy: float
    ci_low: float
    ci_high: float


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
        return _accuracy(int((clf.predict(x_test) == y_test).sum()), len(y_test))


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
                   c: float = 1.0, max_iter: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Classification table: one row per run, the pixel baseline (or a note why not) and the chance lines."""
    codes_dir = Path(codes_dir)
    files = sorted(codes_dir.glob("*.npz")) if codes_dir.is_dir() else []
    if not files:
        raise InputError(f"{codes_dir}: no codes files (*.npz); run `percept encode` first")
    rows = []
    first = None
    for path in files:
        codes = read_codes(path)
        train, test = _split(path, codes)
        note = ""
        if first is None:
            first = (path, codes, train, test)
        elif not (np.array_equal(codes.image_ids, first[1].image_ids) and np.array_equal(codes.labels, first[1].labels)):
            note = f"images or labels differ from {first[0].name}: accuracies are not directly comparable"
        acc = fit_score(codes.codes[train], codes.labels[train], codes.codes[test], codes.labels[test], c=c,
                        max_iter=max_iter, seed=seed)
        rows.append({"kind": "codes", "run": codes.run, "arch": codes.arch, "loss": codes.loss,  # stored in the codes file
                     "n_train": int(train.sum()), "n_test": acc.n_test, "dim": codes.codes.shape[1],
                     "n_classes": len(np.unique(codes.labels[train])), "accuracy": acc.accuracy, "ci_low": acc.ci_low,
                     "ci_high": acc.ci_high, "note": note})
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
    if x is not None:
        acc = fit_score(x[train0], y_train, x[test0], y_test, c=c, max_iter=max_iter, seed=seed)
        rows.append({"kind": "pixels", **base, "dim": x.shape[1], "accuracy": acc.accuracy, "ci_low": acc.ci_low,
                     "ci_high": acc.ci_high, "note": note})
    else:
        rows.append({"kind": "pixels", **base, "dim": 0, "accuracy": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                     "note": f"pixel baseline skipped: {note}"})
    classes, counts = np.unique(y_train, return_counts=True)
    majority = classes[np.argmax(counts)]
    acc = _accuracy(int((y_test == majority).sum()), len(y_test))
    rows.append({"kind": "chance_majority", **base, "dim": 0, "accuracy": acc.accuracy, "ci_low": acc.ci_low,
                 "ci_high": acc.ci_high, "note": f"always the train majority class {int(majority)}"})
    k = len(classes)
    rows.append({"kind": "chance_uniform", **base, "dim": 0, "accuracy": 1.0 / k, "ci_low": np.nan, "ci_high": np.nan,
                 "note": f"1/K with K = {k} classes"})
    return pd.DataFrame(rows, columns=COLUMNS)
