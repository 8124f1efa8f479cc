"""All-or-nothing outputs, one writer per stage folder, and human responses that are never deleted.

Every command that writes a stage folder (`reconstructions/`, `codes/`, `study/`, `analysis/`) does so
through `staged_dir(target)`:

1. It takes the folder's lock, `<exp>/.<name>.lock` (fcntl.flock, *non-blocking*: a second writer is
   refused at once in one line naming the holder's pid and command, rather than queueing behind a
   run that may take an hour; the user decides whether to wait). The lock file lives beside the
   folder, not in it, because the folder itself is swapped. A participant's session (`percept run`)
   holds the study folder's lock *shared*: sessions run side by side, but `design` and `simulate`
   are refused while anyone is in the booth.
2. It finishes what a killed run left (see `recover`), then builds the new outputs in a sibling
   `<exp>/.<name>.swap-<pid>/`, optionally starting from a copy of the current folder (`keep=True`,
   for folders several commands share, such as `analysis/`). Human response files are hard-linked,
   not copied, so appends by a running session land in the same file whichever folder wins.
3. On success every file is fsync'd and the two folders are exchanged in one atomic
   `renameat2(RENAME_EXCHANGE)`; where the file system lacks it, the old folder is renamed aside
   and the new one renamed in (a crash between the two renames is rolled back by `recover`). The
   old folder is then removed.
4. On any exception (a refusal, a bug, ENOSPC, Ctrl-C) the swap folder is removed and the target was
   never touched; expected failures are re-raised as one `InputError` line that says so.

So at every instant the target holds either the complete old set or the complete new one. Files
under a `responses*` folder that are not marked simulated are never deleted by any of this: a
folder about to be removed is searched for them first, and any not present in the surviving folder
are moved into `study/responses-archived-<YYYYMMDD-HHMMSS>/` (`move_aside`).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

from percept.contracts.tables import InputError, fsync_dir

SWAP_TAG = ".swap-"  # `.<name>.swap-<pid>`: a build in progress, or the old set after an exchange
OLD_TAG = ".old-"  # `.<name>.old-<pid>`: the old set renamed aside (fallback without RENAME_EXCHANGE)
ARCHIVE_PREFIX = "responses-archived-"


class StageBusy(InputError):
    """Another process holds the stage folder's lock."""


def lock_path(folder: str | Path) -> Path:
    """The lock file of a stage folder: a hidden file beside it (the folder itself gets swapped)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not isinstance(info, dict):
        return "another process"
    return f"pid {info.get('pid', '?')}: {info.get('command', '?')}"


@contextmanager
def stage_lock(folder: str | Path, command: str | None = None, *, shared: bool = False) -> Iterator[None]:
    """Hold the lock of a stage folder; refuse at once, in one line, when another process holds it.

    Commands that replace outputs take it exclusive. `shared` is for processes that only add to the
    folder in place, such as participants' sessions (`percept run`): several may run together, but no
    command swaps the folder under them.
    """
    import fcntl

    folder = Path(folder)
    path = lock_path(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the lock file of {folder} ({_why(exc)}); nothing was changed") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StageBusy(f"{folder}: another percept command is writing here ({_holder(path)}); "
                            f"nothing was changed: wait for it to finish, then run this again") from None
        # Who holds it, for the message a second writer prints (the flock is what matters, not this text).
        me = json.dumps({"pid": os.getpid(), "command": command or " ".join(["percept", *sys.argv[1:]])})
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def is_simulated(csv_path: str | Path) -> bool:
    """True only for a scripted observer's file: no CSV row says otherwise and the record (if any) says simulated.

    A row whose `simulated` is not 1, a record saying false, or nothing readable at all: a person's.
    """
    import csv

    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="") as fh:
            flags = [row.get("simulated") for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error):
        flags = []
    if any(f != "1" for f in flags):
        return False
    try:
        return json.loads(csv_path.with_suffix(".json").read_text()).get("simulated") is True
    except (OSError, ValueError, AttributeError):
        return bool(flags)


def _response_files(folder: Path) -> Iterator[Path]:
    """Response CSVs and session JSONs under any `responses*` folder below `folder`."""
    if not folder.is_dir():
        return
    for sub in sorted(folder.rglob("responses*")):
        if sub.is_dir():
            for f in sorted(sub.iterdir()):
                if f.is_file() and f.suffix in (".csv", ".json"):
                    yield f


def human_response_files(folder: str | Path) -> list[Path]:
    """Response files (+ their session records) of people, not scripted observers, anywhere under `folder`."""
    out = []
    for f in _response_files(Path(folder)):
        csv = f.with_suffix(".csv")
        if not is_simulated(csv):
            out.append(f)
    return out


def move_aside(paths: Iterable[str | Path], study_dir: str | Path, stamp: str | None = None) -> Path | None:
    """Move response files (+ their .json records) into `study/responses-archived-<YYYYMMDD-HHMMSS>/`; return it.

    Renames only (same file system), never copies then deletes; an existing name is never overwritten.
    """
    files = []
    for p in paths:
        p = Path(p)
        for f in (p.with_suffix(".csv"), p.with_suffix(".json")):
            if f.is_file() and f not in files:
                files.append(f)
    if not files:
        return None
    stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    archive = Path(study_dir) / f"{ARCHIVE_PREFIX}{stamp}"
    archive.mkdir(parents=True, exist_ok=True)
    for f in files:
        dest = archive / f.name
        n = 1
        while dest.exists():
            dest = archive / f"{f.stem}.{n}{f.suffix}"
            n += 1
        os.rename(f, dest)
    fsync_dir(archive)
    for parent in {f.parent for f in files}:
        fsync_dir(parent)
    return archive


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _remove(doomed: Path, survivor: Path | None) -> None:
    """Remove a leftover or replaced folder, first rescuing any person's response file the survivor lacks."""
    if doomed.is_symlink():
        doomed.unlink()  # the link, never what it points to
        return
    if not doomed.exists():
        return
    kept = list(_response_files(survivor)) if survivor is not None else []
    kept_ids = {_identity(f) for f in kept}
    lost = []
    for f in human_response_files(doomed):
        if _identity(f) in kept_ids:
            continue  # a hard link of a file the survivor holds
        twins = [g for g in kept if g.name == f.name]
        if any(g.read_bytes() == f.read_bytes() or is_simulated(g.with_suffix(".csv")) for g in twins):
            continue  # an identical copy survives, or a copy (maybe cut short by a full disk) of a simulated file
        lost.append(f)
    if lost:
        home = survivor if survivor is not None and survivor.name == "study" else doomed.parent / "study"
        archive = move_aside(lost, home)
        print(f"percept: kept {len(lost)} human response file(s) from {doomed.name} in {archive}", file=sys.stderr)
    shutil.rmtree(doomed)


def recover(target: str | Path) -> None:
    """Finish what a killed run left beside `target`: restore a renamed-aside old set, remove swap folders."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{target.name}{OLD_TAG}*"))
    if not target.exists() and olds:
        os.rename(olds[-1], target)  # killed between the two fallback renames: the old set comes back
        fsync_dir(parent)
        olds = olds[:-1]
    for leftover in olds + sorted(parent.glob(f".{target.name}{SWAP_TAG}*")):
        _remove(leftover, target)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the system lacks it."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(staging: Path, target: Path) -> None:
    """Make the complete `staging` folder the `target`; afterwards remove the old set."""
    _fsync_tree(staging)
    parent = target.parent
    if not target.exists():
        os.rename(staging, target)
        fsync_dir(parent)
        return
    if _exchange(staging, target):
        old = staging  # after the exchange it holds the old set
    else:
        old = parent / f".{target.name}{OLD_TAG}{os.getpid()}"
        os.rename(target, old)
        os.rename(staging, target)  # a crash before this line is rolled back by `recover`
    fsync_dir(parent)
    try:
        _remove(old, target)
    except OSError as exc:  # the new set is in place; a leftover old one is removed by the next run
        print(f"percept: new outputs are in {target}; could not remove the old set {old} yet ({exc.strerror})",
              file=sys.stderr)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a stage folder; people's response files are hard links so a running session's appends stay in both.

    A hand-written walk rather than shutil.copytree, so the first failure (a full disk) is raised as
    itself rather than collected into one long list.
    """
    humans = set(human_response_files(src))
    for root, dirs, files in os.walk(src):
        here = Path(root)
        there = dst / here.relative_to(src)
        there.mkdir(exist_ok=True)
        for name in dirs:
            if (here / name).is_symlink():
                os.symlink(os.readlink(here / name), there / name)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            s = here / name
            if s.is_symlink():
                os.symlink(os.readlink(s), there / name)
            elif s in humans:
                os.link(s, there / name)
            else:
                shutil.copy2(s, there / name)


def _why(exc: OSError) -> str:
    """The reason of an OSError with its errno name, as the command layer prints it: 'No space left on device [ENOSPC]'."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else ""
    return f"{exc.strerror or exc}" + (f" [{name}]" if name else "")


def _one_line(exc: BaseException, staging: Path, target: Path) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename or ""
        name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
        text = exc.strerror.lower() + (f" [{name}]" if name else "") + (f" ({where})" if where else "")
    return text.replace(str(staging), str(target))


@contextmanager
def staged_dir(target: str | Path, *, keep: bool = False, command: str | None = None,
               prepare: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to write into; swap it in only if the block finishes.

    `keep` starts the temporary folder from a copy of the current target (for folders several
    commands write parts of); `prepare(staging)` may then adjust it (drop files the command
    regenerates, move responses aside) before the block runs. On failure `target` is untouched
    and an `InputError` line says so.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file, not a folder; move it away first (nothing was changed)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{target.parent}: cannot create the folder ({_why(exc)}); nothing was changed") from None
    with stage_lock(target, command):
        staging = target.parent / f".{target.name}{SWAP_TAG}{os.getpid()}"
        try:
            recover(target)
            if keep and target.is_dir():
                _copy_tree(target, staging)
            else:
                staging.mkdir()
            if prepare is not None:
                prepare(staging)
            yield staging
            swap_in(staging, target)
        except BaseException as exc:
            try:
                _remove(staging, target if target.is_dir() else None)
                recover(target)  # a fallback swap stopped between its two renames: the old set comes back
            except OSError as again:  # the outputs are intact either way; the next run retries the cleanup
                print(f"percept: could not remove {staging} yet ({again.strerror})", file=sys.stderr)
            if isinstance(exc, (InputError, OSError)):
                # The same class (ContractError stays ContractError), one line, saying nothing changed.
                kind = type(exc) if isinstance(exc, InputError) else InputError
                raise kind(f"{_one_line(exc, staging, target)}; nothing written: {target} is as it was") from None
            raise


@contextmanager
def reading(*folders: str | Path) -> Iterator[None]:
    """Hold the shared lock of the stage folders a command reads, so none is swapped mid-read.

    A folder whose lock file cannot be created (read-only media) is read without one: reading
    cannot damage it.
    """
    import fcntl
    from contextlib import ExitStack

    with ExitStack() as stack:
        for folder in folders:
            folder = Path(folder).resolve()
            try:
                fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StageBusy(f"{folder}: another percept command is writing here ({_holder(lock_path(folder))}); "
                                f"nothing was changed: wait for it to finish, then run this again") from None
        yield


@contextmanager
def locked(target: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold `target`'s stage lock without staging (for a command that writes one file atomically)."""
    target = Path(target)
    with stage_lock(target, command):
        recover(target)
        try:
            yield
        except OSError as exc:
            raise InputError(f"{_one_line(exc, target, target)}; nothing written: {target} is as it was") from None


def dependent_design(exp: str | Path) -> dict | None:
    """The study design of an experiment folder (design.json), or None when there is none or it is unreadable."""
    path = Path(exp) / "study" / "design.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
