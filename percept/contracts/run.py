"""A model run folder `models/<arch>-<loss>-s<seed>/`: config.json, metrics.csv and checkpoint.pt.

- `config.json` (the run record): `run` (the folder's name), `status` (running | finished | failed),
  `config` (the resolved training config: at least arch, loss, seed, image_size, code_size, width,
  data, train_split, eval_split), `epochs_done`, versions, device, git commit and, written at the
  end of training, an optional `guard` object (INTERFACES item 4): metric, model and flat metric
  dicts, beats_flat, output_spread, degenerate, warnings.
- `metrics.csv`: one row per epoch and split, METRIC_COLUMNS then optional extras such as `kl`
  (VAE runs); values finite and in range (MSE, MAE ≥ 0, SSIM, MS-SSIM ≤ 1, PSNR not NaN).
- `checkpoint.pt`: a torch file read with weights_only=True, tagged CHECKPOINT_FORMAT and
  CHECKPOINT_VERSION, whose config and model_spec agree with config.json and whose weights are finite.

Run names are safe names (percept.contracts.paths). A composed loss such as
`mse+0.1*vgg_feature` is not, so a run name carries its safe form `loss_name(loss)`
(`mse_plus_0p1xvgg_feature`: `+` → `_plus_`, `*` → `x`, `.` → `p`, `-` → `m`; a form longer than
LOSS_NAME_MAX becomes `loss_<10 hex of its SHA-1>`); config.json keeps the full expression, and
the manifest's and codes' `loss` column holds the safe form, so run, arch and loss always agree.

Other trainers write the same record shape with a `kind` (RUN_KINDS; absent = "autoencoder"):
- "superres" (`<out>/superres/sr<f>-<loss>-s<seed>/`): config has scale, loss, seed, image_size,
  data, train_split, eval_split, channels, blocks; the run name's arch part `sr<f>` is arch `sr`
  at scale f (SR_ARCH), and `sr<f>-bicubic` is the bicubic baseline run of an SR export.
- "style" (`<out>/style/<style>-s<seed>/`): config has style, seed, image_size, train_split; the
  name is a safe name ending in `-s<seed>`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from percept.contracts.paths import check_name
from percept.contracts.provenance import write_json
from percept.contracts.tables import ContractError, atomic_write_csv, read_csv_checked, read_json

if TYPE_CHECKING:
    import torch

RECORD = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "percept-autoencoder-checkpoint"
CHECKPOINT_VERSION = 1
STATUSES = ("running", "finished", "failed")
METRIC_COLUMNS = ("epoch", "split", "loss", "mse", "mae", "psnr", "ssim", "ms_ssim", "images_per_s", "seconds")
# Optional metrics.csv columns and their lower bound (kl: the VAE's KL divergence per epoch).
OPTIONAL_METRIC_COLUMNS = {"kl": 0.0, "haarpsi": 0.0, "delta_e": 0.0}
RUN_PATTERN = re.compile(r"^(?P<arch>[A-Za-z0-9_]+)-(?P<loss>[A-Za-z0-9_]+)-s(?P<seed>\d+)$")
# config keys that fix what the model is: they must agree between config.json and the checkpoint.
MODEL_KEYS = ("arch", "loss", "seed", "image_size", "code_size", "width")
CONFIG_TYPES = {"arch": str, "loss": str, "seed": int, "image_size": int, "code_size": int, "width": (int, float),
                "data": str, "train_split": str, "eval_split": str}
GUARD_KEYS = {"metric": str, "model": dict, "flat": dict, "beats_flat": bool, "output_spread": (int, float),
              "degenerate": bool, "warnings": list}


LOSS_NAME_MAX = 60
_SIMPLE_LOSS = re.compile(r"^[A-Za-z0-9_]+$")
_LOSS_CHARS = {"+": "_plus_", "*": "x", ".": "p", "-": "m"}


def loss_name(loss: str) -> str:
    """The safe form of a loss expression for run names and the manifest: `mse+0.1*vgg_feature` → `mse_plus_0p1xvgg_feature`."""
    import hashlib

    text = "".join(str(loss).split())
    if _SIMPLE_LOSS.fullmatch(text):
        return text
    safe = "".join(_LOSS_CHARS.get(ch, ch) for ch in text)
    if not _SIMPLE_LOSS.fullmatch(safe) or len(safe) > LOSS_NAME_MAX:
        # too long or odd characters: a short stable name (config.json keeps the expression)
        return "loss_" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return safe


def run_name(arch: str, loss: str, seed: int) -> str:
    """`<arch>-<loss_name(loss)>-s<seed>`, the run's folder and its name in every later file."""
    return f"{arch}-{loss_name(loss)}-s{seed}"


# Super-resolution runs: `sr<f>` in a run name is arch "sr" at scale f.
SR_ARCH = "sr"
SR_SCALES = (2, 4, 8)
_SR_NAME_ARCH = re.compile(r"^sr(?P<scale>[0-9]+)$")
_SR_BICUBIC = re.compile(r"^sr(?P<scale>[0-9]+)-bicubic$")


def sr_run_name(scale: int, loss: str, seed: int) -> str:
    """`sr<scale>-<loss_name(loss)>-s<seed>`, a super-resolution run's folder and name."""
    return run_name(f"{SR_ARCH}{scale}", loss, seed)


def parse_run_name(name: str, where: str | Path | None = None) -> tuple[str, str, int]:
    """(arch, loss, seed) of a run name `<arch>-<loss>-s<seed>`; refuse anything else."""
    check_name(name, "run name", where)
    m = RUN_PATTERN.fullmatch(name)
    if not m:
        prefix = f"{where}: " if where is not None else ""
        raise ContractError(f"{prefix}run name {name!r} is not <arch>-<loss>-s<seed>")
    return m["arch"], m["loss"], int(m["seed"])


# The flat baseline of INTERFACES item 1 is a run without the <arch>-<loss>-s<seed> form.
SPECIAL_RUNS = {"flat": ("baseline", "flat")}


def _sr_scale(text: str) -> int | None:
    m = _SR_NAME_ARCH.fullmatch(text)
    return int(m["scale"]) if m and int(m["scale"]) in SR_SCALES else None


def run_from_name(name: str, where: str | Path | None = None) -> tuple[str, str]:
    """(arch, loss) of a run name `<arch>-<loss>-s<seed>` (or a special run such as 'flat'); refuse others.

    `sr<f>-<loss>-s<seed>` is arch "sr" (scale f) and `sr<f>-bicubic` its bicubic baseline (module docstring).
    """
    if name in SPECIAL_RUNS:
        return SPECIAL_RUNS[name]
    m = _SR_BICUBIC.fullmatch(name) if isinstance(name, str) else None
    if m and int(m["scale"]) in SR_SCALES:
        return SR_ARCH, "bicubic"
    arch, loss, _ = parse_run_name(name, where)
    return (SR_ARCH if _sr_scale(arch) is not None else arch), loss


def write_run_record(run_dir: str | Path, record: dict) -> Path:
    """Validate and write `config.json` atomically."""
    path = Path(run_dir) / RECORD
    check_run_record(record, path)
    return write_json(path, record)


def read_run_record(run_dir: str | Path) -> dict:
    """Read and validate a run's `config.json` (the folder's name must be the run's name)."""
    run_dir = Path(run_dir)
    path = run_dir / RECORD
    record = read_json(path, "run record not found (was this run trained with `percept train`?)")
    check_run_record(record, path)
    if record["run"] != run_dir.name:
        raise ContractError(f"{path}: key 'run' is {record['run']!r} but the folder is {run_dir.name!r}")
    return record


def _type_name(t: Any) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _check_type(value: Any, want: Any, path: Path, key: str) -> None:
    # bool is an int to Python but never a valid number of pixels or a seed here
    bad_bool = isinstance(value, bool) and want is not bool and not (isinstance(want, tuple) and bool in want)
    if bad_bool or not isinstance(value, want):
        raise ContractError(f"{path}: key '{key}' must be {_type_name(want)}, got {value!r}")


def _check_keys(obj: dict, types: dict[str, Any], path: Path, key: str) -> None:
    """Refuse the object at `key` when it lacks a key of `types` (all named) or one has the wrong type."""
    missing = [k for k in types if k not in obj]
    if missing:
        raise ContractError(f"{path}: key '{key}' lacks {', '.join(missing)}")
    for name, want in types.items():
        _check_type(obj[name], want, path, f"{key}.{name}")


# Config keys (and types) of the other kinds of run record; see the module docstring.
RUN_KINDS = {
    "autoencoder": CONFIG_TYPES,
    "superres": {"scale": int, "loss": str, "seed": int, "image_size": int, "data": str, "train_split": str,
                 "eval_split": str, "channels": int, "blocks": int},
    "style": {"style": str, "seed": int, "image_size": int, "train_split": str},
}
_STYLE_RUN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*-s(?P<seed>[0-9]+)$")


def _check_other_kind(kind: str, record: dict, cfg: dict, path: Path) -> None:
    """The name and ranges of a super-resolution or style run record."""
    _check_type(record["run"], str, path, "run")
    check_name(record["run"], "run name", path)
    if cfg["seed"] < 0 or cfg["image_size"] < 1:
        raise ContractError(f"{path}: keys 'config.seed' (≥ 0) and 'config.image_size' (≥ 1) are out of range: "
                            f"{cfg['seed']}, {cfg['image_size']}")
    if kind == "superres":
        if cfg["scale"] not in SR_SCALES:
            raise ContractError(f"{path}: key 'config.scale' is {cfg['scale']!r}, not one of {', '.join(map(str, SR_SCALES))}")
        want = sr_run_name(cfg["scale"], cfg["loss"], cfg["seed"])
    elif kind == "style":
        m = _STYLE_RUN.fullmatch(record["run"])
        want = record["run"] if m and int(m["seed"]) == cfg["seed"] else f"<style>-s{cfg['seed']}"
    else:
        raise ContractError(f"{path}: key 'kind' is {kind!r}, not one of {', '.join(RUN_KINDS)}")
    if record["run"] != want:
        raise ContractError(f"{path}: run {record['run']!r} does not match its config (expected {want!r})")


def check_run_record(record: object, path: str | Path) -> dict:
    """Refuse a run record of the wrong shape, naming the key and value."""
    path = Path(path)
    if not isinstance(record, dict):
        raise ContractError(f"{path}: run record must be a JSON object, got {type(record).__name__}")
    missing = [k for k in ("run", "status", "config") if k not in record]
    if missing:
        raise ContractError(f"{path}: not a percept run record (lacks key(s) {', '.join(missing)})")
    if record["status"] not in STATUSES:
        raise ContractError(f"{path}: key 'status' is {record['status']!r}, not one of {', '.join(STATUSES)}")
    cfg = record["config"]
    if not isinstance(cfg, dict):
        raise ContractError(f"{path}: key 'config' must be an object, got {cfg!r}")
    kind = record.get("kind", "autoencoder")
    if kind not in RUN_KINDS:
        raise ContractError(f"{path}: key 'kind' is {kind!r}, not one of {', '.join(RUN_KINDS)}")
    if kind != "autoencoder":
        _check_keys(cfg, RUN_KINDS[kind], path, "config")
        _check_other_kind(kind, record, cfg, path)
        _check_epochs_done(record, path)
        return record
    _check_keys(cfg, CONFIG_TYPES, path, "config")
    for key in ("image_size", "code_size"):
        if cfg[key] < 1:
            raise ContractError(f"{path}: key 'config.{key}' must be ≥ 1, got {cfg[key]}")
    if not (math.isfinite(cfg["width"]) and cfg["width"] > 0):
        raise ContractError(f"{path}: key 'config.width' must be a positive number, got {cfg['width']}")
    if cfg["seed"] < 0:
        raise ContractError(f"{path}: key 'config.seed' must be ≥ 0, got {cfg['seed']}")
    _check_type(record["run"], str, path, "run")
    arch, loss, seed = parse_run_name(record["run"], path)
    if (arch, loss, seed) != (cfg["arch"], loss_name(cfg["loss"]), cfg["seed"]):
        raise ContractError(f"{path}: run {record['run']!r} does not match config arch {cfg['arch']!r}, "
                            f"loss {cfg['loss']!r}, seed {cfg['seed']!r} (expected "
                            f"{run_name(cfg['arch'], cfg['loss'], cfg['seed'])!r})")
    _check_epochs_done(record, path)
    if record.get("guard") is not None:
        check_guard(record["guard"], path)
    return record


def _check_epochs_done(record: dict, path: Path) -> None:
    if "epochs_done" in record:
        _check_type(record["epochs_done"], int, path, "epochs_done")
        if record["epochs_done"] < 0:
            raise ContractError(f"{path}: key 'epochs_done' must be ≥ 0, got {record['epochs_done']}")


def check_guard(guard: object, path: str | Path) -> dict:
    """Refuse a `guard` object (written at the end of training) of the wrong shape or with non-finite values."""
    if not isinstance(guard, dict):
        raise ContractError(f"{path}: key 'guard' must be an object, got {guard!r}")
    _check_keys(guard, GUARD_KEYS, path, "guard")
    for side in ("model", "flat"):
        for name, value in guard[side].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ContractError(f"{path}: key 'guard.{side}.{name}' must be a finite number, got {value!r}")
            check_metric_value(name, float(value), f"{path}: key 'guard.{side}.{name}'")
    if guard["metric"] not in guard["model"]:
        raise ContractError(f"{path}: key 'guard.metric' {guard['metric']!r} is not in guard.model")
    if not (math.isfinite(guard["output_spread"]) and guard["output_spread"] >= 0):
        raise ContractError(f"{path}: key 'guard.output_spread' must be a finite number ≥ 0, got {guard['output_spread']!r}")
    if not all(isinstance(w, str) for w in guard["warnings"]):
        raise ContractError(f"{path}: key 'guard.warnings' must be a list of text")
    return guard


# Range of each image metric: (lowest, highest); PSNR may be +inf for a perfect copy but never NaN.
# Images are [0,1] (data_range 1), so MSE and MAE lie in [0,1] and PSNR is ≥ 0.
METRIC_RANGES = {"mse": (0.0, 1.0), "mae": (0.0, 1.0), "psnr": (0.0, math.inf),
                 "ssim": (-1.0, 1.0), "ms_ssim": (-1.0, 1.0), "haarpsi": (0.0, 1.0), "delta_e": (0.0, math.inf),
                 "loss": (-math.inf, math.inf), "kl": (0.0, math.inf)}
TOLERANCE = 1e-6  # float32 SSIM of identical images can round to 1 + 1e-7


def check_metric_value(name: str, value: float, where: str) -> None:
    """Refuse a metric value that is NaN or outside its range (unknown names only need to be numbers)."""
    low, high = METRIC_RANGES.get(name, (-math.inf, math.inf))
    if math.isnan(value) or not (low - TOLERANCE <= value <= high + TOLERANCE):
        raise ContractError(f"{where}: {name} {value!r} is outside [{low}, {high}]")


def check_metric_columns(df: pd.DataFrame, path: str | Path, columns) -> None:
    """Refuse NaN or out-of-range values in the named metric columns, naming file, row, column and value."""
    for col in columns:
        low, high = METRIC_RANGES.get(col, (-math.inf, math.inf))
        vals = df[col].to_numpy(dtype="float64")
        finite_needed = col not in ("psnr",)  # a perfect copy has PSNR +inf
        bad = np.isnan(vals) | (vals < low - TOLERANCE) | (vals > high + TOLERANCE)
        if finite_needed:
            bad |= ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "a finite value" if finite_needed else "a value"
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {float(vals[i])!r} is not {what} in [{low}, {high}]")


def write_metrics(path: str | Path, rows: list[dict]) -> Path:
    """Write metrics.csv atomically: METRIC_COLUMNS first, then any extra columns (e.g. kl) in row order."""
    df = pd.DataFrame(rows)
    missing = [c for c in METRIC_COLUMNS if c not in df.columns] if rows else []
    if missing:
        raise ContractError(f"{path}: metrics to write lack column(s) {', '.join(missing)}")
    extra = [c for c in df.columns if c not in METRIC_COLUMNS]
    return atomic_write_csv(df.reindex(columns=list(METRIC_COLUMNS) + extra), path)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Read and validate a run's metrics.csv (epochs ≥ 1, splits of config.json, every metric finite and in range)."""
    path = Path(run_dir) / METRICS
    cfg = read_run_record(run_dir)["config"]
    splits = {cfg["train_split"], cfg["eval_split"]}
    df = read_csv_checked(path, METRIC_COLUMNS, integer=("epoch",), nonempty=("split",), allowed={"split": splits},
                          what="run metrics")
    for col in ("loss", "mse", "mae", "psnr", "ssim", "ms_ssim", "images_per_s", "seconds"):
        df[col] = _numbers(df[col], path, col, blank_ok=col == "images_per_s")
    check_metric_columns(df, path, ["loss", "mse", "mae", "psnr", "ssim", "ms_ssim"])
    for col in ("images_per_s", "seconds"):
        vals = df[col].to_numpy(dtype="float64")
        bad = ~(np.isnan(vals) | (np.isfinite(vals) & (vals >= 0)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {float(vals[i])!r} is not a time or rate ≥ 0")
    for col in (c for c in OPTIONAL_METRIC_COLUMNS if c in df.columns):
        # an optional column may be blank on rows that do not log it (e.g. kl of a non-VAE)
        df[col] = _numbers(df[col], path, col, blank_ok=True)
        low, high = METRIC_RANGES.get(col, (-math.inf, math.inf))
        vals = df[col].to_numpy(dtype="float64")
        bad = ~np.isnan(vals) & ~(np.isfinite(vals) & (vals >= low - TOLERANCE) & (vals <= high + TOLERANCE))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ContractError(f"{path}: row {i + 2}, column '{col}': {float(vals[i])!r} is not a finite value in [{low}, {high}]")
    bad = df["epoch"] < 1
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ContractError(f"{path}: row {i + 2}, column 'epoch': {df['epoch'].iloc[i]} is not ≥ 1")
    dup = df.duplicated(["epoch", "split"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ContractError(f"{path}: row {i + 2}: epoch {df['epoch'].iloc[i]} split {df['split'].iloc[i]!r} appears twice")
    return df


def _numbers(series: pd.Series, path: Path, col: str, *, blank_ok: bool) -> pd.Series:
    """Numbers of a text column: 'nan' (and '' when blank_ok) become NaN for the range checks; other text is refused."""
    values = pd.to_numeric(series, errors="coerce")
    text = series.astype(str).str.strip().str.lower()
    bad = values.isna() & ~text.isin(["nan", ""] if blank_ok else ["nan"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ContractError(f"{path}: row {i + 2}, column '{col}': {series.iloc[i]!r} is not a number")
    return values.astype("float64")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True; anything corrupt or foreign is one ContractError naming the file."""
    import pickle
    import zipfile
    import zlib

    import torch

    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises unpickling in full, which would run code from the file: not that
        raise ContractError(f"{path}: not a readable checkpoint (it holds pickled Python objects beyond tensors and "
                            f"plain values; percept never loads those)") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        # The first line only: torch's own message goes on to suggest weights_only=False, which we never do.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ContractError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    try:
        # torch does not check the zip's CRCs: a flipped bit in a weight would load silently
        with zipfile.ZipFile(path) as z:
            broken = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ContractError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    if broken is not None:
        raise ContractError(f"{path}: checkpoint is corrupt (CRC mismatch in {broken})")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ContractError(f"{path}: not a percept autoencoder checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ContractError(f"{path}: checkpoint version {state.get('version')!r}, this code reads version {CHECKPOINT_VERSION}")
    for key in ("config", "model_spec", "model"):
        if not isinstance(state.get(key), dict):
            raise ContractError(f"{path}: checkpoint lacks its '{key}' dictionary")
    return state


def check_checkpoint(state: dict, record: dict, path: str | Path) -> dict:
    """Refuse a checkpoint whose config, model_spec or weights disagree with its run's config.json."""
    import torch

    path = Path(path)
    cfg, saved, spec = record["config"], state["config"], state["model_spec"]
    for key in MODEL_KEYS:
        if saved.get(key) != cfg.get(key):
            raise ContractError(f"{path}: checkpoint has {key} {saved.get(key)!r} but config.json says {cfg.get(key)!r}")
    for key in ("arch", "image_size", "code_size", "width"):
        if spec.get(key) != cfg.get(key):
            raise ContractError(f"{path}: checkpoint model_spec has {key} {spec.get(key)!r} but config.json says {cfg.get(key)!r}")
    for name, tensor in state["model"].items():
        if not isinstance(tensor, torch.Tensor):
            raise ContractError(f"{path}: weight {name!r} is not a tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ContractError(f"{path}: weight {name!r} (shape {tuple(tensor.shape)}) holds NaN or Inf")
    return state


def read_run(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(record, checkpoint state) of a run folder, checked against each other."""
    record = read_run_record(run_dir)
    path = Path(run_dir) / CHECKPOINT
    return record, check_checkpoint(read_checkpoint(path, map_location), record, path)
