"""Weighted sums of named losses, e.g. `"ms_ssim+0.1*vgg_feature"`, and Johnson et al.'s VGG-16 terms.

A loss spec is terms joined by `+`; each term is `NAME` or `WEIGHT*NAME` with a positive finite
weight (`1e-5*tv`, `0.5*mse`). Terms:

- the image losses of `autoencoders.losses` (mse, mae, ssim, ms_ssim, mix);
- `vgg_feature`: (1/(C·H·W))·‖φ_j(ŷ)−φ_j(y)‖² at one VGG-16 layer j (relu2_2 unless
  `feature_layer` says otherwise), averaged over the batch (Johnson et al. eq. 2);
- `vgg_style`: Σ_j ‖G_j(ŷ)−G_j(y)‖²_F with G = φφᵀ/(C·H·W) over `style_layers` (default relu1_2,
  relu2_2, relu3_3, relu4_3), averaged over the batch (eq. 3-4);
- `tv`: total variation of ŷ (mean squared difference of neighbouring pixels).

All VGG terms of one spec share one frozen network, truncated at the deepest layer any term
needs, and the features of each image are computed once per call.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from percept.contracts import InputError

VGG_TERMS: tuple[str, ...] = ("vgg_feature", "vgg_style")
EXTRA_TERMS: tuple[str, ...] = VGG_TERMS + ("tv",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
EXAMPLE = "'ms_ssim+0.1*vgg_feature'"
# Options of the new terms; the image losses take theirs from autoencoders.losses.
_EXTRA_OPTIONS: dict[str, tuple[str, ...]] = {
    "vgg_feature": ("feature_layer",),
    "vgg_style": ("style_layers",),
    "tv": (),
}
# `+` joins terms, except the `+` of an exponent such as 1e+3.
_SPLIT = re.compile(r"(?<![0-9.][eE])\+")


def term_names() -> tuple[str, ...]:
    """Every name a term of a sum may have."""
    from autoencoders.losses import IMAGE_LOSS_NAMES

    return tuple(IMAGE_LOSS_NAMES) + EXTRA_TERMS


def _all_names() -> str:
    from autoencoders.losses import LOSS_NAMES

    return ", ".join(dict.fromkeys(tuple(LOSS_NAMES) + EXTRA_TERMS))


def parse_loss_spec(spec: str, flag: str | None = None) -> list[tuple[float, str]]:
    """`"ms_ssim+0.1*vgg_feature"` -> [(1.0, "ms_ssim"), (0.1, "vgg_feature")]; one line naming a bad term or weight."""
    where = f"{flag} {spec!r}" if flag else f"loss {spec!r}"
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{where}: empty loss; choose from {_all_names()}, or a weighted sum such as {EXAMPLE}")
    names = term_names()
    parts = [p.strip() for p in _SPLIT.split(spec)]
    if len(parts) == 1 and "*" not in parts[0] and parts[0] not in names:
        # A single unknown name reads as a typo of a loss, not a malformed sum.
        head = f"{flag} {spec!r} is not a loss; choose from" if flag else f"unknown loss {spec!r}; choose one of"
        raise InputError(f"{head} {_all_names()}, or a weighted sum such as {EXAMPLE}")
    terms: list[tuple[float, str]] = []
    for part in parts:
        if not part:
            raise InputError(f"{where}: empty term (two '+' in a row or a '+' at an end)")
        weight_text, star, name = part.rpartition("*")
        name = name.strip()
        if name not in names:
            raise InputError(f"{where}: unknown term {name!r}; terms are {', '.join(names)}")
        weight = 1.0
        if star:
            try:
                weight = float(weight_text.strip())
            except ValueError:
                weight = float("nan")
            if not (math.isfinite(weight) and weight > 0):
                raise InputError(f"{where}: weight {weight_text.strip()!r} of term {name!r} is not a positive finite number")
        if any(n == name for _, n in terms):
            raise InputError(f"{where}: term {name!r} appears twice; give it one weight")
        terms.append((weight, name))
    return terms


def needs_vgg(spec: str) -> bool:
    """Whether a loss (a registry name or a sum) needs the VGG-16 weights."""
    if spec == "vgg":
        return True
    from autoencoders.losses import LOSS_NAMES

    if spec in LOSS_NAMES:
        return False
    return any(name in VGG_TERMS for _, name in parse_loss_spec(spec))


def with_vgg_weights(spec: str, options: dict[str, Any], vgg_weights: str | Path | None) -> dict[str, Any]:
    """Loss options plus the VGG weights path under the key that `spec`'s constructor expects (none if not needed)."""
    options = dict(options)
    if vgg_weights and needs_vgg(spec):
        options.setdefault("weights" if spec == "vgg" else "vgg_weights", str(vgg_weights))
    return options


class WeightedLoss(nn.Module):
    """Σ weight·term(recon, target) over a parsed spec; `terms()` returns each unweighted term."""

    def __init__(self, spec: str, **options: Any) -> None:
        super().__init__()
        from autoencoders.losses import _OPTIONS, IMAGE_LOSS_NAMES, get_loss

        self.spec = spec
        parsed = parse_loss_spec(spec)
        vgg_weights = options.pop("vgg_weights", None)
        accepted = {name: _EXTRA_OPTIONS.get(name, _OPTIONS.get(name, ())) for _, name in parsed}
        unused = sorted(k for k in options if not any(k in acc for acc in accepted.values()))
        if unused:
            valid = sorted({o for acc in accepted.values() for o in acc} | {"vgg_weights"})
            raise InputError(f"loss {spec!r} has no option(s) {', '.join(unused)}; valid options: {', '.join(valid)}")
        self.weights = [w for w, _ in parsed]
        self.names = [n for _, n in parsed]
        self.pixel = nn.ModuleDict()
        self.feature_layer: str | None = None
        self.style_layers: tuple[str, ...] = ()
        for _, name in parsed:
            mine = {k: v for k, v in options.items() if k in accepted[name]}
            if name in IMAGE_LOSS_NAMES:
                self.pixel[name] = get_loss(name, **mine)
            elif name == "vgg_feature":
                from autoencoders.perceptual import check_layers

                self.feature_layer = check_layers(mine.get("feature_layer", "relu2_2"), "feature_layer")[0]
            elif name == "vgg_style":
                from autoencoders.perceptual import check_layers

                layers = mine.get("style_layers", STYLE_LAYERS)
                if isinstance(layers, str):  # "relu1_2,relu3_3" from a flag or TOML
                    layers = [p.strip() for p in layers.split(",") if p.strip()]
                self.style_layers = check_layers(list(layers), "style layer") if layers else ()
                if not self.style_layers:
                    raise InputError(f"loss {spec!r}: style_layers is empty; name at least one of {', '.join(STYLE_LAYERS)}")
            elif name == "tv":
                pass
            else:
                raise AssertionError(f"term {name!r} is parsed but has no constructor")
        wanted = tuple(dict.fromkeys(((self.feature_layer,) if self.feature_layer else ()) + self.style_layers))
        self.vgg = None
        if wanted:
            from autoencoders.perceptual import Vgg16Features

            self.vgg = Vgg16Features(vgg_weights, layers=wanted)

    def terms(self, recon: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Each term's unweighted value (float32 scalars), in spec order."""
        if recon.shape != target.shape:
            raise InputError(f"recon and target shapes differ: {tuple(recon.shape)} vs {tuple(target.shape)}")
        out: dict[str, Tensor] = {}
        fr = ft = None
        if self.vgg is not None:
            with torch.autocast(device_type=recon.device.type, enabled=False):
                fr = self.vgg(recon.float())
                with torch.set_grad_enabled(target.requires_grad and torch.is_grad_enabled()):
                    ft = self.vgg(target.float())  # the target is data: no graph kept for it
        for name in self.names:
            if name in self.pixel:
                out[name] = self.pixel[name](recon, target)
            elif name == "vgg_feature":
                out[name] = feature_loss(getattr(fr, self.feature_layer), getattr(ft, self.feature_layer))
            elif name == "vgg_style":
                out[name] = style_loss([getattr(fr, k) for k in self.style_layers],
                                       [gram(getattr(ft, k)) for k in self.style_layers])
            elif name == "tv":
                from autoencoders.perceptual import total_variation

                with torch.autocast(device_type=recon.device.type, enabled=False):
                    out[name] = total_variation(recon.float())
            else:
                raise AssertionError(f"term {name!r} has no evaluation")
        return out

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        """The weighted sum of the terms."""
        values = self.terms(recon, target)
        return sum(w * values[n] for w, n in zip(self.weights, self.names))

    def extra_repr(self) -> str:
        """The spec and the VGG layers in repr()."""
        return f"spec={self.spec!r}, feature_layer={self.feature_layer!r}, style_layers={self.style_layers!r}"


def gram(features: Tensor) -> Tensor:
    """Johnson et al. eq. 3 (see autoencoders.perceptual.gram)."""
    from autoencoders.perceptual import gram as _gram

    return _gram(features)


def feature_loss(a: Tensor, b: Tensor) -> Tensor:
    """(1/(C·H·W))·‖a−b‖² per image, averaged over the batch (equal to the mean squared difference)."""
    return (a.float() - b.float()).pow(2).mean()


def style_loss(features: list[Tensor], target_grams: list[Tensor]) -> Tensor:
    """Σ_j ‖G(φ_j)−G_target_j‖²_F averaged over the batch; a target Gram of batch 1 is shared by every image."""
    total = features[0].new_zeros((), dtype=torch.float32)
    for f, g in zip(features, target_grams):
        total = total + (gram(f.float()) - g.float()).pow(2).sum(dim=(1, 2)).mean()
    return total


def build_loss(spec: str, **options: Any) -> nn.Module:
    """The loss module of a spec (a sum, or a single new term); called by autoencoders.losses.get_loss."""
    return WeightedLoss(spec, **options)
