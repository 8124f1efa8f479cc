"""The online server's tests (tests/test_online_server.py) against a real PostgreSQL: a throw-away cluster
made by initdb/pg_ctl in a temp folder on a loopback port, one fresh database per test."""
from __future__ import annotations

import itertools

import pytest

from pg_cluster import Cluster, missing_reason
from test_online_server import *  # noqa: F401,F403  (the same tests, collected here with the fixture below)
from test_online_server import exp, exp_template  # noqa: F401  (fixtures, named for readers)

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
