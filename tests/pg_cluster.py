"""A throw-away PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl in a temp folder, loopback only.

As root (PostgreSQL refuses to run as root) the cluster belongs to the `postgres` user and its commands
run through `runuser`. `missing_reason()` says why no cluster can be made here (None when one can).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres (PATH first, then Debian's /usr/lib/postgresql/N/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    def major(path: str) -> int:
        number = Path(path).parents[1].name
        return int(number) if number.isdigit() else 0

    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    return Path(versions[-1]).parent if versions else None


def _as_postgres() -> bool:
    return os.geteuid() == 0


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql (make setup)"
    if _as_postgres():
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as the 'postgres' user"
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        return "psycopg (3) is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`with Cluster() as c: url = c.new_database("x")`; everything is removed on exit."""

    def __init__(self, fsync: bool = True):
        self.fsync = fsync
        self.root: Path | None = None
        self.port = 0

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if _as_postgres() else []
        r = subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {(r.stderr or r.stdout).strip()[-800:]}")

    def __enter__(self) -> "Cluster":
        b = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="percept-pg-"))
        if _as_postgres():
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        self._run(str(b / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.port = _free_port()
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
                + ("" if self.fsync else " -c fsync=off -c synchronous_commit=off"))
        try:
            self._run(str(b / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w", "-t", "60", "-o", opts, "start")
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def url(self, database: str = "postgres") -> str:
        """The postgresql:// URL of a database of this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __exit__(self, *exc) -> None:
        if self.root is None:
            return
        b = bin_dir()
        if (self.root / "data" / "postmaster.pid").exists():
            try:
                self._run(str(b / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pass  # removed below either way
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
