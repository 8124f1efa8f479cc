"""Forward+backward time of every registry loss against pytorch_msssim and piq; run `python benchmarks/losses.py`.

Prints one table per device (CPU with 2 threads; CUDA too when available): median wall time of
several repeats after warm-up, each peer's time as a multiple of ours, and the largest absolute
difference between our per-image values and theirs on the same batch.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Sequence


def _time(fn: Callable[[], object], device: str, repeats: int, warmup: int) -> float:
    """Median wall time of fn() in milliseconds after `warmup` untimed calls."""
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _pair(batch: int, size: int, device: str, seed: int = 0) -> tuple["torch.Tensor", "torch.Tensor"]:
    """A smooth random batch and a noisy copy of it, float32 in [0,1], shape (batch, 3, size, size)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, size // 4, size // 4, generator=gen)
    x = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x.to(device), y.to(device)


def bench_device(device: str, batch: int, size: int, repeats: int, warmup: int) -> list[dict[str, object]]:
    """Rows (name, ms, vs_ours, max_abs_diff, note) for one device."""
    import piq
    import pytorch_msssim
    import torch

    from autoencoders.losses import LOSS_NAMES, MS_SSIM_WEIGHTS, default_scales, get_loss, ms_ssim, ssim

    x, y = _pair(batch, size, device)
    recon = x.clone().requires_grad_(True)

    def fwd_bwd(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            recon.grad = None
            loss_fn(recon, y).backward()

        return run

    rows: list[dict[str, object]] = []
    ours: dict[str, float] = {}
    for name in LOSS_NAMES:
        loss = get_loss(name)
        ours[name] = _time(fwd_bwd(loss), device, repeats, warmup)
        rows.append({"name": f"ours {name}", "ms": ours[name], "vs": "", "diff": "", "note": ""})

    scales = default_scales(size, size)
    weights = MS_SSIM_WEIGHTS[:scales]
    piq_weights = torch.tensor(weights, device=device)  # piq renormalises them, as we do
    peers: list[tuple[str, str, Callable, Callable | None, str]] = [
        ("pytorch_msssim ssim", "ssim",
         lambda a, b: 1 - pytorch_msssim.ssim(a, b, data_range=1.0),
         lambda a, b: pytorch_msssim.ssim(a, b, data_range=1.0, size_average=False), "data_range=1.0"),
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
    ours_values = {
        "ssim": ssim(x, y, 1.0, reduction="none"),
        "ms_ssim": ms_ssim(x, y, 1.0, reduction="none"),
    }
    for label, kind, loss_fn, value_fn, note in peers:
        try:
            with torch.no_grad():
                theirs = value_fn(x, y)
            ms = _time(fwd_bwd(loss_fn), device, repeats, warmup)
        except (AssertionError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rows.append({"name": label, "ms": float("nan"), "vs": "", "diff": "", "note": f"refuses: {reason}"})
            continue
        diff = float((theirs.to(ours_values[kind].dtype) - ours_values[kind]).abs().max())
        rows.append({"name": label, "ms": ms, "vs": f"{ms / ours[kind]:.2f}x", "diff": f"{diff:.1e}", "note": note})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the benchmark tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--size", type=int, default=96, help="image side in px (default 96, STL-10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    devices = ["cpu"] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    print(f"forward+backward, {args.batch}x3x{args.size}x{args.size} float32, median of {args.repeats} "
          f"after {args.warmup} warm-up; torch {torch.__version__}; CPU threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        print(f"\n[{name}]")
        print(f"{'loss':<24} {'ms':>9} {'vs ours':>8} {'max|diff|':>10}  note")
        for row in bench_device(device, args.batch, args.size, args.repeats, args.warmup):
            print(f"{row['name']:<24} {row['ms']:>9.1f} {row['vs']:>8} {row['diff']:>10}  {row['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
