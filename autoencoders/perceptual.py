"""Perceptual losses of Johnson et al. (ECCV 2016) on a frozen ImageNet VGG-16.

The loss network is torchvision's VGG-16 (`VGG16_Weights.IMAGENET1K_V1`), fed RGB in [0,1]
normalised by the ImageNet mean/std that those weights expect (the official Lua code fed
Caffe-style BGR ×255 mean-subtracted input to Caffe weights; torchvision's weights want this).
The weights are read from the torch hub cache (`$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`)
or from an explicit path; nothing is downloaded at run time.
"""
from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from percept.contracts import InputError

# Johnson et al.: feature loss at relu2_2, style loss summed over these four layers.
VggOutputs = namedtuple("VggOutputs", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
# Index (exclusive end) of each named ReLU in torchvision's vgg16().features.
_LAYER_ENDS = {"relu1_2": 4, "relu2_2": 9, "relu3_3": 16, "relu4_3": 23}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_weights_path() -> Path:
    """Where torchvision caches the ImageNet VGG-16 weights."""
    from torchvision.models import VGG16_Weights

    filename = VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def check_layers(layers: Sequence[str], what: str = "VGG layer") -> tuple[str, ...]:
    """The layer names as a tuple, or one line naming the first unknown one."""
    if isinstance(layers, str):
        layers = [layers]
    for name in layers:
        if name not in VggOutputs._fields:
            raise InputError(f"unknown {what} {name!r}; choose from {', '.join(VggOutputs._fields)}")
    return tuple(layers)


class Vgg16Features(nn.Module):
    """Frozen VGG-16 truncated at the deepest of `layers` (default relu4_3); forward((N,3,H,W) in [0,1]) -> VggOutputs.

    Layers past the truncation come back as None, so a feature loss at relu2_2 never runs conv3-4.
    """

    def __init__(self, weights: str | Path | None = None, layers: Sequence[str] | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg16

        wanted = check_layers(layers) if layers else VggOutputs._fields
        deepest = max(VggOutputs._fields.index(name) for name in wanted)

        path = Path(weights) if weights is not None else default_weights_path()
        if not path.is_file():
            raise InputError(
                f"VGG-16 weights not found at {path}; put torchvision's vgg16-397923af.pth there "
                "(it is what torchvision downloads) or pass its path with --vgg-weights"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several unrelated types for a bad file
            raise InputError(f"{path}: not a readable VGG-16 state dict ({type(exc).__name__})") from None
        with torch.device("meta"):  # skip the random init of 138 M parameters about to be replaced
            net = vgg16(weights=None)
        try:
            net.load_state_dict(state, strict=True, assign=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).splitlines()[0]
            raise InputError(f"{path}: not torchvision VGG-16 weights ({first})") from None
        ends = list(_LAYER_ENDS.values())[: deepest + 1]
        features = net.features[: ends[-1]]
        starts = [0] + ends[:-1]
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(starts, ends))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Vgg16Features":
        """Stay in eval mode: the loss network is frozen."""
        return super().train(False)

    def forward(self, x: Tensor) -> VggOutputs:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"VGG-16 needs (N,3,H,W) RGB images, got shape {tuple(x.shape)}")
        h = (x - self.mean) / self.std
        outs = []
        for block in self.slices:
            h = block(h)
            outs.append(h)
        return VggOutputs(*outs, *([None] * (len(VggOutputs._fields) - len(outs))))


def gram(features: Tensor) -> Tensor:
    """Johnson et al. eq. 3: G = φφᵀ / (C·H·W), (N,C,H,W) -> (N,C,C)."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels (the usual TV regulariser), per batch."""
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


class PerceptualLoss(nn.Module):
    """feature_weight·ℓ_feat(relu2_2) + style_weight·Σ ℓ_style + tv_weight·TV, computed in float32.

    ℓ_feat = (1/(C·H·W))·‖φ(ŷ)−φ(y)‖² (Johnson et al. eq. 2), averaged over the batch;
    ℓ_style = ‖G(ŷ)−G(y)‖²_F summed over relu1_2, relu2_2, relu3_3, relu4_3 (eq. 4).
    """

    def __init__(self, feature_layer: str = "relu2_2", feature_weight: float = 1.0, style_weight: float = 0.0,
                 tv_weight: float = 0.0, weights: str | Path | None = None) -> None:
        super().__init__()
        if feature_layer not in VggOutputs._fields:
            raise InputError(f"unknown VGG layer {feature_layer!r}; choose one of {', '.join(VggOutputs._fields)}")
        for name, value in (("feature_weight", feature_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)):
            if not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"{name} must be a non-negative number, got {value!r}")
        self.vgg = Vgg16Features(weights)
        self.feature_layer = feature_layer
        self.feature_weight, self.style_weight, self.tv_weight = float(feature_weight), float(style_weight), float(tv_weight)

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        if recon.shape != target.shape:
            raise InputError(f"recon and target shapes differ: {tuple(recon.shape)} vs {tuple(target.shape)}")
        with torch.autocast(device_type=recon.device.type, enabled=False):
            recon, target = recon.float(), target.float()
            fr, ft = self.vgg(recon), self.vgg(target)
            loss = recon.new_zeros(())
            if self.feature_weight:
                a, b = getattr(fr, self.feature_layer), getattr(ft, self.feature_layer)
                loss = loss + self.feature_weight * F.mse_loss(a, b)  # mean over N·C·H·W = batch mean of eq. 2
            if self.style_weight:
                style = sum((gram(a) - gram(b)).pow(2).sum(dim=(1, 2)).mean() for a, b in zip(fr, ft))
                loss = loss + self.style_weight * style
            if self.tv_weight:
                loss = loss + self.tv_weight * total_variation(recon)
        return loss
