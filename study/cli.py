"""`percept design|run|simulate`: build trial lists, run a participant, write simulated observers."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from percept.contracts import InputError
from percept.contracts.tables import read_toml

COMMANDS = ("design", "run", "simulate")


def _csv_list(text: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list")
    return items


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1024x768") from None
    return w, h


def _parser(command: str) -> argparse.ArgumentParser:
    from study.design import DEFAULT_PAIRS, DesignConfig
    from study.observers import OBSERVERS, ObserverConfig

    p = argparse.ArgumentParser(prog=f"percept {command}")
    p.add_argument("command", choices=[command], help=argparse.SUPPRESS)
    p.add_argument("--config", type=Path, help=f"TOML file whose [{command}] table sets defaults for these flags")
    if command == "design":
        d = DesignConfig()
        p.description = "Build study/design.csv + design.json (trial lists, counterbalancing, catch and practice trials)."
        p.add_argument("--manifest", type=Path, required=True, help="reconstructions/manifest.csv")
        p.add_argument("--out", type=Path, required=True, help="experiment folder; writes <out>/study/")
        # --kinds, --pairs and --ranking-losses take a default and/or per-architecture values: "mse:ms_ssim;fc=ssim:mse".
        p.add_argument("--kinds", default=",".join(d.kinds),
                       help="any of triplet,ranking,pair,rating,rating_ref,jnd (default triplet,ranking; one module each in "
                       "study/trials/); per architecture: 'fc=triplet;conv=ranking'")
        p.add_argument("--pairs", default=",".join(f"{a}:{b}" for a, b in DEFAULT_PAIRS),
                       help="loss pairs for triplets (default %(default)s); per architecture: 'mse:ms_ssim;fc=ssim:mse'")
        p.add_argument("--ranking-losses", default=",".join(d.ranking_losses),
                       help="three losses (default %(default)s); per architecture: 'conv=ms_ssim,mse,mae'")
        p.add_argument("--preset", default=None, help="snell: the paper's plan (fc SSIM-vs-MSE triplets; conv and vae "
                       "rankings of MS-SSIM, MSE, MAE); sets kinds, pairs, ranking losses and archs")
        p.add_argument("--stimulus-seed", type=int, default=None,
                       help="show the runs of this seed (default: the lowest seed of each arch and loss)")
        p.add_argument("--no-mirror", dest="mirror", action="store_false",
                       help="no mirrored twin of each list (default: list 2k+1 = list 2k with sides swapped)")
        p.add_argument("--archs", type=_csv_list, default=None, help="architectures to include (default all in the manifest)")
        p.add_argument("--images", type=int, default=None, help="images to use (default all with every run needed)")
        p.add_argument("--lists", type=int, default=d.lists, help="participant lists covering the items (default %(default)s)")
        p.add_argument("--catch", type=float, default=d.catch, help="share of catch trials in the main block (default %(default)s)")
        p.add_argument("--practice", type=int, default=d.practice, help="practice trials per list (default %(default)s)")
        p.add_argument("--seed", type=int, default=d.seed)
        p.add_argument("--jnd-ms", type=_csv_list, default=[str(v) for v in d.jnd_ms],
                       help="jnd trials: first image, blank gap, second image in ms (default %(default)s)")
        p.add_argument("--blur-sigma", type=float, default=d.blur_sigma, help="catch degradation blur σ, px (default %(default)s)")
        p.add_argument("--noise-sd", type=float, default=d.noise_sd, help="catch degradation noise SD (default %(default)s)")
    elif command == "run":
        p.description = "Run one participant (PsychoPy window); resumes an unfinished session."
        p.add_argument("--design", type=Path, required=True, help="study/design.csv")
        p.add_argument("--participant", help="participant id (letters, digits, - and _); a dialog asks if absent")
        p.add_argument("--session", default="1", help="session id (default 1); a new one starts fresh")
        p.add_argument("--list", dest="list_choice", default="auto", help="auto or a list number (default auto)")
        p.add_argument("--fullscreen", action="store_true")
        p.add_argument("--scale", type=int, default=1, help="integer nearest-neighbour upscale of every image (default 1)")
        p.add_argument("--monitor", help="PsychoPy Monitor Center name")
        p.add_argument("--break-every", type=int, default=30, help="main trials between breaks (default %(default)s)")
        p.add_argument("--iti", type=float, default=0.5, help="blank seconds between trials (default %(default)s)")
        p.add_argument("--size", type=_size, default=(1024, 768), help="window size when not fullscreen (default 1024x768)")
        p.add_argument("--pilot", action="store_true", help="pilot mode: shows PILOT, marks record and participant id")
        p.add_argument("--screenshots", type=Path, help="save a back-buffer screenshot of the first trial of each kind here")
    elif command == "simulate":
        o = ObserverConfig()
        p.description = "Write response files of scripted observers (marked simulated) for a design."
        p.add_argument("--design", type=Path, required=True, help="study/design.csv")
        p.add_argument("--participants", type=int, required=True)
        p.add_argument("--observer", choices=OBSERVERS, default=o.observer)
        p.add_argument("--noise", type=float, default=o.noise, help="metric observers: SD of a utility difference (default %(default)s)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--participant-sd", type=float, default=o.participant_sd)
        p.add_argument("--image-sd", type=float, default=o.image_sd)
        p.add_argument("--side-sd", type=float, default=o.side_sd)
        p.add_argument("--lapse", type=float, default=o.lapse, help="catch trials: chance of a random answer")
        p.add_argument("--target", default=o.target, help="preference observer: the preferred loss")
        p.add_argument("--logit", type=float, help="preference observer: true logit of preferring --target")
        p.add_argument("--prob", type=float, help="preference observer: true probability of preferring --target")
        p.add_argument("--first", type=int, default=1, help="number of the first participant (sim01 = 1)")
    return p


def _apply_config(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> None:
    """Use a TOML file's [command] table as defaults, so flags still override it."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is None:
        return
    table = read_toml(known.config).get(command, {})
    dests = {a.dest for a in parser._actions}
    unknown = [k for k in table if k.replace("-", "_") not in dests]
    if unknown:
        raise InputError(f"--config: {known.config} [{command}] has unknown key(s) {', '.join(unknown)}")
    parser.set_defaults(**{k.replace("-", "_"): (tuple(v) if isinstance(v, list) else v) for k, v in table.items()})
    for action in parser._actions:  # a required flag given in the file is no longer required
        if action.dest in {k.replace("-", "_") for k in table}:
            action.required = False


def _ms_triple(values) -> tuple[int, ...]:
    """--jnd-ms 'first,gap,second' as whole milliseconds."""
    try:
        return tuple(int(str(v)) for v in values)
    except ValueError:
        raise InputError(f"--jnd-ms: {','.join(map(str, values))!r} is not three whole numbers of ms (e.g. 1000,250,1000)") from None


def _design(args: argparse.Namespace) -> int:
    from study.design import DesignConfig, build_design, describe, load_design, plan_settings

    cfg = DesignConfig(**plan_settings(args.kinds, args.pairs, args.ranking_losses), images=args.images, lists=args.lists,
                       catch=args.catch, practice=args.practice, seed=args.seed, archs=tuple(args.archs) if args.archs else None,
                       blur_sigma=args.blur_sigma, noise_sd=args.noise_sd, preset=args.preset,
                       stimulus_seed=args.stimulus_seed, mirror=args.mirror, jnd_ms=_ms_triple(args.jnd_ms))
    path = build_design(args.manifest, args.out, cfg)
    df, _ = load_design(path)
    mirrored = f" ({cfg.lists} covering every item, each with its mirror)" if cfg.mirror else ""
    print(f"design: {len(df)} trials in {df['list_id'].nunique()} list(s){mirrored} → {path}")
    print(describe(df))
    return 0


def _run(args: argparse.Namespace) -> int:
    from study.experiment import RunConfig, ask_participant, run_session

    participant, session = args.participant, args.session
    if participant is None:
        answer = ask_participant(session)
        if answer is None:
            print("run: cancelled in the dialog; nothing was recorded", file=sys.stderr)
            return 1
        participant, session = answer
    cfg = RunConfig(design=args.design, participant=participant, session=session, list_choice=args.list_choice,
                    fullscreen=args.fullscreen, scale=args.scale, monitor=args.monitor, break_every=args.break_every,
                    iti=args.iti, pilot=args.pilot, size=tuple(args.size), screenshots=args.screenshots)
    run_session(cfg)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from study.observers import ObserverConfig, simulate

    cfg = ObserverConfig(observer=args.observer, noise=args.noise, participant_sd=args.participant_sd,
                         image_sd=args.image_sd, side_sd=args.side_sd, lapse=args.lapse, target=args.target,
                         logit=args.logit, prob=args.prob)
    paths = simulate(args.design, args.participants, seed=args.seed, config=cfg, first=args.first)
    print(f"simulate: {len(paths)} observer(s) '{cfg.describe()}' → {paths[0].parent}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`percept design|run|simulate ...` (argv starts with the command); bad input → one line, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: percept {{{','.join(COMMANDS)}}} [options]   (python -m study works the same)", file=sys.stderr)
        return 2
    command = argv[0]
    try:
        parser = _parser(command)
        _apply_config(parser, command, argv)
        args = parser.parse_args(argv)
        return {"design": _design, "run": _run, "simulate": _simulate}[command](args)
    except InputError as exc:
        if os.environ.get("PERCEPT_DEBUG"):
            raise
        print(f"percept {command}: error: {exc}", file=sys.stderr)
        return 2
