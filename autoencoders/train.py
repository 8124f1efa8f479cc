"""Train one autoencoder (arch × loss × seed) into `<out>/models/<arch>-<loss>-s<seed>/`.

The run folder holds `config.json` (resolved config, versions, git commit, device, status),
`checkpoint.pt` (written atomically after every epoch: model, optimizer, epoch/step, RNG states
and the data-order generator, plus the metrics so far) and `metrics.csv` (one row per epoch and
split). A killed run continues with `--resume` and ends with the same weights as an
uninterrupted one on the same device.

The step loop never waits for the device: the training set lives on it as uint8 when it fits
(`device_data`), each batch is gathered and converted there, the loss is summed there, and
finiteness is checked in batches every `check_every` steps and at each epoch's end (a bad step is
still named exactly). Under torchrun (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel: every rank draws the same epoch order, the global batch is `batch_size`
images and rank r trains on the r-th slice of each, so the result does not depend on the number
of processes (up to float rounding) and a run resumes with any number; rank 0 alone writes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import random
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from percept.contracts import InputError
from percept.contracts.tables import atomic_write, read_toml

if TYPE_CHECKING:
    import torch

    from autoencoders.data import ImageSet
    from autoencoders.models import Autoencoder

from percept.contracts import provenance
from percept.contracts import run as run_c
from percept.contracts.run import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, METRIC_COLUMNS  # noqa: F401 (re-exported)
# Keys that may differ when a run is resumed: they change how, not what, is trained.
RESUME_MAY_DIFFER = ("resume", "overwrite", "download", "verify", "device", "data_root", "progress", "vgg_weights",
                     "device_data", "channels_last", "precision", "compile", "check_every")
DEVICE_DATA = ("auto", "on", "off")
PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", "on", "off")


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
    beta: float = 1.0  # VAE KL weight, in MSE units; other losses are rescaled to match (vae_kl_weight())
    width: float = 1.0  # channel/hidden multiplier: 1 = full size; 0.25 trains in seconds on CPU
    image_size: int = 96  # STL-10's native resolution
    data_root: str = "data"  # STL-10 lives in <data_root>/stl10_binary/
    download: bool = False  # never fetch 2.6 GB unless asked
    verify: bool = True  # MD5-check STL-10 files before training on them
    train_split: str = "train"  # the 5000 labelled STL-10 images; "train+unlabeled" adds 100k
    eval_split: str = "test"  # held-out images for per-epoch metrics and export
    eval_images: int = 128  # first N held-out (and N spread train) images scored each epoch: stable, cheap
    weight_decay: float = 0.0  # none: the bottleneck already regularises
    warmup_epochs: int = 0  # train the first N epochs with MSE, then with `loss`; 1 keeps fc + (MS-)SSIM alive
    loss_options: dict = field(default_factory=dict)  # passed to get_loss, e.g. {alpha = 0.84} for mix
    resume: bool = False  # continue a killed run from its checkpoint
    overwrite: bool = False  # discard a previous run of the same name
    progress: bool = True  # tqdm bar on a terminal
    vgg_weights: str = ""  # VGG-16 state dict for the vgg losses; "" = torchvision's cache, never downloaded
    device_data: str = field(default="auto", metadata={"choices": DEVICE_DATA, "help": (
        "training set on the device as uint8, batches gathered there: auto = when it fits (GPU) or is in RAM "
        "(CPU); off = a DataLoader")})
    channels_last: str = field(default="auto", metadata={"choices": CHANNELS_LAST, "help": (
        "NHWC activations: auto = on CUDA (faster cuDNN convolutions), off on the CPU, where it gained nothing "
        "measurable (benchmarks/train.py) and would change float rounding against runs trained before it")})
    precision: str = field(default="auto", metadata={"choices": PRECISIONS, "help": (
        "auto = bf16 autocast on CUDA, fp32 on CPU; the losses always compute in float32")})
    compile: bool = False  # torch.compile the model: minutes of compiling that pay off on long GPU runs
    check_every: int = 100  # steps between finiteness checks, each of which waits for the device once

    @property
    def run_name(self) -> str:
        """`<arch>-<loss>-s<seed>` with the loss in its safe form (run_c.loss_name): the run's folder and name."""
        return run_c.run_name(self.arch, self.loss, self.seed)

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


def check_common(cfg, at_least_one: tuple[str, ...]) -> None:
    """The checks every trainer's config shares (loss, device, splits, sizes ≥ 1, lr), each one line naming the field."""
    from autoencoders.data import SPLITS, parse_source
    from autoencoders.losses import LOSS_NAMES

    if cfg.loss not in LOSS_NAMES:
        from autoencoders.loss_spec import parse_loss_spec

        parse_loss_spec(cfg.loss, flag="--loss")  # weighted sums and VGG terms; one line naming a bad term
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device {cfg.device!r}; choose from auto, cpu, cuda")
    kind, _ = parse_source(cfg.data)
    for name in ("train_split", "eval_split"):
        if getattr(cfg, name) not in SPLITS[kind]:
            raise InputError(f"{name} {getattr(cfg, name)!r} is not a split of {kind}; choose from {', '.join(SPLITS[kind])}")
    for name in at_least_one:
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise InputError(f"--lr must be a positive number, got {cfg.lr}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check names and ranges early, with one line naming the field and the valid options."""
    from autoencoders.models import ARCHS

    if cfg.arch not in ARCHS:
        raise InputError(f"--arch {cfg.arch!r} is not an architecture; choose from {', '.join(ARCHS)}")
    check_common(cfg, ("epochs", "batch_size", "code_size", "eval_images", "image_size", "check_every"))
    for name, options in (("device_data", DEVICE_DATA), ("precision", PRECISIONS), ("channels_last", CHANNELS_LAST)):
        if getattr(cfg, name) not in options:
            raise InputError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}; choose from {', '.join(options)}")
    if not (cfg.width > 0 and math.isfinite(cfg.width)):
        raise InputError(f"--width must be a positive number, got {cfg.width}")
    if cfg.beta < 0:
        raise InputError(f"--beta must be ≥ 0, got {cfg.beta}")
    if cfg.seed < 0:
        raise InputError(f"--seed must be ≥ 0, got {cfg.seed}")
    if cfg.warmup_epochs < 0:
        raise InputError(f"--warmup-epochs must be ≥ 0, got {cfg.warmup_epochs}")
    if cfg.loss != "mse" and cfg.warmup_epochs >= cfg.epochs:
        raise InputError(f"--warmup-epochs {cfg.warmup_epochs} ≥ --epochs {cfg.epochs}: the run would never train "
                         f"with its loss {cfg.loss!r}; use fewer warm-up epochs")
    return cfg


def resolve_device(name: str) -> torch.device:
    """auto → cuda if available, else cpu; an unavailable cuda is an error, not a silent fallback."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def use_channels_last(setting: str, device: torch.device) -> bool:
    """Whether activations are NHWC for a `channels_last` setting on a device (auto: on CUDA only)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    if setting == "auto":
        return device.type == "cuda"
    raise InputError(f"--channels-last {setting!r}; choose from {', '.join(CHANNELS_LAST)}")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision setting on a device (None: plain float32)."""
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    raise InputError(f"--precision {precision!r}; choose from {', '.join(PRECISIONS)}")


def versions() -> dict[str, str]:
    """Versions of the software that shaped a result."""
    return provenance.versions(("torch", "torchvision", "numpy"))


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
    provenance.write_json(path, data)


def read_run_record(run_dir: str | Path) -> dict:
    """Read and validate a run's config.json (percept.contracts.run)."""
    return run_c.read_run_record(run_dir)


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Write metrics.csv (columns METRIC_COLUMNS, then kl: blank for fc and conv, so every run's file has one shape)."""
    run_c.write_metrics(path, [{**row, "kl": row.get("kl", float("nan"))} for row in rows])


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file + fsync + rename, so a crash never leaves half a checkpoint."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True; anything corrupt or foreign raises InputError naming the file."""
    return run_c.read_checkpoint(path, map_location)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild a run's model from its checkpoint, in eval mode."""
    from autoencoders.models import build_model

    path = Path(run_dir) / "checkpoint.pt"
    _, state = run_c.read_run(run_dir, map_location=device)  # the checkpoint must agree with config.json
    spec = state["model_spec"]
    # Checkpoints from before LeakyReLU carry no activation: they were trained with ReLU.
    model = build_model(spec["arch"], spec["image_size"], spec["code_size"], width=spec["width"],
                        activation=spec.get("activation", "relu"))
    return load_weights(model, state, path, f"a {spec['arch']} model", device)


def load_weights(model: torch.nn.Module, state: dict, path: Path, what: str, device="cpu") -> torch.nn.Module:
    """Load a checkpoint's weights strictly (every tensor must match) into `model`, in eval mode; a misfit is one line."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit {what} ({str(exc).splitlines()[0]})") from None
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


def restore(resume_state: dict | None, model, optimizer, generator: torch.Generator) -> tuple[int, int, list]:
    """Load a checkpoint's model, optimizer and RNG states; (epoch, step, metrics history) to continue from."""
    if resume_state is None:
        return 0, 0, []
    model.load_state_dict(resume_state["model"])
    optimizer.load_state_dict(resume_state["optimizer"])
    set_rng_state(resume_state["rng"], generator)
    return resume_state["epoch"], resume_state["step"], list(resume_state["metrics"])


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
             device: torch.device, kl_weight: float = 1.0) -> dict[str, float]:
    """Mean loss, every image metric and (VAE) the KL over dataset[indices], deterministic reconstructions."""
    import torch

    from autoencoders.losses import image_metrics

    model.eval()
    sums: dict[str, float] = {}
    n = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(indices), cfg.batch_size):
            x = dataset.tensor(indices[start:start + cfg.batch_size]).to(device)
            recon, kl = _forward(model, x, autocast_dtype(cfg.precision, device))
            loss = loss_fn(recon, x) + (_kl_term(kl, kl_weight, x) if kl is not None else 0.0)
            batch = len(x)
            sums["loss"] = sums.get("loss", 0.0) + float(loss) * batch
            if kl is not None:
                sums["kl"] = sums.get("kl", 0.0) + float(kl) * batch
            for name, values in image_metrics(recon, x, data_range=1.0).items():
                sums[name] = sums.get(name, 0.0) + float(values.double().sum())
            n += batch
    seconds = time.perf_counter() - t0
    out = {k: v / n for k, v in sums.items()}
    out["images_per_s"] = n / seconds if seconds > 0 else float("nan")
    out["seconds"] = seconds
    return out


def _forward(model: torch.nn.Module, x: torch.Tensor, amp: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the model (under autocast to `amp` unless None); return the float32 reconstruction and the VAE's KL (else None)."""
    import torch

    from autoencoders.models import VAEOutput

    with torch.autocast(device_type=x.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        out = model(x)
    if isinstance(out, VAEOutput):
        return out.recon.float(), VAEOutput(out.recon, out.mu.float(), out.logvar.float()).kl()
    return out.float(), None  # losses such as SSIM must be computed in float32 even under autocast


def _kl_term(kl: torch.Tensor, kl_weight: float, x: torch.Tensor) -> torch.Tensor:
    # KL per pixel value, to match losses that are means over pixels (models.py docstring).
    return kl_weight * kl / (x.shape[1] * x.shape[2] * x.shape[3])


# --------------------------------------------------------------------------------------------
# The flat baseline: the degenerate-output guard and the VAE's KL scale

# The metric each loss is judged on ("does the model beat a flat patch on what it was trained for?").
OWN_METRIC = {"mse": "mse", "mae": "mae", "ssim": "ssim", "ms_ssim": "ms_ssim", "mix": "mix", "vgg": "vgg"}
# A weighted sum or a lone VGG/TV term (autoencoders.loss_spec) is judged on its own value, lower is better.
SPEC_METRIC = "loss"


def own_metric(loss: str) -> str:
    """The guard's metric for a training loss: OWN_METRIC, or SPEC_METRIC for a loss spec such as 'mse+0.1*vgg_feature'."""
    if loss in OWN_METRIC:
        return OWN_METRIC[loss]
    from autoencoders.loss_spec import parse_loss_spec

    parse_loss_spec(loss)  # anything else must be a valid spec; a bad one is one line naming the term
    return SPEC_METRIC
HIGHER_IS_BETTER = frozenset({"psnr", "ssim", "ms_ssim"})
# Outputs whose per-pixel SD across images is below this fraction of the originals' barely vary:
# a constant output scores 0; on the photo patches a flat mean-colour patch scores 0.74 of the
# originals' spread (its mean colours differ per image) and trained models 0.8–1.3. A tenth is far
# below anything that reconstructs, and far above a collapsed model's ≈ 0.
SPREAD_FRACTION = 0.1
KL_SCHEME = ("kl_weight = beta * L_flat(loss) / L_flat(mse): the KL weight is scaled by how large the "
             "run's loss is on a flat mean-colour patch, relative to MSE's, measured on the fixed train "
             "subset before training; dividing the whole objective by L_flat(loss) shows every loss then "
             "trades the same KL per unit of 'fraction of flat-baseline error' (MSE runs: kl_weight = beta)")


def flat_baseline(x: torch.Tensor) -> torch.Tensor:
    """Each image's own per-channel mean colour as a flat patch of the same shape (N, 3, H, W)."""
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()


def delta_e(recon: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """Per-image mean CIEDE2000 colour difference (skimage, on rgb2lab) between recon and x in [0, 1]."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    a = recon.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).double().numpy()
    b = x.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).double().numpy()
    return np.array([float(deltaE_ciede2000(rgb2lab(b[i]), rgb2lab(a[i])).mean()) for i in range(len(a))])


def per_image_scores(recon: torch.Tensor, x: torch.Tensor, loss: str, loss_fn=None) -> dict[str, np.ndarray]:
    """Per-image mse, mae, psnr, ssim, ms_ssim, delta_e and the loss's own metric (OWN_METRIC) as arrays."""
    import torch

    from autoencoders.losses import image_metrics

    with torch.no_grad():
        scores = {k: v.double().cpu().numpy() for k, v in image_metrics(recon, x, data_range=1.0).items()}
        scores["delta_e"] = delta_e(recon, x)
        own = own_metric(loss)
        if own not in scores:
            if loss_fn is None:
                raise InputError(f"loss {loss!r}: its per-image values need the loss function")
            scores[own] = np.array([float(loss_fn(recon[i:i + 1], x[i:i + 1])) for i in range(len(x))])
    return scores


def paired_difference(model: np.ndarray, flat: np.ndarray, metric: str) -> dict[str, Any]:
    """Mean paired per-image difference model − flat with a t 95% CI, and 'better' (oriented by the metric)."""
    from scipy import stats

    d = np.asarray(model, dtype=float) - np.asarray(flat, dtype=float)
    n = len(d)
    mean = float(d.mean())
    if n > 1 and d.std(ddof=1) > 0:
        half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    else:
        half = float("nan") if n < 2 else 0.0
    lo, hi = mean - half, mean + half
    higher = metric in HIGHER_IS_BETTER
    better = "yes" if (lo > 0 if higher else hi < 0) else "no" if (hi < 0 if higher else lo > 0) else "undecided"
    return {"mean": mean, "ci95": [lo, hi], "n": n, "higher_is_better": higher, "model_better": better}


def output_spread(images: torch.Tensor) -> float:
    """Mean over pixels of the per-pixel SD across images (N, 3, H, W): 0 for a constant output."""
    return float(images.double().std(dim=0, unbiased=False).mean()) if len(images) > 1 else 0.0


def guard(model: Autoencoder, dataset: ImageSet, indices: np.ndarray, cfg: TrainConfig, loss_fn,
          device: torch.device) -> dict[str, Any]:
    """Compare the model with the flat mean-colour baseline on dataset[indices] (the config.json `guard` object)."""
    import torch

    model.eval()
    recons, xs = [], []
    with torch.no_grad():
        for start in range(0, len(indices), cfg.batch_size):
            x = dataset.tensor(indices[start:start + cfg.batch_size]).to(device)
            recons.append(_forward(model, x, autocast_dtype(cfg.precision, device))[0].clamp(0, 1))
            xs.append(x)
    return guard_from_outputs(torch.cat(recons), torch.cat(xs), cfg.loss, loss_fn)


def guard_from_outputs(recon: torch.Tensor, x: torch.Tensor, loss: str, loss_fn=None) -> dict[str, Any]:
    """The guard object from reconstructions and originals (N, 3, H, W) in [0, 1]."""
    metric = own_metric(loss)
    model_scores = per_image_scores(recon, x, loss, loss_fn)
    flat_scores = per_image_scores(flat_baseline(x), x, loss, loss_fn)
    diff = paired_difference(model_scores[metric], flat_scores[metric], metric)
    m, f = float(model_scores[metric].mean()), float(flat_scores[metric].mean())
    beats = m > f if metric in HIGHER_IS_BETTER else m < f
    spread, input_spread = output_spread(recon), output_spread(x)
    warnings = []
    if not beats:
        warnings.append(f"does not beat a flat patch of each image's mean colour on its own metric {metric}: "
                        f"model {m:.4g} vs flat {f:.4g} (mean over {len(x)} held-out images)")
    if spread < SPREAD_FRACTION * input_spread:
        warnings.append(f"outputs barely vary across images: per-pixel SD across images {spread:.4g} < "
                        f"{SPREAD_FRACTION} × the originals' {input_spread:.4g}")
    return {
        "metric": metric,
        # null, not NaN/Infinity (a perfect image has PSNR +inf), so config.json stays strict JSON
        "model": {k: _finite(v.mean()) for k, v in model_scores.items()},
        "flat": {k: _finite(v.mean()) for k, v in flat_scores.items()},
        "beats_flat": bool(beats),
        "output_spread": spread,
        "degenerate": bool(warnings),
        "warnings": warnings,
        "input_spread": input_spread,
        "spread_threshold": SPREAD_FRACTION * input_spread,
        # model − flat on `metric`, paired per image, t 95% CI
        "difference": {**diff, "mean": _finite(diff["mean"]), "ci95": [_finite(v) for v in diff["ci95"]]},
    }


def _finite(value: float) -> float | None:
    """A float, or None when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate_flat(dataset: ImageSet, indices: np.ndarray, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean mse, mae, psnr, ssim and ms_ssim of the flat baseline over dataset[indices] (computed once per run)."""
    import torch

    from autoencoders.losses import image_metrics

    sums: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, len(indices), cfg.batch_size):
            x = dataset.tensor(indices[start:start + cfg.batch_size]).to(device)
            for name, values in image_metrics(flat_baseline(x), x, data_range=1.0).items():
                sums[name] = sums.get(name, 0.0) + float(values.double().sum())
    return {k: v / len(indices) for k, v in sums.items()}


def vae_kl_weight(cfg: TrainConfig, dataset: ImageSet, indices: np.ndarray, loss_fn,
              device: torch.device) -> dict[str, Any]:
    """The VAE's KL weight for this loss (KL_SCHEME), with the flat-baseline values it comes from."""
    import torch

    from autoencoders.losses import get_loss

    with torch.no_grad():
        x = dataset.tensor(indices).to(device)
        flat = flat_baseline(x)
        flat_loss = float(loss_fn(flat, x))
        flat_mse = float(get_loss("mse")(flat, x))
    if not (flat_mse > 0 and flat_loss > 0 and math.isfinite(flat_loss)):
        raise InputError(f"--data {cfg.data}: the flat baseline scores loss {flat_loss} and MSE {flat_mse} on the "
                         f"training images; the KL scale needs both > 0 (are the images constant?)")
    return {"scheme": KL_SCHEME, "beta": cfg.beta, "flat_loss": flat_loss, "flat_mse": flat_mse,
            "kl_weight": cfg.beta * flat_loss / flat_mse, "images": len(indices)}


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
        from percept.contracts.staging import dependent_design

        design = dependent_design(run_dir.parent.parent)
        shown = (design or {}).get("runs")
        if isinstance(shown, dict) and cfg.run_name in shown.values():
            raise InputError(f"{run_dir}: run {cfg.run_name}'s reconstructions are shown by "
                             f"{run_dir.parent.parent / 'study' / 'design.json'}; retraining it would orphan that study; "
                             f"train under another --out or --seed")
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


def _differing(saved: dict, cfg: Any) -> str:
    """The settings (other than RESUME_MAY_DIFFER) where `cfg` differs from a saved config, as text; '' if none."""
    now = asdict(cfg)
    # A key missing from an older saved config had its default then (e.g. warmup_epochs 0); superres and
    # style pass their own config classes through prepare_run_dir, so the defaults are those of cfg's class.
    defaults = asdict(type(cfg)())
    return ", ".join(f"{k}: saved {saved.get(k, defaults[k])!r} vs now {now[k]!r}" for k in now
                     if k not in RESUME_MAY_DIFFER and saved.get(k, defaults[k]) != now[k])


# --------------------------------------------------------------------------------------------
# Several processes (torchrun)


@dataclass(frozen=True)
class Dist:
    """This process's place under torchrun (rank 0 of 1 without it); rank 0 alone writes files."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def writer(self) -> bool:
        """Whether this process writes the run's files."""
        return self.rank == 0


def dist_from_env() -> Dist:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; one line naming a malformed one."""
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, str(default))
        try:
            values[name] = int(text)
        except ValueError:
            raise InputError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None
    d = Dist(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if d.world < 1 or not 0 <= d.rank < d.world:
        raise InputError(f"RANK={d.rank} WORLD_SIZE={d.world}: need 0 ≤ RANK < WORLD_SIZE")
    return d


def _rank_device(device: torch.device, d: Dist) -> torch.device:
    """Rank r's device: cuda:LOCAL_RANK on GPUs (wrapping round when processes outnumber GPUs), the CPU otherwise."""
    import torch

    if device.type != "cuda" or d.world == 1:
        return device
    index = d.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _backend(device: torch.device, d: Dist) -> str:
    """NCCL across GPUs; gloo on CPUs, and where processes share a GPU (NCCL refuses two ranks on one device)."""
    import torch

    if device.type != "cuda":
        return "gloo"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(d.world)))  # processes on this node (torchrun sets it)
    if local <= torch.cuda.device_count():
        return "nccl"
    if d.writer:
        print(f"train: {local} processes share {torch.cuda.device_count()} GPU(s): using gloo, which is slow; "
              f"start at most one process per GPU (--nproc-per-node)", flush=True)
    return "gloo"


def _prepare_shared(cfg: TrainConfig, d: Dist) -> dict | None:
    """prepare_run_dir on rank 0 (it may delete a folder); the other ranks follow its outcome."""
    if d.world == 1:
        return prepare_run_dir(cfg)
    import torch.distributed as td

    outcome: list[Any] = [None]
    state = None
    if d.writer:
        try:
            state = prepare_run_dir(cfg)
        except (InputError, OSError) as exc:
            td.broadcast_object_list([("error", str(exc))], src=0)  # the others stop with the same line
            raise
        outcome = [("finished",) if state and state.get("finished") else ("resume",) if state else ("fresh",)]
    td.broadcast_object_list(outcome, src=0)
    kind = outcome[0][0]
    if d.writer:
        return state
    if kind == "error":
        raise InputError(outcome[0][1])
    if kind == "finished":
        return {"finished": True}
    if kind == "resume":
        return load_checkpoint(cfg.run_dir / "checkpoint.pt")
    if kind == "fresh":
        return None
    raise AssertionError(kind)


def _all_reduce(t: torch.Tensor, d: Dist, op: str) -> torch.Tensor:
    """Reduce `t` in place over all ranks ("sum" or "max"); a no-op for one process."""
    if d.world > 1:
        import torch.distributed as td

        ops = {"sum": td.ReduceOp.SUM, "max": td.ReduceOp.MAX}
        td.all_reduce(t, op=ops[op])
    return t


# --------------------------------------------------------------------------------------------
# The step loop


class TrainSteps:
    """One run's training steps: the (DDP-wrapped, compiled) model, its optimizer, the batches and the deferred checks."""

    def __init__(self, cfg: TrainConfig, model: Autoencoder, optimizer, train_set: ImageSet, device: torch.device,
                 d: Dist, generator: torch.Generator) -> None:
        import torch

        self.cfg, self.model, self.optimizer, self.train_set = cfg, model, optimizer, train_set
        self.device, self.dist, self.generator = device, d, generator
        self.amp = autocast_dtype(cfg.precision, device)
        net: torch.nn.Module = model
        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.net = torch.compile(net) if cfg.compile else net
        self.resident, self.data_note = _resident_images(cfg, train_set, device)
        # One slot per step until the next check (at most an epoch's steps): the loss and whether the
        # reconstruction was finite.
        slots = min(cfg.check_every, -(-len(train_set) // cfg.batch_size))
        self.values = torch.zeros(slots, dtype=torch.float32, device=device)
        self.recon_ok = torch.ones(slots, dtype=torch.bool, device=device)

    def batches(self, order: torch.Tensor, bounds: list[tuple[int, int, int, int]]):
        """(x on the device, this rank's image count) per global batch; an empty slice trains on one image at weight 0."""
        import torch

        slices = [(lo, hi) if hi > lo else (start, start + 1) for start, _, lo, hi in bounds]
        nhwc = use_channels_last(self.cfg.channels_last, self.device)
        memory = torch.channels_last if nhwc else torch.contiguous_format
        if self.resident is not None:
            order_dev = order.to(self.device, non_blocking=True)  # once per epoch; each step slices it on the device
            for (lo, hi), (_, _, rlo, rhi) in zip(slices, bounds):
                yield self.resident.batch(order_dev[lo:hi], nhwc), rhi - rlo
            return
        from autoencoders.data import make_loader

        loader = make_loader(self.train_set, self.cfg.batch_size, shuffle=False, device=self.device,
                             batches=[order[lo:hi].tolist() for lo, hi in slices])
        for (x, _, _), (_, _, rlo, rhi) in zip(loader, bounds):
            yield x.to(self.device, non_blocking=True).contiguous(memory_format=memory), rhi - rlo

    def run_epoch(self, epoch: int, step: int, step_loss, kl_weight: float, fail) -> tuple[int, float, float]:
        """Train one epoch; return (global step, mean loss, seconds). `fail(message)` is called on a non-finite step."""
        import torch

        from autoencoders.data import batch_bounds, epoch_order
        from autoencoders.losses import trusted_inputs

        cfg, d = self.cfg, self.dist
        n = len(self.train_set)
        if d.world > 1 and d.rank > 0:
            # VAE noise: rank 0 keeps the seeded stream (saved and restored on resume); the others draw their own.
            torch.manual_seed(cfg.seed * 1_000_003 + d.rank * 7919 + epoch)
        order = epoch_order(n, self.generator)
        bounds = batch_bounds(n, cfg.batch_size, d.rank, d.world)
        self.net.train()
        t0 = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        bar = _progress(_Sized(self.batches(order, bounds), len(bounds)), cfg, epoch)
        pending = 0
        for batch_index, (x, count) in enumerate(bar):
            with trusted_inputs():  # the range check would wait for the device; finiteness is checked below
                recon, kl = _forward(self.net, x, self.amp)
                loss = step_loss(recon, x)
                if kl is not None:
                    loss = loss + _kl_term(kl, kl_weight, x)
            self.values[pending] = loss.detach()
            # NaN and ±Inf carry into a sum (Inf − Inf is NaN): one pass without a mask, 30× cheaper than
            # isfinite().all() on the CPU; finite outputs could only overflow it past 3e38, which the loss would show too.
            self.recon_ok[pending] = torch.isfinite(recon.detach().sum(dtype=torch.float32))
            self.optimizer.zero_grad(set_to_none=True)
            if d.world > 1:
                # DDP averages the ranks' gradients: weighting each rank's mean by its share of the global batch
                # (count · world / batch) makes that average the gradient of the global batch's mean.
                start, stop = bounds[batch_index][:2]
                loss = loss * (count * d.world / (stop - start))
            loss.backward()
            self.optimizer.step()
            total += self.values[pending].double() * count  # the unweighted loss
            step += 1
            pending += 1
            if pending == cfg.check_every or batch_index == len(bounds) - 1:
                self._check(pending, step, epoch, batch_index, order, bounds, fail)
                pending = 0
                if hasattr(bar, "set_postfix"):
                    seen = bounds[batch_index][1]
                    bar.set_postfix(loss=f"{float(total) / max(1, seen):.4g}",
                                    img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        mean = float(_all_reduce(total, d, "sum")) / n
        return step, mean, time.perf_counter() - t0

    def _check(self, pending: int, step: int, epoch: int, batch_index: int, order, bounds, fail) -> None:
        """Read the last `pending` steps' flags (one wait for the device, all ranks); fail naming the first bad step."""
        import torch

        v, ok = self.values[:pending], self.recon_ok[:pending]
        zero = torch.zeros_like(v, dtype=torch.int32)
        codes = torch.where(~ok, 4, torch.where(torch.isnan(v), 3, torch.where(torch.isposinf(v), 2,
                            torch.where(torch.isneginf(v), 1, zero))))
        codes = _all_reduce(codes.to(torch.int32), self.dist, "max").tolist()
        for i, code in enumerate(codes):
            if code:
                what = {4: "the reconstruction holds NaN/Inf", 3: "the loss is nan", 2: "the loss is inf",
                        1: "the loss is -inf"}[code]
                b = batch_index - pending + 1 + i
                first = self.train_set.image_id(int(order[bounds[b][0]]))
                fail(f"{what} at step {step - pending + 1 + i} (epoch {epoch + 1}, batch {b}, first image {first}); "
                     f"stopped, the last good checkpoint (epoch {epoch}) is kept; try a lower --lr")


class _Sized:
    """An iterator with a length, so a progress bar knows its total."""

    def __init__(self, items, length: int) -> None:
        self.items, self.length = items, length

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return self.length


def _resident_images(cfg: TrainConfig, train_set: ImageSet, device: torch.device):
    """The training set on the device (DeviceImages) or None for the DataLoader path, and a note on why."""
    from autoencoders.data import DEVICE_DATA_SHARE, DeviceImages, device_data_fits, is_memory_mapped

    if cfg.device_data == "off":
        return None, "off (asked)"
    fits, why = device_data_fits(train_set.images.nbytes, device)
    if cfg.device_data == "auto":
        if device.type == "cpu" and is_memory_mapped(train_set.images):
            return None, "off (a memory-mapped file stays on disk)"
        if not fits:
            return None, f"off ({why}: more than {DEVICE_DATA_SHARE:.0%})"
    elif cfg.device_data == "on":
        if not fits:
            raise InputError(f"--device-data on: {why}; the set may take at most {DEVICE_DATA_SHARE:.0%} of the free "
                             f"memory; use --device-data auto or off")
    else:
        raise InputError(f"--device-data {cfg.device_data!r}; choose from {', '.join(DEVICE_DATA)}")
    return DeviceImages(train_set.images, device), f"on ({why})"


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[tuple[Dist, torch.device]]:
    """Under torchrun, join the process group for the block unless already in one (a grid holds one for all its runs);
    yields this process's place and device. One process: nothing to join."""
    d = dist_from_env()
    device = _rank_device(resolve_device(device_name), d)
    own_group = False
    if d.world > 1:
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group(_backend(device, d))
            own_group = True
    try:
        yield d, device
    finally:
        if own_group:
            td.destroy_process_group()


def train(config: TrainConfig) -> Path:
    """Train (or resume) one run; return its folder `<out>/models/<arch>-<loss>-s<seed>/` (DDP under torchrun)."""
    cfg = validate(config)
    with process_group(cfg.device) as (d, device):
        return _train(cfg, d, device)


def _train(cfg: TrainConfig, d: Dist, device: torch.device) -> Path:
    """The body of `train` for one process."""
    import torch

    from autoencoders.data import load_dataset
    from autoencoders.losses import get_loss
    from autoencoders.models import build_model, count_parameters

    resume_state = _prepare_shared(cfg, d)
    run_dir = cfg.run_dir
    if resume_state is not None and resume_state.get("finished"):
        if d.writer:
            print(f"train {cfg.run_name}: already finished with these settings; nothing to resume")
        return run_dir

    train_set = load_dataset(cfg.data, cfg.train_split, root=cfg.data_root, image_size=cfg.image_size,
                             download=cfg.download and d.writer, verify=cfg.verify)
    eval_set = load_dataset(cfg.data, cfg.eval_split, root=cfg.data_root, image_size=cfg.image_size,
                            download=False, verify=cfg.verify)
    if len(train_set) == 0 or len(eval_set) == 0:
        raise InputError(f"--data {cfg.data}: split {cfg.train_split!r} has {len(train_set)} and "
                         f"{cfg.eval_split!r} has {len(eval_set)} images; both need at least one")

    seed_everything(cfg.seed)
    model = build_model(cfg.arch, cfg.image_size, cfg.code_size, width=cfg.width).to(device)
    if use_channels_last(cfg.channels_last, device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    from autoencoders.loss_spec import with_vgg_weights

    loss_fn = get_loss(cfg.loss, **with_vgg_weights(cfg.loss, cfg.loss_options, cfg.vgg_weights)).to(device)
    warmup_fn = get_loss("mse").to(device)  # the first cfg.warmup_epochs epochs train with MSE
    generator = torch.Generator().manual_seed(cfg.seed)
    # A fixed subset of each split for the per-epoch metrics, identical in every epoch and run.
    eval_idx = np.arange(min(cfg.eval_images, len(eval_set)))
    train_idx = np.linspace(0, len(train_set) - 1, min(cfg.eval_images, len(train_set))).round().astype(np.int64)

    # Deterministic (no RNG), so a resumed run recomputes the same weight.
    kl_info = vae_kl_weight(cfg, train_set, train_idx, loss_fn, device) if cfg.arch == "vae" else None
    kl_main = kl_info["kl_weight"] if kl_info else cfg.beta
    # The flat baseline's own metric on the held-out subset, printed next to the model's every epoch.
    own = OWN_METRIC.get(cfg.loss)
    flat_eval = (evaluate_flat(eval_set, eval_idx, cfg, device)
                 if d.writer and own in ("mse", "mae", "psnr", "ssim", "ms_ssim") else None)

    epoch, step, history = restore(resume_state, model, optimizer, generator)
    if resume_state is not None and d.writer:
        print(f"train {cfg.run_name}: resuming after epoch {epoch} (step {step})")

    steps = TrainSteps(cfg, model, optimizer, train_set, device, d, generator)
    amp = autocast_dtype(cfg.precision, device)
    record = {
        "run": cfg.run_name, "status": "running", "config": asdict(cfg), "device": str(device),
        "versions": versions(), "git_commit": git_commit(), "model": {**model.describe(), "parameters": count_parameters(model)},
        "data": {"train": train_set.summary(), "eval": eval_set.summary()},
        "started": _now(), "epochs_done": epoch, "warmup_epochs": cfg.warmup_epochs,
        "processes": d.world, "precision": "bf16" if amp is not None else "fp32", "device_data": steps.data_note,
        "channels_last": use_channels_last(cfg.channels_last, device),
    }
    if kl_info is not None:
        record["vae_kl"] = kl_info

    def fail(message: str) -> None:
        if d.writer:
            _fail(run_dir, record, message)
        raise TrainingDiverged(message)

    if d.writer:
        run_c.write_run_record(run_dir, record)
        if history:
            write_metrics(run_dir / "metrics.csv", history)

    while epoch < cfg.epochs:
        warming = epoch < cfg.warmup_epochs
        # Warm-up trains with MSE, so the VAE's KL keeps MSE's weight (beta) then.
        step_loss, step_kl = (warmup_fn, cfg.beta) if warming else (loss_fn, kl_main)
        step, mean_loss, seconds = steps.run_epoch(epoch, step, step_loss, step_kl, fail)
        epoch += 1
        if d.writer:
            history += _epoch_rows(cfg, model, train_set, eval_set, train_idx, eval_idx, loss_fn, device, kl_main,
                                   epoch, mean_loss, seconds)
            save_checkpoint(run_dir / "checkpoint.pt", {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(cfg),
                "model_spec": model.describe(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step": step, "rng": rng_state(generator), "metrics": history,
            })
            write_metrics(run_dir / "metrics.csv", history)
            record["epochs_done"] = epoch
            run_c.write_run_record(run_dir, record)
            _print_epoch(cfg, epoch, warming, history[-2], history[-1], own, flat_eval)
    if d.writer:
        record["guard"] = guard(model, eval_set, eval_idx, cfg, loss_fn, device)
        for warning in record["guard"]["warnings"]:
            print(f"train {cfg.run_name}: WARNING: {warning}", flush=True)
        record.update(status="finished", finished=_now(), epochs_done=epoch)
        run_c.write_run_record(run_dir, record)
    if d.world > 1:
        import torch.distributed as td

        td.barrier()  # nobody leaves before rank 0 has written the finished record
    return run_dir


def _epoch_rows(cfg: TrainConfig, model, train_set, eval_set, train_idx, eval_idx, loss_fn, device, kl_main: float,
                epoch: int, mean_loss: float, seconds: float) -> list[dict]:
    """The epoch's train and held-out metrics rows; the train row's loss is what was minimised (MSE in warm-up)."""
    train_row = {"epoch": epoch, "split": cfg.train_split,
                 **evaluate(model, train_set, train_idx, loss_fn, cfg, device, kl_main)}
    train_row.update(loss=mean_loss, images_per_s=len(train_set) / seconds, seconds=seconds)
    eval_row = {"epoch": epoch, "split": cfg.eval_split, **evaluate(model, eval_set, eval_idx, loss_fn, cfg, device, kl_main)}
    return [train_row, eval_row]


def _print_epoch(cfg: TrainConfig, epoch: int, warming: bool, train_row: dict, eval_row: dict, own, flat_eval) -> None:
    """One line per epoch: losses, the held-out metrics, the flat baseline's own metric and the speed."""
    versus = f" (flat {flat_eval[own]:.4g})" if flat_eval else ""
    extra = f" kl {eval_row['kl']:.4g}" if "kl" in eval_row else ""
    print(f"train {cfg.run_name}: epoch {epoch}/{cfg.epochs}{' [MSE warm-up]' if warming else ''} loss "
          f"{train_row['loss']:.4g} | {cfg.eval_split}: loss {eval_row['loss']:.4g} mse {eval_row['mse']:.4g} "
          f"psnr {eval_row['psnr']:.2f} ssim {eval_row['ssim']:.3f} ms_ssim {eval_row['ms_ssim']:.3f}"
          f"{extra}; {own} {eval_row.get(own, eval_row['loss']):.4g}{versus} | {train_row['images_per_s']:.0f} img/s",
          flush=True)


def _progress(loader, cfg: TrainConfig, epoch: int):
    if not cfg.progress:
        return loader
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, so logs and captured output stay clean.
    return tqdm(loader, desc=f"{cfg.run_name} {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=None)


def _fail(run_dir: Path, record: dict, message: str) -> None:
    record.update(status="failed", error=message, finished=_now())
    run_c.write_run_record(run_dir, record)
    raise TrainingDiverged(message)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
