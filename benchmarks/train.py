"""Training throughput of autoencoders.train's step loop against a plain PyTorch loop; run `python benchmarks/train.py`.

For each arch × loss (default conv+ms_ssim, conv+mse, fc+mse at 96×96, the paper's full width)
and device (CPU; CUDA too when present), two loops train the same model from the same seed on
the same synthetic uint8 images:

- reference: what one writes first in plain PyTorch: a DataLoader over the dataset (one item at
  a time, collated on the host), `float(loss)` and a finiteness check after every step, piq's
  MS-SSIM (3 scales at 96 px, the project's default weights), `F.mse_loss` or `F.l1_loss`, float32;
- fast: `autoencoders.train.TrainSteps`, the loop `percept train` runs: the images resident on the
  device as uint8 and gathered there, channels_last `auto` (NHWC on CUDA only), precision `auto` (bf16 autocast on CUDA,
  float32 on CPU), the project's MS-SSIM, finiteness checked once per epoch; for the first case
  also with `--precision bf16` on the CPU and with `torch.compile` on CUDA.

Each measurement runs in its own process (so peak memory is its own): a warm-up of `--warmup`
steps, then one epoch of `--steps` steps timed. Measurements alternate reference / fast and are
repeated (`--repeats`); the table keeps the best images/s of each, so a change in machine load
hits both alike. Peak memory: the process's peak resident set on the CPU (torch itself is
≈ 0.3 GB of it), `torch.cuda.max_memory_allocated` on CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ("conv:ms_ssim", "conv:mse", "fc:mse")
# Per device: batch size, timed steps, warm-up steps. CPU: small, the paper's model runs ~15 img/s a core.
DEFAULTS = {"cpu": (32, 6, 2), "cuda": (512, 60, 15)}


def synthetic_images(n: int, size: int, seed: int = 0):
    """n smooth random colour images, uint8 (n, 3, size, size): upsampled 12×12 noise (MS-SSIM sees structure)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, 3, size // 8, size // 8), dtype=np.uint8)
    return np.ascontiguousarray(small.repeat(8, axis=2).repeat(8, axis=3))


def _piq_ms_ssim_loss():
    """1 − piq's MS-SSIM with the project's 3-scale weights at 96 px (piq's own 5 scales refuse 96 px)."""
    import piq
    import torch

    from autoencoders.losses import MS_SSIM_WEIGHTS

    head = MS_SSIM_WEIGHTS[:3]
    weights = torch.tensor([w / sum(head) for w in head])

    def loss(recon, x):
        return 1 - piq.multi_scale_ssim(recon, x, data_range=1.0, kernel_size=11, scale_weights=weights.to(x.device))

    return loss


def _reference(case: dict, images, device):
    """The plain loop; returns (images trained in the timed epoch, seconds)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from autoencoders.data import ImageSet
    from autoencoders.models import VAEOutput, build_model

    torch.manual_seed(0)
    model = build_model(case["arch"], case["size"], 128, width=case["width"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    references = {"ms_ssim": _piq_ms_ssim_loss, "mse": lambda: F.mse_loss, "mae": lambda: F.l1_loss}
    if case["loss"] not in references:
        raise SystemExit(f"benchmark: loss {case['loss']!r} has no reference; use one of {', '.join(references)}")
    loss_fn = references[case["loss"]]()

    def epoch(data: np.ndarray) -> int:
        ds = ImageSet("bench", "train", data, np.full(len(data), -1), [str(i) for i in range(len(data))])
        loader = DataLoader(ds, batch_size=case["batch"], shuffle=True, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(0))
        n = 0
        for x, _, _ in loader:
            x = x.to(device, non_blocking=True)
            out = model(x)
            recon = out.recon if isinstance(out, VAEOutput) else out
            loss = loss_fn(recon, x)
            if isinstance(out, VAEOutput):
                loss = loss + out.kl() / x[0].numel()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()  # the per-step read-back of a plain loop (progress, NaN check)
            if not np.isfinite(value):
                raise SystemExit(f"reference loop: loss {value}")
            n += len(x)
        return n

    model.train()
    epoch(images[:case["batch"] * case["warmup"]])
    _sync(device)
    t0 = time.perf_counter()
    n = epoch(images)
    _sync(device)
    return n, time.perf_counter() - t0


def _fast(case: dict, images, device):
    """autoencoders.train's loop; returns (images trained in the timed epoch, seconds)."""
    import numpy as np
    import torch

    from autoencoders import train as tr
    from autoencoders.data import ImageSet
    from autoencoders.losses import get_loss
    from autoencoders.models import build_model

    cfg = tr.TrainConfig(arch=case["arch"], loss=case["loss"], batch_size=case["batch"], width=case["width"],
                         image_size=case["size"], device=device.type, precision=case["precision"],
                         compile=case["compile"], device_data="on", check_every=10**6,
                         progress=False)
    torch.manual_seed(0)
    model = build_model(cfg.arch, cfg.image_size, 128, width=cfg.width).to(device)
    if tr.use_channels_last(cfg.channels_last, device):  # what `percept train` does: auto = on CUDA only
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = get_loss(cfg.loss).to(device)

    def fail(message: str) -> None:
        raise SystemExit(f"fast loop: {message}")

    def steps(data: np.ndarray) -> tr.TrainSteps:
        ds = ImageSet("bench", "train", data, np.full(len(data), -1), [str(i) for i in range(len(data))])
        return tr.TrainSteps(cfg, model, optimizer, ds, device, tr.Dist(), torch.Generator().manual_seed(0))

    warm, timed = steps(images[:case["batch"] * case["warmup"]]), steps(images)
    warm.run_epoch(0, 0, loss_fn, 1.0, fail)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    timed.run_epoch(1, 0, loss_fn, 1.0, fail)  # ends with the epoch's one finiteness check: a full sync
    return len(images), time.perf_counter() - t0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child(case: dict) -> dict:
    """One measurement in this process; returns its row."""
    import torch

    torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    images = synthetic_images(case["batch"] * case["steps"], case["size"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    n, seconds = (_reference if case["loop"] == "reference" else _fast)(case, images, device)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {**case, "images": n, "seconds": seconds, "images_per_s": n / seconds, "peak_bytes": peak}


def measure(case: dict) -> dict:
    """Run `child(case)` in a fresh process (its own peak memory, its own threads)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(case["threads"]),
           "MKL_NUM_THREADS": str(case["threads"])}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed ({case['loop']} {case['arch']}+{case['loss']} on {case['device']}):\n"
                         f"{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def variants(device: str) -> list[tuple[str, str, bool]]:
    """(loop, precision, compile) to measure on a device; the first fast one is `percept train`'s default."""
    extra = [("fast", "bf16", False)] if device == "cpu" else [("fast", "auto", True)]
    return [("reference", "fp32", False), ("fast", "auto", False)] + extra


def table(rows: list[dict]) -> str:
    """Markdown: best images/s of each loop and its ratio to the reference's."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["device"], r["arch"], r["loss"], r["loop"], r["precision"], r["compile"])
        if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
            best[key] = r
    lines = ["| device | arch + loss | loop | images/s | × reference | peak memory |",
             "|--------|-------------|------|---------:|------------:|------------:|"]
    for key, r in best.items():
        ref = best[(r["device"], r["arch"], r["loss"], "reference", "fp32", False)]
        name = "reference (DataLoader, float(loss) per step, piq)" if r["loop"] == "reference" else \
            f"fast, precision {r['precision']}" + (", torch.compile" if r["compile"] else "")
        lines.append(f"| {r['device']} | {r['arch']} + {r['loss']} | {name} | {r['images_per_s']:.1f} | "
                     f"{r['images_per_s'] / ref['images_per_s']:.2f}× | {r['peak_bytes'] / 2**20:.0f} MiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every case on every device; print the table (and JSON rows with --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cpu, and cuda when present")
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help="arch:loss,... (losses ms_ssim, mse or mae)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per measurement")
    p.add_argument("--width", type=float, default=1.0, help="model width (1 = the paper's size)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, help="batch size (default: 32 on CPU, 512 on CUDA)")
    p.add_argument("--steps", type=int, help="timed steps (default: 6 on CPU, 60 on CUDA)")
    p.add_argument("--warmup", type=int, help="warm-up steps (default: 2 on CPU, 15 on CUDA)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats; the best of each is kept")
    p.add_argument("--no-extra", action="store_true", help="no bf16 (CPU) / torch.compile (CUDA) loop for the first case")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if not devices:
        raise SystemExit("benchmark: --device cuda but no CUDA device is available")
    rows = []
    for device in devices:
        batch, steps, warmup = DEFAULTS[device]
        for spec in args.cases.split(","):
            arch, loss = spec.split(":")
            extra = not args.no_extra and spec == args.cases.split(",")[0]  # the extra loops for the first case only
            todo = variants(device) if extra else variants(device)[:2]
            for _ in range(args.repeats):
                for loop, precision, compiled in todo:
                    case = {"device": device, "arch": arch, "loss": loss, "loop": loop, "precision": precision,
                            "compile": compiled, "threads": args.threads, "width": args.width, "size": args.size,
                            "batch": args.batch or batch, "steps": args.steps or steps, "warmup": args.warmup or warmup}
                    row = measure(case)
                    print(f"{device} {arch}+{loss} {loop} {precision}{' compile' if compiled else ''}: "
                          f"{row['images_per_s']:.1f} img/s, peak {row['peak_bytes'] / 2**20:.0f} MiB", flush=True)
                    rows.append(row)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
