"""Style transfer speed: Johnson's feed-forward network against L-BFGS optimisation (Gatys); run `python benchmarks/style.py`.

Prints, per device (CPU; CUDA too when present) and image size (256 and 512 px by default):
frames per second of the transformation network (`style apply`'s forward pass, median of several
repeats after warm-up), the optimisation baseline's seconds per image for `--steps` L-BFGS
iterations, their ratio, and the objective each reaches on the same content image.

Johnson et al. report ~1000× faster at comparable loss with trained weights on a GPU. Without
`--model` (a trained `percept style train` run) the network is untrained, so its objective is
NOT comparable and only the speed columns mean anything; say so when quoting. Without
`--vgg-weights` real weights the objective uses random VGG-16 weights (a timing stand-in).
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
          vgg_weights: str | None, threads: int) -> list[dict]:
    """One row per image size: fps of apply, seconds of optimise, objectives."""
    import torch
    from torchvision.models import vgg16

    from autoencoders import style

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    tmp = Path(tempfile.mkdtemp())
    if not vgg_weights:
        torch.manual_seed(0)
        vgg_weights = str(tmp / "vgg16_random.pth")
        torch.save(vgg16(weights=None).state_dict(), vgg_weights)
    model = style.load_transformer(model_dir, device) if model_dir else style.build_transformer().to(device).eval()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for size in sizes:
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
            net_obj = float(objective.terms(out, content)["loss"])
        fps = 1.0 / statistics.median(times)
        img = content.clone().requires_grad_(True)
        with torch.no_grad():
            target = getattr(objective.vgg(content), objective.content_layer)
        opt = torch.optim.LBFGS([img], lr=1.0, max_iter=steps, history_size=50, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = objective.terms(img, content, target)["loss"]
            loss.backward()
            return loss

        t0 = time.perf_counter()
        opt.step(closure)
        _sync(device)
        opt_seconds = time.perf_counter() - t0
        with torch.no_grad():
            opt_obj = float(objective.terms(img, content, target)["loss"])
        rows.append({"device": device_name, "size": size, "apply_fps": fps, "optimize_s": opt_seconds,
                     "speedup": opt_seconds * fps, "apply_objective": net_obj, "optimize_objective": opt_obj})
    return rows


def main() -> None:
    """Parse flags, run, print a Markdown table."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--steps", type=int, default=100, help="L-BFGS iterations of the baseline")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", help="a trained style run folder (default: an untrained network, speed only)")
    p.add_argument("--vgg-weights", help="real VGG-16 weights (default: random ones, a timing stand-in)")
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("| device | size | apply fps | optimize s/img | optimize / apply | apply objective | optimize objective |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for d in devices:
        for r in bench(d, args.sizes, args.steps, args.repeats, args.model, args.vgg_weights, args.threads):
            print(f"| {r['device']} | {r['size']} | {r['apply_fps']:.2f} | {r['optimize_s']:.1f} | {r['speedup']:.0f}× | "
                  f"{r['apply_objective']:.4g} | {r['optimize_objective']:.4g} |")
    if not args.model:
        print("\nUntrained network: the apply objective is not comparable; only the speed columns mean anything.")
    if not args.vgg_weights:
        print("Random VGG-16 weights: objectives are a timing stand-in.")


if __name__ == "__main__":
    main()
