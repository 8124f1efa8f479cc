"""Single-image super-resolution (Johnson et al. 2016 §4; Snell et al. 2017 §5): train, evaluate, export.

Low-resolution inputs are made as Johnson et al. did: Gaussian blur σ = 1, then bicubic
downsampling by the scale factor (2, 4 or 8; antialiased like PIL and MATLAB's imresize), then
rounded to 8 bits as a real low-resolution image would be.

The network (`SRNet`), for ×f with C channels and B residual blocks:
  conv 9×9 3→C, PReLU                                 (Johnson's c9s1 head)
  B × residual block [conv 3×3 C→C, PReLU, conv 3×3 C→C] + skip  (no batch norm: EDSR showed it hurts SR)
  log2(f) × [conv 3×3 C→4C, PixelShuffle(2), PReLU]   (sub-pixel upsampling, Shi et al. 2016,
                                                       in place of Johnson's stride-½ convolutions)
PReLU (as in SRResNet) rather than ReLU: with ReLU and Adam 1e-3 the units died and an MS-SSIM
network never left its bicubic start (200 steps on the photos: MS-SSIM 0.8954 = bicubic; with
PReLU 0.906; MSE network PSNR +0.14 dB with ReLU, +0.46 dB with PReLU).
  conv 9×9 C→3                                        (Johnson's c9s1-3 tail)
With `bicubic_skip` (default) the output is bicubic(input) + that, the last conv starting at zero,
so training starts exactly at the bicubic baseline and learns the correction (as VDSR does);
`--no-bicubic-skip` is Johnson's plain network. Outputs are clamped to [0, 1].

A run lives in `<out>/superres/sr<f>-<loss>-s<seed>/` with the same files as `percept train`
(config.json, atomic checkpoint.pt with RNG states, metrics.csv), resume and NaN stop, using
autoencoders.train's helpers. metrics.csv holds, per epoch and split, the model's scores and,
at epoch 0, the bicubic baseline's: PSNR / SSIM on RGB over the whole image, PSNR / SSIM on the
Y channel of YCbCr (ITU-R BT.601, the super-resolution community's convention) with a border of
f pixels cropped, MS-SSIM (RGB) where the image allows at least 2 scales, LPIPS where VGG-16
weights are present. `export` writes the reconstruction manifest with arch `sr`, a bicubic run
and the flat baseline.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoencoders.export import DEFAULT_N, DEFAULT_SPARES  # numpy and the contracts only, like this module
from percept.contracts import InputError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

SCALES = (2, 4, 8)
BLUR_SIGMA = 1.0  # Johnson et al.
# images_per_s and seconds time the training epoch (as in `percept train`); eval_seconds the held-out scoring.
SR_COLUMNS = ("epoch", "split", "method", "loss", "mse", "mae", "psnr", "ssim", "ms_ssim", "psnr_y", "ssim_y",
              "lpips", "images_per_s", "seconds", "eval_seconds")


@dataclass
class SRConfig:
    """Everything that defines a super-resolution run; saved resolved in config.json and the checkpoint."""

    data: str = "photos"  # bundled photos need no download; "stl10" and "folder:PATH" also work
    scale: int = 4  # Johnson's main factor; 2 and 8 also work
    loss: str = "mse"  # any registry loss or weighted sum, e.g. "ms_ssim" or "mse+0.1*vgg_feature"
    epochs: int = 10  # passes over the training split
    batch_size: int = 16  # small images, many updates
    lr: float = 1e-3  # Johnson et al.'s Adam rate
    seed: int = 0  # seeds init and data order; part of the run name
    device: str = "auto"  # cuda when available, else cpu
    out: str = "runs/sr"  # experiment folder; the run goes to <out>/superres/<run>/
    channels: int = 64  # Johnson's SR width
    blocks: int = 4  # Johnson's SR depth (four residual blocks)
    bicubic_skip: bool = True  # learn the correction to bicubic: starts at the baseline, trains fast
    image_size: int = 96  # high-resolution side; must be divisible by the scale
    data_root: str = "data"  # STL-10 lives in <data_root>/stl10_binary/
    verify: bool = True  # MD5-check STL-10 files
    train_split: str = "train"  # images to train on
    eval_split: str = "test"  # held-out images scored each epoch and exported
    eval_images: int = 64  # N held-out images spread over the split, scored each epoch: stable and cheap
    crop: int = 0  # train on one random HR crop of this side per image (0 = whole images); Johnson used 288
    train_images: int = 0  # use only N training images spread over the split (0 = all): quick checks
    loss_options: dict = field(default_factory=dict)  # passed to get_loss, e.g. {feature_layer = "relu3_3"}
    vgg_weights: str = ""  # VGG-16 state dict for vgg losses and LPIPS; "" = torchvision's cache
    lpips: bool = True  # score LPIPS when the VGG-16 weights are present (skipped, said once, if not)
    resume: bool = False  # continue a killed run from its checkpoint
    overwrite: bool = False  # discard a previous run of the same name
    progress: bool = True  # tqdm bar on a terminal

    @property
    def run_name(self) -> str:
        """`sr<scale>-<loss>-s<seed>`, a sum's loss in its safe form (percept.contracts.run.loss_name)."""
        from percept.contracts.run import sr_run_name

        return sr_run_name(self.scale, self.loss, self.seed)

    @property
    def run_dir(self) -> Path:
        """`<out>/superres/<run>/`."""
        return Path(self.out) / "superres" / self.run_name


def validate_sr(cfg: SRConfig) -> SRConfig:
    """Check names and ranges early with one line naming the field."""
    from autoencoders import train as T

    if cfg.scale not in SCALES:
        raise InputError(f"--scale {cfg.scale}: choose from {', '.join(map(str, SCALES))}")
    T.check_common(cfg, ("epochs", "batch_size", "channels", "eval_images", "image_size"))
    if cfg.blocks < 0 or cfg.train_images < 0 or cfg.seed < 0:
        raise InputError("--blocks, --train-images and --seed must be ≥ 0")
    if cfg.image_size % cfg.scale or cfg.image_size // cfg.scale < 4:
        raise InputError(f"--image-size {cfg.image_size} must be a multiple of --scale {cfg.scale} giving at least 4 px")
    if cfg.crop and (cfg.crop % cfg.scale or not cfg.scale * 4 <= cfg.crop <= cfg.image_size):
        raise InputError(f"--crop {cfg.crop} must be a multiple of --scale {cfg.scale} between {4 * cfg.scale} and --image-size {cfg.image_size}")
    return cfg


def random_crop(hr: Tensor, size: int) -> Tensor:
    """One random size×size crop per image (torch's global RNG, saved in checkpoints, so resume repeats them)."""
    import torch

    n, _, h, w = hr.shape
    ys = torch.randint(0, h - size + 1, (n,)).tolist()
    xs = torch.randint(0, w - size + 1, (n,)).tolist()
    return torch.stack([img[:, y:y + size, x:x + size] for img, y, x in zip(hr, ys, xs)])


# --------------------------------------------------------------------------------------------
# Degradation, baseline and network


def degrade(hr: Tensor, scale: int) -> Tensor:
    """Johnson et al.'s low-resolution input: Gaussian blur σ=1, bicubic ↓scale, rounded to 8 bits."""
    import torch.nn.functional as F
    from torchvision.transforms.functional import gaussian_blur

    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise InputError(f"image size {h}×{w} is not a multiple of the scale {scale}")
    blurred = gaussian_blur(hr, kernel_size=[7, 7], sigma=[BLUR_SIGMA, BLUR_SIGMA])  # ±3σ
    small = F.interpolate(blurred, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    return small.clamp(0, 1).mul(255).round().div(255)


def bicubic_up(lr: Tensor, scale: int) -> Tensor:
    """Bicubic upsampling by `scale`, clamped to [0, 1]: the baseline every SR model must beat."""
    import torch.nn.functional as F

    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def build_srnet(scale: int, channels: int = 64, blocks: int = 4, bicubic_skip: bool = True) -> nn.Module:
    """The super-resolution network described in the module docstring."""
    from torch import nn

    class ResBlock(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.PReLU(), nn.Conv2d(c, c, 3, padding=1))

        def forward(self, x):
            return x + self.body(x)

    class SRNet(nn.Module):
        """Residual blocks + sub-pixel upsampling; forward(lr (N,3,h,w) in [0,1]) -> (N,3,h·f,w·f) in [0,1]."""

        def __init__(self) -> None:
            super().__init__()
            self.scale, self.bicubic_skip = scale, bicubic_skip
            self.spec = {"arch": "sr", "scale": scale, "channels": channels, "blocks": blocks, "bicubic_skip": bicubic_skip}
            up = []
            for _ in range(int(math.log2(scale))):
                up += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.PReLU()]
            self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU())
            self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
            self.up = nn.Sequential(*up)
            self.tail = nn.Conv2d(channels, 3, 9, padding=4)
            if bicubic_skip:
                nn.init.zeros_(self.tail.weight)  # start exactly at bicubic
                nn.init.zeros_(self.tail.bias)

        def forward(self, lr):
            h = self.head(lr)
            y = self.tail(self.up(h + self.body(h)))
            if self.bicubic_skip:
                import torch.nn.functional as F

                y = y + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
            return y.clamp(0, 1)

        def describe(self) -> dict:
            """The constructor arguments, saved with the checkpoint."""
            return dict(self.spec)

    if scale not in SCALES:
        raise InputError(f"scale {scale}: choose from {', '.join(map(str, SCALES))}")
    return SRNet()


# --------------------------------------------------------------------------------------------
# Metrics


def rgb_to_y(x: Tensor) -> Tensor:
    """ITU-R BT.601 luma of RGB in [0,1], as in MATLAB's rgb2ycbcr: Y in [16/255, 235/255], shape (N,1,H,W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def sr_metrics(sr: Tensor, hr: Tensor, scale: int, lpips_fn=None, ms_ssim_nan: bool = True) -> dict[str, Tensor]:
    """Per-image metrics: RGB mse/mae/psnr/ssim (whole image), ms_ssim (NaN below 2 scales), Y psnr/ssim (border `scale` cropped), lpips."""
    import torch

    from autoencoders.losses import default_scales, image_metrics, psnr, ssim

    sr, hr = sr.float(), hr.float()
    out = image_metrics(sr, hr, data_range=1.0)
    if ms_ssim_nan and default_scales(*hr.shape[-2:]) < 2:
        out["ms_ssim"] = torch.full_like(out["ms_ssim"], float("nan"))  # one scale is SSIM, not MS-SSIM
    c = scale
    ys, yh = rgb_to_y(sr)[..., c:-c, c:-c], rgb_to_y(hr)[..., c:-c, c:-c]
    out["psnr_y"] = psnr(ys, yh, data_range=1.0, reduction="none")
    out["ssim_y"] = ssim(ys, yh, data_range=1.0, reduction="none") if min(ys.shape[-2:]) >= 11 else torch.full_like(out["psnr_y"], float("nan"))
    out["lpips"] = lpips_fn(sr, hr) if lpips_fn is not None else torch.full_like(out["psnr_y"], float("nan"))
    return {k: v.detach().double().cpu() for k, v in out.items()}


def _lpips_or_none(cfg: SRConfig | SRExportConfig, device):
    """An LPIPS scorer on our VGG-16 weights, or None (said once) when weights or the package are missing."""
    if not cfg.lpips:
        return None
    from autoencoders.lpips_metric import load_lpips

    metric = load_lpips(cfg.vgg_weights or None, "superres")  # the same rule as percept reconstruct
    return None if metric is None else metric.to(device)


def evaluate_sr(model, hr_all: Tensor, scale: int, batch_size: int, device, lpips_fn=None) -> dict[str, float]:
    """Mean metrics of `model` (None = bicubic) over the HR images `hr_all`, plus the seconds scoring took (`eval_seconds`)."""
    import torch

    sums: dict[str, float] = {}
    t0 = time.perf_counter()
    if model is not None:
        model.eval()
    with torch.no_grad():
        for start in range(0, len(hr_all), batch_size):
            hr = hr_all[start:start + batch_size].to(device)
            lr = degrade(hr, scale)
            sr = bicubic_up(lr, scale) if model is None else model(lr)
            for k, v in sr_metrics(sr, hr, scale, lpips_fn).items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
    return {**{k: v / len(hr_all) for k, v in sums.items()}, "eval_seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------
# Training


CHECKPOINT_KIND = "superres"


def train_sr(config: SRConfig) -> Path:
    """Train (or resume) one super-resolution run; return its folder."""
    import torch

    from autoencoders import train as T
    from autoencoders.data import load_dataset, make_loader, spread
    from autoencoders.loss_spec import with_vgg_weights
    from autoencoders.losses import get_loss
    from autoencoders.models import count_parameters
    from autoencoders.run_files import RunFiles

    cfg = validate_sr(config)
    device = T.resolve_device(cfg.device)
    files = RunFiles(cfg, CHECKPOINT_KIND, "super-resolution", SR_COLUMNS)
    resume_state, finished = files.prepare()  # same fresh/resume/finished/refuse rules as `percept train`
    run_dir = cfg.run_dir
    if finished:
        return run_dir

    train_set = load_dataset(cfg.data, cfg.train_split, root=cfg.data_root, image_size=cfg.image_size, verify=cfg.verify)
    eval_set = load_dataset(cfg.data, cfg.eval_split, root=cfg.data_root, image_size=cfg.image_size, verify=cfg.verify)
    if cfg.train_images:
        # Spread over the split, so a quick run still sees every photo or class.
        train_set = train_set.subset(spread(len(train_set), cfg.train_images))
    if len(train_set) == 0 or len(eval_set) == 0:
        raise InputError(f"--data {cfg.data}: needs images in both {cfg.train_split!r} and {cfg.eval_split!r}")

    T.seed_everything(cfg.seed)
    model = build_srnet(cfg.scale, cfg.channels, cfg.blocks, cfg.bicubic_skip).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = get_loss(cfg.loss, **with_vgg_weights(cfg.loss, cfg.loss_options, cfg.vgg_weights)).to(device)
    lpips_fn = _lpips_or_none(cfg, device)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, device=device, generator=generator)
    # Spread over the held-out split (as export picks them), so every photo or class is scored.
    hr_eval = eval_set.tensor(spread(len(eval_set), cfg.eval_images))

    epoch, step, history = files.restore(resume_state, model, optimizer, generator)
    if resume_state is None:
        base = evaluate_sr(None, hr_eval, cfg.scale, cfg.batch_size, device, lpips_fn)
        history.append({"epoch": 0, "split": cfg.eval_split, "method": "bicubic", "loss": float("nan"), **base})

    record = files.start(
        device, epoch,
        model={**model.describe(), "parameters": count_parameters(model)},
        data={"train": train_set.summary(), "eval": eval_set.summary()},
        metrics_note="psnr/ssim/ms_ssim on RGB over the whole image; psnr_y/ssim_y on BT.601 Y with a border of "
                     f"{cfg.scale} px cropped; ms_ssim empty below 2 scales; lpips empty without VGG-16 weights",
        lpips=lpips_fn is not None,
    )
    files.write_metrics(history)

    while epoch < cfg.epochs:
        model.train()
        total, seen, t0 = 0.0, 0, time.perf_counter()
        for batch_index, (hr, _, idx) in enumerate(T._progress(loader, cfg, epoch)):
            hr = hr.to(device, non_blocking=True)
            if cfg.crop and cfg.crop < hr.shape[-1]:
                hr = random_crop(hr, cfg.crop)
            with torch.no_grad():
                lr = degrade(hr, cfg.scale)
            sr = model(lr)
            bad = None if torch.isfinite(sr).all() else "the output holds NaN/Inf"
            if bad is None:
                loss = loss_fn(sr, hr)
                bad = None if torch.isfinite(loss) else f"the loss is {float(loss.detach())}"
            if bad is not None:
                T._fail(run_dir, record, f"{bad} at step {step + 1} (epoch {epoch + 1}, batch {batch_index}, first image "
                        f"{train_set.image_id(int(idx[0]))}); stopped, the last good checkpoint (epoch {epoch}) is kept; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += float(loss.detach()) * len(hr)
            seen += len(hr)
        if device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's queued kernels belong to its time
        seconds = time.perf_counter() - t0
        epoch += 1
        row = {"epoch": epoch, "split": cfg.eval_split, "method": "model",
               **evaluate_sr(model, hr_eval, cfg.scale, cfg.batch_size, device, lpips_fn),
               "loss": total / seen, "images_per_s": seen / seconds, "seconds": seconds}
        history.append(row)
        files.end_epoch(model, model.describe(), optimizer, generator, epoch, step, history)
        print(f"superres {cfg.run_name}: epoch {epoch}/{cfg.epochs} train loss {row['loss']:.4g} | {cfg.eval_split}: "
              f"psnr {row['psnr']:.2f} (bicubic {history[0]['psnr']:.2f}) psnr_y {row['psnr_y']:.2f} ssim {row['ssim']:.3f}",
              flush=True)
    files.finish(epoch)
    return run_dir


def load_srnet(run_dir: str | Path, device="cpu") -> nn.Module:
    """Rebuild a run's SR network from its checkpoint, in eval mode."""
    from autoencoders import train as T
    from autoencoders.train import load_checkpoint

    path = Path(run_dir) / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    if state.get("kind") != CHECKPOINT_KIND:
        raise InputError(f"{path}: not a super-resolution checkpoint")
    spec = state["model_spec"]
    model = build_srnet(spec["scale"], spec["channels"], spec["blocks"], spec["bicubic_skip"])
    return T.load_weights(model, state, path, "the SR network", device)


# --------------------------------------------------------------------------------------------
# Export to the reconstruction manifest


@dataclass
class SRExportConfig:
    """What `percept superres export` writes."""

    out: str = "runs/sr"  # experiment folder holding superres/
    n: int = DEFAULT_N  # held-out images spread evenly over the split (all if fewer)
    spares: int = DEFAULT_SPARES  # further held-out images marked use=spare, for practice trials (as `reconstruct`)
    split: str = ""  # split to export; "" = the runs' held-out split
    device: str = "auto"  # cuda when available, else cpu
    batch_size: int = 32  # images per forward pass
    vgg_weights: str = ""  # VGG-16 state dict for the lpips column; "" = torchvision's cache
    lpips: bool = True  # add an lpips column when the VGG-16 weights are present (left out, said once, if not)
    overwrite: bool = False  # replace reconstructions even when study/design.json was built from them


def finished_sr_runs(out: str | Path) -> list[tuple[str, Path, dict]]:
    """(name, folder, record) of each finished run under <out>/superres, sorted; unfinished ones named and skipped."""
    from autoencoders.train import read_run_record

    root = Path(out) / "superres"
    runs, skipped = [], []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        record = read_run_record(folder) if (folder / "config.json").exists() else None
        if record is not None and record.get("kind") != CHECKPOINT_KIND:
            raise InputError(f"{folder / 'config.json'}: not a super-resolution run (kind {record.get('kind')!r})")
        (runs.append((folder.name, folder, record)) if record and record["status"] == "finished" else skipped.append(folder.name))
    if skipped:
        print(f"skipping unfinished super-resolution run(s): {', '.join(skipped)}")
    if not runs:
        raise InputError(f"{root}: no finished super-resolution runs; train some with `percept superres train --out {out}`")
    return runs


def _refuse_foreign_export(recon_dir: Path) -> None:
    """Never replace an autoencoder export: super-resolution gets its own experiment folder."""
    import pandas as pd

    manifest = recon_dir / "manifest.csv"
    models = recon_dir.parent / "models"
    if recon_dir.exists() and not manifest.is_file() and models.is_dir() and any(models.iterdir()):
        # A half-written export of an autoencoder experiment: not ours to replace.
        raise InputError(f"{recon_dir}: this experiment has autoencoder runs in {models}; give super-resolution its own --out")
    if manifest.is_file():
        try:
            archs = set(pd.read_csv(manifest, usecols=["arch"], dtype=str)["arch"].dropna())
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"{manifest}: unreadable ({str(exc).splitlines()[0]}); not replacing it") from None
        foreign = sorted(archs - {"sr", "baseline"})
        if foreign:
            raise InputError(f"{manifest}: holds {', '.join(foreign)} reconstructions; give super-resolution its own "
                             f"--out (an experiment folder) instead of replacing them")


def export_sr(config: SRExportConfig) -> Path:
    """Super-resolve n held-out images (+ spares) with every finished run; reconstructions/ is replaced at once or not at all.

    Refused when reconstructions/ holds an autoencoder export, or when the experiment's study design
    was built from the current manifest (unless `overwrite`), exactly as `percept reconstruct`.
    """
    from autoencoders.export import refuse_if_design_uses
    from percept.contracts.staging import staged_dir

    out = Path(config.out)
    recon_dir = out / "reconstructions"
    _refuse_foreign_export(recon_dir)
    if not config.overwrite:
        refuse_if_design_uses(out, "exporting")
    with staged_dir(recon_dir) as staging:
        _export_sr(config, staging)
    return recon_dir / "manifest.csv"


def _export_sr(config: SRExportConfig, recon_dir: Path) -> Path:
    """Write manifest.csv, PNGs and a contact sheet into the (empty, staged) folder `recon_dir`."""
    import pandas as pd
    import torch

    from autoencoders.data import load_dataset, to_float, to_uint8
    from autoencoders.export import _batched, colour_metrics, contact_sheet, pick_images, safe_names, save_png, shared_data
    from autoencoders.train import resolve_device
    from percept.contracts.manifest import write_manifest
    from percept.contracts.run import loss_name

    out = Path(config.out)
    runs = finished_sr_runs(out)
    shared = shared_data(runs, also=("scale",))
    scale, split = shared["scale"], config.split or shared["eval_split"]
    dataset = load_dataset(shared["data"], split, root=shared["data_root"], image_size=shared["image_size"],
                           verify=shared["verify"])
    if len(dataset) == 0:
        raise InputError(f"--split {split}: dataset {shared['data']!r} has no images in it")
    indices, uses, n_main = pick_images(len(dataset), config.n, config.spares, "superres export")
    chosen = dataset.images[indices]  # one gather: from a memory-mapped STL-10 it reads the disk
    orig_u8 = chosen.transpose(0, 2, 3, 1)
    hr = to_float(chosen)
    ids = [dataset.image_id(i) for i in indices]
    labels = [int(dataset.labels[i]) for i in indices]
    stems = safe_names(ids)
    dev = resolve_device(config.device)
    lr = degrade(hr, scale)
    lpips_fn = _lpips_or_none(config, "cpu")

    for stem, img in zip(stems, orig_u8):
        save_png(recon_dir / "originals" / f"{stem}.png", img)
    # Each image's own mean colour: the flat baseline every export carries (INTERFACES 1).
    flat = hr.mean(dim=(2, 3), keepdim=True).expand_as(hr)
    candidates = [(f"sr{scale}-bicubic", "sr", "bicubic", 0, bicubic_up(lr, scale))]
    for name, folder, record in runs:
        model = load_srnet(folder, dev)
        sr = _batched(lambda x: model(x.to(dev)).float().cpu(), lr, config.batch_size)
        # The manifest's loss is the run name's safe form (a sum's expression stays in config.json).
        candidates.append((name, "sr", loss_name(record["config"]["loss"]), record["config"]["seed"], sr))
    candidates.append(("flat", "baseline", "flat", 0, flat))

    rows, sheet = [], []
    flat_mse = None
    for name, arch, loss, seed, images in candidates:
        recon_u8 = to_uint8(images)
        with torch.no_grad():
            # The manifest's ms_ssim is the contract's (finite, 1 scale on small images), as percept reconstruct writes it.
            m = sr_metrics(to_float(recon_u8.transpose(0, 3, 1, 2)), hr, scale, lpips_fn, ms_ssim_nan=False)
        m.update({k: torch.from_numpy(v) for k, v in colour_metrics(recon_u8, orig_u8).items()})
        if name == "flat":
            flat_mse = float(m["mse"].mean())
        for i, (stem, img) in enumerate(zip(stems, recon_u8)):
            save_png(recon_dir / name / f"{stem}.png", img)
            rows.append({
                "image_id": ids[i], "split": split, "label": "" if labels[i] < 0 else labels[i],
                "original_path": f"originals/{stem}.png", "run": name, "arch": arch, "loss": loss,
                "recon_path": f"{name}/{stem}.png",
                **{k: float(m[k][i]) for k in ("mse", "mae", "psnr", "ssim", "ms_ssim", "delta_e", "haarpsi")},
                "degenerate": 0, "use": uses[i], "seed": seed, "data": shared["data"], "scale": scale,
                "psnr_y": float(m["psnr_y"][i]), "ssim_y": float(m["ssim_y"][i]),
                **({"lpips": float(m["lpips"][i])} if lpips_fn is not None else {}),
            })
        if arch != "baseline":
            sheet.append((name, recon_u8[:n_main]))  # the main images: those people will judge
        print(f"superres export {name}: {n_main} main + {len(ids) - n_main} spare images, psnr "
              f"{float(m['psnr'][:n_main].mean()):.2f} dB, psnr_y {float(m['psnr_y'][:n_main].mean()):.2f} dB, "
              f"ssim {float(m['ssim'][:n_main].mean()):.3f} (main images)")
    df = pd.DataFrame(rows)
    # A run that does not beat its images' flat mean colour on MSE is degenerate (INTERFACES 3).
    means = df.groupby("run")["mse"].mean()
    worse = set(means.index[means >= flat_mse])
    df.loc[df["run"].isin(worse) & (df["arch"] != "baseline"), "degenerate"] = 1
    manifest = write_manifest(df, recon_dir / "manifest.csv")
    contact_sheet(recon_dir / "contact_sheet.png", orig_u8[:n_main], sheet, ids[:n_main])
    return manifest


# The demo's super-resolution stage: pixel vs MS-SSIM vs bicubic. Crops of 48 px, not 32: below 41 px
# MS-SSIM has a single scale (it is SSIM), see losses.default_scales.
DEMO_SETTINGS = {"scale": 4, "channels": 16, "blocks": 1, "crop": 48, "epochs": 3, "batch_size": 8, "lr": 5e-4,
                 "eval_images": 32}


def demo_stage(out: str | Path, *, n: int = 24, device: str = "auto", progress: bool = False) -> Path:
    """Train mse and ms_ssim ×4 networks on the photos into `out` (its own experiment folder) and export them; rerun = no-op training."""
    for loss in ("mse", "ms_ssim"):
        train_sr(SRConfig(out=str(out), loss=loss, device=device, resume=True, progress=progress, **DEMO_SETTINGS))
    return export_sr(SRExportConfig(out=str(out), n=n, device=device))
