"""Autoencoders `fc`, `conv` and `vae` for square colour images (default 96×96, code of 128).

The paper names the three architectures and the 128-unit code but not their layer sizes; the
sizes below are our choices (the conv stack follows a third-party reading of the STL-10 model).
`w` is the `width` multiplier (channels and hidden units scale with it, at least 1); shapes are
for 96×96 inputs, code size D = 128.

=====  =======================================  ==================================================
arch   encoder (input 3×96×96)                  decoder (output 3×96×96, sigmoid → [0, 1])
=====  =======================================  ==================================================
fc     flatten 27648 → Linear 1024w → act       Linear D → 1024w → act → Linear 27648 → sigmoid
       → Linear D (the code)                    → reshape 3×96×96
conv   Conv 5×5 s2 3→128w (48²) → act           Linear D → 512w×12×12 → act
       Conv 5×5 s2 →256w (24²) → act            ConvT 5×5 s2 →256w (24²) → act
       Conv 5×5 s2 →512w (12²) → act            ConvT 5×5 s2 →128w (48²) → act
       flatten → Linear D (linear bottleneck)   ConvT 5×5 s2 →3 (96²) → sigmoid
vae    the conv encoder, then two Linear heads  the conv decoder, fed z = μ + σ·ε while training
       μ (D) and log σ² (D)                     and z = μ in eval mode
=====  =======================================  ==================================================

`act` is LeakyReLU(0.2) in every hidden layer of every architecture, for every loss, so that within
an architecture only the loss differs. Why not ReLU (measured on the demo's photo patches, see
REFERENCES.md): the fc autoencoder trained with SSIM or MS-SSIM killed its ReLU units — 98% of the
decoder's units were active at initialisation and 0% by epoch 6, after which the last layer's
gradient is exactly zero and the output is one constant grey image — because on these patches
(MS-)SSIM first rewards removing contrast. A leaky unit always passes gradient (slope 0.2 below zero),
and with LeakyReLU plus one epoch of MSE warm-up (`warmup_epochs` in autoencoders/train.py) every fc
unit stayed alive. Checkpoints written before this change hold no `activation` in their model spec
and are rebuilt with ReLU, as they were trained.

Every encoder sees its input centred, 2x − 1 in [−1, 1] (faster training than raw [0, 1]).
All convolutions use padding 2 (transposed ones also output_padding 1), so each halves or doubles
the side exactly; the image side must be divisible by 8 for conv and vae. Interface:
`model.encode(x) -> (N, D)` (the VAE gives the posterior mean μ), `model(x) -> recon` for fc and
conv, `model(x) -> VAEOutput(recon, mu, logvar)` for vae, and `model.reconstruct(x) -> recon`
(deterministic for all three: the VAE decodes μ). The VAE objective is
`loss(recon, x) + β · KL(q(z|x) ‖ N(0, I)) / (3·H·W)`: the KL (summed over the code, averaged
over the batch) is divided by the number of pixel values because our reconstruction losses are
means over pixels; with the MSE loss and β = 1 this is the usual VAE with a Gaussian decoder of
variance ½ (Kingma & Welling 2014, eq. 10, rescaled by 1/(3·H·W)).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from percept.contracts import InputError

ARCHS = ("fc", "conv", "vae")
CONV_CHANNELS = (128, 256, 512)  # the third-party reading of the paper's STL-10 conv net
FC_HIDDEN = 1024  # our choice: one hidden layer each side of the code
ACTIVATIONS = ("leaky_relu", "relu")  # leaky_relu for every new model; relu rebuilds old checkpoints
LEAKY_SLOPE = 0.2  # the slope that kept every fc unit alive under (MS-)SSIM (module docstring)


def make_activation(name: str) -> nn.Module:
    """The hidden-layer nonlinearity by name (ACTIVATIONS)."""
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "relu":
        return nn.ReLU()
    raise InputError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")


class VAEOutput(NamedTuple):
    """What the VAE's forward pass returns while training."""

    recon: torch.Tensor  # (N, 3, H, W) in [0, 1]
    mu: torch.Tensor  # (N, D) posterior mean
    logvar: torch.Tensor  # (N, D) posterior log-variance

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) ‖ N(0, I)) summed over the code and averaged over the batch (Kingma & Welling, App. B)."""
        return (-0.5 * (1 + self.logvar - self.mu.pow(2) - self.logvar.exp()).sum(dim=1)).mean()


def _scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


class Autoencoder(nn.Module):
    """Common checks and the deterministic `reconstruct` shared by the three architectures."""

    arch = ""

    def __init__(self, image_size: int, code_size: int, width: float, activation: str = "leaky_relu") -> None:
        super().__init__()
        self.image_size = image_size
        self.code_size = code_size
        self.width = width
        self.activation = activation

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse batches that are not (N, 3, S, S) at the model's size S, naming both sizes."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"{self.arch} model expects images (N, 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise InputError(f"{self.arch} model was built for {self.image_size}×{self.image_size} images "
                             f"but got {x.shape[-2]}×{x.shape[-1]}")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check the batch and centre it: encoders see 2x − 1 in [−1, 1], which trains faster than [0, 1]."""
        self.check_input(x)
        return x * 2 - 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) → codes (N, D)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """codes (N, D) → images (N, 3, S, S) in [0, 1]."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (N, 3, S, S) → (N, 3, S, S); the VAE decodes its posterior mean."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct a batch."""
        return self.reconstruct(x)

    def describe(self) -> dict:
        """Architecture settings that rebuild this model with `build_model`."""
        return {"arch": self.arch, "image_size": self.image_size, "code_size": self.code_size, "width": self.width,
                "activation": self.activation}


class FCAutoencoder(Autoencoder):
    """Fully connected autoencoder on the flattened image."""

    arch = "fc"

    def __init__(self, image_size: int = 96, code_size: int = 128, width: float = 1.0,
                 activation: str = "leaky_relu") -> None:
        super().__init__(image_size, code_size, width, activation)
        n = 3 * image_size * image_size
        hidden = _scaled(FC_HIDDEN, width)
        act = make_activation
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), act(activation), nn.Linear(hidden, code_size))
        self.decoder = nn.Sequential(nn.Linear(code_size, hidden), act(activation), nn.Linear(hidden, n), nn.Sigmoid())
        if activation == "leaky_relu":  # new models only: old checkpoints keep the init they were trained from
            # The decoder starts from a flat grey image instead of pixel-independent noise: random
            # weights in this 27648-wide layer put noise into every output that 375 steps do not
            # unlearn. Measured (fc-ssim, seed 0, demo settings): SSIM 0.392 → 0.421, PSNR 11.6 → 14.6 dB.
            nn.init.zeros_(self.decoder[2].weight)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) → (N, D)."""
        return self.encoder(self.prepare(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) → (N, 3, S, S)."""
        return self.decoder(z).view(-1, 3, self.image_size, self.image_size)


class _ConvStack(nn.Module):
    """The conv encoder body and decoder body shared by `conv` and `vae`."""

    def __init__(self, image_size: int, width: float, activation: str) -> None:
        super().__init__()
        act = make_activation
        c1, c2, c3 = (_scaled(c, width) for c in CONV_CHANNELS)
        self.side = image_size // 8  # three stride-2 convolutions
        self.channels = c3
        self.features = c3 * self.side * self.side
        self.down = nn.Sequential(
            nn.Conv2d(3, c1, 5, stride=2, padding=2), act(activation),  # (N, c1, S/2, S/2)
            nn.Conv2d(c1, c2, 5, stride=2, padding=2), act(activation),  # (N, c2, S/4, S/4)
            nn.Conv2d(c2, c3, 5, stride=2, padding=2), act(activation),  # (N, c3, S/8, S/8)
            nn.Flatten(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(c3, c2, 5, stride=2, padding=2, output_padding=1), act(activation),  # (N, c2, S/4, S/4)
            nn.ConvTranspose2d(c2, c1, 5, stride=2, padding=2, output_padding=1), act(activation),  # (N, c1, S/2, S/2)
            nn.ConvTranspose2d(c1, 3, 5, stride=2, padding=2, output_padding=1), nn.Sigmoid(),  # (N, 3, S, S)
        )


class ConvAutoencoder(Autoencoder):
    """Deterministic convolutional autoencoder with a linear bottleneck."""

    arch = "conv"

    def __init__(self, image_size: int = 96, code_size: int = 128, width: float = 1.0,
                 activation: str = "leaky_relu") -> None:
        super().__init__(image_size, code_size, width, activation)
        self.body = _ConvStack(image_size, width, activation)
        self.to_code = nn.Linear(self.body.features, code_size)
        self.from_code = nn.Sequential(nn.Linear(code_size, self.body.features), make_activation(activation))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) → (N, D)."""
        return self.to_code(self.body.down(self.prepare(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) → (N, 3, S, S)."""
        h = self.from_code(z).view(-1, self.body.channels, self.body.side, self.body.side)
        return self.body.up(h)


class ConvVAE(Autoencoder):
    """Convolutional VAE: Gaussian posterior N(μ, σ²) over the code, standard normal prior."""

    arch = "vae"
    LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in float32 early in training

    def __init__(self, image_size: int = 96, code_size: int = 128, width: float = 1.0,
                 activation: str = "leaky_relu") -> None:
        super().__init__(image_size, code_size, width, activation)
        self.body = _ConvStack(image_size, width, activation)
        self.to_mu = nn.Linear(self.body.features, code_size)
        self.to_logvar = nn.Linear(self.body.features, code_size)
        self.from_code = nn.Sequential(nn.Linear(code_size, self.body.features), make_activation(activation))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, S, S) → (μ, log σ²), each (N, D)."""
        h = self.body.down(self.prepare(x))
        return self.to_mu(h), self.to_logvar(h).clamp(*self.LOGVAR_RANGE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean μ (N, D)."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) → (N, 3, S, S)."""
        h = self.from_code(z).view(-1, self.body.channels, self.body.side, self.body.side)
        return self.body.up(h)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """Training: decode a reparameterised sample z = μ + σ·ε; eval: decode μ."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return VAEOutput(self.decode(z), mu, logvar)


_CLASSES = {"fc": FCAutoencoder, "conv": ConvAutoencoder, "vae": ConvVAE}


def build_model(arch: str, image_size: int = 96, code_size: int = 128, *, width: float = 1.0,
                activation: str = "leaky_relu") -> Autoencoder:
    """Build an untrained model by name; bad names or sizes raise InputError naming the options."""
    if arch not in _CLASSES:
        raise InputError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    if code_size < 1:
        raise InputError(f"code size must be ≥ 1, got {code_size}")
    if not width > 0:
        raise InputError(f"width must be > 0, got {width}")
    if image_size < 8 or (arch != "fc" and image_size % 8):
        raise InputError(f"{arch} needs an image size divisible by 8 (three stride-2 convolutions), got {image_size}")
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    return _CLASSES[arch](image_size=image_size, code_size=code_size, width=width, activation=activation)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
