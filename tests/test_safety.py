"""Fault injection: refused, failed, SIGKILLed, disk-full and concurrent writes never change earlier outputs.

Every test hashes every file before and after and checks the message is one line. The staged
writer is tested on its own (fast, many random kills) and through the real commands.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from percept import demo
from percept.contracts import InputError
from percept.contracts import responses as responses_c
from percept.contracts.staging import (ARCHIVE_PREFIX, StageBusy, human_response_files, move_aside, recover,
                                       staged_dir, stage_lock)
from study.design import DesignConfig, build_design
from study.observers import simulate
from ae_support import tiny_fc_run
from test_study_support import PERCEPT, REPO, make_manifest, mount_tmpfs

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every output file under root; hidden top-level entries (locks, a killed run's swap folder,
    which readers ignore and the next run removes) are left out and checked separately with `leftovers`."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.relative_to(root).parts[0].startswith(".")}


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@contextmanager
def lock_holder(folder: Path, command: str, shared: bool = False) -> Iterator[subprocess.Popen]:
    """Another process holding stage_lock(folder, command) for the block; killed at its end, which frees the lock."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from percept.contracts.staging import stage_lock
        with stage_lock({str(folder)!r}, {command!r}, shared={shared!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def save(root: Path) -> dict[str, bytes]:
    """Every file's bytes, to put a folder back exactly between trials."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def restore(root: Path, saved: dict[str, bytes]) -> None:
    """Replace root by the saved files."""
    shutil.rmtree(root, ignore_errors=True)
    for rel, data in saved.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".swap-" in p.name or ".old-" in p.name)


def human_file(study: Path, pid: str = "P01") -> Path:
    """A person's response file: copy a simulated one and mark it (and its record) as not simulated."""
    src = sorted((study / "responses").glob("sim*.csv"))[0]
    dst = study / "responses" / f"{pid}-1.csv"
    # `simulated` is the last contract column; lab files now end each row with mode=lab after it
    text = src.read_text().replace(",1,lab\n", ",0,lab\n").replace(",1\n", ",0\n").replace(src.stem.split("-")[0] + ",", pid + ",")
    dst.write_text(text)
    rec = json.loads(src.with_suffix(".json").read_text())
    rec.update(participant=pid, simulated=False, observer=None)
    dst.with_suffix(".json").write_text(json.dumps(rec))
    return dst


@pytest.fixture()
def exp(tmp_path) -> Path:
    """An experiment folder with a manifest, a design and three simulated observers."""
    root = tmp_path / "exp"
    manifest = make_manifest(root, n_images=4)
    build_design(manifest, root, DesignConfig(lists=1, practice=1, catch=0.0, seed=1))
    simulate(root / "study" / "design.csv", 3, observer="mse", seed=0)
    return root


# ---------------------------------------------------------------- the staged writer on its own

def _old_set(target: Path) -> dict[str, str]:
    (target / "sub").mkdir(parents=True)
    for i in range(5):
        (target / f"f{i}.txt").write_text(f"old {i}\n" * 100)
    (target / "sub" / "x.bin").write_bytes(os.urandom(2000))
    return snapshot(target)


def test_success_replaces_the_whole_set_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out"
    _old_set(target)
    with staged_dir(target) as staging:
        (staging / "new.txt").write_text("new\n")
    assert snapshot(target) == {"new.txt": hashlib.sha256(b"new\n").hexdigest()}
    assert leftovers(tmp_path) == []


def test_exception_mid_write_keeps_old_outputs_byte_identical(tmp_path):
    target = tmp_path / "out"
    before = _old_set(target)
    with pytest.raises(InputError) as err:
        with staged_dir(target, keep=True) as staging:
            (staging / "f0.txt").write_text("half")
            raise InputError("boom in the middle")
    assert snapshot(target) == before and leftovers(tmp_path) == []
    assert "boom in the middle" in one_line(str(err.value)) and "is as it was" in str(err.value)
    # A bug (not an expected failure) keeps its type and traceback, but the outputs are still untouched.
    with pytest.raises(ZeroDivisionError):
        with staged_dir(target):
            1 / 0
    assert snapshot(target) == before and leftovers(tmp_path) == []


def test_enospc_from_a_fault_injecting_writer(tmp_path):
    target = tmp_path / "out"
    before = _old_set(target)
    with pytest.raises(InputError) as err:
        with staged_dir(target) as staging:
            (staging / "a").write_text("a")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(staging / "b"))
    msg = one_line(str(err.value))
    assert "no space left on device" in msg and str(target / "b") in msg and ".swap-" not in msg
    assert snapshot(target) == before and leftovers(tmp_path) == []


@pytest.fixture()
def tmpfs(tmp_path):
    """A 1 MiB tmpfs when root can mount one; else the test is skipped (the fault injector above covers it)."""
    yield from mount_tmpfs(tmp_path / "mnt", "size=1m", "cannot mount a tmpfs here")


def test_disk_full_on_a_real_small_filesystem(tmpfs):
    target = tmpfs / "out"
    before = _old_set(target)
    with pytest.raises(InputError) as err:
        with staged_dir(target, keep=True) as staging:
            with open(staging / "big.bin", "wb") as fh:
                for _ in range(64):
                    fh.write(os.urandom(64 * 1024))  # 4 MiB into 1 MiB
    assert "no space left on device" in one_line(str(err.value))
    assert snapshot(target) == before and leftovers(tmpfs) == []


def test_second_writer_refuses_in_one_line_naming_the_holder(tmp_path):
    target = tmp_path / "out"
    before = _old_set(target)
    with lock_holder(target, "percept simulate --holder") as holder:
        with pytest.raises(StageBusy) as err:
            with staged_dir(target) as staging:
                (staging / "x").write_text("never")
        msg = one_line(str(err.value))
        assert f"pid {holder.pid}" in msg and "percept simulate --holder" in msg
        assert snapshot(target) == before and leftovers(tmp_path) == []
    with stage_lock(target):  # released when its holder dies
        pass


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from percept.contracts import staging
    from percept.contracts.staging import staged_dir
    target = Path(sys.argv[1])
    if sys.argv[2] == "fallback":  # as on a file system without renameat2(RENAME_EXCHANGE)
        staging._exchange = lambda a, b: False
    with staged_dir(target, keep=True) as tmp:
        for i in range(40):
            (tmp / f"f{i % 5}.txt").write_text(f"new {i}\\n" * 100)
            (tmp / f"n{i}.txt").write_text("n")
            time.sleep(0.005)
    print("done", flush=True)
""")


@pytest.mark.parametrize("mode,trials", [("exchange", 10), ("fallback", 5)])
def test_sigkill_at_random_points_leaves_the_old_or_the_new_complete_set(tmp_path, mode, trials):
    rng = random.Random(8)
    target = tmp_path / "out"
    before = _old_set(target)
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    # The complete new set, from one uninterrupted run in a copy.
    ref = tmp_path / "ref" / "out"
    shutil.copytree(target, ref)
    subprocess.run([sys.executable, str(script), str(ref), mode], env=ENV, check=True, capture_output=True)
    after = snapshot(ref)
    # How long a run takes here, so the kills spread over import, writing and the swap.
    t0 = time.monotonic()
    subprocess.run([sys.executable, str(script), str(tmp_path / "ref" / "again"), mode], env=ENV, check=True, capture_output=True)
    span = time.monotonic() - t0
    saved = save(target)
    seen = {"old": 0, "new": 0}
    for trial in range(trials):
        restore(target, saved)
        assert snapshot(target) == before
        proc = subprocess.Popen([sys.executable, str(script), str(target), mode], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3 * span, 1.1 * span))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = snapshot(target)
        if mode == "exchange":  # one atomic exchange: complete at every instant
            assert now in (before, after), f"trial {trial}: a mix of old and new files"
        recover(target)  # what the next run does first (the fallback: puts a renamed-aside old set back)
        now = snapshot(target)
        assert now in (before, after) and leftovers(tmp_path) == [], f"trial {trial}: a mix of old and new files"
        seen["old" if now == before else "new"] += 1
    print(f"SIGKILL trials ({mode}): {seen}")


def test_a_crash_between_the_fallback_renames_is_rolled_back(tmp_path):
    target = tmp_path / "out"
    before = _old_set(target)
    os.rename(target, tmp_path / ".out.old-4242")  # killed after renaming the old set aside
    (tmp_path / ".out.swap-4242").mkdir()  # ...before renaming the new one in
    (tmp_path / ".out.swap-4242" / "partial").write_text("x")
    recover(target)
    assert snapshot(target) == before and leftovers(tmp_path) == []


def test_leftover_folders_never_take_a_persons_responses_with_them(exp):
    study = exp / "study"
    person = human_file(study)
    data = person.read_bytes()
    stray = exp / ".study.swap-999"
    shutil.copytree(study, stray)
    person.unlink()  # the only copy is now in the leftover folder
    person.with_suffix(".json").unlink()
    recover(study)
    assert not stray.exists()
    archived = list(study.glob(f"{ARCHIVE_PREFIX}*/P01-1.csv"))
    assert len(archived) == 1 and archived[0].read_bytes() == data


def test_move_aside_renames_never_deletes(exp):
    study = exp / "study"
    person = human_file(study)
    data, record = person.read_bytes(), person.with_suffix(".json").read_bytes()
    folder = move_aside([person], study, stamp="20260101-000000")
    assert folder == study / "responses-archived-20260101-000000"
    assert (folder / "P01-1.csv").read_bytes() == data and (folder / "P01-1.json").read_bytes() == record
    assert not person.exists()


# ---------------------------------------------------------------- refusals by the commands

def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PERCEPT, *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def test_design_over_responses_is_refused_then_overwrite_moves_people_aside(exp):
    study = exp / "study"
    person = human_file(study)
    data = person.read_bytes()
    before = snapshot(exp)
    manifest = exp / "reconstructions" / "manifest.csv"
    with pytest.raises(InputError) as err:
        build_design(manifest, exp, DesignConfig(lists=2, practice=1, catch=0.0, seed=2))
    msg = one_line(str(err.value))
    assert "4 response file(s) (1 of people)" in msg and "--overwrite" in msg
    assert snapshot(exp) == before
    r = _cli("design", "--manifest", str(manifest), "--out", str(exp), "--lists", "2")
    assert r.returncode == 2 and "--overwrite" in one_line(r.stderr) and snapshot(exp) == before
    r = _cli("design", "--manifest", str(manifest), "--out", str(exp), "--lists", "2", "--overwrite")
    assert r.returncode == 0, r.stderr
    archived = list(study.glob(f"{ARCHIVE_PREFIX}*/P01-1.csv"))
    assert len(archived) == 1 and archived[0].read_bytes() == data and archived[0].parent.name in r.stdout
    assert not (study / "responses").exists()
    assert human_response_files(study) == sorted([archived[0], archived[0].with_suffix(".json")])


def test_reconstruct_refuses_while_a_design_uses_the_manifest(exp):
    before = snapshot(exp)
    r = _cli("reconstruct", "--out", str(exp), "--n", "3")
    msg = one_line(r.stderr)
    assert r.returncode == 2 and "design.json" in msg and "--overwrite" in msg
    assert snapshot(exp) == before


def test_train_overwrite_refuses_a_run_a_design_shows(exp):
    from autoencoders.train import TrainConfig, prepare_run_dir

    run = exp / "models" / "conv-mse-s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    before = snapshot(exp)
    with pytest.raises(InputError) as err:
        prepare_run_dir(TrainConfig(arch="conv", loss="mse", seed=0, out=str(exp), overwrite=True))
    assert "study" in one_line(str(err.value)) and snapshot(exp) == before


def test_demo_never_starts_over_on_peoples_responses(exp, capsys):
    cfg = demo.DemoConfig(epochs=1)
    demo._save_state(exp, {"config": json.loads(json.dumps(demo.asdict(cfg))), "done": []})
    human_file(exp / "study")
    before = snapshot(exp)
    for kwargs in ({"cfg": demo.DemoConfig(epochs=2), "fresh": False}, {"cfg": cfg, "fresh": True}):
        with pytest.raises(InputError) as err:
            demo.prepare(exp, **kwargs)
        assert "response file(s) of people" in one_line(str(err.value))
        assert snapshot(exp) == before


def test_demo_reuses_only_intact_steps(exp, capsys):
    cfg = demo.DemoConfig(participants=3)
    assert demo._intact("design", exp, cfg) and demo._intact("simulate", exp, cfg)
    assert demo._intact("reconstruct", exp, cfg)
    png = next((exp / "reconstructions" / "conv-mse-s0").glob("*.png"))
    png.unlink()
    assert not demo._intact("reconstruct", exp, cfg)
    next((exp / "study" / "responses").glob("*.csv")).write_text("participant\n")
    assert not demo._intact("simulate", exp, cfg)
    assert not demo._intact("encode", exp, cfg) and not demo._intact("no such step", exp, cfg)


# ---------------------------------------------------------------- faults inside the real commands

def test_simulate_failing_mid_write_changes_nothing(exp, monkeypatch):
    from study import responses as log

    human_file(exp / "study")
    before = snapshot(exp)
    real, calls = log.write_rows, []

    def flaky(path, rows):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, rows)

    monkeypatch.setattr(log, "write_rows", flaky)
    with pytest.raises(InputError) as err:
        simulate(exp / "study" / "design.csv", 5, observer="random", seed=4)
    assert "no space left on device" in one_line(str(err.value)) and len(calls) == 3
    assert snapshot(exp) == before and leftovers(exp) == []


def test_analyze_failing_mid_write_changes_nothing(exp, monkeypatch):
    from analysis import cli as acli
    from analysis import plots

    acli.analyze(exp / "study", n_boot=0, bayes=False, lme4=False)
    before = snapshot(exp)

    def broken(*_args, **_kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "rank_distribution_plot", broken)
    with pytest.raises(InputError) as err:
        acli.analyze(exp / "study", n_boot=0, bayes=False, lme4=False, seed=7)
    assert "no space left on device" in one_line(str(err.value))
    assert snapshot(exp) == before and leftovers(exp) == []


def test_simulate_on_a_full_disk_changes_nothing(exp, tmpfs):
    small = tmpfs / "exp"
    shutil.copytree(exp, small)
    human_file(small / "study")
    used = sum(p.stat().st_size for p in small.rglob("*") if p.is_file())
    # Leave room for the copy simulate makes of study/ but not for 60 more observers.
    study_size = sum(p.stat().st_size for p in (small / "study").rglob("*") if p.is_file())
    free = shutil.disk_usage(tmpfs).free
    (tmpfs / "filler").write_bytes(b"\0" * max(0, free - study_size - 40 * 1024))
    before = snapshot(small)
    r = _cli("simulate", "--design", str(small / "study" / "design.csv"), "--participants", "60", "--observer", "random")
    msg = one_line(r.stderr)
    assert r.returncode == 2 and "no space left on device" in msg and "is as it was" in msg, (used, msg)
    assert snapshot(small) == before and leftovers(small) == []


def test_two_commands_into_one_study_the_second_refuses(exp):
    study = exp / "study"
    before = snapshot(exp)
    with lock_holder(study, "percept simulate --participants 99") as holder:
        for args in (("simulate", "--design", str(study / "design.csv"), "--participants", "2"),
                     ("design", "--manifest", str(exp / "reconstructions" / "manifest.csv"), "--out", str(exp),
                      "--overwrite")):
            r = _cli(*args)
            msg = one_line(r.stderr)
            assert r.returncode == 2 and f"pid {holder.pid}" in msg and "percept simulate --participants 99" in msg
        assert snapshot(exp) == before


@pytest.mark.slow
def test_simulate_killed_at_random_points(exp):
    rng = random.Random(3)
    study = exp / "study"
    human_file(study)
    before, saved = snapshot(exp), save(exp)
    old = {k for k in before if k.startswith("study/responses/")}
    args = [*PERCEPT, "simulate", "--design", str(study / "design.csv"), "--participants", "40", "--observer", "random"]
    t0 = time.monotonic()
    subprocess.run(args, env=ENV, check=True, capture_output=True, cwd=exp.parent, timeout=120)
    span = time.monotonic() - t0
    complete = snapshot(exp)
    new_names = {k for k in complete if k.startswith("study/responses/")}
    assert len(new_names - old) == 2 * 37  # sim04..sim40 added, sim01..03 replaced
    seen = {"old": 0, "new": 0}
    for trial in range(3):
        restore(exp, saved)
        assert snapshot(exp) == before
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.6 * span, 1.05 * span))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = snapshot(exp)
        if now != before:  # then it must be a complete new set: every file of the new run, old people's files intact
            assert set(now) == new_names | {k for k in before if not k.startswith("study/responses/")}
            assert all(now[k] == before[k] for k in before if "P01" in k)
            for f in (study / "responses").glob("*.csv"):
                responses_c.read_responses(f)
        recover(study)  # what the next command into study/ does first
        assert snapshot(exp) == now and leftovers(exp) == []
        seen["old" if now == before else "new"] += 1
    print(f"SIGKILL simulate trials: {seen}")


def test_a_session_in_progress_blocks_design_and_simulate_not_another_session(exp):
    study = exp / "study"
    before = snapshot(exp)
    with lock_holder(study, "percept run --participant P07", shared=True):
        with pytest.raises(StageBusy) as err:
            simulate(study / "design.csv", 2, observer="random")
        assert "percept run --participant P07" in one_line(str(err.value))
        with pytest.raises(StageBusy):
            build_design(exp / "reconstructions" / "manifest.csv", exp, DesignConfig(lists=1), overwrite=True)
        assert snapshot(exp) == before
        with stage_lock(study, "percept run --participant P08", shared=True):
            pass  # a second booth may run at the same time


def test_reconstruct_refuses_even_when_the_manifest_was_deleted(exp):
    from autoencoders.export import reconstruct

    (exp / "reconstructions" / "manifest.csv").unlink()
    before = snapshot(exp)
    with pytest.raises(InputError) as err:
        reconstruct(exp, n=3)
    assert "design.json" in one_line(str(err.value)) and snapshot(exp) == before


def test_a_file_where_a_stage_folder_belongs_is_refused_not_replaced(tmp_path):
    target = tmp_path / "analysis"
    target.write_text("my notes")
    with pytest.raises(InputError) as err:
        with staged_dir(target) as staging:
            (staging / "x").write_text("x")
    assert "is a file, not a folder" in one_line(str(err.value)) and target.read_text() == "my notes"


def test_a_symlinked_stage_folder_keeps_what_it_pointed_to(tmp_path):
    real = tmp_path / "elsewhere"
    before = _old_set(real)
    (tmp_path / "exp").mkdir()
    link = tmp_path / "exp" / "analysis"
    link.symlink_to(real)
    with staged_dir(link, keep=True) as staging:
        (staging / "new.txt").write_text("new")
    assert snapshot(real) == before  # the folder the link pointed to is untouched
    assert (link / "new.txt").read_text() == "new" and (link / "f0.txt").is_file()
    assert leftovers(tmp_path / "exp") == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny fc run on 32×32 images, with reconstructions (1 image) and codes."""
    from percept import cli

    out = tiny_fc_run(tmp_path_factory.mktemp("trained"))
    assert cli.main(["reconstruct", "--out", str(out), "--n", "1"]) == 0
    assert cli.main(["encode", "--out", str(out)]) == 0
    return out


def test_reconstruct_and_encode_failing_mid_write_change_nothing(trained, monkeypatch):
    from autoencoders import export
    from percept.contracts import pixels as pixels_c

    before = snapshot(trained)

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export, "contact_sheet", full)  # the last file reconstruct writes
    with pytest.raises(InputError) as err:
        export.reconstruct(trained, n=3)
    assert "no space left on device" in one_line(str(err.value))
    monkeypatch.setattr(pixels_c, "atomic_write", full)  # the last file encode writes
    with pytest.raises(InputError) as err:
        export.encode(trained)
    assert "no space left on device" in one_line(str(err.value))
    assert snapshot(trained) == before and leftovers(trained) == []


@pytest.mark.slow
def test_reconstruct_killed_at_random_points(trained):
    rng = random.Random(5)
    before, saved = snapshot(trained), save(trained)
    args = [*PERCEPT, "reconstruct", "--out", str(trained), "--n", "2"]
    t0 = time.monotonic()
    subprocess.run(args, env=ENV, check=True, capture_output=True, timeout=300)
    span = time.monotonic() - t0
    after = snapshot(trained)
    assert after != before
    seen = {"old": 0, "new": 0}
    for trial in range(3):
        restore(trained, saved)
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.6 * span, 1.05 * span))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = snapshot(trained)
        assert now in (before, after), f"trial {trial}: a mix of old and new reconstructions"
        seen["old" if now == before else "new"] += 1
        recover(trained / "reconstructions")
        assert leftovers(trained) == []
    restore(trained, saved)
    print(f"SIGKILL reconstruct trials: {seen}")


def test_power_and_report_failing_change_nothing(exp, monkeypatch):
    from analysis import cli as acli
    from analysis import plots
    from analysis import report as report_mod

    acli.analyze(exp / "study", n_boot=0, bayes=False, lme4=False)
    acli.report(exp)
    before = snapshot(exp)

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(exp / "analysis" / "x"))

    monkeypatch.setattr(plots, "power_plot", full)
    with pytest.raises(InputError) as err:
        acli.power(exp / "study", [4], [4], sims=5, effect=0.5, sd_participant=0.1, sd_image=0.1)
    assert "no space left on device" in one_line(str(err.value))
    monkeypatch.setattr(report_mod, "atomic_write", full)
    with pytest.raises(InputError) as err:
        acli.report(exp)
    assert "no space left on device" in one_line(str(err.value))
    assert snapshot(exp) == before and leftovers(exp) == []


def test_readers_hold_a_shared_lock_so_no_folder_is_swapped_mid_read(exp):
    from percept.contracts.staging import reading

    study = exp / "study"
    before = snapshot(exp)
    with reading(study):
        with pytest.raises(StageBusy):
            simulate(study / "design.csv", 2, observer="random")
        with reading(study):
            pass  # readers do not exclude each other
    assert snapshot(exp) == before
    with staged_dir(study, keep=True):
        with pytest.raises(StageBusy) as err:
            with reading(study):
                pass
        assert "another percept command is writing" in one_line(str(err.value))


def test_a_person_is_never_mistaken_for_a_scripted_observer(exp):
    from percept.contracts.staging import is_simulated

    responses = exp / "study" / "responses"
    sim = sorted(responses.glob("sim*.csv"))[0]
    assert is_simulated(sim)
    person = human_file(exp / "study")
    assert not is_simulated(person)
    # a record that claims "simulated" does not outweigh rows that say a person answered
    person.with_suffix(".json").write_text(json.dumps({"simulated": True}))
    assert not is_simulated(person)
    person.with_suffix(".json").unlink()
    assert not is_simulated(person)  # rows with simulated 0 and no record
    sim.with_suffix(".json").unlink()
    assert is_simulated(sim)  # every row says 1 and no record contradicts it
    sim.write_text("participant,simulated\nx,1\ny,\n")  # a row without the flag
    assert not is_simulated(sim)


def test_classify_failing_mid_write_changes_nothing(tmp_path, monkeypatch):
    from analysis import cli as acli
    from analysis import plots
    from percept.contracts.codes import write_codes

    exp = tmp_path / "exp"
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    for run in ("conv-mse-s0", "conv-mae-s0"):
        codes = rng.normal(size=(40, 4)) + labels[:, None]
        write_codes(exp / "codes" / f"{run}.npz", codes, labels, [f"i{k}" for k in range(40)],
                    ["train"] * 30 + ["test"] * 10)
    acli.classify(exp / "codes")
    before = snapshot(exp)

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "classification_plot", full)
    with pytest.raises(InputError) as err:
        acli.classify(exp / "codes", c=0.5)
    assert "no space left on device" in one_line(str(err.value))
    assert snapshot(exp) == before and leftovers(exp) == []


def test_the_fallback_without_rename_exchange(tmp_path, monkeypatch):
    from percept.contracts import staging

    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    _old_set(target)
    with staged_dir(target) as staging_dir:
        (staging_dir / "new.txt").write_text("new\n")
    assert snapshot(target) == {"new.txt": hashlib.sha256(b"new\n").hexdigest()} and leftovers(tmp_path) == []
