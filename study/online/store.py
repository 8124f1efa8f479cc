"""Every database transaction of the online study (SQLAlchemy Core; SQLite by default, PostgreSQL by URL).

SQLite runs in WAL mode with synchronous=FULL (an answer acknowledged is on disk) and a busy timeout;
every transaction begins IMMEDIATE, so writers queue instead of failing, and reads inside a transaction
see what they will write on. On PostgreSQL the study's row is locked FOR UPDATE wherever a decision
depends on other sessions (list assignment, active choice); answers rely on their primary key.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from percept.contracts import InputError
from study.online import schema
from study.online.assign import ServedDesign, check_choice, choose_list

BUSY_TIMEOUT_S = 30  # a writer waits this long for another before the request fails


def online_dir(design_path: str | Path) -> Path:
    """The study's online state folder: study/online/ beside design.csv (database, key)."""
    return Path(design_path).resolve().parent / "online"


def engine_url(database: str | None, online_dir: Path) -> str:
    """The SQLAlchemy URL: the given one (postgresql:// goes through psycopg 3), else study.sqlite."""
    if database is None:
        return f"sqlite:///{(online_dir / 'study.sqlite').resolve()}"
    return normalize(database)


def normalize(database: str) -> str:
    """A database URL with its driver named: postgresql:// goes through psycopg 3; anything else is refused."""
    for prefix in ("postgresql://", "postgres://"):
        if database.startswith(prefix):
            return "postgresql+psycopg://" + database[len(prefix):]
    if database.startswith(("sqlite:///", "postgresql+psycopg://")):
        return database
    raise InputError(f"--database: {database.split('@')[-1]!r} is not a sqlite:/// or postgresql:// URL")


def make_engine(url: str):
    """An engine with SQLite's durability and locking settings (WAL, synchronous=FULL, busy timeout)."""
    import sqlalchemy as sa

    url = normalize(url)

    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                                  pool_size=8, max_overflow=8)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's deferred one
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=FULL", f"busy_timeout={BUSY_TIMEOUT_S * 1000}",
                           "foreign_keys=ON"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            # Writers take the lock at BEGIN (queueing on the busy timeout) so what they read stays true until
            # they commit; readers take none and see the last commit (WAL).
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine
    if url.startswith("postgresql+psycopg://"):
        return sa.create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    raise InputError(f"--database: unsupported URL {url.split('@')[-1]!r}")


def iso(t: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def digest(payload: dict) -> str:
    """sha256 of a payload's canonical JSON: equal payloads (any key order) have equal digests."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


TOUCH_EVERY = 10.0  # seconds: last_seen is rewritten at most this often (abandonment is judged in minutes)


@dataclass(frozen=True)
class Outcome:
    """An HTTP status and JSON body decided by a transaction."""

    status: int
    body: dict


class StaleTexts(RuntimeError):
    """A new session was refused: its page showed other texts than those the server serves now (nothing stored)."""


class Store:
    """The study's database: sessions, their trials and answers, for one served design."""

    def __init__(self, url: str, design: ServedDesign, *, policy: str = "balanced", abandon_after: float = 1800.0,
                 policy_obj=None, batch: int = 8):
        import sqlalchemy as sa

        self.sa = sa
        self.engine = make_engine(url)
        try:
            self.version = schema.migrate(self.engine)
        except sa.exc.DBAPIError as exc:  # unreachable server, wrong password, unwritable file: one line
            where = self.engine.url.render_as_string(hide_password=True)
            first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise InputError(f"--database {where}: {first}") from None
        _, self.t = schema.tables()
        self.design = design
        self.policy = policy
        self.policy_obj = policy_obj
        self.abandon_after = abandon_after
        self.touch_every = min(TOUCH_EVERY, abandon_after / 4)
        self.batch = batch
        with self.write() as conn:
            have = conn.execute(sa.select(self.t["studies"]).where(self.t["studies"].c.study == design.study)).first()
            if have is None:
                conn.execute(sa.insert(self.t["studies"]).values(study=design.study, design=str(design.path),
                                                                  n_lists=design.n_lists, created=time.time()))

    @contextmanager
    def write(self):
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        with self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close every pooled connection (SQLite checkpoints its WAL)."""
        self.engine.dispose()

    def _lock_study(self, conn) -> None:
        """Serialize decisions that depend on other sessions (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already does)."""
        studies = self.t["studies"]
        conn.execute(self.sa.select(studies.c.study).where(studies.c.study == self.design.study).with_for_update()).first()

    # --- sessions -------------------------------------------------------------------------
    def start(self, session_id: str, participant: str, platform: str, platform_ids: dict, client: dict,
              texts: dict | None = None, refuse_new: str | None = None) -> tuple[dict, bool]:
        """(session row, created): the participant's existing session (its texts kept), else a new one on the
        balanced list recording `texts` (the hashes of the texts it is shown); `refuse_new`: no new one (StaleTexts)."""
        sa, t = self.sa, self.t
        s = t["sessions"]
        now = time.time()
        with self.write() as conn:
            self._lock_study(conn)
            old = conn.execute(sa.select(s).where(s.c.study == self.design.study, s.c.participant == participant)).mappings().first()
            if old is not None:
                conn.execute(sa.update(s).where(s.c.session == old["session"]).values(last_seen=now))
                return dict(old), False
            if refuse_new:
                raise StaleTexts(refuse_new)
            list_id = self._choose_list(conn, now)
            plan = self.design.skeleton(list_id, self.policy)
            conn.execute(sa.insert(s).values(
                session=session_id, study=self.design.study, participant=participant, platform=platform,
                platform_ids=json.dumps(platform_ids, sort_keys=True), list_id=list_id, policy=self.policy,
                n_trials=len(plan), client=json.dumps(client, sort_keys=True), screen_check=None, created=now,
                last_seen=now, completed_at=None, released_at=None,
                texts=json.dumps(texts, sort_keys=True) if texts is not None else None))
            conn.execute(sa.insert(t["session_trials"]), [
                {"session": session_id, "position": k, "list_id": lid, "trial": trial, "pending": pending}
                for k, (lid, trial, pending) in enumerate(plan)])
            row = conn.execute(sa.select(s).where(s.c.session == session_id)).mappings().one()
            return dict(row), True

    def _choose_list(self, conn, now: float) -> int:
        sa, s = self.sa, self.t["sessions"]
        mine = s.c.study == self.design.study
        taken = sa.or_(s.c.completed_at.is_not(None), s.c.last_seen >= now - self.abandon_after)
        places = dict(conn.execute(sa.select(s.c.list_id, sa.func.count()).where(mine, taken).group_by(s.c.list_id)).all())
        ever = dict(conn.execute(sa.select(s.c.list_id, sa.func.count()).where(mine).group_by(s.c.list_id)).all())
        return choose_list(places, ever, self.design.n_lists)

    def session(self, session_id: str, *, touch: bool = True) -> dict | None:
        """The session row (None if unknown or of another design); `touch` marks it active now."""
        sa, s = self.sa, self.t["sessions"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s).where(s.c.session == session_id, s.c.study == self.design.study)).mappings().first()
        now = time.time()
        if row is not None and touch and now - row["last_seen"] > self.touch_every:
            with self.write() as conn:
                conn.execute(sa.update(s).where(s.c.session == session_id, s.c.last_seen < now).values(last_seen=now))
        return None if row is None else dict(row)

    def record_check(self, session_id: str, check: dict) -> None:
        """Store the browser's screen check (the latest one counts; earlier ones are kept in its history)."""
        sa, s = self.sa, self.t["sessions"]
        with self.write() as conn:
            old = conn.execute(sa.select(s.c.screen_check).where(s.c.session == session_id)).scalar()
            history = json.loads(old)["history"] if old else []
            history.append(check)
            conn.execute(sa.update(s).where(s.c.session == session_id).values(
                screen_check=json.dumps({**check, "history": history[-20:]}, sort_keys=True)))

    # --- trials ---------------------------------------------------------------------------
    def positions(self, session_id: str) -> list[dict]:
        """Every position of a session in order: position, list_id, trial, pending."""
        sa, st = self.sa, self.t["session_trials"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(st).where(st.c.session == session_id).order_by(st.c.position)).mappings().all()
        return [dict(r) for r in rows]

    def fixed_from(self, session_id: str, start: int) -> list[dict]:
        """The positions from `start` on that are fixed, up to the first pending one; an active policy fills a batch first."""
        rows = self.positions(session_id)
        pending = [r["position"] for r in rows if r["pending"]]
        if pending and self.policy_obj is not None and pending[0] < start + self.batch:
            self._fill(session_id)
            rows = self.positions(session_id)
        out = []
        for r in rows[max(start, 0):]:
            if r["pending"]:
                break
            out.append(r)
        return out

    def _fill(self, session_id: str) -> None:
        """Let the active policy choose the next batch of this session's pending slots (one transaction)."""
        sa, t = self.sa, self.t
        st, a = t["session_trials"], t["answers"]
        with self.write() as conn:
            self._lock_study(conn)
            slots = conn.execute(sa.select(st.c.position).where(st.c.session == session_id, st.c.pending.is_(True))
                                 .order_by(st.c.position).limit(self.batch)).scalars().all()
            if not slots:
                return  # another request filled them meanwhile
            mine = conn.execute(sa.select(st.c.list_id, st.c.trial).where(st.c.session == session_id,
                                                                         st.c.pending.is_(False))).all()
            seen = {self.design.pool_index[(lid, tr)] for lid, tr in mine if (lid, tr) in self.design.pool_index}
            ss = t["sessions"]
            done = conn.execute(sa.select(st.c.list_id, st.c.trial, a.c.choice)
                                .join(a, sa.and_(a.c.session == st.c.session, a.c.position == st.c.position))
                                .join(ss, ss.c.session == st.c.session)
                                .where(ss.c.study == self.design.study)).all()  # this design's answers only
            answered = [(self.design.pool[self.design.pool_index[(lid, tr)]], choice) for lid, tr, choice in done
                        if (lid, tr) in self.design.pool_index]
            picked = check_choice(self.policy_obj.choose(answered, set(seen), len(slots)), len(self.design.pool),
                                  seen, len(slots))
            for position, index in zip(slots, picked):
                row = self.design.pool[index]
                conn.execute(sa.update(st).where(st.c.session == session_id, st.c.position == position).values(
                    list_id=row["list_id"], trial=row["trial"], pending=False))
            if len(picked) < len(slots):  # the pool is spent for this participant: the rest keep the list's own rows
                for position in slots[len(picked):]:
                    conn.execute(sa.update(st).where(st.c.session == session_id, st.c.position == position)
                                 .values(pending=False))

    def slot(self, session_id: str, position: int) -> dict | None:
        """The fixed position of a session (None if out of range or still pending)."""
        sa, st = self.sa, self.t["session_trials"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(st).where(st.c.session == session_id, st.c.position == position)).mappings().first()
        return None if row is None or row["pending"] else dict(row)

    # --- answers --------------------------------------------------------------------------
    def answer(self, session_id: str, position: int, payload: dict, key: str, choice: str) -> Outcome:
        """Store an answer once: the same payload again → 200, a different one → 409, never a second row."""
        sa, t = self.sa, self.t
        a, s = t["answers"], t["sessions"]
        d = digest(payload)
        now = time.time()
        values = dict(session=session_id, position=position, keys=json.dumps(payload["keys"]), key=key, choice=choice,
                      rt=float(payload["rt"]), onset=float(payload["onset"]), client_time=payload["client_time"],
                      server_time=iso(now), digest=d)
        try:
            with self.write() as conn:
                old = conn.execute(sa.select(a.c.digest, a.c.choice).where(a.c.session == session_id,
                                                                           a.c.position == position)).first()
                if old is None:
                    conn.execute(sa.insert(a).values(**values))
                done = set(conn.execute(sa.select(a.c.position).where(a.c.session == session_id)).scalars())
                n_trials, last_seen = conn.execute(sa.select(s.c.n_trials, s.c.last_seen).where(s.c.session == session_id)).one()
                changes = {"last_seen": now} if old is None and now - last_seen > self.touch_every else {}
                if old is None and len(done) == n_trials:
                    changes.update(completed_at=now, last_seen=now)  # the last answer: the place is taken for good
                if changes:
                    conn.execute(sa.update(s).where(s.c.session == session_id).values(**changes))
        except sa.exc.IntegrityError:  # a concurrent identical request won the insert: compare with it below
            with self.engine.connect() as conn:
                old = conn.execute(sa.select(a.c.digest, a.c.choice).where(a.c.session == session_id,
                                                                           a.c.position == position)).first()
                done = set(conn.execute(sa.select(a.c.position).where(a.c.session == session_id)).scalars())
                n_trials = conn.execute(sa.select(s.c.n_trials).where(s.c.session == session_id)).scalar()
            if old is None:
                raise
        if old is not None and old.digest != d:
            return Outcome(409, {"detail": f"trial {position} already has a different answer; it is kept"})
        return Outcome(200, {"trial": position, "choice": choice if old is None else old.choice,
                             "next_trial": next((k for k in range(n_trials) if k not in done), None)})

    def answered(self, session_id: str) -> dict[int, dict]:
        """{position: answer row} of a session."""
        sa, a = self.sa, self.t["answers"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(a).where(a.c.session == session_id)).mappings().all()
        return {r["position"]: dict(r) for r in rows}

    def next_trial(self, session_id: str) -> int | None:
        """The first unanswered position (None when all are answered)."""
        done = set(self.answered(session_id))
        n = self.session(session_id, touch=False)["n_trials"]
        return next((k for k in range(n) if k not in done), None)

    def release(self, session_id: str) -> None:
        """Mark the completion code as handed out (the first time)."""
        sa, s = self.sa, self.t["sessions"]
        with self.write() as conn:
            conn.execute(sa.update(s).where(s.c.session == session_id, s.c.released_at.is_(None))
                         .values(released_at=time.time()))

    # --- export ---------------------------------------------------------------------------
    def sessions(self) -> list[dict]:
        """Every session of this design, oldest first."""
        sa, s = self.sa, self.t["sessions"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(s).where(s.c.study == self.design.study).order_by(s.c.created, s.c.session)).mappings().all()
        return [dict(r) for r in rows]
