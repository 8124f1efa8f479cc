"""`percept demo`: the whole chain on the photos bundled with scikit-image, small and seeded.

train (fc, conv, vae × mse, mae, ms_ssim, and fc × ssim; two seeds each) → reconstruct + encode → design → simulated observers
→ analyze + classify → report. A second run with the same settings reuses every finished step;
with other settings (or --fresh) it says so and starts over, so old and new outputs never mix.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from percept.contracts import InputError
from percept.contracts.tables import atomic_write_json

STATE_FILE = "demo.json"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo chain; every default is chosen to finish in ≤ 10 minutes on 2 CPU cores."""

    archs: tuple[str, ...] = ("fc", "conv", "vae")  # the paper's three architectures
    losses: tuple[str, ...] = ("mse", "mae", "ms_ssim")  # the paper's ranking triple
    extra_runs: tuple[str, ...] = ("fc-ssim",)  # Snell's fc triplets compare SSIM with MSE
    seeds: tuple[int, ...] = (0, 1)  # two trainings per model: "best on its own metric" is checked over seeds
    epochs: int = 6  # 375 Adam steps: blurry but recognisable 96×96 reconstructions (configs/photos_small.toml)
    warmup_epochs: int = 1  # the first epoch trains with MSE: keeps fc + (MS-)SSIM from collapsing (README)
    batch_size: int = 16  # at equal images seen, batch 16 reached ~1 dB more than batch 32 here
    lr: float = 1e-3  # Adam; stable for every arch × loss pair at this batch size
    width: float = 0.125  # conv channels 16/32/64, fc hidden 128
    code_size: int = 128  # the paper's "128 hidden units"
    seed: int = 0  # seeds the design and the simulated observers
    images: int = 24  # held-out images reconstructed and shown
    spares: int = 4  # extra held-out images reserved for practice trials
    participants: int = 12  # simulated observers
    observer: str = "haarpsi"  # judge by HaarPSI, a colour-aware metric no model is trained on (not circular)
    noise: float = 0.5  # observer noise (SD on the decision scale)
    lists: int = 2  # participant lists that together cover every image × pair

    def runs(self) -> list[tuple[str, str, int]]:
        """(arch, loss, seed) of every training, seeds outermost so a cut-short demo has whole seeds."""
        pairs = [(a, l) for a in self.archs for l in self.losses]
        for extra in self.extra_runs:
            arch, _, loss = extra.partition("-")
            if not loss:
                raise InputError(f"demo extra run {extra!r} is not '<arch>-<loss>'")
            if (arch, loss) not in pairs:
                pairs.append((arch, loss))
        return [(a, l, s) for s in self.seeds for a, l in pairs]


def _call(module: str, argv: list[str]) -> None:
    """Run one pipeline step through the same entry point a user types."""
    code = importlib.import_module(module).main(argv)
    if code:
        raise InputError(f"step '{' '.join(argv[:1])}' failed with exit code {code}")


def steps(cfg: DemoConfig, out: Path) -> list[tuple[str, str, list[str]]]:
    """The chain as (name, module, argv) in order; names key the state file."""
    chain = []
    for arch, loss, seed in cfg.runs():
        chain.append((f"train {arch}-{loss}-s{seed}", "autoencoders.cli", [
            "train", "--data", "photos", "--arch", arch, "--loss", loss, "--epochs", str(cfg.epochs),
            "--warmup-epochs", str(cfg.warmup_epochs), "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr),
            "--width", str(cfg.width), "--code-size", str(cfg.code_size), "--seed", str(seed), "--out", str(out),
            # a demo killed mid-training continues from the run's last checkpoint
            "--resume"]))
    study = out / "study"
    chain += [
        ("reconstruct", "autoencoders.cli", ["reconstruct", "--out", str(out), "--split", "test", "--n", str(cfg.images),
                                             "--spares", str(cfg.spares)]),
        ("encode", "autoencoders.cli", ["encode", "--out", str(out)]),
        ("design", "study.cli", ["design", "--manifest", str(out / "reconstructions" / "manifest.csv"), "--out", str(out),
                                 "--lists", str(cfg.lists), "--seed", str(cfg.seed)]),
        ("simulate", "study.cli", ["simulate", "--design", str(study / "design.csv"), "--participants", str(cfg.participants),
                                   "--observer", cfg.observer, "--noise", str(cfg.noise), "--seed", str(cfg.seed)]),
        ("analyze", "analysis.cli", ["analyze", "--study", str(study)]),
        ("classify", "analysis.cli", ["classify", "--codes", str(out / "codes")]),
        ("report", "analysis.cli", ["report", "--out", str(out)]),
    ]
    return chain


def _load_state(out: Path) -> dict | None:
    path = out / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _save_state(out: Path, state: dict) -> None:
    atomic_write_json(out / STATE_FILE, state)


def prepare(out: Path, cfg: DemoConfig, fresh: bool) -> dict:
    """Decide what to reuse: same settings keep finished steps; anything else starts over, loudly."""
    wanted = json.loads(json.dumps(asdict(cfg)))  # as stored: tuples become lists
    state = _load_state(out)
    if out.exists() and any(out.iterdir()):
        if state is None:
            raise InputError(f"{out} exists and was not made by `percept demo`; choose another --out")
        if fresh or state.get("config") != wanted:
            why = "--fresh given" if fresh else "settings changed"
            print(f"demo: {why}: overwriting the previous demo outputs in {out}")
            shutil.rmtree(out)
            state = None
    out.mkdir(parents=True, exist_ok=True)
    state = state or {"config": wanted, "done": []}
    _save_state(out, state)
    return state


def run_demo(out: Path, cfg: DemoConfig, fresh: bool = False) -> Path:
    """Run (or resume) the chain; return the report's path."""
    state = prepare(out, cfg, fresh)
    timings = {}
    chain = steps(cfg, out)
    # A step reruns when it, or any step before it, is not recorded as done.
    done_prefix = 0
    for name, _, _ in chain:
        if name not in state["done"]:
            break
        done_prefix += 1
    state["done"] = state["done"][:done_prefix]
    for i, (name, module, argv) in enumerate(chain):
        if i < done_prefix:
            print(f"demo: [{i + 1}/{len(chain)}] {name}: reusing finished outputs")
            continue
        print(f"demo: [{i + 1}/{len(chain)}] {name}", flush=True)
        t0 = time.perf_counter()
        _call(module, argv)
        timings[name] = round(time.perf_counter() - t0, 1)
        state["done"].append(name)
        state.setdefault("seconds", {})[name] = timings[name]
        _save_state(out, state)
    report = out / "analysis" / "report.html"
    _print_summary(out, report, state)
    return report


def _print_summary(out: Path, report: Path, state: dict) -> None:
    total = sum(state.get("seconds", {}).values())
    print(f"\ndemo: finished; step times add up to {total:.0f} s (this and earlier runs)")
    summary = out / "analysis" / "summary.json"
    if summary.is_file():
        for line in json.loads(summary.read_text()).get("headline", []):
            print(f"  {line}")
    print(f"demo: report: {report.resolve()}")


def main(argv: list[str] | None = None) -> int:
    """`percept demo [--out runs/demo] [--fresh] [--epochs N] ...`."""
    parser = argparse.ArgumentParser(prog="percept demo", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["demo"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier demo outputs and start over")
    defaults = DemoConfig()
    for field in ("epochs", "images", "participants", "lists", "seed"):
        parser.add_argument(f"--{field}", type=int, default=getattr(defaults, field))
    parser.add_argument("--width", type=float, default=defaults.width)
    args = parser.parse_args(argv)
    cfg = DemoConfig(epochs=args.epochs, images=args.images, participants=args.participants,
                     lists=args.lists, seed=args.seed, width=args.width)
    run_demo(args.out, cfg, fresh=args.fresh)
    return 0
