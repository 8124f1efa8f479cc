"""`percept demo`: the whole chain on the photos bundled with scikit-image, small and seeded.

train (fc, conv, vae × mse, mae, ms_ssim) → reconstruct + encode → design → simulated observers
→ analyze + classify → report. A second run with the same settings reuses every finished step;
with other settings (or --fresh) it says so and starts over, so old and new outputs never mix.
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from percept import commands
from percept.commands import Command
from percept.contracts import InputError
from percept.contracts.tables import atomic_write_json

STATE_FILE = "demo.json"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo chain; every default is chosen to finish in minutes on 2 CPU cores."""

    archs: tuple[str, ...] = ("fc", "conv", "vae")  # the paper's three architectures
    losses: tuple[str, ...] = ("mse", "mae", "ms_ssim")  # the paper's ranking triple
    epochs: int = 6  # 375 Adam steps: blurry but recognisable 96×96 reconstructions (configs/photos_small.toml)
    batch_size: int = 16  # at equal images seen, batch 16 reached ~1 dB more than batch 32 here
    width: float = 0.125  # conv channels 16/32/64, fc hidden 128: 20–30 s per run on 2 CPU cores
    seed: int = 0  # one seed per model; the study varies images, not seeds
    images: int = 24  # held-out images reconstructed and shown
    participants: int = 12  # simulated observers
    observer: str = "ms_ssim"  # simulated observers judge by MS-SSIM with noise
    noise: float = 0.5  # observer noise (SD on the decision scale)
    lists: int = 2  # participant lists that together cover every image × pair


def _call(module: str, argv: list[str]) -> None:
    """Run one pipeline step through the same entry point a user types."""
    code = importlib.import_module(module).main(argv)
    if code:
        raise InputError(f"step '{' '.join(argv[:1])}' failed with exit code {code}")


def steps(cfg: DemoConfig, out: Path) -> list[tuple[str, str, list[str]]]:
    """The chain as (name, module, argv) in order; names key the state file."""
    chain = []
    for arch in cfg.archs:
        for loss in cfg.losses:
            chain.append((f"train {arch}-{loss}", "autoencoders.cli", [
                "train", "--data", "photos", "--arch", arch, "--loss", loss, "--epochs", str(cfg.epochs),
                "--batch-size", str(cfg.batch_size), "--width", str(cfg.width), "--seed", str(cfg.seed), "--out", str(out),
                # a demo killed mid-training continues from the run's last checkpoint
                "--resume"]))
    study = out / "study"
    chain += [
        ("reconstruct", "autoencoders.cli", ["reconstruct", "--out", str(out), "--split", "test", "--n", str(cfg.images)]),
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
        from percept.contracts.analysis_outputs import read_summary

        for line in read_summary(out)["headline"]:
            print(f"  {line}")
    print(f"demo: report: {report.resolve()}")


@dataclass(frozen=True)
class DemoTarget:
    """Where the demo writes, and whether to start over."""

    out: Path = field(default=Path("runs/demo"), metadata={"help": "experiment folder of the demo"})
    fresh: bool = field(default=False, metadata={"help": "discard earlier demo outputs and start over"})


def run(target: DemoTarget, cfg: DemoConfig) -> int:
    """`percept demo`."""
    run_demo(target.out, cfg, fresh=target.fresh)
    return 0


COMMANDS = (Command("demo", (DemoTarget, DemoConfig), run,
                    description="Trains, exports, designs, simulates, analyses and reports in <out>; "
                                "a rerun with the same settings reuses finished steps."),)


def main(argv: list[str] | None = None) -> int:
    """`percept demo [--out runs/demo] [--fresh] [--epochs N] ...` (argv starts with `demo`)."""
    return commands.main(COMMANDS, argv, package="percept")
