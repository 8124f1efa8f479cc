"""Train one autoencoder (arch × loss × seed) into `<out>/models/<arch>-<loss>-s<seed>/`.

The run folder holds `config.json` (resolved config, versions, git commit, device, status),
`checkpoint.pt` (written atomically after every epoch: model, optimizer, epoch/step, RNG states
and the data-order generator, plus the metrics so far) and `metrics.csv` (one row per epoch and
split). A killed run continues with `--resume` and ends with the same weights as an
uninterrupted one on the same device.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import platform
import random
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from percept.contracts import InputError
from percept.contracts.tables import atomic_write, read_json, read_toml

if TYPE_CHECKING:
    import torch

    from autoencoders.data import ImageSet
    from autoencoders.models import Autoencoder

CHECKPOINT_FORMAT = "percept-autoencoder-checkpoint"
CHECKPOINT_VERSION = 1
METRIC_COLUMNS = ("epoch", "split", "loss", "mse", "mae", "psnr", "ssim", "ms_ssim", "images_per_s", "seconds")
# Keys that may differ when a run is resumed: they change how, not what, is trained.
RESUME_MAY_DIFFER = ("resume", "overwrite", "download", "verify", "device", "data_root", "progress", "vgg_weights")


class TrainingDiverged(InputError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved resolved in config.json and the checkpoint."""

    data: str = "photos"  # bundled photos need no download; "stl10" and "folder:PATH" also work
    arch: str = "conv"  # the paper's main model (fc | conv | vae)
    loss: str = "mse"  # the pixel baseline (mse | mae | ssim | ms_ssim | mix)
    epochs: int = 10  # passes over the training split
    batch_size: int = 32  # fits any CPU; small datasets still get many updates per epoch
    lr: float = 1e-3  # Adam's customary rate; stable for all three architectures here
    seed: int = 0  # seeds init, data order and VAE noise; part of the run name
    device: str = "auto"  # cuda when available, else cpu
    out: str = "runs/exp"  # experiment folder; the run goes to <out>/models/<run>/
    code_size: int = 128  # the paper's "128 hidden units"
    beta: float = 1.0  # VAE KL weight relative to the per-pixel loss (see models.py)
    width: float = 1.0  # channel/hidden multiplier: 1 = full size; 0.25 trains in seconds on CPU
    image_size: int = 96  # STL-10's native resolution
    data_root: str = "data"  # STL-10 lives in <data_root>/stl10_binary/
    download: bool = False  # never fetch 2.6 GB unless asked
    verify: bool = True  # MD5-check STL-10 files before training on them
    train_split: str = "train"  # the 5000 labelled STL-10 images; "train+unlabeled" adds 100k
    eval_split: str = "test"  # held-out images for per-epoch metrics and export
    eval_images: int = 128  # first N held-out (and N spread train) images scored each epoch: stable, cheap
    weight_decay: float = 0.0  # none: the bottleneck already regularises
    loss_options: dict = field(default_factory=dict)  # passed to get_loss, e.g. {alpha = 0.84} for mix
    resume: bool = False  # continue a killed run from its checkpoint
    overwrite: bool = False  # discard a previous run of the same name
    progress: bool = True  # tqdm bar on a terminal
    vgg_weights: str = ""  # VGG-16 state dict for the vgg losses; "" = torchvision's cache, never downloaded

    @property
    def run_name(self) -> str:
        """`<arch>-<loss>-s<seed>`, the run's folder and its name in every later file."""
        return f"{self.arch}-{self.loss}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        """`<out>/models/<run>/`."""
        return Path(self.out) / "models" / self.run_name


def config_from_dict(values: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Build a TrainConfig from plain values (TOML or JSON), checking names and types."""
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = [k for k in values if k.replace("-", "_") not in known]
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}")
    clean = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        clean[name] = _coerce(value, known[name], source)
    return validate(TrainConfig(**clean))


def _coerce(value: Any, f: dataclasses.Field, source: str) -> Any:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),
    }[kind]
    if not ok:
        raise InputError(f"{source}: key {f.name!r} must be {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config; a [train] table is used when present, else the top level."""
    values = read_toml(path)
    return values.get("train", values)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check names and ranges early, with one line naming the field and the valid options."""
    from autoencoders.data import SPLITS, parse_source
    from autoencoders.losses import LOSS_NAMES
    from autoencoders.models import ARCHS

    if cfg.arch not in ARCHS:
        raise InputError(f"--arch {cfg.arch!r} is not an architecture; choose from {', '.join(ARCHS)}")
    if cfg.loss not in LOSS_NAMES:
        from autoencoders.loss_spec import parse_loss_spec

        parse_loss_spec(cfg.loss, flag="--loss")  # weighted sums and VGG terms; one line naming a bad term
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device {cfg.device!r}; choose from auto, cpu, cuda")
    kind, _ = parse_source(cfg.data)
    for name in ("train_split", "eval_split"):
        if getattr(cfg, name) not in SPLITS[kind]:
            raise InputError(f"{name} {getattr(cfg, name)!r} is not a split of {kind}; choose from {', '.join(SPLITS[kind])}")
    for name in ("epochs", "batch_size", "code_size", "eval_images", "image_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise InputError(f"--lr must be a positive number, got {cfg.lr}")
    if not (cfg.width > 0 and math.isfinite(cfg.width)):
        raise InputError(f"--width must be a positive number, got {cfg.width}")
    if cfg.beta < 0:
        raise InputError(f"--beta must be ≥ 0, got {cfg.beta}")
    if cfg.seed < 0:
        raise InputError(f"--seed must be ≥ 0, got {cfg.seed}")
    return cfg


def resolve_device(name: str) -> torch.device:
    """auto → cuda if available, else cpu; an unavailable cuda is an error, not a silent fallback."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def versions() -> dict[str, str]:
    """Versions of the software that shaped a result."""
    import torch
    import torchvision
    from importlib.metadata import PackageNotFoundError, version

    try:
        percept_version = version("percept")
    except PackageNotFoundError:
        percept_version = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "percept": percept_version, "platform": platform.platform()}


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, with '+dirty' for local changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# --------------------------------------------------------------------------------------------
# Files


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_run_record(run_dir: str | Path) -> dict:
    """Read a run's config.json."""
    path = Path(run_dir) / "config.json"
    record = read_json(path, "run record not found (was this run trained with `percept train`?)")
    if not isinstance(record, dict) or "config" not in record or "status" not in record:
        raise InputError(f"{path}: not a percept run record (needs keys 'config' and 'status')")
    return record


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Write metrics.csv (columns METRIC_COLUMNS) atomically."""
    import pandas as pd

    from percept.contracts.tables import atomic_write_csv

    atomic_write_csv(pd.DataFrame(rows, columns=list(METRIC_COLUMNS)), path)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file + fsync + rename, so a crash never leaves half a checkpoint."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True; anything corrupt or foreign raises InputError naming the file."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a percept autoencoder checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {state.get('version')!r}, this code reads version {CHECKPOINT_VERSION}")
    return state


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild a run's model from its checkpoint, in eval mode."""
    from autoencoders.models import build_model

    path = Path(run_dir) / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    spec = state["model_spec"]
    model = build_model(spec["arch"], spec["image_size"], spec["code_size"], width=spec["width"])
    try:
        model.load_state_dict(state["model"])  # strict: every tensor must match
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit a {spec['arch']} model ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------
# RNG state as plain tensors/lists, so checkpoints load with weights_only=True


def rng_state(generator: torch.Generator) -> dict:
    """Python, numpy, torch (CPU and CUDA) and data-order generator states."""
    import torch

    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data_order": generator.get_state(),
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore what rng_state saved."""
    import torch

    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["data_order"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Training


def evaluate(model: Autoencoder, dataset: ImageSet, indices: np.ndarray, loss_fn, cfg: TrainConfig,
             device: torch.device) -> dict[str, float]:
    """Mean loss and every image metric over dataset[indices], deterministic reconstructions."""
    import torch

    from autoencoders.losses import image_metrics

    model.eval()
    sums: dict[str, float] = {}
    n = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(indices), cfg.batch_size):
            x = dataset.tensor(indices[start:start + cfg.batch_size]).to(device)
            recon, kl = _forward(model, x, device)
            loss = loss_fn(recon, x) + (_kl_term(kl, cfg, x) if kl is not None else 0.0)
            batch = len(x)
            sums["loss"] = sums.get("loss", 0.0) + float(loss) * batch
            for name, values in image_metrics(recon, x, data_range=1.0).items():
                sums[name] = sums.get(name, 0.0) + float(values.double().sum())
            n += batch
    seconds = time.perf_counter() - t0
    out = {k: v / n for k, v in sums.items()}
    out["images_per_s"] = n / seconds if seconds > 0 else float("nan")
    out["seconds"] = seconds
    return out


def _forward(model: Autoencoder, x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the model (bf16 autocast on CUDA); return the float32 reconstruction and the VAE's KL (else None)."""
    import torch

    from autoencoders.models import VAEOutput

    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(x)
    if isinstance(out, VAEOutput):
        return out.recon.float(), VAEOutput(out.recon, out.mu.float(), out.logvar.float()).kl()
    return out.float(), None  # losses such as SSIM must be computed in float32 even under autocast


def _kl_term(kl: torch.Tensor, cfg: TrainConfig, x: torch.Tensor) -> torch.Tensor:
    # KL per pixel value, to match losses that are means over pixels (models.py docstring).
    return cfg.beta * kl / (x.shape[1] * x.shape[2] * x.shape[3])


def prepare_run_dir(cfg: TrainConfig) -> dict | None:
    """Decide between a fresh start (None), a resume (the checkpoint), done already ({"finished": True}) and a refusal.

    `--resume` of a run that finished with the same settings is a no-op, so a pipeline that always
    passes --resume can be rerun safely; without --resume a finished run is refused, never retrained.
    """
    run_dir = cfg.run_dir
    record_path = run_dir / "config.json"
    ckpt_path = run_dir / "checkpoint.pt"
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    if cfg.overwrite:
        shutil.rmtree(run_dir)
        return None
    record = read_run_record(run_dir) if record_path.exists() else None
    if record is not None and record["status"] == "finished":
        if cfg.resume and not _differing(record["config"], cfg):
            return {"finished": True}  # nothing left to resume; nothing is retrained or mixed
        raise InputError(f"{run_dir}: run {cfg.run_name} already finished ({record['config'].get('epochs')} epochs); "
                         f"use a new --out or --seed, or --overwrite to retrain it")
    if not cfg.resume:
        done = f" (stopped after epoch {record.get('epochs_done', 0)}, status {record['status']})" if record else ""
        raise InputError(f"{run_dir}: holds an unfinished run{done}; pass --resume to continue it or --overwrite to start over")
    if not ckpt_path.exists():
        return None  # killed before its first checkpoint: nothing to continue from
    state = load_checkpoint(ckpt_path)
    differ = _differing(state["config"], cfg)
    if differ:
        raise InputError(f"{ckpt_path}: cannot resume with different settings ({differ}); use the saved ones or --overwrite")
    return state


def _differing(saved: dict, cfg: TrainConfig) -> str:
    """The settings (other than RESUME_MAY_DIFFER) where `cfg` differs from a saved config, as text; '' if none."""
    now = asdict(cfg)
    return ", ".join(f"{k}: saved {saved.get(k)!r} vs now {now[k]!r}" for k in now
                     if k not in RESUME_MAY_DIFFER and saved.get(k) != now[k])


def train(config: TrainConfig) -> Path:
    """Train (or resume) one run; return its folder `<out>/models/<arch>-<loss>-s<seed>/`."""
    import torch

    from autoencoders.data import load_dataset, make_loader
    from autoencoders.losses import get_loss
    from autoencoders.models import build_model, count_parameters

    cfg = validate(config)
    device = resolve_device(cfg.device)
    resume_state = prepare_run_dir(cfg)
    run_dir = cfg.run_dir
    if resume_state is not None and resume_state.get("finished"):
        print(f"train {cfg.run_name}: already finished with these settings; nothing to resume")
        return run_dir

    train_set = load_dataset(cfg.data, cfg.train_split, root=cfg.data_root, image_size=cfg.image_size,
                             download=cfg.download, verify=cfg.verify)
    eval_set = load_dataset(cfg.data, cfg.eval_split, root=cfg.data_root, image_size=cfg.image_size,
                            download=False, verify=cfg.verify)
    if len(train_set) == 0 or len(eval_set) == 0:
        raise InputError(f"--data {cfg.data}: split {cfg.train_split!r} has {len(train_set)} and "
                         f"{cfg.eval_split!r} has {len(eval_set)} images; both need at least one")

    seed_everything(cfg.seed)
    model = build_model(cfg.arch, cfg.image_size, cfg.code_size, width=cfg.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    from autoencoders.loss_spec import with_vgg_weights

    loss_fn = get_loss(cfg.loss, **with_vgg_weights(cfg.loss, cfg.loss_options, cfg.vgg_weights)).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, device=device, generator=generator)
    # A fixed subset of each split for the per-epoch metrics, identical in every epoch and run.
    eval_idx = np.arange(min(cfg.eval_images, len(eval_set)))
    train_idx = np.linspace(0, len(train_set) - 1, min(cfg.eval_images, len(train_set))).round().astype(np.int64)

    epoch, step, history = 0, 0, []
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        epoch, step, history = resume_state["epoch"], resume_state["step"], list(resume_state["metrics"])
        set_rng_state(resume_state["rng"], generator)
        print(f"train {cfg.run_name}: resuming after epoch {epoch} (step {step})")

    record = {
        "run": cfg.run_name, "status": "running", "config": asdict(cfg), "device": str(device),
        "versions": versions(), "git_commit": git_commit(), "model": {**model.describe(), "parameters": count_parameters(model)},
        "data": {"train": train_set.summary(), "eval": eval_set.summary()},
        "started": _now(), "epochs_done": epoch,
    }
    write_json(run_dir / "config.json", record)
    if history:
        write_metrics(run_dir / "metrics.csv", history)

    d = 3 * cfg.image_size * cfg.image_size
    while epoch < cfg.epochs:
        model.train()
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        bar = _progress(loader, cfg, epoch)
        for batch_index, (x, _, idx) in enumerate(bar):
            x = x.to(device, non_blocking=True)
            recon, kl = _forward(model, x, device)
            # The losses refuse non-finite input, so a blown-up model is caught on its output first.
            bad = None if torch.isfinite(recon).all() else "the reconstruction holds NaN/Inf"
            if bad is None:
                loss = loss_fn(recon, x)
                if kl is not None:
                    loss = loss + cfg.beta * kl / d
                bad = None if torch.isfinite(loss) else f"the loss is {float(loss.detach())}"
            if bad is not None:
                _fail(run_dir, record, f"{bad} at step {step + 1} (epoch {epoch + 1}, batch {batch_index}, "
                      f"first image {train_set.image_id(int(idx[0]))}); stopped, the last good checkpoint "
                      f"(epoch {epoch}) is kept; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += float(loss.detach()) * len(x)
            seen += len(x)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / seen:.4g}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        seconds = time.perf_counter() - t0
        epoch += 1
        train_row = {"epoch": epoch, "split": cfg.train_split, **evaluate(model, train_set, train_idx, loss_fn, cfg, device)}
        train_row.update(loss=total / seen, images_per_s=seen / seconds, seconds=seconds)
        eval_row = {"epoch": epoch, "split": cfg.eval_split, **evaluate(model, eval_set, eval_idx, loss_fn, cfg, device)}
        history += [train_row, eval_row]
        save_checkpoint(run_dir / "checkpoint.pt", {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(cfg),
            "model_spec": model.describe(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "epoch": epoch, "step": step, "rng": rng_state(generator), "metrics": history,
        })
        write_metrics(run_dir / "metrics.csv", history)
        record["epochs_done"] = epoch
        write_json(run_dir / "config.json", record)
        print(f"train {cfg.run_name}: epoch {epoch}/{cfg.epochs} loss {train_row['loss']:.4g} | {cfg.eval_split}: "
              f"loss {eval_row['loss']:.4g} mse {eval_row['mse']:.4g} psnr {eval_row['psnr']:.2f} "
              f"ssim {eval_row['ssim']:.3f} ms_ssim {eval_row['ms_ssim']:.3f} | {train_row['images_per_s']:.0f} img/s",
              flush=True)
    record.update(status="finished", finished=_now(), epochs_done=epoch)
    write_json(run_dir / "config.json", record)
    return run_dir


def _progress(loader, cfg: TrainConfig, epoch: int):
    if not cfg.progress:
        return loader
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, so logs and captured output stay clean.
    return tqdm(loader, desc=f"{cfg.run_name} {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=None)


def _fail(run_dir: Path, record: dict, message: str) -> None:
    record.update(status="failed", error=message, finished=_now())
    write_json(run_dir / "config.json", record)
    raise TrainingDiverged(message)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
