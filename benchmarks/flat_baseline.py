"""Does every trained run beat a flat patch of each image's mean colour on its own metric?

For each finished run under `<out>/models/`, reconstruct the held-out images (the run's eval split,
all of them unless --n), score model and flat baseline per image, and print one Markdown row:
PSNR, MS-SSIM and mean CIEDE2000 (ΔE) of the model, the flat baseline's value of the run's own
metric, and the paired per-image difference model − flat on that metric with a t 95% CI
(Student t on the per-image differences; the images are the units). "beats" is yes when the CI
lies entirely on the better side of zero.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flat_baseline.py runs/demo [--n 64] [--csv out.csv]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Print the table for every finished run of an experiment folder."""
    import torch

    from autoencoders.data import load_dataset
    from autoencoders.export import finished_runs
    from autoencoders.train import flat_baseline, guard_from_outputs, load_model, output_spread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="experiment folder holding models/")
    parser.add_argument("--n", type=int, default=None, help="N held-out images spread evenly, as reconstruct --n picks them (default: all)")
    parser.add_argument("--csv", type=Path, help="also write the rows as CSV")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    cache: dict = {}
    for name, folder, record in finished_runs(args.out):
        cfg = record["config"]
        key = (cfg["data"], cfg["eval_split"], cfg["image_size"])
        if key not in cache:
            cache[key] = load_dataset(cfg["data"], cfg["eval_split"], root=cfg.get("data_root", "data"),
                                      image_size=cfg["image_size"], verify=False)
        data = cache[key]
        # --n picks images spread evenly over the split, as `percept reconstruct --n` does.
        idx = (np.arange(len(data)) if args.n is None else
               np.unique(np.linspace(0, len(data) - 1, min(args.n, len(data))).round().astype(int)))
        n = len(idx)
        x = data.tensor(idx)
        model = load_model(folder)
        with torch.no_grad():
            recon = torch.cat([model.reconstruct(x[i:i + 32]) for i in range(0, n, 32)]).clamp(0, 1)
        loss_fn = None
        if cfg["loss"] in ("mix", "vgg"):
            from autoencoders.losses import get_loss

            loss_fn = get_loss(cfg["loss"], **cfg.get("loss_options", {}))
        g = guard_from_outputs(recon, x, cfg["loss"], loss_fn)
        d = g["difference"]
        flat_row = {"psnr": g["flat"]["psnr"], "ms_ssim": g["flat"]["ms_ssim"], "delta_e": g["flat"]["delta_e"],
                    "ssim": g["flat"]["ssim"], "mse": g["flat"]["mse"], "mae": g["flat"]["mae"],
                    "spread": output_spread(flat_baseline(x)) / g["input_spread"]}
        rows.append({
            "run": name, "n": n, "psnr": g["model"]["psnr"], "ms_ssim": g["model"]["ms_ssim"],
            "delta_e": g["model"]["delta_e"], "metric": g["metric"], "model_metric": g["model"][g["metric"]],
            "flat_metric": g["flat"][g["metric"]], "diff": d["mean"], "ci_lo": d["ci95"][0], "ci_hi": d["ci95"][1],
            "beats": d["model_better"], "spread": g["output_spread"] / g["input_spread"],
            "seconds": _train_seconds(folder),
        })
    print("| run | PSNR dB | MS-SSIM | ΔE00 | own metric | model | flat | model − flat [95% CI] | beats flat | spread | train s |")
    print("|---|---:|---:|---:|---|---:|---:|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['psnr']:.2f} | {r['ms_ssim']:.3f} | {r['delta_e']:.2f} | {r['metric']} | "
              f"{r['model_metric']:.4g} | {r['flat_metric']:.4g} | {r['diff']:+.4g} [{r['ci_lo']:+.4g}, {r['ci_hi']:+.4g}] | "
              f"{r['beats']} | {r['spread']:.2f} | {r['seconds']:.0f} |")
    if rows:
        f = flat_row
        print(f"| flat patch (each image's mean colour) | {f['psnr']:.2f} | {f['ms_ssim']:.3f} | {f['delta_e']:.2f} | "
              f"ssim {f['ssim']:.3f}, mse {f['mse']:.4g}, mae {f['mae']:.4g} | | | | | {f['spread']:.2f} | |")
        print(f"\n{len(rows)} runs on n = {rows[0]['n']} held-out images; training time (epochs only, summed): "
              f"{sum(r['seconds'] for r in rows):.0f} s; spread = outputs' per-pixel SD across images / originals'")
    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)
    return 0 if all(r["beats"] == "yes" for r in rows) else 1


def _train_seconds(folder: Path) -> float:
    """Seconds spent in training epochs (metrics.csv train rows), 0 if unknown."""
    import pandas as pd

    path = folder / "metrics.csv"
    if not path.is_file():
        return 0.0
    m = pd.read_csv(path)
    return float(m.loc[m.split == m.split.iloc[0], "seconds"].sum())


if __name__ == "__main__":
    sys.exit(main())
