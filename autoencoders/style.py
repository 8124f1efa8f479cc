"""Real-time style transfer (Johnson et al. 2016 §3) and its optimisation baseline (Gatys et al. 2016).

`train_style` trains Johnson's image transformation network on content images against one style
image; `apply_style` stylises images of any size with a trained run; `optimize_style` minimises the
same objective over the pixels of one image with L-BFGS, for comparison.

Transformation network (as in pytorch/examples fast_neural_style, instance normalisation):
  c9s1-32, d64, d128, 5 × residual block(128), u64, u32, c9s1-3
where cKsS-N is a K×K convolution, stride S, N filters, reflection padding, instance norm, ReLU;
dN a 3×3 stride-2 convolution; uN a ×2 nearest upsampling then 3×3 convolution; residual blocks are
two 3×3 convolutions with instance norm (ReLU after the first). The last layer has no norm and no
activation; outputs are clamped to [0, 1] only when saved.

Objective (on a frozen VGG-16, see autoencoders.loss_spec):
  content_weight·ℓ_feat(relu2_2) + style_weight·Σ_j ℓ_style(j) + tv_weight·TV
with ℓ_feat = (1/CHW)‖φ(ŷ)−φ(y_c)‖², ℓ_style = ‖G(φ_j(ŷ))−G(φ_j(y_s))‖²_F, G = φφᵀ/(CHW), TV the mean
squared neighbour difference. Our Gram term is a sum over C² entries, so weights that balance it
differ from the Lua reference code's (its defaults: content 1, style 5); tune per style.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from percept.contracts import InputError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

CHECKPOINT_KIND = "style"
STYLE_COLUMNS = ("epoch", "step", "loss", "content", "style", "tv", "images_per_s", "seconds")


def build_transformer() -> nn.Module:
    """Johnson et al.'s image transformation network (layers in the module docstring)."""
    from torch import nn

    def conv(cin: int, cout: int, k: int, stride: int = 1, norm: bool = True, relu: bool = True) -> list:
        layers = [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        return layers

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(*conv(c, c, 3), *conv(c, c, 3, relu=False))

        def forward(self, x):
            return x + self.body(x)

    class TransformerNet(nn.Module):
        """forward((N,3,H,W) in [0,1], H and W multiples of 4) -> (N,3,H,W), unclamped."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                *conv(3, 32, 9), *conv(32, 64, 3, 2), *conv(64, 128, 3, 2),
                *[Residual(128) for _ in range(5)],
                nn.Upsample(scale_factor=2, mode="nearest"), *conv(128, 64, 3),
                nn.Upsample(scale_factor=2, mode="nearest"), *conv(64, 32, 3),
                *conv(32, 3, 9, norm=False, relu=False),
            )

        def forward(self, x):
            return self.net(x)

    return TransformerNet()


def stylise(model: nn.Module, x: Tensor) -> Tensor:
    """Run the network on images of any size: reflect-pad to a multiple of 4, then crop back."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return model(x)[..., :h, :w]


def read_rgb(path: str | Path, size: int | None = None) -> Tensor:
    """An image file as (1,3,H,W) float in [0,1], its shorter side resized to `size` if given; one line if unreadable."""
    from PIL import Image, UnidentifiedImageError

    from autoencoders.data import to_float

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size:
                scale = size / min(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return to_float(arr.transpose(2, 0, 1)[None])


class StyleObjective:
    """Johnson's objective for one style image; `terms(ŷ, content)` -> {content, style, tv, loss}."""

    def __init__(self, style_image: Tensor, *, vgg_weights: str | None, content_layer: str = "relu2_2",
                 style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 content_weight: float = 1.0, style_weight: float = 5.0, tv_weight: float = 1e-5,
                 device: str | torch.device = "cpu") -> None:
        import torch

        from autoencoders.loss_spec import gram
        from autoencoders.perceptual import Vgg16Features, check_layers

        for name, value in (("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"--{name.replace('_', '-')} must be a non-negative number, got {value!r}")
        self.content_layer = check_layers(content_layer, "content layer")[0]
        self.style_layers = check_layers(list(style_layers), "style layer")
        if not self.style_layers:
            raise InputError("--style-layers: name at least one layer")
        self.weights = (float(content_weight), float(style_weight), float(tv_weight))
        self.vgg = Vgg16Features(vgg_weights or None, layers=(self.content_layer,) + self.style_layers).to(device)
        with torch.no_grad():
            feats = self.vgg(style_image.to(device))
            self.style_grams = [gram(getattr(feats, k)) for k in self.style_layers]

    def terms(self, out: Tensor, content: Tensor, content_features: Tensor | None = None) -> dict[str, Tensor]:
        """Weighted total and its unweighted parts."""
        import torch

        from autoencoders.loss_spec import feature_loss, style_loss
        from autoencoders.perceptual import total_variation

        with torch.autocast(device_type=out.device.type, enabled=False):
            fo = self.vgg(out.float())
            if content_features is None:
                with torch.no_grad():
                    content_features = getattr(self.vgg(content.float()), self.content_layer)
            c = feature_loss(getattr(fo, self.content_layer), content_features)
            s = style_loss([getattr(fo, k) for k in self.style_layers], self.style_grams)
            tv = total_variation(out.float())
        wc, ws, wt = self.weights
        return {"loss": wc * c + ws * s + wt * tv, "content": c, "style": s, "tv": tv}


# --------------------------------------------------------------------------------------------
# style train


@dataclass
class StyleTrainConfig:
    """Everything that defines a style-transfer run; saved resolved in config.json and the checkpoint."""

    style: str = ""  # the style image (any format PIL reads)
    content: str = "photos"  # content images: photos | stl10 | folder:PATH (Johnson used COCO)
    vgg_weights: str = ""  # VGG-16 state dict; "" = torchvision's cache, never downloaded
    content_weight: float = 1.0  # weight of the relu2_2 feature loss
    style_weight: float = 5.0  # the Lua reference default; our Gram term is larger, tune per style
    tv_weight: float = 1e-5  # total variation; Johnson searched 1e-6…1e-4
    content_layer: str = "relu2_2"  # Johnson et al.
    style_layers: str = "relu1_2,relu2_2,relu3_3,relu4_3"  # Johnson et al.
    style_size: int = 256  # the style image's shorter side before its Gram matrices are taken
    epochs: int = 2  # the PyTorch reference trains 2 epochs on COCO
    batch_size: int = 4  # Johnson et al.
    lr: float = 1e-3  # Johnson et al.'s Adam rate
    seed: int = 0  # seeds init and data order; part of the run name
    image_size: int = 96  # content image side (photos and STL-10 are 96 px)
    train_split: str = "train"  # content images to train on
    train_images: int = 0  # use only N content images spread over the split (0 = all): quick checks
    data_root: str = "data"  # STL-10 lives in <data_root>/stl10_binary/
    device: str = "auto"  # cuda when available, else cpu
    out: str = "runs/style"  # experiment folder; the run goes to <out>/style/<style>-s<seed>/
    resume: bool = False  # continue a killed run from its checkpoint
    overwrite: bool = False  # discard a previous run of the same name
    progress: bool = True  # tqdm bar on a terminal

    @property
    def run_name(self) -> str:
        """`<style file stem>-s<seed>`."""
        import re

        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(self.style).stem).strip("_-") or "style"
        return f"{stem}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        """`<out>/style/<run>/`."""
        return Path(self.out) / "style" / self.run_name


def _layers(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def train_style(config: StyleTrainConfig) -> Path:
    """Train (or resume) Johnson's transformation network for one style; return the run folder."""
    import torch

    from autoencoders import train as T
    from autoencoders.data import load_dataset, make_loader, spread
    from autoencoders.run_files import RunFiles

    cfg = config
    if not cfg.style:
        raise InputError("--style: name the style image")
    for name in ("epochs", "batch_size", "image_size", "style_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise InputError(f"--lr must be a positive number, got {cfg.lr}")
    device = T.resolve_device(cfg.device)
    style_image = read_rgb(cfg.style, cfg.style_size)
    files = RunFiles(cfg, CHECKPOINT_KIND, "style-transfer", STYLE_COLUMNS)
    resume_state, finished = files.prepare()
    run_dir = cfg.run_dir
    if finished:
        return run_dir
    data = load_dataset(cfg.content, cfg.train_split, root=cfg.data_root, image_size=cfg.image_size)
    if cfg.train_images:
        data = data.subset(spread(len(data), cfg.train_images))
    if len(data) == 0:
        raise InputError(f"--content {cfg.content}: split {cfg.train_split!r} has no images")
    if cfg.image_size % 4:
        raise InputError(f"--image-size {cfg.image_size} must be a multiple of 4 (two stride-2 layers)")

    T.seed_everything(cfg.seed)
    objective = StyleObjective(style_image, vgg_weights=cfg.vgg_weights, content_layer=cfg.content_layer,
                               style_layers=_layers(cfg.style_layers), content_weight=cfg.content_weight,
                               style_weight=cfg.style_weight, tv_weight=cfg.tv_weight, device=device)
    model = build_transformer().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = make_loader(data, cfg.batch_size, shuffle=True, device=device, generator=generator)
    epoch, step, history = files.restore(resume_state, model, optimizer, generator)
    record = files.start(device, epoch, data=data.summary())
    while epoch < cfg.epochs:
        model.train()
        t0, sums, seen = time.perf_counter(), {}, 0
        for batch_index, (x, _, idx) in enumerate(T._progress(loader, cfg, epoch)):
            x = x.to(device, non_blocking=True)
            parts = objective.terms(model(x), x)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                T._fail(run_dir, record, f"the loss is {float(loss.detach())} at step {step + 1} (epoch {epoch + 1}, "
                        f"batch {batch_index}); stopped, the last good checkpoint (epoch {epoch}) is kept; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(x)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(x)
        seconds = time.perf_counter() - t0
        epoch += 1
        history.append({"epoch": epoch, "step": step, **{k: v / seen for k, v in sums.items()},
                        "images_per_s": seen / seconds, "seconds": seconds})
        files.end_epoch(model, {"arch": "transformer"}, optimizer, generator, epoch, step, history)
        h = history[-1]
        print(f"style {cfg.run_name}: epoch {epoch}/{cfg.epochs} loss {h['loss']:.4g} (content {h['content']:.4g}, "
              f"style {h['style']:.4g}, tv {h['tv']:.4g})", flush=True)
    files.finish(epoch)
    return run_dir


def load_transformer(run_dir: str | Path, device="cpu") -> nn.Module:
    """A trained run's transformation network, in eval mode."""
    from autoencoders.train import load_checkpoint

    path = Path(run_dir) / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    if state.get("kind") != CHECKPOINT_KIND:
        raise InputError(f"{path}: not a style-transfer checkpoint")
    from autoencoders.train import load_weights

    return load_weights(build_transformer(), state, path, "the transformation network", device)


# --------------------------------------------------------------------------------------------
# style apply


@dataclass
class StyleApplyConfig:
    """What `percept style apply` stylises and where it writes."""

    model: str = ""  # a finished style run folder (<out>/style/<run>/)
    input: str = ""  # an image or a folder of images
    out: str = "stylised"  # folder for the stylised PNGs
    device: str = "auto"  # cuda when available, else cpu
    export_onnx: str = ""  # also write the network as ONNX to this path (needs onnx and onnxruntime)


def apply_style(config: StyleApplyConfig) -> list[Path]:
    """Stylise every input image at its own size; write `<out>/<stem>.png`; return the paths."""
    import torch

    from autoencoders.data import list_images, to_uint8
    from autoencoders.export import save_png
    from autoencoders.train import resolve_device

    if not config.model:
        raise InputError("--model: name a finished style run folder")
    device = resolve_device(config.device)
    model = load_transformer(config.model, device)
    src = Path(config.input)
    if src.is_dir():
        files = [src / name for name in list_images(src)]
    elif src.is_file():
        files = [src]
    else:
        raise InputError(f"--input {src}: no such image or folder")
    if not files:
        raise InputError(f"--input {src}: folder holds no images")
    written = []
    for path in files:
        x = read_rgb(path).to(device)
        with torch.no_grad():
            y = stylise(model, x)
        target = Path(config.out) / f"{path.stem}.png"
        save_png(target, to_uint8(y)[0])
        written.append(target)
    print(f"style apply: {len(written)} image(s) → {config.out}")
    if config.export_onnx:
        export_onnx(model.cpu(), Path(config.export_onnx))
    return written


def export_onnx(model: nn.Module, path: Path, check_size: int = 64) -> Path:
    """Write the network as ONNX (height/width dynamic) and check onnxruntime gives the same output."""
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("--export-onnx needs the onnx and onnxruntime packages (pip install onnx onnxruntime)") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, check_size, check_size)
    # The TorchScript exporter needs no onnxscript; its warnings (instance norm uses the input's own
    # statistics, as it should; slices not folded) are expected for this network.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UserWarning and the tracer's TracerWarning
        torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["stylised"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "stylised": {0: "n", 2: "h", 3: "w"}},
                          dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = torch.rand(1, 3, check_size + 4, check_size + 8)
    with torch.no_grad():
        want = model(probe).numpy()
    got = session.run(None, {"image": probe.numpy()})[0]
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise InputError(f"{path}: onnxruntime output differs from torch by {err:.3g}")
    print(f"style apply: ONNX model → {path} (onnxruntime matches torch within {err:.1e})")
    return path


# --------------------------------------------------------------------------------------------
# style optimize (Gatys et al.)


@dataclass
class StyleOptimizeConfig:
    """The optimisation baseline: Johnson's objective minimised over one image's pixels with L-BFGS."""

    style: str = ""  # the style image
    content: str = ""  # the content image
    out: str = "stylised"  # folder for the result, <out>/<content stem>-optimized.png
    vgg_weights: str = ""  # VGG-16 state dict; "" = torchvision's cache, never downloaded
    content_weight: float = 1.0  # as in `style train`
    style_weight: float = 5.0  # as in `style train`
    tv_weight: float = 1e-5  # as in `style train`
    content_layer: str = "relu2_2"  # as in `style train`
    style_layers: str = "relu1_2,relu2_2,relu3_3,relu4_3"  # as in `style train`
    style_size: int = 256  # as in `style train`
    size: int = 0  # content image's shorter side (0 = as it is)
    steps: int = 100  # L-BFGS iterations (each evaluates the objective about 1.2 times); Johnson compared up to 500
    init: str = "content"  # start from the content image or from "noise"
    seed: int = 0  # the noise start
    device: str = "auto"  # cuda when available, else cpu


def _check_lbfgs(steps: int, init: str) -> None:
    if init not in ("content", "noise"):
        raise InputError(f"--init {init!r}; choose from content, noise")
    if steps < 1:
        raise InputError(f"--steps must be ≥ 1, got {steps}")


def lbfgs_stylise(objective: StyleObjective, content: Tensor, steps: int, *, init: str = "content",
                  seed: int = 0) -> tuple[Tensor, dict[str, float], float]:
    """Gatys et al.: minimise `objective` over the pixels of one image with L-BFGS for `steps` iterations.

    Returns (image (1,3,H,W) detached, unclamped; its objective terms as floats plus `evaluations`,
    the number of objective evaluations; seconds of the optimisation alone, CUDA synchronised).
    """
    import torch

    _check_lbfgs(steps, init)
    with torch.no_grad():
        target = getattr(objective.vgg(content), objective.content_layer)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    start = content.clone() if init == "content" else torch.rand(content.shape, generator=gen).to(content.device)
    img = start.requires_grad_(True)
    # Strong Wolfe line search with a history of 50: the settings Gatys-style PyTorch ports use.
    opt = torch.optim.LBFGS([img], lr=1.0, max_iter=steps, history_size=50, line_search_fn="strong_wolfe")
    evaluations = 0

    def closure():
        nonlocal evaluations
        evaluations += 1
        opt.zero_grad()
        loss = objective.terms(img, content, target)["loss"]
        loss.backward()
        return loss

    if content.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    opt.step(closure)
    if content.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        final = {k: float(v) for k, v in objective.terms(img, content, target).items()}
    return img.detach(), final | {"evaluations": evaluations}, seconds


def optimize_style(config: StyleOptimizeConfig) -> dict:
    """Run L-BFGS over the pixels; write the PNG; return {loss, content, style, tv, evaluations, seconds, steps, path}."""
    from autoencoders.data import to_uint8
    from autoencoders.export import save_png
    from autoencoders.train import resolve_device

    cfg = config
    _check_lbfgs(cfg.steps, cfg.init)  # before any image or weights are read
    device = resolve_device(cfg.device)
    content = read_rgb(cfg.content, cfg.size or None).to(device)
    objective = StyleObjective(read_rgb(cfg.style, cfg.style_size), vgg_weights=cfg.vgg_weights,
                               content_layer=cfg.content_layer, style_layers=_layers(cfg.style_layers),
                               content_weight=cfg.content_weight, style_weight=cfg.style_weight,
                               tv_weight=cfg.tv_weight, device=device)
    img, final, seconds = lbfgs_stylise(objective, content, cfg.steps, init=cfg.init, seed=cfg.seed)
    target_path = Path(cfg.out) / f"{Path(cfg.content).stem}-optimized.png"
    save_png(target_path, to_uint8(img)[0])
    result = final | {"seconds": seconds, "steps": cfg.steps, "path": str(target_path)}
    print(f"style optimize: objective {result['loss']:.4g} after {cfg.steps} L-BFGS steps in {seconds:.1f} s → {target_path}")
    return result
