"""`percept train | reconstruct | encode` (also `python -m autoencoders ...`)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from percept.contracts import InputError

COMMANDS = ("train", "reconstruct", "encode", "superres", "style")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one autoencoder (arch × loss × seed)",
                       description="Train one autoencoder into <out>/models/<arch>-<loss>-s<seed>/. "
                                   "Precedence: built-in defaults < --config TOML < flags.")
    # Every flag defaults to None so that only the flags actually given override the TOML file.
    p.add_argument("--config", type=Path, help="TOML file of TrainConfig keys (top level or a [train] table)")
    p.add_argument("--data", help="photos (default) | stl10 | folder:PATH")
    p.add_argument("--arch", help="fc | conv (default) | vae")
    p.add_argument("--loss", help="mse (default) | mae | ssim | ms_ssim | mix")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default) | cpu | cuda")
    p.add_argument("--out", help="experiment folder (runs/EXP)")
    p.add_argument("--code-size", type=int, help="code dimension (default 128)")
    p.add_argument("--beta", type=float, help="VAE KL weight (default 1)")
    p.add_argument("--width", type=float, help="channel/hidden-unit multiplier (default 1; 0.25 for quick CPU runs)")
    p.add_argument("--image-size", type=int, help="image side in pixels (default 96)")
    p.add_argument("--data-root", help="folder holding stl10_binary/ (default data)")
    p.add_argument("--train-split", help="split to train on (default train)")
    p.add_argument("--eval-split", help="held-out split evaluated each epoch (default test)")
    p.add_argument("--eval-images", type=int, help="held-out images evaluated each epoch (default 128)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--download", action="store_const", const=True, help="download STL-10 (2.6 GB) if missing")
    p.add_argument("--no-verify", dest="verify", action="store_const", const=False, help="skip the STL-10 MD5 check")
    p.add_argument("--resume", action="store_const", const=True, help="continue a killed run from its checkpoint (a run finished with the same settings: nothing to do)")
    p.add_argument("--overwrite", action="store_const", const=True, help="discard a previous run of the same name")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")


def _export_parsers(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstructions of held-out images by every finished run",
                       description="Write <out>/reconstructions/{manifest.csv, originals/, <run>/, contact_sheet.png}.")
    p.add_argument("--out", required=True, type=Path, help="experiment folder holding models/")
    p.add_argument("--split", help="split to reconstruct (default: the runs' held-out split)")
    p.add_argument("--n", type=int, default=100, help="N images spread evenly over the split (default 100; all if the split is smaller)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p = sub.add_parser("encode", help="latent codes of train and held-out images by every finished run",
                       description="Write <out>/codes/<run>.npz (VAE: posterior means).")
    p.add_argument("--out", required=True, type=Path, help="experiment folder holding models/")
    p.add_argument("--splits", nargs="+", help="splits to encode (default: the runs' train and held-out splits)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


# `percept superres ACTION` and `percept style ACTION`: action -> (config dataclass, run function), by module.
PERCEPTUAL_ACTIONS = {
    "superres": {"train": ("SRConfig", "train_sr"), "export": ("SRExportConfig", "export_sr")},
    "style": {"train": ("StyleTrainConfig", "train_style"), "apply": ("StyleApplyConfig", "apply_style"),
              "optimize": ("StyleOptimizeConfig", "optimize_style")},
}


def _perceptual_parsers(sub) -> None:
    """Minimal parsers for superres/style, one flag per config field (the shared generated parser will replace this)."""
    import dataclasses
    import importlib

    helps = {"superres": "super-resolution: train a network, export its images to the manifest",
             "style": "style transfer: train Johnson's network, apply it, or optimise one image (Gatys)"}
    for command, actions in PERCEPTUAL_ACTIONS.items():
        module = importlib.import_module(f"autoencoders.{command}")
        p = sub.add_parser(command, help=helps[command])
        actions_sub = p.add_subparsers(dest="action", required=True)
        for action, (cls_name, _) in actions.items():
            cls = getattr(module, cls_name)
            a = actions_sub.add_parser(action, help=(cls.__doc__ or "").splitlines()[0])
            for f in dataclasses.fields(cls):
                flag = "--" + f.name.replace("_", "-")
                kind = f.type if isinstance(f.type, str) else f.type.__name__
                if kind == "bool":
                    a.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
                elif kind in ("int", "float", "str"):
                    a.add_argument(flag, type={"int": int, "float": float, "str": str}[kind], default=None)
                # dict fields (loss_options) are TOML-only


def run_perceptual(args: argparse.Namespace) -> int:
    """Build the action's config from the given flags (defaults otherwise) and run it."""
    import dataclasses
    import importlib

    module = importlib.import_module(f"autoencoders.{args.command}")
    cls_name, fn_name = PERCEPTUAL_ACTIONS[args.command][args.action]
    cls = getattr(module, cls_name)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    result = getattr(module, fn_name)(cls(**given))
    print(f"{args.command} {args.action}: done → {result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of all three subcommands."""
    parser = argparse.ArgumentParser(prog="percept", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _export_parsers(sub)
    _perceptual_parsers(sub)
    return parser


def train_config(args: argparse.Namespace):
    """Resolve defaults < TOML (--config) < flags into a validated TrainConfig."""
    from autoencoders.train import TrainConfig, config_from_dict, load_config_file

    values = load_config_file(args.config) if args.config else {}
    source = f"--config {args.config}" if args.config else "flags"
    for f in fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values = {k: v for k, v in values.items() if k.replace("-", "_") != f.name}
            values[f.name] = given
    return config_from_dict(values, source=source)


def main(argv: list[str] | None = None) -> int:
    """Run `train`, `reconstruct` or `encode`; argv starts with the subcommand."""
    if argv is None:
        argv = sys.argv[1:]
        if argv and argv[0] in COMMANDS:
            # `python -m autoencoders CMD ...`: through the dispatcher, so errors print the same one line.
            from percept.cli import main as percept_main

            return percept_main(argv)
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from autoencoders.train import train

        run_dir = train(train_config(args))
        print(f"train: finished → {run_dir}")
    elif args.command == "reconstruct":
        from autoencoders.export import reconstruct

        manifest = reconstruct(args.out, split=args.split, n=args.n, device=args.device)
        print(f"reconstruct: manifest → {manifest}; contact sheet → {manifest.parent / 'contact_sheet.png'}")
    elif args.command == "encode":
        from autoencoders.export import encode

        encode(args.out, splits=args.splits, device=args.device)
    elif args.command in PERCEPTUAL_ACTIONS:
        return run_perceptual(args)
    else:  # argparse only accepts the subcommands above
        raise InputError(f"unknown command {args.command!r}; choose from {', '.join(COMMANDS)}")
    return 0
