"""`percept demo`: the whole chain on the photos bundled with scikit-image, small and seeded.

train (fc, conv, vae × mse, mae, ms_ssim, and fc × ssim; two seeds each) → reconstruct + encode → design → simulated observers
→ analyze + classify → report. Then the super-resolution stage in its own experiment folder
`<out>/sr` (its own reconstructions/manifest.csv, study and report; the autoencoders' are never
touched): `superres train` with mse and with ms_ssim at ×4 → `superres export` (those two and
bicubic) → design → simulated observers → analyze → report. A second run with the same settings
reuses every finished step; with other settings (or --fresh) it says so and starts over, so old
and new outputs never mix.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from percept import commands
from percept.commands import Command
from percept.contracts import InputError
from percept.contracts.tables import atomic_write_json

STATE_FILE = "demo.json"
SR_DIR = "sr"  # the super-resolution stage's experiment folder inside the demo's
SR_LOSSES = ("mse", "ms_ssim")  # pixel vs MS-SSIM; the export adds bicubic as the baseline run
SR_PREFIX = "superres "  # step names of the super-resolution stage


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
    width: float = 0.125  # conv channels 16/32/64, fc hidden 128
    seed: int = 0  # seeds the design and the simulated observers
    images: int = 24  # held-out images reconstructed and shown
    spares: int = 4  # extra held-out images reserved for practice trials
    participants: int = 12  # simulated observers
    observer: str = "haarpsi"  # judge by HaarPSI, a colour-aware metric no model is trained on (not circular)
    noise: float = 0.5  # observer noise (SD on the decision scale)
    lists: int = 2  # participant lists that together cover every image × pair
    superres: bool = True  # the ×4 super-resolution stage (pixel vs MS-SSIM vs bicubic) in <out>/sr: ~30 s
    sr_epochs: int = 3  # super-resolution training epochs on 48 px crops (autoencoders.superres.DEMO_SETTINGS)

    def runs(self) -> list[tuple[str, str, int]]:
        """(arch, loss, seed) of every training, seeds outermost so a cut-short demo has whole seeds (as `percept grid`)."""
        from autoencoders.grid import expand

        return expand(self.archs, self.losses, self.seeds, self.extra_runs)


def _call(module: str, argv: list[str]) -> None:
    """Run one pipeline step through the same entry point a user types."""
    code = importlib.import_module(module).main(argv)
    if code:
        raise InputError(f"step '{' '.join(argv[:1])}' failed with exit code {code}")


def steps(cfg: DemoConfig, out: Path) -> list[tuple[str, str, list[str]]]:
    """The chain as (name, module, argv) in order; names key the state file."""
    chain = []
    for arch, loss, seed in cfg.runs():
        # Each training is a one-run `percept grid`: a finished run is checked and skipped, a killed one
        # resumes from its last checkpoint, and `percept grid --status` sees the one in training.
        chain.append((f"train {arch}-{loss}-s{seed}", "autoencoders.cli", [
            "grid", "--data", "photos", "--archs", arch, "--losses", loss, "--seeds", str(seed),
            "--epochs", str(cfg.epochs), "--warmup-epochs", str(cfg.warmup_epochs), "--batch-size", str(cfg.batch_size),
            "--width", str(cfg.width), "--out", str(out), "--no-reconstruct", "--no-encode"]))
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
    if cfg.superres:
        chain += sr_steps(cfg, out / SR_DIR)
    return chain


def sr_steps(cfg: DemoConfig, sr: Path) -> list[tuple[str, str, list[str]]]:
    """The super-resolution stage in the experiment folder `sr`: two trainings, export, design, simulate, analyze, report."""
    from autoencoders.superres import DEMO_SETTINGS  # the settings measured for this stage (docs/perceptual.md)

    settings = {**DEMO_SETTINGS, "epochs": cfg.sr_epochs}
    flags = [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    chain = [(f"{SR_PREFIX}train {loss}", "autoencoders.cli",
              ["superres", "train", "--data", "photos", "--loss", loss, *flags, "--seed", str(cfg.seeds[0]),
               "--out", str(sr), "--resume"]) for loss in SR_LOSSES]
    study = sr / "study"
    losses = (*SR_LOSSES, "bicubic")
    chain += [
        (f"{SR_PREFIX}export", "autoencoders.cli", ["superres", "export", "--out", str(sr), "--n", str(cfg.images),
                                                    "--spares", str(cfg.spares)]),
        # Every pair of the three and their ranking; practice trials on the export's spare images.
        (f"{SR_PREFIX}design", "study.cli", ["design", "--manifest", str(sr / "reconstructions" / "manifest.csv"),
                                             "--out", str(sr), "--lists", str(cfg.lists), "--seed", str(cfg.seed),
                                             "--pairs", ",".join(f"{a}:{b}" for i, a in enumerate(losses) for b in losses[i + 1:]),
                                             "--ranking-losses", ",".join(losses)]),
        (f"{SR_PREFIX}simulate", "study.cli", ["simulate", "--design", str(study / "design.csv"),
                                               "--participants", str(cfg.participants), "--observer", cfg.observer,
                                               "--noise", str(cfg.noise), "--seed", str(cfg.seed)]),
        (f"{SR_PREFIX}analyze", "analysis.cli", ["analyze", "--study", str(study)]),
        (f"{SR_PREFIX}report", "analysis.cli", ["report", "--out", str(sr)]),
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
    """Decide what to reuse: same settings keep intact steps; anything else starts over, loudly, never over people's data."""
    from percept.contracts.staging import human_response_files

    wanted = json.loads(json.dumps(asdict(cfg)))  # as stored: tuples become lists
    for leftover in out.parent.glob(f".{out.name}.discard-*"):  # a crash while discarding an old demo
        if not human_response_files(leftover):
            shutil.rmtree(leftover)
    state = _load_state(out)
    if out.exists() and any(out.iterdir()):
        if state is None:
            raise InputError(f"{out} exists and was not made by `percept demo`; choose another --out")
        if fresh or state.get("config") != wanted:
            why = "--fresh given" if fresh else "settings changed"
            people = human_response_files(out)
            if people:
                n = sum(f.suffix == ".csv" for f in people) or len(people)  # a CSV and its record are one file
                raise InputError(f"{out}: {why}, but it holds {n} response file(s) of people "
                                 f"(e.g. {people[0]}); starting over would delete them; use another --out")
            print(f"demo: {why}: overwriting the previous demo outputs in {out} (derived and simulated files only)")
            _discard(out)
            state = None
    out.mkdir(parents=True, exist_ok=True)
    state = state or {"config": wanted, "done": []}
    _save_state(out, state)
    return state


def _discard(out: Path) -> None:
    """Remove a previous demo folder: renamed aside first, so a crash never leaves half of one under `out`."""
    aside = out.parent / f".{out.name}.discard-{os.getpid()}"
    os.rename(out, aside)
    shutil.rmtree(aside)


def _intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    """Whether a step's outputs exist and their contract readers accept them (not merely recorded as done)."""
    from percept.contracts import ContractError

    checks = {"reconstruct": _recon_intact, "encode": _codes_intact, "design": _design_intact,
              "simulate": _responses_intact, "analyze": _analysis_intact, "classify": _classify_intact,
              "report": _report_intact}
    train_check = _run_intact
    if name.startswith(SR_PREFIX):  # the same checks, in the super-resolution experiment folder
        name, out, train_check = name[len(SR_PREFIX):], out / SR_DIR, _sr_run_intact
        checks = {"export": _recon_intact, "design": _design_intact, "simulate": _responses_intact,
                  "analyze": _analysis_intact, "report": _report_intact}
    if name.startswith("train "):
        check = train_check
    elif name in checks:
        check = checks[name]
    else:
        return False  # a step this function cannot check is redone rather than trusted
    try:
        return bool(check(name, out, cfg))
    except (ContractError, InputError, OSError, ValueError, KeyError, TypeError):
        return False


def _run_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    return _finished(out / "models" / name.split(" ", 1)[1])  # "train fc-mse-s0" → models/fc-mse-s0


def _sr_run_intact(name: str, sr: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.run import sr_run_name

    from autoencoders.superres import DEMO_SETTINGS

    return _finished(sr / "superres" / sr_run_name(DEMO_SETTINGS["scale"], name.split(" ", 1)[1], cfg.seeds[0]))


def _finished(run: Path) -> bool:
    record = json.loads((run / "config.json").read_text())
    return record.get("status") == "finished" and (run / "checkpoint.pt").stat().st_size > 0


def _recon_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.manifest import read_manifest

    return len(read_manifest(out / "reconstructions" / "manifest.csv", check_files=True)) > 0


def _codes_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.codes import read_codes
    from percept.contracts.pixels import read_pixels

    files = sorted((out / "codes").glob("*.npz"))
    for f in files:
        read_codes(f)
    read_pixels(out / "pixels.npz")
    return len(files) == len(cfg.runs())  # one codes file per training: every seed and extra run


def _design_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.design import read_design, read_design_meta

    read_design_meta(out / "study" / "design.json")
    return len(read_design(out / "study" / "design.csv", check_files=True)) > 0


def _responses_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.responses import read_responses, read_session

    files = sorted((out / "study" / "responses").glob("*.csv"))
    for f in files:
        read_responses(f)
        read_session(f.with_suffix(".json"))
    return len(files) == cfg.participants


def _analysis_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.tables import read_json

    summary = read_json(out / "analysis" / "summary.json", "no analysis summary")
    return isinstance(summary, dict) and all((out / "analysis" / f).is_file() for f in ("pairwise.csv", "models.csv"))


def _classify_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    from percept.contracts.tables import read_csv_checked

    return len(read_csv_checked(out / "analysis" / "classification.csv", ())) > 0


def _report_intact(name: str, out: Path, cfg: DemoConfig) -> bool:
    return b"</html>" in (out / "analysis" / "report.html").read_bytes()[-200:]


def run_demo(out: Path, cfg: DemoConfig, fresh: bool = False) -> Path:
    """Run (or resume) the chain; return the report's path."""
    state = prepare(out, cfg, fresh)
    timings = {}
    chain = steps(cfg, out)
    # A step reruns when it, or any step before it, is not recorded as done or its outputs are not intact.
    done_prefix = 0
    for name, _, _ in chain:
        if name not in state["done"]:
            break
        if not _intact(name, out, cfg):
            print(f"demo: {name}: recorded as done but its outputs are missing or damaged; redoing it and what follows")
            break
        done_prefix += 1
    state["done"] = state["done"][:done_prefix]
    for i, (name, module, argv) in enumerate(chain):
        if i < done_prefix:
            print(f"demo: [{i + 1}/{len(chain)}] {name}: reusing finished outputs")
            continue
        print(f"demo: [{i + 1}/{len(chain)}] {name}", flush=True)
        if argv[0] in ("reconstruct", "design") or argv[:2] == ["superres", "export"]:
            # Everything after this step is redone too and the demo folder holds no people's data
            # (prepare refuses otherwise), so its own derived files may be replaced.
            argv = [*argv, "--overwrite"]
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
    sr_report = out / SR_DIR / "analysis" / "report.html"
    if sr_report.is_file():
        print(f"demo: super-resolution report: {sr_report.resolve()}")


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
