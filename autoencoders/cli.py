"""`percept train | grid | reconstruct | encode | superres ACTION | style ACTION` (also `python -m autoencoders ...`).

Each command is (config dataclass, run function); `percept.commands` makes the flags, reads
`--config` and prints expected failures as one line. TrainConfig lives with the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autoencoders.export import DEFAULT_N, DEFAULT_SPARES
from autoencoders.grid import GridConfig
# superres and style import only numpy and the contracts at module level; torch when an action runs
from autoencoders.style import StyleApplyConfig, StyleOptimizeConfig, StyleTrainConfig
from autoencoders.superres import SRConfig, SRExportConfig
from autoencoders.superres_eval import SREvaluateConfig
from autoencoders.train import TrainConfig
from percept import commands
from percept.commands import Command

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ReconstructConfig:
    """Settings of `percept reconstruct`."""

    out: Path = field(metadata={"help": "experiment folder runs/EXP holding models/; writes <out>/reconstructions/"})
    split: str | None = field(default=None, metadata={"help": "split to reconstruct; none: the runs' held-out split"})
    n: int = field(default=DEFAULT_N, metadata={"help": "images spread evenly over the split (all if it is smaller)"})
    spares: int = field(default=DEFAULT_SPARES, metadata={
        "help": "further held-out images marked use=spare, reserved for practice trials"})
    device: str = field(default="auto", metadata={"help": "cuda when available, else cpu", "choices": DEVICES})
    overwrite: bool = field(default=False, metadata={
        "help": "replace reconstructions even when study/design.json was built from them"})
    vgg_weights: Path | None = field(default=None, metadata={
        "help": "VGG-16 state dict (torchvision format) for the lpips column; none: torchvision's cache "
                "($TORCH_HOME/hub/checkpoints/vgg16-397923af.pth); missing: the column is left out"})
    lpips: bool = field(default=True, metadata={"help": "add an lpips column when the VGG-16 weights are present"})


@dataclass(frozen=True)
class EncodeConfig:
    """Settings of `percept encode`."""

    out: Path = field(metadata={"help": "experiment folder runs/EXP holding models/; writes <out>/codes/"})
    splits: tuple[str, ...] | None = field(default=None, metadata={
        "help": "splits to encode; none: the runs' train and held-out splits"})
    device: str = field(default="auto", metadata={"help": "cuda when available, else cpu", "choices": DEVICES})


def run_train(cfg: TrainConfig) -> int:
    """Train one run (validated first, so a bad name is one line before any data is read)."""
    from autoencoders.grid import train_locked
    from autoencoders.train import dist_from_env, validate

    run_dir = train_locked(validate(cfg))  # the run's lock tells `percept grid --status` it is running
    if dist_from_env().writer:  # under torchrun, rank 0 alone reports
        print(f"train: finished → {run_dir}")
    return 0


def run_grid(grid: GridConfig, make) -> int:
    """Train the grid's runs with the shared settings `make` (a partial TrainConfig), then reconstruct and encode."""
    from autoencoders.grid import run_grid as go

    return go(grid, make)


def run_reconstruct(cfg: ReconstructConfig) -> int:
    """Reconstruct held-out images with every finished run."""
    from autoencoders.export import reconstruct

    manifest = reconstruct(cfg.out, split=cfg.split, n=cfg.n, spares=cfg.spares, device=cfg.device,
                           overwrite=cfg.overwrite, vgg_weights=cfg.vgg_weights, lpips=cfg.lpips)
    print(f"reconstruct: manifest → {manifest}; contact sheet → {manifest.parent / 'contact_sheet.png'}")
    return 0


def run_encode(cfg: EncodeConfig) -> int:
    """Write the latent codes of every finished run."""
    from autoencoders.export import encode

    paths = encode(cfg.out, splits=cfg.splits, device=cfg.device)
    print(f"encode: {len(paths)} codes file(s) → {cfg.out / 'codes'}")
    return 0


def _perceptual(module: str, function: str):
    """A run function for `percept superres|style ACTION`: calls autoencoders.<module>.<function>(cfg) and says where it wrote."""
    def run(cfg) -> int:
        import importlib

        result = getattr(importlib.import_module(f"autoencoders.{module}"), function)(cfg)
        print(f"{module} {function.split('_')[0]}: done → {result}")
        return 0

    run.__doc__ = f"Run autoencoders.{module}.{function}."
    return run


# `percept superres train|export|evaluate` and `percept style train|apply|optimize`: two-word commands, one flag per field.
PERCEPTUAL_COMMANDS = (
    Command("superres train", (SRConfig,), _perceptual("superres", "train_sr"),
            description="Writes <out>/superres/sr<f>-<loss>-s<seed>/ (config.json, checkpoint.pt, metrics.csv with a "
                        "bicubic row)."),
    Command("superres export", (SRExportConfig,), _perceptual("superres", "export_sr"),
            description="Writes the super-resolved held-out images to <out>/reconstructions/ (arch sr, bicubic run)."),
    Command("superres evaluate", (SREvaluateConfig,), _perceptual("superres_eval", "evaluate_folder"),
            description="Scores every finished run and bicubic on a folder of full-size images (Set5, Set14) → "
                        "<out>/evaluations/<name>/{scores.csv, table.md, contact_sheet.png}."),
    Command("style train", (StyleTrainConfig,), _perceptual("style", "train_style"),
            description="Trains Johnson et al.'s transformation network for one style image."),
    Command("style apply", (StyleApplyConfig,), _perceptual("style", "apply_style"),
            description="Stylises images of any size (optionally exports ONNX)."),
    Command("style optimize", (StyleOptimizeConfig,), _perceptual("style", "optimize_style"),
            description="Gatys et al.'s baseline: the same objective minimised over the pixels with L-BFGS."),
)


COMMANDS = (
    Command("train", (TrainConfig,), run_train,
            description="Writes <out>/models/<arch>-<loss>-s<seed>/ (config.json, checkpoint.pt, metrics.csv)."),
    # TrainConfig's fields are the grid's shared settings ([train] of the same --config, then [grid], then flags);
    # arch, loss and seed come from the grid, and every run resumes and is never overwritten.
    Command("grid", (GridConfig, TrainConfig), run_grid, later={TrainConfig: ("arch", "loss", "seed", "resume", "overwrite")},
            also_tables=("train",),
            description="Trains <out>/models/<arch>-<loss>-s<seed>/ for every arch × loss × seed (finished runs skipped, "
                        "killed ones resumed, failed ones reported), then reconstructs and encodes the finished runs. "
                        "Shared settings: the [train] table of --config, then [grid], then flags."),
    Command("reconstruct", (ReconstructConfig,), run_reconstruct,
            description="Writes <out>/reconstructions/{manifest.csv, originals/, <run>/, contact_sheet.png}."),
    Command("encode", (EncodeConfig,), run_encode, description="Writes <out>/codes/<run>.npz (VAE: posterior means)."),
) + PERCEPTUAL_COMMANDS


def main(argv: list[str] | None = None) -> int:
    """Run `train`, `grid`, `reconstruct`, `encode`, `superres ACTION` or `style ACTION`; argv starts with the command name."""
    return commands.main(COMMANDS, argv, package="autoencoders")
