"""Per-step costs outside the model in `percept train`'s loop: the pixel loss and the reconstruction check.

Run `PYTHONPATH=. .venv/bin/python benchmarks/step_costs.py`. Median milliseconds over `--repeats` calls on a
batch of 32 × 3 × 96 × 96 in one CPU thread, each variant measured in the same run as its peer:
- mse forward + backward: the plain formula `(x − y).square().mean()` (what the project had) against
  `autoencoders.losses` (the fused `F.mse_loss` it uses now; bit for bit the same loss and gradient);
- the per-step non-finite check of the reconstruction: `isfinite(r).all()` against `isfinite(r.sum())`.
"""
from __future__ import annotations

import argparse
import statistics
import time


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in milliseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    """Print a Markdown table of the variants and their ratio."""
    import torch

    from autoencoders.losses import get_loss, trusted_inputs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    r0 = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    ours = get_loss("mse")

    def plain() -> None:
        r = r0.clone().requires_grad_(True)
        (r - x).square().mean().backward()

    def fused() -> None:
        r = r0.clone().requires_grad_(True)
        with trusted_inputs():  # as in the training loop: no value check
            ours(r, x).backward()

    rows = [("mse forward + backward", "(x − y).square().mean()", median_ms(plain, args.repeats),
             "autoencoders.losses mse (F.mse_loss)", median_ms(fused, args.repeats)),
            ("reconstruction non-finite check", "isfinite(r).all()",
             median_ms(lambda: torch.isfinite(r0).all(), args.repeats),
             "isfinite(r.sum(dtype=float32))", median_ms(lambda: torch.isfinite(r0.sum(dtype=torch.float32)), args.repeats))]
    print("| step part | before | ms | now | ms | before / now |")
    print("|---|---|--:|---|--:|--:|")
    for what, a, ta, b, tb in rows:
        print(f"| {what} | `{a}` | {ta:.2f} | `{b}` | {tb:.2f} | {ta / tb:.1f}× |")
    print(f"\nbatch {args.batch} × 3 × {args.size} × {args.size}, float32, {args.threads} thread(s), "
          f"median of {args.repeats}; torch {torch.__version__}")


if __name__ == "__main__":
    main()
