"""The one command layer: flags from dataclass fields, `--config` tables, one-line errors for every expected failure."""
from __future__ import annotations

import dataclasses
import errno
import inspect
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from percept import cli, commands
from percept.contracts import InputError
from test_study_support import REPO, make_manifest, mount_tmpfs

MODULES = {module for module, _ in commands.REGISTRY.values()}
ENTRY = {"percept": [sys.executable, "-m", "percept"]}


def all_commands() -> list[commands.Command]:
    """Every command the suite declares, from the modules the registry names."""
    import importlib

    out = []
    for module in sorted(MODULES):
        out += list(importlib.import_module(module).COMMANDS)
    return out


def by_name(name: str) -> commands.Command:
    return next(c for c in all_commands() if c.name == name)


# Every command name as typed after `percept`: one word, or two ("superres train") for a verb's actions.
NAMES = [c.name for c in all_commands()]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PERCEPT_DEBUG", None)
    return env


def _run(argv: list[str], *, package: str) -> subprocess.CompletedProcess:
    """`percept ARGV` or `python -m PACKAGE ARGV` in a fresh interpreter."""
    exe = ENTRY["percept"] if package == "percept" else [sys.executable, "-m", package]
    return subprocess.run(exe + argv, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)


def _one_line(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr
    assert err.startswith(f"percept {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------------------------
# The registry, --help and defaults


def test_registry_and_modules_declare_the_same_commands():
    declared = [c.name for c in all_commands()]
    # The registry names each command's first word (`superres` for `superres train` and `superres export`).
    assert sorted({n.split()[0] for n in declared}) == sorted(commands.REGISTRY) and len(set(declared)) == len(declared)
    assert {"superres train", "superres export", "style train", "style apply", "style optimize"} <= set(declared)
    for c in all_commands():
        assert commands.REGISTRY[c.name.split()[0]][0] == c.run.__module__, c.name


@pytest.mark.parametrize("name", NAMES)
def test_help_lists_every_field_with_its_reason(name, capsys):
    command = by_name(name)
    assert cli.main([*name.split(), "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for cls, f, _ in commands.command_fields(command):
        assert commands.flag_name(f, command) in text, (name, f.name)
        reason = commands.field_help(cls, f)
        assert reason, f"{cls.__name__}.{f.name} has no documented reason (metadata help or a trailing # comment)"
        assert " ".join(reason.split()) in text, (name, f.name)
    assert "--config" in text


def test_help_shows_the_dataclass_default():
    from autoencoders.train import TrainConfig

    text = " ".join(commands.build_parser(by_name("train")).format_help().split())
    assert f"(default: {TrainConfig().epochs})" in text and "(default: photos)" in text


def test_help_reasons_do_not_need_source_when_metadata_has_them(monkeypatch):
    import inspect as inspect_module

    commands._source_comments.cache_clear()
    monkeypatch.setattr(inspect_module, "getsource", lambda obj: (_ for _ in ()).throw(OSError("no source")))
    try:
        command = by_name("reconstruct")
        for cls, f, _ in commands.command_fields(command):
            assert commands.field_help(cls, f) == f.metadata["help"]
        assert "--n" in commands.build_parser(by_name("train")).format_help()  # still builds, reasons omitted
    finally:
        commands._source_comments.cache_clear()


# (command, function, {field: parameter}) where a CLI dataclass mirrors a science function's keyword default.
MIRRORS = [  # the staged wrappers take **options: their defaults are those of the functions doing the work
    ("reconstruct", "autoencoders.export:_reconstruct", {"split": "split", "n": "n", "spares": "spares",
                                                         "device": "device"}),
    ("encode", "autoencoders.export:_encode", {"splits": "splits", "device": "device"}),
    ("simulate", "study.observers:_simulate", {"seed": "seed", "first": "first"}),
    ("analyze", "analysis.cli:_analyze", {"exclude_simulated": "exclude_simulated", "rank_unit": "rank_unit",
                                          "boot": "n_boot", "bayes": "bayes", "lme4": "lme4", "seed": "seed",
                                          "premise_unit": "premise_unit"}),
    ("classify", "analysis.cli:_classify", {"pixels": "pixels", "manifest": "manifest", "c": "c",
                                            "max_iter": "max_iter", "seed": "seed", "boot": "n_boot"}),
    ("power", "analysis.cli:_power", {"images": "images", "sims": "sims", "alpha": "alpha", "test": "test",
                                      "arch": "arch", "pair": "pair", "sesoi": "sesoi", "effect": "effect",
                                      "sd_participant": "sd_participant", "sd_image": "sd_image",
                                      "exclude_simulated": "exclude_simulated", "seed": "seed"}),
]


@pytest.mark.parametrize("name, target, mapping", MIRRORS)
def test_cli_defaults_match_the_functions_they_call(name, target, mapping):
    import importlib

    module, func = target.split(":")
    params = inspect.signature(getattr(importlib.import_module(module), func)).parameters
    fields = {f.name: f for _, f, _ in commands.command_fields(by_name(name))}
    for field_name, param in mapping.items():
        assert commands._default(fields[field_name]) == params[param].default, (name, field_name)


def test_example_configs_hold_only_known_non_default_keys():
    for path in sorted((REPO / "configs").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        assert data, path
        for table, values in data.items():
            command = by_name(table)
            fields = {f.name: f for _, f, _ in commands.command_fields(command)}
            for key, value in values.items():
                f = fields[key.replace("-", "_")]
                default = commands._default(f) if commands._has_default(f) else dataclasses.MISSING
                assert value != default, f"{path.name} [{table}] {key} = {value!r} copies the dataclass default"
        (cfg,) = commands.configs_from(by_name("train"), ["--config", str(path)])
        assert cfg.epochs >= 1


def test_demo_flags_come_from_its_dataclass():
    from percept import demo

    parser = commands.build_parser(demo.COMMANDS[0])
    text = parser.format_help()
    for f in dataclasses.fields(demo.DemoConfig):
        assert "--" + f.name.replace("_", "-") in text
    target, cfg = commands.configs_from(demo.COMMANDS[0], ["--epochs", "2", "--archs", "fc,conv", "--fresh"])
    assert cfg.epochs == 2 and cfg.archs == ("fc", "conv") and target.fresh is True
    assert cfg.images == demo.DemoConfig().images


# --------------------------------------------------------------------------------------------
# --config tables


def test_flags_override_the_table_and_the_table_overrides_defaults(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nepochs = 3\nlr = 0.01\nloss_options = {alpha = 0.5}\n[design]\nlists = 4\n')
    (cfg,) = commands.configs_from(by_name("train"), ["--config", str(toml), "--lr", "0.02"])
    assert (cfg.epochs, cfg.lr, cfg.loss_options, cfg.batch_size) == (3, 0.02, {"alpha": 0.5}, 32)
    # design's plan fields (--kinds, --pairs, --ranking-losses) arrive as typed, for run_design's plan_settings
    paths, design = commands.configs_from(by_name("design"), ["--config", str(toml), "--out", "x", "--kinds", "triplet"])
    assert design.keywords["lists"] == 4 and design.keywords["kinds"] == "triplet" and paths.out == Path("x")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_table_key_is_one_line_naming_file_and_key(name, tmp_path, capsys):
    table = by_name(name).table  # [superres.train] for `superres train`
    toml = tmp_path / "bad.toml"
    toml.write_text(f"[{table}]\nno_such_key = 1\n")
    assert cli.main([*name.split(), "--config", str(toml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"percept {name}: error: --config {toml}: [{table}] has unknown key(s) no_such_key; valid keys:")
    assert err.count("\n") == 1


def test_two_word_command_reads_its_dotted_table_and_names_itself_both_ways(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[superres.train]\nscale = 2\nloss = "mse+0.1*vgg_feature"\n[superres.export]\nn = 5\n')
    (cfg,) = commands.configs_from(by_name("superres train"), ["--config", str(toml), "--epochs", "3"])
    assert (cfg.scale, cfg.loss, cfg.epochs, cfg.channels) == (2, "mse+0.1*vgg_feature", 3, 64)
    (export,) = commands.configs_from(by_name("superres export"), ["--config", str(toml)])
    assert export.n == 5
    errs = [_one_line(_run(["superres", "train", "--scale", "3"], package=package), "superres train")
            for package in ("percept", "autoencoders")]
    assert errs[0] == errs[1] == "percept superres train: error: --scale 3: choose from 2, 4, 8\n"


@pytest.mark.parametrize("text, message", [
    ("epochs = 3\n", "key 'epochs' is outside any table; put it under [train]"),
    ("[trian]\nepochs = 3\n", "[trian] is not a command"),
    ("[design]\nlists = 3\n", "no [train] table (it has [design])"),
    ("[train]\nepochs = 2.5\n", "[train] epochs: must be an integer, got 2.5"),
    ("[train]\nverify = \"no\"\n", "[train] verify: 'no' is not true or false"),
    ("[train]\nepochs = \n", "not valid TOML"),
])
def test_bad_config_files_are_one_line(text, message, tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    assert cli.main(["train", "--config", str(toml)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(toml) in err and err.count("\n") == 1


def test_required_field_may_come_from_the_table(tmp_path, capsys):
    assert cli.main(["reconstruct"]) == 2
    assert "--out is required (or `out` in the [reconstruct] table of --config)" in capsys.readouterr().err
    toml = tmp_path / "c.toml"
    toml.write_text(f'[reconstruct]\nout = "{tmp_path / "nothing"}"\n')
    assert cli.main(["reconstruct", "--config", str(toml)]) == 2
    assert "is required" not in capsys.readouterr().err  # got past the parser to the missing models


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "ten"], "--epochs: 'ten' is not an integer"),
    (["train", "--loss-options", "{alpha"], "--loss-options: '{alpha' is not a JSON object"),
    (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["train", "--epoch", "3"], "unrecognized arguments: --epoch 3"),  # no abbreviations
    (["reconstruct", "--out", "x", "--device", "tpu"], "--device: 'tpu' is not one of auto, cpu, cuda"),
    (["power", "--out", "x", "--participants", ""], "--participants: '' is not a comma-separated list of integers"),
    (["run", "--out", "x", "--size", "big"], "--size: 'big' is not 2 values"),
    (["analyze"], "give --out runs/EXP (or --study PATH)"),
    (["simulate", "--participants", "2"], "give --out runs/EXP (or --design PATH/design.csv)"),
])
def test_usage_errors_are_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"percept {argv[0]}: error: ") and message in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# Expected failures → one line, exit code 2


def test_debug_reraises(monkeypatch):
    monkeypatch.setenv("PERCEPT_DEBUG", "1")
    with pytest.raises(InputError, match="epochs"):
        cli.main(["train", "--epochs", "ten"])


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/a.png"), "runs/x/a.png: No space left on device [ENOSPC]"),
    (PermissionError(errno.EACCES, "Permission denied", "runs/x"), "runs/x: Permission denied [EACCES]"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device [ENOSPC]; free some space"),
    (zipfile.BadZipFile("File is not a zip file"), "corrupt or truncated file (BadZipFile: File is not a zip file)"),
    (EOFError(), "corrupt or truncated file (EOFError)"),
    (json.JSONDecodeError("Expecting value", "[", 1), "not valid JSON (Expecting value"),
    (InputError("first line\nsecond line"), "first line second line"),
])
def test_each_expected_failure_is_one_line(exc, expected, capsys):
    def boom():
        raise exc

    assert commands.guarded("percept x", boom) == 2
    err = capsys.readouterr().err
    assert err.startswith("percept x: error: ") and expected in err and err.count("\n") == 1


def test_a_refused_pickle_names_the_file_and_never_advises_unpickling(tmp_path, capsys):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"evil": object()}, evil)
    assert commands.guarded("percept x", lambda: torch.load(evil, weights_only=True)) == 2
    err = capsys.readouterr().err
    assert str(evil) in err and "refused" in err and err.count("\n") == 1
    assert "weights_only" not in err and "still be loaded" not in err and "\x1b" not in err


def test_a_corrupt_npz_is_one_line_naming_the_file(tmp_path, capsys):
    good = tmp_path / "codes.npz"
    np.savez(good, codes=np.zeros((4, 3), np.float32))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:-30])  # truncated: the zip directory is gone
    assert commands.guarded("percept x", lambda: dict(np.load(bad, allow_pickle=False))) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "corrupt or truncated" in err and err.count("\n") == 1


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"PK\x03\x04 this is not a zip", "truncated", "pickled"])
def test_a_corrupt_codes_file_through_classify(content, tmp_path, capsys):
    (tmp_path / "codes").mkdir()
    path = tmp_path / "codes" / "fc-mse-s0.npz"
    if content == "pickled":  # an object array: loading it would unpickle
        np.savez(path, codes=np.array([{"evil": 1}], dtype=object), labels=np.zeros(1), image_ids=np.array(["a"]),
                 splits=np.array(["test"]))
    elif content == "truncated":
        np.savez(path, codes=np.zeros((4, 3), np.float32))
        path.write_bytes(path.read_bytes()[:-30])
    else:
        path.write_bytes(content)
    assert cli.main(["classify", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("percept classify: error: ") and str(path) in err and err.count("\n") == 1
    assert "allow_pickle" not in err and "trust" not in err


@pytest.mark.parametrize("text", ["[1, 2, 3]", "\"summary\"", "null", "{\"study\": "])
def test_wrong_json_shape_is_one_line(text, tmp_path, capsys):
    (tmp_path / "analysis").mkdir()
    summary = tmp_path / "analysis" / "summary.json"
    summary.write_text(text + "\n")
    assert cli.main(["report", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"percept report: error: {summary}: not ") and err.count("\n") == 1


def test_wrong_json_shape_of_a_design_record_is_one_line(exp, tmp_path, capsys):
    assert cli.main(["design", "--out", str(exp)]) == 0
    record = exp / "study" / "design.json"
    record.write_text("[]\n")
    capsys.readouterr()
    assert cli.main(["simulate", "--out", str(exp), "--participants", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{record}: not a JSON object" in err and err.count("\n") == 1


def test_a_command_run_by_another_lets_the_outer_one_report(capsys):
    from autoencoders import cli as ae_cli

    def demo_step():
        return ae_cli.main(["train", "--epochs", "ten"])

    assert commands.guarded("percept demo", demo_step) == 2
    assert capsys.readouterr().err == "percept demo: error: --epochs: 'ten' is not an integer\n"


def test_injected_disk_full_during_design_is_one_line(tmp_path, monkeypatch, capsys):
    import tempfile

    manifest = make_manifest(tmp_path / "exp", n_images=4)
    real = tempfile.mkstemp

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    from study import cli as study_cli

    for main in (cli.main, study_cli.main):
        assert main(["design", "--manifest", str(manifest), "--out", str(tmp_path / "exp")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("percept design: error: ") and "[ENOSPC]" in err and err.count("\n") == 1
    monkeypatch.setattr(tempfile, "mkstemp", real)


# --------------------------------------------------------------------------------------------
# Real file-system failures through `percept X` and `python -m package X`


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs")
    make_manifest(root, n_images=4)
    return root


@pytest.fixture
def tiny_disk(tmp_path):
    """A 32 KiB tmpfs (root only): a design's catch images do not fit."""
    yield from mount_tmpfs(tmp_path / "tiny", "size=32k",
                     "needs root and tmpfs to make a full disk (the injected ENOSPC test covers the rest)")


@pytest.fixture
def read_only(tmp_path):
    """An empty read-only tmpfs (root only)."""
    yield from mount_tmpfs(tmp_path / "ro", "size=1m,ro", "needs root and tmpfs to make a read-only file system")


def test_file_system_failures_are_one_line_and_the_same_both_ways(exp, tmp_path, request):
    manifest = str(exp / "reconstructions" / "manifest.csv")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = {"ENOTDIR": blocker / "exp", "ENAMETOOLONG": tmp_path / ("x" * 300)}
    for fixture, name in (("tiny_disk", "ENOSPC"), ("read_only", "EROFS")):
        try:
            cases[name] = request.getfixturevalue(fixture) / "exp"
        except pytest.skip.Exception:
            pass
    for name, out in cases.items():
        errs = [_one_line(_run(["design", "--manifest", manifest, "--out", str(out)], package=package), "design")
                for package in ("percept", "study")]
        assert errs[0] == errs[1] and f"[{name}]" in errs[0], errs


def test_reconstruct_from_a_too_long_name_is_one_line_both_ways(tmp_path):
    out = tmp_path / ("y" * 300)
    errs = [_one_line(_run(["reconstruct", "--out", str(out)], package=package), "reconstruct")
            for package in ("percept", "autoencoders")]
    assert errs[0] == errs[1] and "[ENAMETOOLONG]" in errs[0] and str(out) in errs[0]


def test_analyze_on_a_read_only_experiment_is_one_line_both_ways(tmp_path):
    from test_analysis_fakestudy import make_study

    exp = tmp_path / "exp"
    make_study(exp, n_images=4, archs=("fc",), n_participants=3)
    view = tmp_path / "view"
    view.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(exp), str(view)], capture_output=True).returncode:
        pytest.skip("needs root to bind-mount the experiment read-only")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        errs = [_one_line(_run(["analyze", "--out", str(view), "--boot", "0", "--no-bayes"], package=package), "analyze")
                for package in ("percept", "analysis")]
        assert errs[0] == errs[1] and "[EROFS]" in errs[0] and str(view) in errs[0]
        assert not (exp / "analysis").exists()
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_inherited_fields_keep_their_reasons():
    @dataclasses.dataclass
    class Base:
        alpha: int = 1  # the base's reason

    @dataclasses.dataclass
    class Child(Base):
        beta: float = 2.0  # the child's reason

    f_alpha, f_beta = dataclasses.fields(Child)
    assert commands.field_help(Child, f_alpha) == "the base's reason"
    assert commands.field_help(Child, f_beta) == "the child's reason"


@pytest.mark.slow
def test_out_is_the_experiment_folder_for_every_analysis_command(tmp_path):
    from test_analysis_cli import _codes
    from test_analysis_fakestudy import make_study

    exp = tmp_path / "exp"
    make_study(exp, n_images=4, archs=("fc",), n_participants=3)
    _codes(exp)
    assert cli.main(["analyze", "--out", str(exp), "--boot", "0", "--no-bayes"]) == 0
    assert cli.main(["classify", "--out", str(exp)]) == 0
    assert cli.main(["power", "--out", str(exp), "--participants", "4", "--images", "4", "--sims", "5"]) == 0
    assert cli.main(["report", "--out", str(exp)]) == 0
    names = {p.name for p in (exp / "analysis").iterdir()}
    assert {"summary.json", "classification.csv", "power.csv", "report.html"} <= names
    assert not (exp / "study" / "analysis").exists() and not (exp / "codes" / "analysis").exists()


def test_permission_denied_is_one_line_both_ways():
    import shutil
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as an unprivileged user")
    root = Path(tempfile.mkdtemp(prefix="percept-perm-", dir="/tmp"))  # world-readable, unlike pytest's tmp_path
    try:
        (root / "exp" / "analysis").mkdir(parents=True)
        summary = {"study": "study", "simulated": False, "n_rows": 0, "warnings": [], "headline": [], "figures": {},
                   "versions": {}, "options": {}}  # a valid summary: the report gets as far as writing
        (root / "exp" / "analysis" / "summary.json").write_text(json.dumps(summary) + "\n")
        for folder in (root, root / "exp", root / "exp" / "analysis"):
            folder.chmod(0o755)  # readable, not writable, by the user below
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        errs = []
        for package in ("percept", "analysis"):
            proc = subprocess.run(nobody + [sys.executable, "-m", package, "report", "--out", str(root / "exp")],
                                  capture_output=True, text=True, cwd=root, env=_env(), timeout=300)
            if "Permission denied" in proc.stderr and "python" in proc.stderr.split(":")[0]:
                pytest.skip("the unprivileged user cannot run this interpreter")
            if "No module named percept" in proc.stderr:  # e.g. a checkout inside a 0700 mktemp folder
                pytest.skip("the unprivileged user cannot read this checkout")
            errs.append(_one_line(proc, "report"))
        assert "[EACCES]" in errs[0] and str(root / "exp" / "analysis") in errs[0]
        assert errs[0].split(".report.html")[0] == errs[1].split(".report.html")[0]
        assert not (root / "exp" / "analysis" / "report.html").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_demo_settings_that_reach_train_are_overrides_not_copies():
    from autoencoders.train import TrainConfig
    from percept import demo

    train_defaults = {f.name: commands._default(f) for f in dataclasses.fields(TrainConfig)}
    shared = [f for f in dataclasses.fields(demo.DemoConfig) if f.name in train_defaults and f.name != "seed"]
    assert shared  # epochs, batch_size, width: the demo's small CPU settings
    for f in shared:  # seed is exempt: one knob the demo passes to every step of its chain
        assert commands._default(f) != train_defaults[f.name], f"DemoConfig.{f.name} copies TrainConfig's default"
