"""Which way does each model move colour? Mean CIELAB shift of reconstructions against their originals.

For every run of a reconstruction manifest (the main images), the per-image mean of recon − original in
L* (lightness), a* (green − / red +) and b* (blue − / yellow +), `skimage.color.rgb2lab` of the saved
8-bit PNGs, averaged over images with a t 95% CI across images. ΔE00 (in the manifest) says how far colour
is off; this says in which direction, and whether the shift is systematic (a CI that excludes 0) or
image-by-image scatter around the right colour. The flat baseline (each image's own mean RGB colour) comes
out near 0 on natural photos, though not exactly: CIELAB is not linear in RGB, so the Lab of the mean colour
is not the mean of the Lab values (on saturated synthetic blocks the gap is several units).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/colour_shift.py runs/demo/reconstructions/manifest.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def lab_of(path: Path) -> np.ndarray:
    """CIELAB (H, W, 3) of an 8-bit RGB PNG."""
    from PIL import Image
    from skimage.color import rgb2lab

    with Image.open(path) as im:
        return rgb2lab(np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0)


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and t 95% CI of the rows' mean (one value per image)."""
    from scipy import stats

    m = float(values.mean())
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return m, m - half, m + half


def shifts(manifest: Path) -> list[dict]:
    """One row per run: n images and the mean (CI) shift in L*, a*, b*, the mean ΔE00 and `degenerate`."""
    from percept.contracts.manifest import read_manifest

    df = read_manifest(manifest, check_files=True)
    df = df[df["use"] == "main"]
    root = manifest.parent
    originals: dict[str, np.ndarray] = {}
    rows = []
    for run, group in df.groupby("run", sort=True):
        per_image = []
        for r in group.itertuples():
            if r.original_path not in originals:
                originals[r.original_path] = lab_of(root / r.original_path).mean(axis=(0, 1))
            per_image.append(lab_of(root / r.recon_path).mean(axis=(0, 1)) - originals[r.original_path])
        d = np.array(per_image)
        rows.append({"run": run, "n": len(d), **{k: mean_ci(d[:, i]) for i, k in enumerate(("L", "a", "b"))},
                     "delta_e": float(group["delta_e"].mean()), "degenerate": bool(group["degenerate"].max())})
    return rows


def main() -> None:
    """Print the Markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest", type=Path, help="reconstructions/manifest.csv")
    args = p.parse_args()
    rows = shifts(args.manifest)
    fmt = lambda t: f"{t[0]:+.1f} [{t[1]:+.1f}, {t[2]:+.1f}]"  # noqa: E731
    print("| run | n | ΔL* [95% CI] | Δa* [95% CI] | Δb* [95% CI] | mean ΔE00 |")
    print("|---|--:|---|---|---|--:|")
    for r in rows:
        flag = " (degenerate)" if r["degenerate"] else ""
        print(f"| {r['run']}{flag} | {r['n']} | {fmt(r['L'])} | {fmt(r['a'])} | {fmt(r['b'])} | {r['delta_e']:.2f} |")
    print(f"\n{args.manifest}: recon − original, per-image CIELAB means (skimage rgb2lab of the PNGs), t 95% CI across images")


if __name__ == "__main__":
    main()
