"""The online server's tests (tests/test_online_server.py; the database ones of test_online_texts.py) against a real
PostgreSQL: a throw-away cluster made by initdb/pg_ctl in a temp folder on a loopback port, one fresh database per test."""
from __future__ import annotations

import itertools

import pytest

from pg_cluster import Cluster, missing_reason
from test_online_server import *  # noqa: F401,F403  (the same tests, collected here with the fixture below)
from test_online_server import exp, exp_template  # noqa: F401  (fixtures, named for readers)
# The study texts' tests that touch the database: per-session hashes, and schema v1 → v2 (ALTER TABLE).
from test_online_texts import (test_a_schema_v1_database_migrates_and_its_sessions_have_no_recorded_texts,  # noqa: F401
                               test_each_session_keeps_the_hashes_of_the_texts_it_was_shown)

# Tests that never touch the database run once, in test_online_server.py.
del test_lab_files_without_mode_read_as_lab, test_percept_serve_process_holds_the_study_and_export_errors_are_one_line  # noqa: F821
del test_a_database_busy_past_its_timeout_is_503_and_stores_nothing  # noqa: F821  (SQLite's write lock)

_WHY = missing_reason()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"PostgreSQL: {_WHY}")
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster():
    """One cluster for the module (fsync off: these tests check behaviour, not durability)."""
    with Cluster(fsync=False) as c:
        yield c


@pytest.fixture
def database_url(cluster):
    """A fresh database per test on the cluster."""
    return cluster.new_database(f"t{next(_names)}")
