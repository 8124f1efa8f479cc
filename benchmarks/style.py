"""Style transfer speed: Johnson's feed-forward network against L-BFGS optimisation (Gatys); run `python benchmarks/style.py`.

Prints, per device (CPU; CUDA too when present) and image size (256 and 512 px by default): frames
per second of the transformation network (`style apply`'s forward pass, `style.stylise`; median of
`--repeats` after two warm-up passes), the optimisation baseline's seconds per image
(`style optimize`'s `style.lbfgs_stylise`, `--steps` L-BFGS iterations from the content image),
their ratio (optimisation seconds × apply fps: how many images the network stylises in the time
L-BFGS takes for one), and the objective each reaches on the same content image. Both are measured
in the same run, one after the other, so the ratio holds under the machine's load at the time.

Johnson et al. report ~1000× faster at comparable loss with trained weights on a GPU. Without
`--model` (a trained `percept style train` run) the network is untrained, so its objective is
NOT comparable and only the speed columns mean anything; without `--vgg-weights` the objective
uses random VGG-16 weights (the same network shape, so the same cost): the objective columns are
then a smoke test and the table says so.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(device_name: str, sizes: list[int], steps: int, repeats: int, model_dir: str | None,
          vgg_weights: str | None) -> list[dict]:
    """One row per image size: fps of apply, seconds of optimise, objectives."""
    import torch
    from torchvision.models import vgg16

    from autoencoders import style

    device = torch.device(device_name)
    if not vgg_weights:
        # Random weights cost what real ones do; the 528 MB file lives only as long as this call.
        with tempfile.TemporaryDirectory(prefix="percept-vgg-") as tmp:
            torch.manual_seed(0)
            path = str(Path(tmp) / "vgg16_random.pth")
            torch.save(vgg16(weights=None).state_dict(), path)
            return bench(device_name, sizes, steps, repeats, model_dir, path)
    model = style.load_transformer(model_dir, device) if model_dir else style.build_transformer().to(device).eval()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for size in sizes:
        # A smooth random content image (upsampled noise) and a noise style image: the cost does not depend on content.
        content = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=gen), size=(size, size),
                                                  mode="bicubic").clamp(0, 1).to(device)
        style_img = torch.rand(1, 3, 256, 256, generator=gen).to(device)
        objective = style.StyleObjective(style_img, vgg_weights=vgg_weights, device=device)
        with torch.no_grad():
            for _ in range(2):
                style.stylise(model, content)
            _sync(device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = style.stylise(model, content)
                _sync(device)
                times.append(time.perf_counter() - t0)
            net_obj = float(objective.terms(out.clamp(0, 1), content)["loss"])  # as saved: clamped to [0, 1]
        fps = 1.0 / statistics.median(times)
        _, final, opt_seconds = style.lbfgs_stylise(objective, content, steps)
        rows.append({"device": device_name, "size": size, "apply_fps": fps, "optimize_s": opt_seconds,
                     "evaluations": final["evaluations"], "speedup": opt_seconds * fps, "apply_objective": net_obj,
                     "optimize_objective": final["loss"]})
    return rows


def main() -> None:
    """Parse flags, run, print a Markdown table."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--steps", type=int, default=100, help="L-BFGS iterations of the baseline")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--model", help="a trained style run folder (default: an untrained network, speed only)")
    p.add_argument("--vgg-weights", help="real VGG-16 weights (default: random ones; objectives are then a smoke test)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    vgg = "real VGG-16" if args.vgg_weights else "RANDOM VGG-16 (objectives: smoke test only)"
    net = "trained network" if args.model else "untrained network"
    print(f"| device | size | apply fps | optimize s/img ({args.steps} L-BFGS steps; evaluations) | optimize / apply | "
          f"apply objective ({net}) | optimize objective | VGG |")
    print("|---|--:|--:|--:|--:|--:|--:|---|")
    for d in devices:
        for r in bench(d, args.sizes, args.steps, args.repeats, args.model, args.vgg_weights):
            print(f"| {r['device']} | {r['size']} | {r['apply_fps']:.2f} | {r['optimize_s']:.1f} ({r['evaluations']}) | "
                  f"{r['speedup']:.1f}× | {r['apply_objective']:.4g} | {r['optimize_objective']:.4g} | {vgg} |", flush=True)
    print(f"\ntorch {torch.__version__}, {args.threads} CPU thread(s)"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA device"))
    if not args.model:
        print("Untrained network: the apply objective is not comparable; only the speed columns mean anything.")
    if not args.vgg_weights:
        print("Random VGG-16 weights: objective values are a smoke test; the speed ratio is real (same network cost).")


if __name__ == "__main__":
    main()
