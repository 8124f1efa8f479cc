"""`percept`: one command for the whole pipeline, dispatching to the three packages."""
from __future__ import annotations

import importlib
import sys

from percept import commands
from percept.commands import REGISTRY

# subcommand -> module whose main(argv) handles it (argv starts with the subcommand).
COMMANDS = {name: module for name, (module, _) in REGISTRY.items()}


def usage() -> str:
    """`percept --help`: every command with its one-line summary."""
    lines = ["usage: percept COMMAND [options]   (percept COMMAND --help for each; --config FILE.toml for any)", ""]
    lines += [f"  {name:<12} {summary}" for name, (_, summary) in REGISTRY.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Dispatch `percept COMMAND ...`; every expected failure ends with one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command = argv[0]
    if command not in COMMANDS:
        print(f"percept: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # The same guard as `python -m package COMMAND`: the package's own guard sees this one and lets it report,
    # under the same name (`percept superres train` for a two-word command).
    module = importlib.import_module(COMMANDS[command])
    two = " ".join(argv[:2])
    prog = f"percept {two}" if any(c.name == two for c in getattr(module, "COMMANDS", ())) else f"percept {command}"
    return commands.guarded(prog, lambda: module.main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
