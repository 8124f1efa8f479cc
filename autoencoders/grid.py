"""`percept grid`: train archs × losses × seeds with shared settings, then reconstruct and encode the finished runs.

- Runs are named as by `percept train` (`<arch>-<loss>-s<seed>` under `<out>/models/`), seeds outermost,
  so a grid cut short has whole seeds. Every run is trained by `autoencoders.train.train` with
  `resume=True`: a finished run (contract-valid record, checkpoint and metrics, all epochs, the same
  settings) is skipped, a killed one resumes from its last checkpoint, and one that fails (a refused
  setting, a NaN stop, any exception) is reported in one line while the rest go on.
- A run in training holds `<out>/models/.<run>.lock` (flock, the same lock files as the stage folders):
  a second grid or `percept train` of that run is refused at once, and `--status` sees it as running
  from the lock, not from a guess. Failures without a run record (e.g. out of memory) are kept in
  `<out>/grid/state.json`, with what the last reconstruct and encode covered.
- `--jobs N` trains N runs at once, each a `percept train` process with N-th of the cores
  (OMP/MKL threads), logging to `<out>/grid/logs/<run>.log`; on several GPUs the jobs share them
  out evenly, each holding one (CUDA_VISIBLE_DEVICES) for its whole run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator, Sequence

from autoencoders.export import DEFAULT_N, DEFAULT_SPARES
from percept.contracts import InputError
from percept.contracts.tables import ContractError, atomic_write_json

STATE = Path("grid") / "state.json"  # inside the experiment folder
LOGS = Path("grid") / "logs"
STATES = ("done", "running", "failed", "stopped", "pending")  # the overview's order


@dataclass(frozen=True)
class GridConfig:
    """The grid's axes and what follows training; every TrainConfig field is a shared setting beside these."""

    archs: tuple[str, ...] = ("fc", "conv", "vae")  # the paper's three architectures
    losses: tuple[str, ...] = ("mse", "mae", "ms_ssim")  # the paper's pixel losses and MS-SSIM
    seeds: tuple[int, ...] = (0,)  # one training per model; more seeds show the spread
    extra_runs: tuple[str, ...] = ()  # further <arch>-<loss> pairs, e.g. fc-ssim (Snell's fc triplets)
    jobs: int = 1  # runs trained at once; >1 starts one `percept train` process per run
    threads_per_job: int = 0  # torch threads of each job with --jobs > 1; 0 = the cores this process may use / jobs
    dry_run: bool = False  # list the runs and what would happen to each; train nothing
    status: bool = False  # print the overview of the grid's runs (done, running, failed, ...) and stop
    reconstruct: bool = True  # afterwards `percept reconstruct` over the finished runs
    encode: bool = True  # afterwards `percept encode` over the finished runs
    # `--images` too: torchrun's argparse (Python 3.11) reads a bare `--n` anywhere on its command line as an
    # ambiguous abbreviation of its own --nnodes/--nproc-per-node, so `torchrun ... -m percept grid --n 5` fails there.
    n: int = field(default=DEFAULT_N, metadata={
        "aliases": ("--images",),
        "help": "held-out images reconstructed (percept reconstruct --n); under torchrun write --images"})
    spares: int = DEFAULT_SPARES  # further held-out images for practice trials (percept reconstruct --spares)
    encode_splits: tuple[str, ...] | None = field(default=None, metadata={
        "help": "splits to encode; none: the runs' train and held-out splits (STL-10: use train,test, "
                "since 100k unlabeled codes help no classifier)"})


def expand(archs: Sequence[str], losses: Sequence[str], seeds: Sequence[int],
           extra_runs: Sequence[str] = ()) -> list[tuple[str, str, int]]:
    """(arch, loss, seed) of every run: archs × losses plus the extra `<arch>-<loss>` pairs, seeds outermost."""
    pairs = list(dict.fromkeys((a, l) for a in archs for l in losses))
    for extra in extra_runs:
        arch, _, loss = extra.partition("-")
        if not arch or not loss:
            raise InputError(f"extra run {extra!r} is not '<arch>-<loss>'")
        if (arch, loss) not in pairs:
            pairs.append((arch, loss))
    return [(a, l, s) for s in dict.fromkeys(seeds) for a, l in pairs]


def run_configs(grid: GridConfig, make: Callable[..., object]) -> list:
    """One validated TrainConfig per run; `make(arch=, loss=, seed=, resume=, overwrite=)` builds it from the shared settings."""
    from autoencoders.train import validate

    if not grid.archs or not grid.losses or not grid.seeds:
        raise InputError("the grid needs at least one of each: archs, losses, seeds")
    if grid.jobs < 1 or grid.threads_per_job < 0:
        raise InputError(f"--jobs must be ≥ 1 and --threads-per-job ≥ 0, got {grid.jobs} and {grid.threads_per_job}")
    if grid.jobs > 1 and _world() > 1:
        raise InputError("--jobs > 1 under torchrun: the processes train each run together; use --jobs 1")
    # resume: a killed run continues; never overwrite: a finished run is never retrained or deleted here
    return [validate(make(arch=a, loss=l, seed=s, resume=True, overwrite=False))
            for a, l, s in expand(grid.archs, grid.losses, grid.seeds, grid.extra_runs)]


def _world() -> int:
    """The number of torchrun processes (1 without torchrun)."""
    from autoencoders.train import dist_from_env

    return dist_from_env().world


def _primary() -> bool:
    """Rank 0 of a torchrun job, or a plain process: the one that takes locks and writes the grid's files."""
    from autoencoders.train import dist_from_env

    return dist_from_env().writer


# --------------------------------------------------------------------------------------------
# One run's lock and state


def lock_file(run_dir: Path) -> Path:
    """`<out>/models/.<run>.lock`: beside the run folder, like every stage folder's lock."""
    from percept.contracts.staging import lock_path

    return lock_path(run_dir)


def _from_rank0(value: object) -> object:
    """Rank 0's `value` on every process of a torchrun job (the value itself without torchrun).

    Rank 0 alone reads locks and decides; the others must follow, or under `percept grid` they would
    pair up for different runs (rank 0 skipping a locked run that rank 1 trains): silently wrong weights."""
    if _world() == 1:
        return value
    import torch.distributed as td

    if not td.is_initialized():
        return value
    box = [value]
    td.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def run_lock(cfg) -> Iterator[None]:
    """Hold the run's lock while it trains (rank 0 under torchrun, the others follow its outcome); busy: one line."""
    from percept.contracts.staging import StageBusy, stage_lock

    with contextlib.ExitStack() as held:
        busy = None
        if _primary():
            try:
                held.enter_context(stage_lock(cfg.run_dir, f"percept train {cfg.run_name} (host {os.uname().nodename})"))
            except StageBusy as exc:
                busy = str(exc)
        busy = _from_rank0(busy)
        if busy:
            raise StageBusy(busy)
        yield


def train_locked(cfg) -> Path:
    """`autoencoders.train.train(cfg)` while holding the run's lock, so progress overviews see it running."""
    from autoencoders.train import train

    with run_lock(cfg):
        return train(cfg)


def lock_holder(run_dir: Path) -> str | None:
    """Who holds the run's lock (its pid and command) while it trains; None when nobody does."""
    import fcntl

    path = lock_file(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        return f"pid {info.get('pid', '?')}" if isinstance(info, dict) else "pid ?"
    finally:
        os.close(fd)  # also releases the probe's own shared lock
    return None


@dataclass
class RunState:
    """What the files say about one run of the grid."""

    name: str
    state: str  # one of STATES
    epochs_done: int = 0
    epochs: int = 0
    images_per_s: float | None = None  # training throughput of its last epoch
    epoch_seconds: float | None = None  # mean seconds per epoch, training and evaluation
    note: str = ""  # the failure, or who holds the lock


def inspect_run(cfg, failures: dict | None = None) -> RunState:
    """The run's state from its lock, config.json and metrics.csv (cheap: the checkpoint is not read)."""
    from percept.contracts import run as run_c

    run_dir: Path = cfg.run_dir
    out = RunState(cfg.run_name, "pending", epochs=cfg.epochs)
    holder = lock_holder(run_dir)
    record = None
    if (run_dir / run_c.RECORD).is_file():
        try:
            record = run_c.read_run_record(run_dir)
        except ContractError as exc:
            out.state, out.note = "failed", str(exc)
            return out
        out.epochs_done = int(record.get("epochs_done", 0))
        _add_speed(out, run_dir, record)
    if holder is not None:
        out.state, out.note = "running", holder
    elif record is None:
        out.state = "pending"
    elif record["status"] == "finished":
        out.state = "done"
    elif record["status"] == "failed":
        out.state, out.note = "failed", str(record.get("error", ""))
    else:
        out.state = "stopped"  # killed (nobody holds its lock): resumes from its last checkpoint
    # The grid's own verdicts: failures before any record (e.g. out of memory), finished runs it cannot use
    if out.state in ("pending", "stopped", "done") and failures and cfg.run_name in failures:
        out.state, out.note = "failed", failures[cfg.run_name]
    return out


def _add_speed(out: RunState, run_dir: Path, record: dict) -> None:
    """Images/s of the last epoch and mean epoch time from metrics.csv (left empty when it is absent or unreadable)."""
    from percept.contracts import run as run_c

    if not (run_dir / run_c.METRICS).is_file():
        return
    try:
        df = run_c.read_metrics(run_dir)
    except ContractError:
        return
    if df.empty:
        return
    train_rows = df[df["split"] == record["config"]["train_split"]]
    if len(train_rows) and math.isfinite(float(train_rows["images_per_s"].iloc[-1])):
        out.images_per_s = float(train_rows["images_per_s"].iloc[-1])
    out.epoch_seconds = float(df.groupby("epoch")["seconds"].sum().mean())


def _verdict(cfg) -> str:
    """"todo" (train or resume it), "done" (skip it) or why a finished run cannot be used (one line)."""
    from percept.contracts import run as run_c

    if not (cfg.run_dir / run_c.RECORD).is_file():
        return "todo"
    try:
        if run_c.read_run_record(cfg.run_dir)["status"] != "finished":
            return "todo"  # killed or stopped: train() resumes it from its checkpoint
        why = check_finished(cfg)
    except (InputError, OSError) as exc:
        return f"damaged run folder, kept as it is: {_describe(exc)}"
    return "done" if why is None else why


def check_finished(cfg) -> str | None:
    """None when the run is finished, contract-valid (record, checkpoint, metrics) and trained with these settings; else why not."""
    from autoencoders.train import _differing
    from percept.contracts import run as run_c

    record, _ = run_c.read_run(cfg.run_dir)
    if record["status"] != "finished":
        return f"status {record['status']}"
    metrics = run_c.read_metrics(cfg.run_dir)
    done = int(metrics["epoch"].max()) if len(metrics) else 0
    if record.get("epochs_done") != cfg.epochs or done != cfg.epochs:
        return f"{cfg.run_dir}: finished with {record.get('epochs_done')} epochs ({done} in metrics.csv), not {cfg.epochs}"
    differ = _differing(record["config"], cfg)
    if differ:
        return (f"{cfg.run_dir}: finished with other settings ({differ}); it is kept: use another --out for "
                f"these settings")
    return None


# --------------------------------------------------------------------------------------------
# The grid's own state file


def read_state(out: Path) -> dict:
    """`<out>/grid/state.json` (failures, last exports), or an empty state; an unreadable file counts as empty."""
    try:
        state = json.loads((out / STATE).read_text())
    except (OSError, ValueError):
        return {"failures": {}, "exports": {}}
    if not isinstance(state, dict):
        return {"failures": {}, "exports": {}}
    state.setdefault("failures", {})
    state.setdefault("exports", {})
    return state


def write_state(out: Path, state: dict) -> None:
    """Write the state atomically (rank 0 only)."""
    if _primary():
        atomic_write_json(out / STATE, state)


# --------------------------------------------------------------------------------------------
# Overview


def overview(configs: list, jobs: int = 1, failures: dict | None = None) -> tuple[list[RunState], list[str]]:
    """Each run's state and the overview's lines: a headline, one row per run (state, epochs, images/s, time left), the estimate."""
    states = [inspect_run(c, failures) for c in configs]
    # Seconds per epoch measured on runs of the same architecture, else on any run: pending runs' estimate.
    per_arch: dict[str, list[float]] = {}
    for c, s in zip(configs, states):
        if s.epoch_seconds:
            per_arch.setdefault(c.arch, []).append(s.epoch_seconds)
    anywhere = [v for vs in per_arch.values() for v in vs]
    rows = [f"{'run':<32} {'state':<8} {'epochs':>9} {'img/s':>9} {'time left':>10}  note"]
    total, unknown = 0.0, 0
    for c, s in zip(configs, states):
        left = None
        if s.state in ("running", "stopped", "pending"):
            pace = s.epoch_seconds or _mean(per_arch.get(c.arch)) or _mean(anywhere)
            if pace is not None:
                left = pace * max(c.epochs - s.epochs_done, 0)
                total += left
            else:
                unknown += 1
        speed = f"{s.images_per_s:,.0f}" if s.images_per_s else "-"
        rows.append(f"{s.name:<32} {s.state:<8} {f'{s.epochs_done}/{s.epochs}':>9} {speed:>9} "
                    f"{_duration(left) if left is not None else '-':>10}  {s.note[:160]}")
    counts = {k: sum(s.state == k for s in states) for k in STATES}
    head = f"{len(states)} runs: " + ", ".join(f"{counts[k]} {k}" for k in STATES)
    speeds = [s.images_per_s for s in states if s.state == "running" and s.images_per_s]
    if speeds:
        head += f"; {sum(speeds):,.0f} images/s in training (last epoch of each running run)"
    left_runs = sum(s.state in ("running", "stopped", "pending") for s in states)
    if unknown and unknown == left_runs:
        est = "time left: not known until a first epoch has been measured"
    else:
        est = (f"time left ≈ {_duration(total / max(jobs, 1))} (estimated: epochs left × measured seconds per epoch of "
               f"the run, else of its architecture, else of any run; over {jobs} job(s))")
        if unknown:
            est += f"; {unknown} more run(s) have no measured epoch to estimate from"
    return states, [head, *rows, est]


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------
# Training the runs


@dataclass
class Outcome:
    """What happened to one run in this grid invocation."""

    name: str
    result: str  # skipped | trained | failed | busy
    message: str = ""
    seconds: float = 0.0


def _describe(exc: BaseException) -> str:
    from percept.commands import describe

    return describe(exc)


def _train_in_process(cfg) -> Outcome:
    """Train one run here (the lock held); any exception of its training is one line, and the grid goes on."""
    from percept.contracts.staging import StageBusy

    t0 = time.perf_counter()
    try:
        train_locked(cfg)
    except StageBusy as exc:
        return Outcome(cfg.run_name, "busy", _describe(exc))
    except Exception as exc:  # noqa: BLE001 - a failed run, whatever the cause, must not stop the others
        if os.environ.get("PERCEPT_DEBUG", "") not in ("", "0"):
            raise
        _free_memory()
        return Outcome(cfg.run_name, "failed", _describe(exc), time.perf_counter() - t0)
    return Outcome(cfg.run_name, "trained", seconds=time.perf_counter() - t0)


def _free_memory() -> None:
    """Give back what a failed run held (its model, an out-of-memory CUDA cache) before the next one."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_flags(cfg) -> list[str]:
    """`percept train` flags that rebuild exactly `cfg` (every field, so no default can differ)."""
    flags = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        name = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, dict):
            flags += [name, json.dumps(value)]
        elif isinstance(value, (tuple, list)):
            flags += [name, ",".join(map(str, value))]
        elif value is None:
            continue
        else:
            flags += [name, repr(value) if isinstance(value, float) else str(value)]
    return flags


def _gpu_slots() -> list[str]:
    """The GPUs jobs are spread over: CUDA_VISIBLE_DEVICES's list, else those torch counts; [] without CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _train_subprocess(cfg, threads: int, gpus: queue.Queue | None) -> Outcome:
    """Train one run as a `percept train` process with `threads` threads (its lock taken there); log in grid/logs/.

    `gpus` holds the free GPU ids: the job takes one for its whole run and gives it back, so no two share one.
    """
    log = Path(cfg.out) / LOGS / f"{cfg.run_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    gpu = gpus.get() if gpus is not None else None
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    t0 = time.perf_counter()
    try:
        with open(log, "ab") as fh:
            start = fh.tell()  # earlier attempts stay in the log; this one's lines start here
            code = subprocess.run([sys.executable, "-m", "autoencoders", "train", *train_flags(cfg)], env=env,
                                  stdout=fh, stderr=subprocess.STDOUT).returncode
    finally:
        if gpu is not None:
            gpus.put(gpu)
    seconds = time.perf_counter() - t0
    if code == 0:
        return Outcome(cfg.run_name, "trained", seconds=seconds)
    with open(log, "rb") as fh:
        fh.seek(start)
        lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("percept train: error:")]
    last = errors[-1].removeprefix("percept train: error: ") if errors else (lines[-1] if lines else "")
    why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    result = "busy" if "another percept command is writing here" in last else "failed"
    return Outcome(cfg.run_name, result, f"{last} ({why}; log {log})", seconds)


def train_runs(grid: GridConfig, configs: list, state: dict, report: Callable[[str], None] = print) -> list[Outcome]:
    """Skip the finished runs, train (or resume) the others, one line per failure; the state file follows each run."""
    out = Path(configs[0].out)
    outcomes: list[Outcome] = []
    todo = []
    verdicts = _from_rank0([_verdict(cfg) if _primary() else None for cfg in configs])  # one decision for all ranks
    for cfg, verdict in zip(configs, verdicts):
        if verdict == "todo":
            todo.append(cfg)
        elif verdict == "done":
            outcomes.append(Outcome(cfg.run_name, "skipped"))
            state["failures"].pop(cfg.run_name, None)
        else:  # finished but unusable here: reported, never trained over
            outcomes.append(Outcome(cfg.run_name, "failed", verdict))
            state["failures"][cfg.run_name] = verdict
            report(f"grid: {cfg.run_name}: FAILED: {verdict}")
    skipped = sum(o.result == "skipped" for o in outcomes)
    if skipped:
        report(f"grid: {skipped} finished run(s) skipped")

    def finish(o: Outcome) -> None:
        outcomes.append(o)
        if o.result == "trained":
            state["failures"].pop(o.name, None)
        else:
            state["failures"][o.name] = o.message
            report(f"grid: {o.name}: {'FAILED' if o.result == 'failed' else 'BUSY'}: {o.message}")
        write_state(out, state)
        _, lines = overview(configs, grid.jobs, state["failures"])
        report(f"grid: {o.name} {o.result} after {_duration(o.seconds)}; {lines[0]}; {lines[-1].split(' (')[0]}")

    if grid.jobs == 1:
        for i, cfg in enumerate(todo):
            report(f"grid: [{i + 1}/{len(todo)}] {cfg.run_name}")
            finish(_train_in_process(cfg))
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        # the cores this process may use (a SLURM or taskset allocation), not all of the machine's
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = grid.threads_per_job or max(1, cores // grid.jobs)
        slots = _gpu_slots() if any(c.device != "cpu" for c in todo) else []
        gpus = None
        if slots:  # each GPU as often as jobs need: 4 jobs on 2 GPUs put 2 on each
            gpus = queue.Queue()
            for k in range(grid.jobs):
                gpus.put(slots[k % len(slots)])
        report(f"grid: {len(todo)} run(s), {grid.jobs} at once, {threads} thread(s) each"
               f"{f', GPUs {sorted(set(slots))}' if slots else ''}; logs in {out / LOGS}")
        pool = ThreadPoolExecutor(grid.jobs)
        try:
            futures = [pool.submit(_train_subprocess, cfg, threads, gpus) for cfg in todo]
            for future in as_completed(futures):
                finish(future.result())
        finally:
            # Ctrl-C (which the running jobs get too) must not start the queued ones
            pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


# --------------------------------------------------------------------------------------------
# Exports


def _finished_names(out: Path) -> list[str]:
    from percept.contracts import run as run_c

    names = []
    for folder in sorted(p for p in (out / "models").glob("*") if p.is_dir()):
        try:
            if run_c.read_run_record(folder)["status"] == "finished":
                names.append(folder.name)
        except ContractError:
            continue
    return names


def _codes_stamp(out: Path) -> list[list]:
    return [[p.name, p.stat().st_mtime_ns] for p in sorted((out / "codes").glob("*.npz"))] + \
        ([["pixels.npz", (out / "pixels.npz").stat().st_mtime_ns]] if (out / "pixels.npz").is_file() else [])


def export_runs(grid: GridConfig, train_cfg, state: dict, report: Callable[[str], None] = print) -> list[str]:
    """Reconstruct and encode the finished runs unless the last export covered the same ones; problems as lines."""
    from autoencoders.export import encode, reconstruct
    from percept.contracts.provenance import file_hash

    out = Path(train_cfg.out)
    runs = _finished_names(out)
    problems = []
    if not runs:
        return ["no finished runs to reconstruct or encode"]
    manifest = out / "reconstructions" / "manifest.csv"
    if grid.reconstruct:
        wanted = {"runs": runs, "n": grid.n, "spares": grid.spares, "split": train_cfg.eval_split}
        last = state["exports"].get("reconstruct")
        if last and last.get("settings") == wanted and manifest.is_file() and last.get("sha256") == file_hash(manifest):
            report(f"grid: reconstruct: {manifest} already covers these {len(runs)} run(s); kept")
        else:
            try:
                # never overwrite: a manifest a study design was built from is refused by reconstruct itself
                reconstruct(out, split=train_cfg.eval_split, n=grid.n, spares=grid.spares, device=train_cfg.device,
                            overwrite=False, vgg_weights=train_cfg.vgg_weights or None)
                state["exports"]["reconstruct"] = {"settings": wanted, "sha256": file_hash(manifest)}
            except InputError as exc:
                problems.append(f"reconstruct: {_describe(exc)}")
    if grid.encode:
        wanted = {"runs": runs, "splits": list(grid.encode_splits) if grid.encode_splits else None}
        last = state["exports"].get("encode")
        if last and last.get("settings") == wanted and last.get("files") == _codes_stamp(out):
            report(f"grid: encode: {out / 'codes'} already covers these {len(runs)} run(s); kept")
        else:
            try:
                encode(out, splits=grid.encode_splits, device=train_cfg.device)
                state["exports"]["encode"] = {"settings": wanted, "files": _codes_stamp(out)}
            except InputError as exc:
                problems.append(f"encode: {_describe(exc)}")
    write_state(out, state)
    return problems


# --------------------------------------------------------------------------------------------
# The command


def _preflight(cfg) -> None:
    """What every run would fail on alike, said once before any training: no such device, missing STL-10 files."""
    from autoencoders.data import _missing_message, parse_source, stl10_missing
    from autoencoders.train import resolve_device

    resolve_device(cfg.device)
    if parse_source(cfg.data)[0] == "stl10" and not cfg.download:
        missing = [p for split in (cfg.train_split, cfg.eval_split) for p in stl10_missing(cfg.data_root, split)]
        if missing:
            raise InputError(_missing_message(cfg.data_root, list(dict.fromkeys(missing))))


def run_grid(grid: GridConfig, make: Callable[..., object]) -> int:
    """`percept grid`: 0 when every run finished and the exports ran; 1 with a summary when anything failed."""
    configs = run_configs(grid, make)
    out = Path(configs[0].out)
    state = read_state(out)
    if grid.status or grid.dry_run:
        _, lines = overview(configs, grid.jobs, state["failures"])
        print(f"grid {out}: {lines[0]}", *lines[1:], sep="\n")
        if grid.dry_run:
            print(f"grid (dry run): would train {sum(1 for c in configs if inspect_run(c).state != 'done')} of "
                  f"{len(configs)} run(s) into {out / 'models'} (done ones are skipped after a full check), then "
                  f"{' and '.join(n for n, on in (('reconstruct', grid.reconstruct), ('encode', grid.encode)) if on) or 'no export'}")
        return 0
    _preflight(configs[0])
    state["config"] = {"grid": json.loads(json.dumps(asdict(grid))), "train": json.loads(json.dumps(asdict(configs[0])))}
    write_state(out, state)
    from autoencoders.train import process_group

    with process_group(configs[0].device):  # under torchrun one group for all runs (each joins it), so ranks can agree
        outcomes = train_runs(grid, configs, state)
    problems = export_runs(grid, configs[0], state) if _primary() and (grid.reconstruct or grid.encode) else []
    bad = [o for o in outcomes if o.result in ("failed", "busy")]
    counts = {k: sum(o.result == k for o in outcomes) for k in ("trained", "skipped", "failed", "busy")}
    print(f"grid: {len(outcomes)} run(s): " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or k != "busy"))
    for o in bad:
        print(f"  {o.name}: {o.result}: {o.message}")
    for p in problems:
        print(f"  {p}")
    return 1 if bad or problems else 0
