"""Load on the online study's server: simulated participants at once, leaving, reloading and retrying.

    .venv/bin/python benchmarks/online_load.py                      # 50 participants, SQLite (+ PostgreSQL if installed)
    .venv/bin/python benchmarks/online_load.py --participants 20 --no-postgres

Each run builds a small design (`percept design` on a generated manifest), starts `percept serve` in a
subprocess on loopback and sends `--participants` participants at once (httpx async, one connection
each). A participant answers every trial (catch trials right); with probability `--abandon` one stops at
a random trial and never comes back, with `--reload` one reloads (starts again, must get the same
session and its next trial), and every answer is sent twice with probability `--retry` (a lost
response). After `--abandon-after` seconds as many new participants as left replace them (as a crowd
platform reopens returned places). Checks, on the database: every answer stored once (no duplicates),
each finished session holds all its trials (no gaps), a retried answer never got 409, and the finished
sessions per list differ by at most one. Reports answers per second and the p95 latency of answers.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOW = "2026-11-29T12:00:00+00:00"
TOKEN = "X-Session-Token"


@dataclass
class LoadResult:
    """What one load run saw and found."""

    participants: int = 0
    finished: int = 0
    abandoned: int = 0
    reloads: int = 0
    retries: int = 0
    answers: int = 0  # answers acknowledged (first sends)
    conflicts: int = 0  # 409s on identical retries (must be 0)
    errors: list = field(default_factory=list)
    latencies: list = field(default_factory=list)  # seconds per answer PUT
    seconds: float = 0.0  # time spent in the waves (not the wait for abandoned places to free)
    duplicates: int = 0
    gaps: int = 0
    per_list: dict = field(default_factory=dict)

    @property
    def p95_ms(self) -> float:
        """95th percentile of answer latency, ms."""
        return 1000 * statistics.quantiles(self.latencies, n=20)[-1] if len(self.latencies) >= 2 else float("nan")

    @property
    def rate(self) -> float:
        """Answers acknowledged per second of the run."""
        return self.answers / self.seconds if self.seconds else float("nan")


def keys_for(row: dict, rng: random.Random) -> list[str]:
    """An attentive participant's presses: catch trials right, ms_ssim mostly preferred, rankings at random."""
    kind = row["kind"]
    if kind == "catch":
        return [row["answer"]]
    if kind in ("triplet", "pair"):
        good = "left" if row["left_loss"] == "ms_ssim" else "right"
        return [good if rng.random() < 0.8 else ("left" if good == "right" else "right")]
    if kind == "ranking":
        return rng.sample(["1", "2", "3"], 2)
    raise ValueError(f"the load benchmark has no answers for {kind} trials")


async def _request(client, method: str, url: str, result: LoadResult, **kw):
    """One request, retried on connection errors (a participant's flaky network) up to 5 times."""
    import httpx

    for attempt in range(5):
        try:
            return await client.request(method, url, **kw)
        except (httpx.TransportError,) as exc:
            if attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
            result.errors.append(f"{method} {url}: {type(exc).__name__} (retried)")


async def _participant(client, name: str, rows: dict, rng: random.Random, result: LoadResult, *, abandon: float,
                       retry: float, reload: float) -> None:
    body = {"participant": name, "platform": {}, "client": {"user_agent": "load", "dpr": 1.0}}
    r = await _request(client, "POST", "/api/sessions", result, json=body)
    if r.status_code not in (200, 201):
        result.errors.append(f"start {name}: {r.status_code} {r.text[:100]}")
        return
    s = r.json()
    head = {TOKEN: s["token"]}
    quit_at = rng.randrange(1, s["n_trials"]) if rng.random() < abandon else None
    position = s["next_trial"]
    fetched: dict[int, dict] = {}
    while position is not None:
        if position == quit_at:
            result.abandoned += 1
            return
        if rng.random() < reload:  # a reload mid-study: the same session, resumed where it was
            again = (await _request(client, "POST", "/api/sessions", result, json=body)).json()
            result.reloads += 1
            if (again["session"], again["next_trial"]) != (s["session"], position):
                result.errors.append(f"reload of {name}: {again} is not session {s['session']} at trial {position}")
                return
        if position not in fetched:  # the browser client asks for what is fixed from its next trial on
            got = await _request(client, "GET", f"/api/sessions/{s['session']}/trials", result,
                                 params={"from": position}, headers=head)
            fetched.update({t["trial"]: t for t in got.json()["trials"]})
        row = rows[(s["list_id"], fetched[position]["trial"])]
        payload = {"keys": keys_for(row, rng), "rt": round(rng.uniform(0.6, 3.0), 3), "onset": 4.0 * (position + 1),
                   "client_time": NOW}
        url = f"/api/sessions/{s['session']}/answers/{position}"
        t0 = time.perf_counter()
        r = await _request(client, "PUT", url, result, json=payload, headers=head)
        result.latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            result.errors.append(f"answer {name} {position}: {r.status_code} {r.text[:100]}")
            return
        result.answers += 1
        if rng.random() < retry:  # the response was lost: the same answer again
            result.retries += 1
            again = await _request(client, "PUT", url, result, json=payload, headers=head)
            if again.status_code == 409:
                result.conflicts += 1
            elif again.status_code != 200 or again.json() != r.json():
                result.errors.append(f"retry {name} {position}: {again.status_code} {again.text[:100]}")
        position = r.json()["next_trial"]
    done = await _request(client, "POST", f"/api/sessions/{s['session']}/complete", result, headers=head)
    if done.status_code != 200:
        result.errors.append(f"complete {name}: {done.status_code} {done.text[:100]}")
        return
    result.finished += 1


async def _wave(url: str, names: list[str], rows: dict, seed: int, result: LoadResult, **behaviour) -> None:
    import httpx

    async def one(k: int, name: str) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            await _participant(client, name, rows, random.Random(seed * 100_003 + k), result, **behaviour)

    await asyncio.gather(*(one(k, n) for k, n in enumerate(names)))


def run_load(url: str, design_csv: str | Path, *, participants: int = 50, abandon: float = 0.2, retry: float = 0.2,
             reload: float = 0.05, abandon_after: float = 1.0, seed: int = 0) -> LoadResult:
    """Send the participants (then replacements for those who left) to a server serving `design_csv`."""
    from percept.contracts import design as design_c

    df = design_c.read_design(design_csv)
    rows = {(int(r["list_id"]), int(r["trial"])): r for r in df.to_dict("records")}
    result = LoadResult(participants=participants)
    t0 = time.perf_counter()
    asyncio.run(_wave(url, [f"load{seed}x{k}" for k in range(participants)], rows, seed, result,
                      abandon=abandon, retry=retry, reload=reload))
    result.seconds = time.perf_counter() - t0
    if result.abandoned:
        time.sleep(abandon_after + 0.2)  # the abandoned places are free again (this wait is not timed)
        t0 = time.perf_counter()
        asyncio.run(_wave(url, [f"load{seed}r{k}" for k in range(result.abandoned)], rows, seed + 1, result,
                          abandon=0.0, retry=retry, reload=reload))
        result.seconds += time.perf_counter() - t0
    return result


def check_database(result: LoadResult, database_url: str, design_csv: str | Path) -> LoadResult:
    """Count duplicates, gaps and finished sessions per list in the database itself."""
    import sqlalchemy as sa

    from study.online.assign import ServedDesign
    from study.online.schema import tables
    from study.online.store import make_engine

    design = ServedDesign.load(design_csv)
    _, t = tables()
    engine = make_engine(database_url)
    s, a = t["sessions"], t["answers"]
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(a).join(s, s.c.session == a.c.session)
                             .where(s.c.study == design.study)).scalar()
        distinct = conn.execute(sa.select(sa.func.count()).select_from(
            sa.select(a.c.session, a.c.position).distinct().join(s, s.c.session == a.c.session)
            .where(s.c.study == design.study).subquery())).scalar()
        finished = conn.execute(sa.select(s.c.session, s.c.list_id, s.c.n_trials).where(
            s.c.study == design.study, s.c.completed_at.is_not(None))).all()
        gaps = 0
        for sid, _, n in finished:
            got = sorted(conn.execute(sa.select(a.c.position).where(a.c.session == sid)).scalars())
            gaps += got != list(range(n))
    engine.dispose()
    result.duplicates = total - distinct
    result.gaps = gaps
    result.per_list = {k: sum(1 for _, lid, _ in finished if lid == k) for k in range(design.n_lists)}
    return result


def make_experiment(root: Path) -> Path:
    """A small design (4 images, triplet + ranking + catch, 2 lists) made by `percept design`; return design.csv."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_study_support import make_manifest

    make_manifest(root, n_images=4)
    subprocess.run([sys.executable, "-m", "percept", "design", "--out", str(root), "--lists", "1", "--practice", "1",
                    "--catch", "0.2", "--kinds", "triplet,ranking", "--pairs", "mse:ms_ssim"], check=True, cwd=REPO,
                   capture_output=True)
    return root / "study" / "design.csv"


def serve_process(design_csv: Path, database: str | None, abandon_after: float):
    """`percept serve` on a free loopback port in a subprocess: (process, base URL)."""
    cmd = [sys.executable, "-m", "percept", "serve", "--design", str(design_csv), "--port", "0",
           "--abandon-after", str(abandon_after), "--ip-rate-limit", "1000000", "--rate-limit", "1000000"]
    if database:
        cmd += ["--database", database]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
        if found:  # keep reading its log so a full pipe never stalls the server
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, found.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"percept serve did not start: {proc.stderr.read()[:500] if proc.stderr else ''}")


def bench(label: str, design_csv: Path, database: str, args) -> LoadResult:
    """One load run against a `percept serve` subprocess; prints its line."""
    proc, url = serve_process(design_csv, database, args.abandon_after)
    try:
        result = run_load(url, design_csv, participants=args.participants, abandon=args.abandon, retry=args.retry,
                          reload=args.reload, abandon_after=args.abandon_after, seed=args.seed)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    check_database(result, database, design_csv)
    ok = (not result.duplicates and not result.gaps and not result.conflicts
          and max(result.per_list.values()) - min(result.per_list.values()) <= 1)
    print(f"{label:<10} {result.participants:>4} + {result.abandoned:>2} replaced  finished {result.finished:>3}  "
          f"answers {result.answers:>5}  {result.rate:7.1f} answers/s  p95 {result.p95_ms:7.1f} ms  "
          f"retries {result.retries}  reloads {result.reloads}  dup {result.duplicates}  gaps {result.gaps}  "
          f"409 {result.conflicts}  per list {result.per_list}  {'OK' if ok else 'FAILED'}", flush=True)
    for e in result.errors[:5]:
        print(f"  {e}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the load against SQLite and, where its binaries are installed, a throw-away PostgreSQL."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--participants", type=int, default=50)
    p.add_argument("--abandon", type=float, default=0.2)
    p.add_argument("--retry", type=float, default=0.2)
    p.add_argument("--reload", type=float, default=0.05)
    p.add_argument("--abandon-after", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    root = Path(tempfile.mkdtemp(prefix="percept-load-"))
    failed = False
    try:
        design_csv = make_experiment(root)
        r = bench("sqlite", design_csv, f"sqlite:///{root / 'load.sqlite'}", args)
        failed |= bool(r.duplicates or r.gaps or r.conflicts)
        if args.postgres:
            sys.path.insert(0, str(REPO / "tests"))
            from pg_cluster import Cluster, missing_reason

            why = missing_reason()
            if why:
                print(f"postgresql: skipped ({why})")
            else:
                with Cluster() as cluster:
                    r = bench("postgresql", design_csv, cluster.new_database("load"), args)
                    failed |= bool(r.duplicates or r.gaps or r.conflicts)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
