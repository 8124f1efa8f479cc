"""One command layer for the whole suite: (config dataclasses, run function) → parser, `--config`, one-line errors.

Each stage declares its commands as `Command(name, configs, run)`. The parser is generated from
the dataclasses' fields, so a field added to a config is a flag, a TOML key and a line of
`--help` at once, and its default lives in one place: the dataclass.

- Flags: `--field-name VALUE` for every field; booleans get `--x / --no-x`; tuples and lists
  are comma-separated (`--kinds triplet,ranking`), and with metadata `repeat` the flag may also be
  given once per item (`--mturk-origin A --mturk-origin B`); a `dict` field takes a JSON object;
  metadata `aliases` adds further flag names for the same field (grid's `--n` is also `--images`).
- Help: `field(metadata={"help": ...})`, else the field's trailing `# reason` comment in the
  class source, read only when `--help` is built (never at import); the default is appended.
- Precedence: dataclass defaults < the `[command]` table of `--config file.toml` < flags
  (`[superres.train]` for the two-word command `superres train`).
  Keys outside that table's command, unknown keys and values of the wrong type are refused in
  one line naming the file, table and key.
- Errors: every expected failure (InputError, OSError, a corrupt zip/npz, invalid JSON, a
  refused pickle, a bad flag) is one line `percept CMD: error: ...` on stderr and exit code 2,
  the same through `percept CMD` and `python -m package CMD`. `PERCEPT_DEBUG=1` re-raises.
"""
from __future__ import annotations

import argparse
import contextvars
import dataclasses
import errno
import functools
import json
import os
import pickle
import re
import sys
import types
import typing
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from percept.contracts import InputError

# Every command of the suite: name -> (module whose COMMANDS declares it, one line for `percept --help`).
REGISTRY: dict[str, tuple[str, str]] = {
    "train": ("autoencoders.cli", "train an autoencoder (arch × loss × seed)"),
    "grid": ("autoencoders.cli", "train a grid of runs (archs × losses × seeds, shared settings), then reconstruct + encode"),
    "reconstruct": ("autoencoders.cli", "export reconstructions of held-out images + manifest.csv + contact sheet"),
    "encode": ("autoencoders.cli", "export latent codes of train and held-out images"),
    "superres": ("autoencoders.cli", "super-resolution: train (×2/×4/×8); export to the manifest with a bicubic baseline; "
                 "evaluate on full-size folders (Set5, Set14)"),
    "style": ("autoencoders.cli", "style transfer: train, apply (--export-onnx), optimize (the L-BFGS baseline)"),
    "design": ("study.cli", "build trial lists (triplet, ranking, catch, practice) from a manifest"),
    "run": ("study.cli", "run one participant in the PsychoPy experiment"),
    "simulate": ("study.cli", "write responses of scripted observers (marked simulated)"),
    "serve": ("study.cli", "serve the study to participants' browsers (online; SQLite or PostgreSQL)"),
    "export-online": ("study.cli", "write the online sessions as response files (mode=online)"),
    "analyze": ("analysis.cli", "preference statistics, rankings, scaling, metric agreement"),
    "classify": ("analysis.cli", "linear classification of latent codes"),
    "power": ("analysis.cli", "power by simulation from a fitted study"),
    "report": ("analysis.cli", "one self-contained HTML report"),
    "demo": ("percept.demo", "the whole chain on the bundled photos"),
}

# Set while a command runs, so a command called by another (the demo's steps) lets the outer one report.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("percept_command_active", default=False)

# Library failures that bad or damaged files and full, read-only or odd file systems cause.
EXPECTED: tuple[type[BaseException], ...] = (
    InputError, OSError, zipfile.BadZipFile, EOFError, zlib.error, pickle.UnpicklingError,
    json.JSONDecodeError, UnicodeError,
)

# What to do about each file-system failure (the system's own text says what happened).
OS_HINTS = {
    errno.ENOSPC: "free some space or choose another --out",
    errno.EDQUOT: "free some space or choose another --out",
    errno.EROFS: "choose another --out",
    errno.ENAMETOOLONG: "choose a shorter --out or shorter names",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder stands where a file was expected",
    errno.EACCES: "check the owner and mode of the folder, or choose another --out",
    errno.EPERM: "check the owner and mode of the folder, or choose another --out",
}


@dataclass(frozen=True)
class Command:
    """A command: the dataclasses its flags come from and the function that runs it.

    `run` is called with one instance per class in `configs`, in order. Fields listed under a class
    in `later` are not flags: that class arrives as `functools.partial(cls, **values)` for `run`
    to finish (e.g. a participant id asked for in a dialog).
    `parse` maps a field to a function turning its flag text (or a TOML string) into a value;
    `flags` renames a field's flag (e.g. RunConfig.list_choice is `--list`).
    """

    name: str
    configs: tuple[type, ...]
    run: Callable[..., int | None]
    description: str = ""
    later: dict[type, tuple[str, ...]] = field(default_factory=dict)
    parse: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    # Other tables of the same --config file this command also reads, below its own table in precedence
    # (`percept grid` reads [train], so one file gives `percept train` and the grid the same settings).
    also_tables: tuple[str, ...] = ()

    @property
    def prog(self) -> str:
        """`percept NAME`, the name every message starts with."""
        return f"percept {self.name}"

    @property
    def table(self) -> str:
        """The command's `--config` table: `train`, or `superres.train` (a TOML dotted key) for a two-word command."""
        return self.name.replace(" ", ".")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become one-line InputErrors instead of usage + exit."""

    def error(self, message: str) -> typing.NoReturn:
        raise InputError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------------------------
# Fields → flags


def flag_name(f: dataclasses.Field, command: Command | None = None) -> str:
    """`--field-name`, or the name the command or the field's metadata `flag` gives it."""
    if command is not None and f.name in command.flags:
        return command.flags[f.name]
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def command_fields(command: Command) -> list[tuple[type, dataclasses.Field, Any]]:
    """(class, field, resolved type) of every flag of the command; two classes may not share a field name."""
    seen: dict[str, type] = {}
    out = []
    for cls in command.configs:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init or f.name in command.later.get(cls, ()):
                continue
            if f.name in seen:
                raise TypeError(f"{command.name}: field {f.name!r} is in both {seen[f.name].__name__} and {cls.__name__}")
            seen[f.name] = cls
            out.append((cls, f, hints[f.name]))
    return out


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@functools.lru_cache(maxsize=None)
def _source_comments(cls: type) -> dict[str, str]:
    """Trailing `# reason` comments of a dataclass's field lines, read from its source (only when --help is built)."""
    import inspect
    import io
    import tokenize

    comments: dict[str, str] = {}
    for base in cls.__mro__[1:]:  # fields inherited from a dataclass parent keep the parent's reasons
        if dataclasses.is_dataclass(base):
            comments.update(_source_comments(base))
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source file (frozen or compiled-only install): help stays without reasons
        return comments
    line_field: dict[int, str] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return comments
    own: dict[str, str] = {}
    for i, tok in enumerate(tokens):
        # a field line starts with NAME ':' at the class body's indentation
        if (tok.type == tokenize.NAME and i + 1 < len(tokens) and tokens[i + 1].string == ":"
                and (i == 0 or tokens[i - 1].type in (tokenize.INDENT, tokenize.NEWLINE, tokenize.NL, tokenize.DEDENT))):
            line_field.setdefault(tok.start[0], tok.string)
        elif tok.type == tokenize.COMMENT and tok.start[0] in line_field:
            own.setdefault(line_field[tok.start[0]], tok.string.lstrip("#").strip())
    return {**comments, **own}


def field_help(cls: type, f: dataclasses.Field) -> str:
    """The documented reason of a field: metadata `help`, else its trailing comment; '' if neither."""
    return f.metadata.get("help") or _source_comments(cls).get(f.name, "")


def _show(value: Any) -> str:
    """A default as a user would type it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(":".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def default_of(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (the one place it is written)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if not _has_default(f):
                raise TypeError(f"{cls.__name__}.{name} has no default")
            return _default(f)
    raise TypeError(f"{cls.__name__} has no field {name!r}")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, else (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union type {hint!r} for a command flag")
    return hint, False


def _metavar(hint: Any) -> str:
    hint, _ = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if hint is int:
        return "N"
    if hint is float:
        return "X"
    if hint is str:
        return "TEXT"
    if hint is Path:
        return "PATH"
    if hint is dict or origin is dict:
        return "JSON"
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:  # 1024x768, or a pair mse:ms_ssim
            return "x".join(_metavar(a) for a in args) if all(a is int for a in args) else ":".join("AB"[: len(args)])
        return f"{_metavar(args[0])},..."
    raise TypeError(f"unsupported type {hint!r} for a command flag")


def build_parser(command: Command) -> argparse.ArgumentParser:
    """The argparse parser of one command; every flag defaults to 'not given' so TOML keys can fill in."""
    module_summary = REGISTRY.get(command.name.split()[0], ("", ""))[1]
    summary = module_summary[:1].upper() + module_summary[1:] + "." if module_summary else ""
    parser = _Parser(prog=command.prog, description=" ".join(s for s in (summary, command.description) if s),
                     epilog="Precedence: built-in defaults < the [" + command.table + "] table of --config < flags.",
                     argument_default=argparse.SUPPRESS, allow_abbrev=False)  # no fuzzy matching: --epoch is an error
    parser.add_argument("--config", type=Path, metavar="FILE.toml",
                        help=f"TOML file whose [{command.table}] table sets any of these flags (flags override it)")
    for cls, f, hint in command_fields(command):
        reason = field_help(cls, f)
        inner, _ = _unwrap_optional(hint)
        if _has_default(f):
            default = _default(f)
            shown = "none" if default is None else _show(default)
            text = f"{reason} (default: {shown})" if reason else f"(default: {shown})"
        else:
            text = f"{reason} (required)" if reason else "(required)"
        text = text.replace("%", "%%")
        names = [flag_name(f, command), *f.metadata.get("aliases", ())]
        if inner is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            choices = f.metadata.get("choices")
            metavar = "|".join(map(str, choices)) if choices else _metavar(hint)
            repeat = {"action": "append"} if f.metadata.get("repeat") else {}
            parser.add_argument(*names, dest=f.name, metavar=metavar, help=text, **repeat)
    return parser


# --------------------------------------------------------------------------------------------
# Values: flag text and TOML values → the field's type


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "names", Path: "paths"}.get(hint, "values")


def convert(value: Any, hint: Any, where: str, *, text: bool) -> Any:
    """Turn a flag's text (`text=True`) or a TOML value into `hint`; a mismatch is one InputError naming `where`."""
    inner, optional = _unwrap_optional(hint)
    if value is None:
        if optional:
            return None
        raise InputError(f"{where}: a value is required")
    origin = typing.get_origin(inner)
    if inner is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where}: {value!r} is not true or false")
    if inner is int:
        if text:
            try:
                return int(value)
            except ValueError:
                raise InputError(f"{where}: {value!r} is not an integer") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InputError(f"{where}: must be an integer, got {value!r}")
    if inner is float:
        if text:
            try:
                return float(value)
            except ValueError:
                raise InputError(f"{where}: {value!r} is not a number") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise InputError(f"{where}: must be a number, got {value!r}")
    if inner is str or inner is Path:
        if isinstance(value, str):
            return Path(value) if inner is Path else value
        raise InputError(f"{where}: must be a string, got {value!r}")
    if inner is dict or origin is dict:
        if text:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: {value!r} is not a JSON object ({exc.msg})") from None
        if isinstance(value, dict):
            return value
        raise InputError(f"{where}: must be a table / JSON object, got {value!r}")
    if origin in (tuple, list):
        args = typing.get_args(inner)
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        text = isinstance(value, str)  # a flag's text, or a TOML string such as "triplet,ranking"
        if text:
            sep = "x" if fixed and all(a is int for a in args) and "x" in value.lower() else ","
            items = [s.strip() for s in value.lower().split(sep)] if sep == "x" else [s.strip() for s in value.split(",")]
            items = [s for s in items if s]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise InputError(f"{where}: must be a list, got {value!r}")
        if fixed:
            if len(items) != len(args):
                example = "x".join("1024 768".split()) if all(a is int for a in args) else ",".join("ab"[: len(args)])
                raise InputError(f"{where}: {value!r} is not {len(args)} values (e.g. {example})")
            return tuple(convert(v, a, where, text=text) for v, a in zip(items, args))
        item_hint = args[0]
        if not items:
            raise InputError(f"{where}: {value!r} is not a comma-separated list of {_plural(item_hint)}")
        try:
            pairs = typing.get_origin(item_hint) is tuple  # e.g. pairs 'a:b,c:d' or ["a:b", ["c", "d"]]
            out = [convert(",".join(v.split(":")) if pairs and isinstance(v, str) else v, item_hint, where, text=text)
                   for v in items]
        except InputError:
            raise InputError(f"{where}: {value!r} is not a comma-separated list of {_plural(item_hint)}") from None
        return tuple(out) if origin is tuple else out
    raise TypeError(f"unsupported type {hint!r} for a command flag")


def _check_choices(f: dataclasses.Field, value: Any, where: str) -> None:
    choices = f.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise InputError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")


def read_config_table(path: Path, command: str) -> dict[str, Any]:
    """The `[command]` table of a --config TOML file; a key outside any table or an unknown table is refused."""
    from percept.contracts.tables import read_toml

    data = read_toml(path)
    loose = [k for k, v in data.items() if not isinstance(v, dict)]
    if loose:
        raise InputError(f"--config {path}: key {loose[0]!r} is outside any table; put it under [{command}]")
    unknown = [k for k in data if k not in REGISTRY]
    if unknown:
        raise InputError(f"--config {path}: [{unknown[0]}] is not a command; tables are named after commands "
                         f"({', '.join(REGISTRY)})")
    # A two-word command ("superres train") reads the nested table [superres.train].
    table: Any = data
    for part in command.split():
        if not isinstance(table, dict) or part not in table:
            raise InputError(f"--config {path}: no [{command.replace(' ', '.')}] table "
                             f"(it has {', '.join(f'[{k}]' for k in data) or 'none'})")
        table = table[part]
    return table


def resolve(command: Command, argv: Sequence[str]) -> dict[str, Any]:
    """Field values from defaults < --config table < flags, converted and checked (no defaults filled in)."""
    parser = build_parser(command)
    given = vars(parser.parse_args(list(argv)))
    specs = {f.name: (cls, f, hint) for cls, f, hint in command_fields(command)}
    values: dict[str, Any] = {}
    config = given.pop("config", None)
    if config is not None:
        from percept.contracts.tables import read_toml

        present = read_toml(config)
        tables = [(other, read_config_table(config, other)) for other in command.also_tables if other in present]
        for table_name, table in [*tables, (command.name, read_config_table(config, command.name))]:
            label = table_name.replace(" ", ".")
            unknown = [key for key in table if key.replace("-", "_") not in specs]
            if unknown:
                raise InputError(f"--config {config}: [{label}] has unknown key(s) {', '.join(unknown)}; "
                                 f"valid keys: {', '.join(specs)}")
            for key, raw in table.items():
                name = key.replace("-", "_")
                where = f"--config {config}: [{label}] {key}"
                values[name] = _value(command, specs[name], raw, where, text=isinstance(raw, str) and name in command.parse)
    for name, raw in given.items():
        cls, f, hint = specs[name]
        if isinstance(raw, list):  # a repeated flag (metadata `repeat`): its items, as if comma-separated
            raw = ",".join(raw)
        values[name] = _value(command, specs[name], raw, flag_name(f, command), text=not isinstance(raw, bool))
    return values


def _value(command: Command, spec: tuple, raw: Any, where: str, *, text: bool) -> Any:
    _, f, hint = spec
    if text and f.name in command.parse:
        value = command.parse[f.name](raw)
    else:
        value = convert(raw, hint, where, text=text)
    _check_choices(f, value, where)
    return value


def instantiate(command: Command, values: dict[str, Any]) -> list[Any]:
    """One instance per config class (a partial for classes with `later` fields); a missing required field is one line."""
    out = []
    for cls in command.configs:
        kwargs = {}
        for f in dataclasses.fields(cls):
            if not f.init or f.name in command.later.get(cls, ()):
                continue
            if f.name in values:
                kwargs[f.name] = values[f.name]
            elif not _has_default(f):
                raise InputError(f"{flag_name(f, command)} is required (or `{f.name}` in the [{command.table}] table of --config)")
        out.append(functools.partial(cls, **kwargs) if cls in command.later else cls(**kwargs))
    return out


# --------------------------------------------------------------------------------------------
# Running and one-line errors


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return " ".join(lines)


def _file_in_traceback(exc: BaseException) -> str | None:
    """The file a low-level failure was about: the innermost frame's `path`/`file`/`f`/`filename` argument, if any."""
    import traceback

    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        for name in ("path", "file", "filename", "f", "tmp"):
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)):
                return os.fspath(value)
    return None


def describe(exc: BaseException) -> str:
    """One line for an expected failure, naming the file where it is known; never advice to unpickle."""
    if isinstance(exc, InputError):
        return _one_line(str(exc)) or exc.__class__.__name__
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        target = exc.filename if exc.filename is not None else _file_in_traceback(exc)
        target = f"{os.fsdecode(target)}: " if target is not None else ""
        if exc.filename2 is not None:
            target = f"{target[:-2]} → {os.fsdecode(exc.filename2)}: "
        reason = exc.strerror or _one_line(str(exc))
        hint = OS_HINTS.get(exc.errno)
        return f"{target}{reason} [{name}]" + (f"; {hint}" if hint else "")
    target = _file_in_traceback(exc)
    target = f"{target}: " if target else ""
    if isinstance(exc, pickle.UnpicklingError):
        # torch's own text here advises loading with full unpickling, which would run code from the file
        return (f"{target}refused: the file holds pickled Python objects, which percept never loads; "
                f"use a file written by percept itself")
    if isinstance(exc, (zipfile.BadZipFile, EOFError, zlib.error)):
        detail = _one_line(str(exc))
        return f"{target}corrupt or truncated file ({exc.__class__.__name__}{': ' + detail if detail else ''})"
    if isinstance(exc, json.JSONDecodeError):
        return f"{target}not valid JSON ({exc})"
    if isinstance(exc, UnicodeError):
        return f"{target}not readable text ({_one_line(str(exc))[:200]})"
    return f"{target}{exc.__class__.__name__}: {_one_line(str(exc))}"


def _debug() -> bool:
    return os.environ.get("PERCEPT_DEBUG", "") not in ("", "0")


def guarded(prog: str, fn: Callable[[], int | None]) -> int:
    """Run `fn`; an expected failure prints `prog: error: <one line>` to stderr and returns 2 (130 on Ctrl-C).

    Nested calls (a command run by another) re-raise so that only the outermost prints.
    """
    if _ACTIVE.get():
        return int(fn() or 0)
    token = _ACTIVE.set(True)
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED as exc:
        if _debug():
            raise
        print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
        return 2
    finally:
        _ACTIVE.reset(token)


def configs_from(command: Command, argv: Sequence[str]) -> list[Any]:
    """The config instances `argv` (without the command name) resolves to, without running anything."""
    return instantiate(command, resolve(command, argv))


def execute(command: Command, argv: Sequence[str]) -> int | None:
    """Parse `argv` (without the command name), build the configs and run; errors propagate."""
    values = resolve(command, argv)
    return command.run(*instantiate(command, values))


def run_command(command: Command, argv: Sequence[str]) -> int:
    """`percept NAME ...` for one command; `--help` returns 0, everything expected else one line and 2."""
    def go() -> int | None:
        try:
            return execute(command, argv)
        except SystemExit as exc:  # only --help reaches here: usage errors are InputErrors
            return int(exc.code or 0)

    return guarded(command.prog, go)


def main(commands: Sequence[Command], argv: Sequence[str] | None = None, *, package: str = "") -> int:
    """`python -m package NAME ...` (argv starts with the command name), the same as `percept NAME ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    table = {c.name: c for c in commands}
    # A command of two words ("superres train", "style apply") is a verb with its actions.
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in table:
        return run_command(table[f"{argv[0]} {argv[1]}"], argv[2:])
    actions = [name for name in table if name.split()[0] == (argv[0] if argv else None) and " " in name]
    if actions:
        asked = argv[1:2] in (["--help"], ["-h"])
        print(f"usage: percept {argv[0]} ACTION [options]; ACTION is one of "
              f"{', '.join(a.split()[1] for a in actions)}", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    if not argv or argv[0] not in table:
        lines = [f"usage: python -m {package or 'PACKAGE'} COMMAND [options]   (or percept COMMAND; COMMAND --help for each)"]
        lines += [f"  {c.name:<12} {REGISTRY.get(c.name, ('', ''))[1]}" for c in commands]
        if argv and argv[0] in ("-h", "--help"):
            print("\n".join(lines))
            return 0
        if argv:
            print(f"{package or 'percept'}: error: unknown command {argv[0]!r}; choose from {', '.join(table)}",
                  file=sys.stderr)
        else:
            print("\n".join(lines), file=sys.stderr)
        return 2
    return run_command(table[argv[0]], argv[1:])
