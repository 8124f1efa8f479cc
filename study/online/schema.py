"""The online study's tables (SQLAlchemy Core; one schema for SQLite and PostgreSQL) and their migrations.

`schema_version` holds one row per applied migration. `migrate(engine)` applies, in order and each in
its own transaction, every numbered migration the database lacks; a database newer than this code is
refused. Migrations only add: participants' answers are never rewritten.

Tables
- studies: one row per served design (`study` = the design file's sha256, first 16 hex); locked
  `FOR UPDATE` while a list is assigned so assignments of one study are serialized on PostgreSQL too.
- sessions: one per (study, participant hash), unique; its list, policy, client and check data,
  created / last_seen / completed_at as Unix seconds; `texts` (v2): JSON {consent, instructions, debrief:
  {sha256, source}} of the participant-facing texts served when the session began (NULL before v2).
- session_trials: the design row shown at each position (session, position) → (list_id, trial); an
  active policy adds rows as it chooses them.
- answers: primary key (session, position): one answer per trial, never updated.
"""
from __future__ import annotations

from typing import Callable

from percept.contracts import InputError


def tables(version: int | None = None):
    """(metadata, {name: Table}) of the schema at `version` (None: the current one)."""
    import sqlalchemy as sa

    at = VERSION if version is None else version
    md = sa.MetaData()
    applied = sa.Table(
        "schema_version", md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("applied", sa.Float, nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
    )
    studies = sa.Table(
        "studies", md,
        sa.Column("study", sa.String(16), primary_key=True),
        sa.Column("design", sa.String(500), nullable=False),
        sa.Column("n_lists", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    sessions = sa.Table(
        "sessions", md,
        sa.Column("session", sa.String(32), primary_key=True),
        sa.Column("study", sa.String(16), sa.ForeignKey("studies.study"), nullable=False),
        sa.Column("participant", sa.String(16), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("platform_ids", sa.Text, nullable=False),  # JSON: the platform's study id, hashed session ids
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("client", sa.Text, nullable=False),  # JSON of the browser's report at start
        sa.Column("screen_check", sa.Text, nullable=True),  # JSON of the screen check (dpr, scale, viewport, ...)
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("completed_at", sa.Float, nullable=True),  # every trial answered
        sa.Column("released_at", sa.Float, nullable=True),  # completion code handed out (catch rule passed)
        *([sa.Column("texts", sa.Text, nullable=True)] if at >= 2 else []),  # JSON: hashes of the texts shown
        sa.UniqueConstraint("study", "participant", name="uq_sessions_study_participant"),
    )
    sa.Index("ix_sessions_study_list", sessions.c.study, sessions.c.list_id)
    session_trials = sa.Table(
        "session_trials", md,
        sa.Column("session", sa.String(32), sa.ForeignKey("sessions.session"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("trial", sa.Integer, nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),  # an active policy's slot (True until chosen)
    )
    answers = sa.Table(
        "answers", md,
        sa.Column("session", sa.String(32), sa.ForeignKey("sessions.session"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("keys", sa.Text, nullable=False),  # JSON list of the presses, in order
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("choice", sa.String(500), nullable=False),
        sa.Column("rt", sa.Float, nullable=False),
        sa.Column("onset", sa.Float, nullable=False),
        sa.Column("client_time", sa.String(40), nullable=False),
        sa.Column("server_time", sa.String(40), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the canonical payload: same → 200, else 409
    )
    return md, {t.name: t for t in (applied, studies, sessions, session_trials, answers)}


def _create_v1(conn) -> None:
    # The tables as version 1 made them, so that a new database goes through every later migration
    # exactly as an old one does.
    md, _ = tables(1)
    md.create_all(conn, checkfirst=True)


def _session_texts(conn) -> None:
    # Nullable: sessions begun before v2 keep NULL (their texts were the built-in ones, unrecorded).
    conn.exec_driver_sql("ALTER TABLE sessions ADD COLUMN texts TEXT")


# Numbered migrations: (version, note, function of a connection inside a transaction). Append only.
MIGRATIONS: tuple[tuple[int, str, Callable], ...] = (
    (1, "studies, sessions, session_trials, answers", _create_v1),
    (2, "sessions.texts: sha256 of the consent, instructions and debrief shown", _session_texts),
)
VERSION = MIGRATIONS[-1][0]


def current_version(conn) -> int:
    """The highest applied migration (0 for an empty database)."""
    import sqlalchemy as sa

    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    _, t = tables()
    return int(conn.execute(sa.select(sa.func.max(t["schema_version"].c.version))).scalar() or 0)


def migrate(engine, upto: int | None = None) -> int:
    """Bring the database to VERSION (or `upto`, for tests of old databases), one transaction per migration;
    return the version reached."""
    import time

    import sqlalchemy as sa

    md, t = tables()
    with engine.begin() as conn:
        t["schema_version"].create(conn, checkfirst=True)
    for number, note, step in MIGRATIONS:
        if upto is not None and number > upto:
            break
        with engine.begin() as conn:
            have = current_version(conn)
            if have > VERSION:
                raise InputError(f"{engine.url.render_as_string(hide_password=True)}: database schema version {have} is "
                                 f"newer than this percept's {VERSION}; update percept")
            if have >= number:
                continue
            step(conn)
            conn.execute(sa.insert(t["schema_version"]).values(version=number, applied=time.time(), note=note))
    with engine.connect() as conn:
        return current_version(conn)
