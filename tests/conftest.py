"""Shared fixtures: the log on SQLite and on a real PostgreSQL.

PostgreSQL comes from ORRERY_TEST_DATABASE_URL (``make test`` starts a private
server and sets it): the Manager's role. The per-test schemas belong to the log's owner,
ORRERY_TEST_DATABASE_OWNER_URL (default: the owner of the dev cluster,
``deploy/dev-postgres.sh --owner``), who sets each one up as ``orrery serve`` does at
start (``commands.bootstrap.prepare_log``). With ORRERY_REQUIRE_SERVICES=1 (``make
test``, CI) a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE = os.environ.get("ORRERY_REQUIRE_SERVICES") == "1"
# Test mode: iterating the write side's Engine without holding bus.lock (outside the
# writer) raises, so the whole suite checks every reader (commands.bus.CHECK_LOCK_ENV).
os.environ.setdefault("ORRERY_CHECK_ENGINE_LOCK", "1")

# A fresh machine has no ``ovirtmgmt`` bridge. The suite once passed only where an earlier
# run had left one behind; under ORRERY_REQUIRE_SERVICES (``make test``, CI) it starts
# only without one and fails if it leaves one behind, so the dependency cannot come back.
MGMT_BRIDGE = Path("/sys/class/net/ovirtmgmt")


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE and MGMT_BRIDGE.exists():
        raise pytest.UsageError(
            "an 'ovirtmgmt' interface exists in this network namespace before the tests: "
            "the suite must pass on a fresh machine, which has none. Something left it "
            "behind (a stopped 'make run' host removes its own); remove it with "
            "'ip link del ovirtmgmt' and run again."
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE and MGMT_BRIDGE.exists():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "FAILED: the tests left an 'ovirtmgmt' bridge behind (the harness removes "
                "what its hosts created)",
                red=True,
            )


def pg_url() -> str | None:
    return os.environ.get("ORRERY_TEST_DATABASE_URL") or None


def need_pg() -> str:
    url = pg_url()
    if url is None:
        if REQUIRE:
            pytest.fail("ORRERY_TEST_DATABASE_URL is not set but services are required")
        pytest.skip("no PostgreSQL (set ORRERY_TEST_DATABASE_URL)")
    return url


@functools.cache
def pg_owner_url() -> str:
    """The URL of the role that owns the test schemas and their logs."""
    given = os.environ.get("ORRERY_TEST_DATABASE_OWNER_URL")
    if given:
        return given
    script = Path(__file__).resolve().parent.parent / "deploy" / "dev-postgres.sh"
    out = subprocess.run([str(script), "--owner"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def new_pg_schema(prefix: str = "t_") -> str:
    """A fresh schema, set up by the owner for the Manager's role as at start; returns the
    Manager's URL for it. ``drop_pg_schema`` removes it."""
    from commands.bootstrap import prepare_log
    from commands.store import with_schema

    url = need_pg()
    schema = prefix + uuid.uuid4().hex[:12]
    prepare_log(pg_owner_url(), with_schema(url, schema))
    return with_schema(url, schema)


def drop_pg_schema(schema_url: str) -> None:
    import psycopg

    from commands.store import libpq_url

    schema = schema_url.rsplit("schema=", 1)[1]
    with psycopg.connect(libpq_url(pg_owner_url()), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL (the Manager's role) whose tables live in a fresh schema that the
    owner set up, dropped afterwards."""
    url = new_pg_schema()
    try:
        yield url
    finally:
        drop_pg_schema(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path) -> Iterator[dict]:
    """Where the log lives: {'database_url': ..., 'data_dir': ...}, once per backend."""
    if request.param == "sqlite":
        yield {"database_url": None, "data_dir": tmp_path}
    else:
        yield {"database_url": request.getfixturevalue("pg_schema_url"), "data_dir": tmp_path}
