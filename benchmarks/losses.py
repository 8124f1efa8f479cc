"""Forward+backward time of every registry loss against pytorch_msssim and piq; run `python benchmarks/losses.py`.

Prints one table per device (CPU with 2 threads; CUDA too when available): median wall time and
process CPU time of several repeats after warm-up, each peer's time as a multiple of ours, and
the largest absolute difference between our per-image values and theirs on the same batch.
The candidates are timed round-robin (one call of each per repeat), so a change in machine
load hits all of them alike. MS-SSIM uses the default number of scales for `--size` (3 at 96 px,
4 at 192 px); `--size 192 --scales 5` gives the standard five, the setting pytorch_msssim is
built for (it refuses 96 px with an 11-tap window).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch


def _pair(batch: int, size: int, device: str, seed: int = 0) -> tuple["torch.Tensor", "torch.Tensor"]:
    """A smooth random batch and a noisy copy of it, float32 in [0,1], shape (batch, 3, size, size)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, size // 4, size // 4, generator=gen)
    x = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x.to(device), y.to(device)


def _time_round_robin(
    fns: dict[str, Callable[[], object]], device: str, repeats: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """Median wall and process-CPU milliseconds of each fn, timed one call of each per round."""
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (1e3 * statistics.median(wall[name]), 1e3 * statistics.median(cpu[name])) for name in fns}


def bench_device(device: str, batch: int, size: int, repeats: int, warmup: int,
                 scales: int | None = None) -> list[dict[str, object]]:
    """Rows (name, ms, cpu, vs, cpu_vs, diff, note) for one device; peers' ratios are their time / ours."""
    import piq
    import pytorch_msssim
    import torch

    from autoencoders.losses import IMAGE_LOSS_NAMES, MS_SSIM_WEIGHTS, default_scales, get_loss, ms_ssim, ssim

    x, y = _pair(batch, size, device)
    recon = x.clone().requires_grad_(True)

    def fwd_bwd(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            recon.grad = None
            loss_fn(recon, y).backward()

        return run

    scales = default_scales(size, size) if scales is None else scales
    weights = MS_SSIM_WEIGHTS[:scales]
    piq_weights = torch.tensor(weights, device=device)  # piq renormalises them, as we do below 5 scales
    # (label, kind compared with, loss to time, per-image values, note)
    peers: list[tuple[str, str, Callable, Callable, str]] = [
        ("pytorch_msssim ssim", "ssim",
         lambda a, b: 1 - pytorch_msssim.ssim(a, b, data_range=1.0),
         lambda a, b: pytorch_msssim.ssim(a, b, data_range=1.0, size_average=False), "data_range=1.0 passed"),
        ("piq ssim", "ssim",
         lambda a, b: 1 - piq.ssim(a, b, data_range=1.0),
         lambda a, b: piq.ssim(a, b, data_range=1.0, reduction="none"), ""),
        ("piq ms_ssim", "ms_ssim",
         lambda a, b: 1 - piq.multi_scale_ssim(a, b, data_range=1.0, scale_weights=piq_weights),
         lambda a, b: piq.multi_scale_ssim(a, b, data_range=1.0, scale_weights=piq_weights, reduction="none"),
         f"{scales} scales"),
        ("pytorch_msssim ms_ssim", "ms_ssim",
         lambda a, b: 1 - pytorch_msssim.ms_ssim(a, b, data_range=1.0, weights=list(weights)),
         lambda a, b: pytorch_msssim.ms_ssim(a, b, data_range=1.0, weights=list(weights), size_average=False),
         f"{scales} scales"),
    ]
    ours_values = {"ssim": ssim(x, y, 1.0, reduction="none"),
                   "ms_ssim": ms_ssim(x, y, 1.0, scales=scales, reduction="none")}

    fns: dict[str, Callable[[], None]] = {
        f"ours {name}": fwd_bwd(get_loss(name, scales=scales) if name in ("ms_ssim", "mix") else get_loss(name))
        for name in IMAGE_LOSS_NAMES
    }
    diffs: dict[str, tuple[str, float]] = {}
    refused: dict[str, str] = {}
    for label, kind, loss_fn, value_fn, _ in peers:
        try:
            with torch.no_grad():
                theirs = value_fn(x, y)
        except (AssertionError, ValueError) as exc:  # a peer that refuses this size says so by asserting
            refused[label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        diffs[label] = (kind, float((theirs.to(ours_values[kind].dtype) - ours_values[kind]).abs().max()))
        fns[label] = fwd_bwd(loss_fn)
    times = _time_round_robin(fns, device, repeats, warmup)

    rows: list[dict[str, object]] = []
    for name in IMAGE_LOSS_NAMES:
        ms, cpu = times[f"ours {name}"]
        rows.append({"name": f"ours {name}", "ms": ms, "cpu": cpu, "vs": "", "cpu_vs": "", "diff": "", "note": ""})
    for label, kind, _, _, note in peers:
        if label in refused:
            rows.append({"name": label, "ms": float("nan"), "cpu": float("nan"), "vs": "", "cpu_vs": "", "diff": "",
                         "note": f"refuses: {refused[label]}"})
            continue
        ms, cpu = times[label]
        ours_ms, ours_cpu = times[f"ours {kind}"]
        rows.append({"name": label, "ms": ms, "cpu": cpu, "vs": f"{ms / ours_ms:.2f}x",
                     "cpu_vs": f"{cpu / ours_cpu:.2f}x", "diff": f"{diffs[label][1]:.1e}", "note": note})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the benchmark tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--size", type=int, default=96, help="image side in px (default 96, STL-10)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each candidate first")
    parser.add_argument("--scales", type=int, default=None,
                        help="MS-SSIM scales (default: autoencoders.losses.default_scales for --size)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    devices = ["cpu"] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    print(f"forward+backward, {args.batch}x3x{args.size}x{args.size} float32, median of {args.repeats} rounds "
          f"after {args.warmup} warm-up; torch {torch.__version__}; CPU threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f}; 'vs ours' = their time / our time")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        print(f"\n[{name}]")
        print(f"{'loss':<24} {'wall ms':>9} {'vs ours':>8} {'cpu ms':>9} {'vs ours':>8} {'max|diff|':>10}  note")
        for row in bench_device(device, args.batch, args.size, args.repeats, args.warmup, args.scales):
            print(f"{row['name']:<24} {row['ms']:>9.1f} {row['vs']:>8} {row['cpu']:>9.1f} {row['cpu_vs']:>8} "
                  f"{row['diff']:>10}  {row['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
