"""`percept`: one command for the whole pipeline, dispatching to the three packages."""
from __future__ import annotations

import importlib
import os
import sys

from percept.contracts import InputError

# subcommand -> module whose main(argv) handles it (argv starts with the subcommand).
COMMANDS = {
    "train": "autoencoders.cli",
    "reconstruct": "autoencoders.cli",
    "encode": "autoencoders.cli",
    "superres": "autoencoders.cli",
    "style": "autoencoders.cli",
    "design": "study.cli",
    "run": "study.cli",
    "simulate": "study.cli",
    "analyze": "analysis.cli",
    "classify": "analysis.cli",
    "power": "analysis.cli",
    "report": "analysis.cli",
    "demo": "percept.demo",
}

USAGE = """usage: percept COMMAND [options]   (percept COMMAND --help for each)

  train        train an autoencoder (arch × loss × seed)
  reconstruct  export reconstructions of held-out images + manifest.csv + contact sheet
  encode       export latent codes of train and test images
  superres     super-resolution: train (×2/×4/×8), export to the manifest with a bicubic baseline
  style        style transfer: train, apply (--export-onnx), optimize (L-BFGS baseline)
  design       build trial lists (triplet, ranking, catch, practice) from a manifest
  run          run one participant in the PsychoPy experiment
  simulate     write responses of scripted observers (marked simulated)
  analyze      preference statistics, rankings, scaling, metric agreement
  classify     linear classification of latent codes
  power        power by simulation from a fitted study
  report       one self-contained HTML report
  demo         the whole chain on the bundled photos
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch `percept COMMAND ...`; bad input ends with one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = argv[0]
    if command not in COMMANDS:
        print(f"percept: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command])
    try:
        return int(module.main(argv) or 0)
    except InputError as exc:
        if os.environ.get("PERCEPT_DEBUG"):
            raise
        print(f"percept {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"percept {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
