"""LPIPS (Zhang et al. 2018, v0.1, VGG) as an evaluation metric, on our VGG-16 weights file.

The `lpips` package ships its calibrated linear layers (`weights/v0.1/vgg.pth`) in its wheel, but
asks torchvision for the ImageNet backbone, which would download it. Here the backbone is built
random (`pnet_rand=True`, no download) and then filled from the same torchvision-format VGG-16
state dict the perceptual losses read (torchvision's cache or `--vgg-weights`).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from percept.contracts import InputError

# lpips.pretrained_networks.vgg16 cuts torchvision's vgg16().features into these slices.
_SLICES = ((1, 0, 4), (2, 4, 9), (3, 9, 16), (4, 16, 23), (5, 23, 30))


def lpips_available() -> bool:
    """Whether the `lpips` package is installed."""
    from importlib.util import find_spec

    return find_spec("lpips") is not None


class LpipsVGG(nn.Module):
    """forward(x, y) with (N,3,H,W) images in [0,1] -> (N,) LPIPS distances (lower = more similar)."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        from autoencoders.perceptual import default_weights_path

        path = Path(weights) if weights else default_weights_path()
        if not path.is_file():
            raise InputError(f"VGG-16 weights not found at {path}; put torchvision's vgg16-397923af.pth there "
                             "or pass its path with --vgg-weights")
        if not lpips_available():
            raise InputError("the lpips package is not installed (pip install lpips)")
        import lpips

        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`; harmless here
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(pretrained=True, net="vgg", version="0.1", pnet_rand=True, verbose=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several unrelated types for a bad file
            raise InputError(f"{path}: not a readable VGG-16 state dict ({type(exc).__name__})") from None
        backbone = {}
        for k, start, stop in _SLICES:
            for i in range(start, stop):
                for kind in ("weight", "bias"):
                    key = f"features.{i}.{kind}"
                    if key in state:
                        backbone[f"slice{k}.{i}.{kind}"] = state[key]
        try:
            model.net.load_state_dict(backbone, strict=True)
        except RuntimeError as exc:
            raise InputError(f"{path}: not torchvision VGG-16 weights ({str(exc).splitlines()[0]})") from None
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "LpipsVGG":
        """Stay in eval mode: a metric, never trained."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image LPIPS of x against y, both in [0, 1]."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"LPIPS needs two (N,3,H,W) RGB batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            return self.model(x.float(), y.float(), normalize=True).flatten()


def load_lpips(weights: str | Path | None = None, who: str = "lpips") -> LpipsVGG | None:
    """An LPIPS scorer on the VGG-16 file (None: torchvision's cache), or None, said once on stdout, without weights or package.

    A file that is there but is not VGG-16 weights is an error (InputError), not a silent omission.
    """
    from autoencoders.perceptual import default_weights_path

    path = Path(weights) if weights else default_weights_path()
    if not path.is_file() or not lpips_available():
        try:
            LpipsVGG(path)  # raises the one-line reason: the file to put where, or the package to install
        except InputError as exc:
            print(f"{who}: lpips column left out ({exc})")
            return None
    return LpipsVGG(path)


def lpips_values(metric: LpipsVGG, recon_u8, orig_u8, batch_size: int = 32):
    """Per-image LPIPS (float64 (N,)) of 8-bit (N,H,W,3) reconstructions against their originals."""
    import numpy as np

    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float() / 255.0  # noqa: E731
    out = [metric(to_t(recon_u8[i:i + batch_size]), to_t(orig_u8[i:i + batch_size])) for i in range(0, len(recon_u8), batch_size)]
    return torch.cat(out).double().numpy()


def lpips_column(recon_u8, orig_u8, weights: str | Path | None = None, batch_size: int = 32):
    """Per-image LPIPS of 8-bit (N,H,W,3) images for a manifest column, or None (said once) without weights or package."""
    metric = load_lpips(weights)
    return None if metric is None else lpips_values(metric, recon_u8, orig_u8, batch_size)
