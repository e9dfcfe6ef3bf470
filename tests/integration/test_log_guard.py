"""The audit trail cannot be rewritten (real PostgreSQL): the Manager's role may read and
append to the log but not UPDATE, DELETE or TRUNCATE it (grants), a trigger refuses those
even to the log's owner, the set-up works on a fresh and on an existing database, and
the dev PostgreSQL refuses connections without the password."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
import pytest

from commands.bootstrap import open_bus, prepare_log
from commands.bus import CommandBus
from commands.datacenter import AddDataCenter
from commands.store import EventLog, libpq_url, with_schema
from tests.conftest import drop_pg_schema, need_pg, new_pg_schema, pg_owner_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DENIED = psycopg.errors.InsufficientPrivilege
REWRITES = [
    "UPDATE {log} SET topic = 'forged'",
    "DELETE FROM {log}",
    "TRUNCATE {log}",
    "ALTER TABLE {log} DISABLE TRIGGER USER",
    "DROP TRIGGER orrery_log_no_update_delete ON {log}",
    "DROP TABLE {log}",
]


def _schema(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def _log(url: str) -> str:
    return f'"{_schema(url)}".orrery_events'


def _count(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(f"SELECT count(*) FROM {_log(url)}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def written(pg_schema_url):
    """A log with a few events appended through the normal write path."""
    bus = open_bus(pg_schema_url)
    try:
        for i in range(3):
            bus.execute(AddDataCenter(name=f"guard{i}"))
    finally:
        bus.stop()
    return pg_schema_url


def test_the_manager_role_is_not_the_owner_nor_a_superuser(written):
    with psycopg.connect(libpq_url(written)) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, tableowner FROM pg_roles, pg_tables "
            "WHERE rolname = current_user AND schemaname = %s AND tablename = 'orrery_events'",
            (_schema(written),),
        ).fetchone()
    assert row is not None
    user, superuser, owner = row
    assert not superuser
    assert owner != user


@pytest.mark.parametrize("statement", REWRITES)
def test_the_manager_role_cannot_rewrite_the_log(written, statement):
    before = _count(written)
    with (
        psycopg.connect(libpq_url(written), autocommit=True) as conn,
        pytest.raises(DENIED),
    ):
        conn.execute(statement.format(log=_log(written)))
    assert _count(written) == before


def test_the_manager_appends_through_the_write_path_and_reads(written):
    before = _count(written)
    bus = open_bus(written)
    try:
        bus.execute(AddDataCenter(name="after-guard"))
        topics = [type(e).__name__ for _, e in bus.log.read(0, 100)]
    finally:
        bus.stop()
    assert _count(written) > before
    assert topics.count("DataCenterAdded") == 4


@pytest.mark.parametrize("statement", REWRITES[:3])
def test_the_trigger_refuses_even_the_owner(written, statement):
    before = _count(written)
    with (
        psycopg.connect(libpq_url(pg_owner_url()), autocommit=True) as conn,
        pytest.raises(DENIED) as err,
    ):
        conn.execute(statement.format(log=_log(written)))
    assert "append-only" in str(err.value)
    assert _count(written) == before


def test_an_existing_log_without_the_guard_gets_it_at_start(tmp_path):
    """A log from before the guard (made by its owner, no triggers, no grants): starting
    the Manager with the owner's URL sets it up; the old events stay, new ones append."""
    url = need_pg()
    owner = pg_owner_url()
    schema = "old_" + os.urandom(6).hex()
    with psycopg.connect(libpq_url(owner), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    manager_url = with_schema(url, schema)
    try:
        old = EventLog(with_schema(owner, schema))
        bus = CommandBus(old).start()
        bus.execute(AddDataCenter(name="from-before"))
        bus.stop()
        with psycopg.connect(libpq_url(owner), autocommit=True) as conn:
            log = f'"{schema}".orrery_events'
            conn.execute(f"DROP TRIGGER orrery_log_no_update_delete ON {log}")
            conn.execute(f"DROP TRIGGER orrery_log_no_truncate ON {log}")
            conn.execute(f'DROP FUNCTION "{schema}".orrery_events_lock()')
        # The Manager's role alone cannot use it: it is not set up for it.
        with pytest.raises(Exception, match="not set up for role"):
            EventLog(manager_url)
        bus = open_bus(manager_url, owner_url=owner)
        try:
            bus.execute(AddDataCenter(name="after"))
            topics = [type(e).__name__ for _, e in bus.log.read(0, 100)]
        finally:
            bus.stop()
        assert topics.count("DataCenterAdded") == 2
        with (
            psycopg.connect(libpq_url(url), autocommit=True) as conn,
            pytest.raises(DENIED),
        ):
            conn.execute(f'DELETE FROM "{schema}".orrery_events')
        # Idempotent: a second start changes nothing and works.
        prepare_log(owner, manager_url)
        bus = open_bus(manager_url, owner_url=owner)
        bus.stop()
    finally:
        drop_pg_schema(manager_url)


def test_a_fresh_schema_is_set_up_at_start_by_the_owner():
    url = need_pg()
    owner = pg_owner_url()
    schema = "fresh_" + os.urandom(6).hex()
    manager_url = with_schema(url, schema)
    try:
        bus = open_bus(manager_url, owner_url=owner)
        try:
            bus.execute(AddDataCenter(name="fresh"))
        finally:
            bus.stop()
        with (
            psycopg.connect(libpq_url(url), autocommit=True) as conn,
            pytest.raises(DENIED),
        ):
            conn.execute(f'UPDATE "{schema}".orrery_events SET topic = topic')
    finally:
        drop_pg_schema(manager_url)


def test_per_test_schemas_are_the_owners():
    url = new_pg_schema()
    try:
        with psycopg.connect(libpq_url(url)) as conn:
            row = conn.execute(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                (_schema(url),),
            ).fetchone()
        assert row is not None and row[0] != urlsplit(url).username
    finally:
        drop_pg_schema(url)


def test_dev_postgres_refuses_connections_without_the_password(tmp_path):
    need_pg()
    out = subprocess.run(
        [str(ROOT / "deploy" / "dev-postgres.sh")], check=True, capture_output=True, text=True
    )
    url = out.stdout.strip().splitlines()[-1]
    u = urlsplit(url)
    assert u.password, "the dev URL carries the password"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # libpq must not find a password anywhere else (~/.pgpass, PGPASSWORD).
    env_free = {"passfile": str(tmp_path / "none"), "connect_timeout": 10}
    with psycopg.connect(libpq_url(pg_owner_url())) as conn:
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert sockets is not None
    socket_dir = sockets[0].split(",")[0].strip()
    for host in ("127.0.0.1", socket_dir):
        for password in (None, "wrong"):
            kw = dict(env_free, host=host, port=u.port, user=u.username, dbname="orrery")
            if password is not None:
                kw["password"] = password
            old = os.environ.pop("PGPASSWORD", None)
            try:
                with pytest.raises(psycopg.OperationalError) as err:
                    psycopg.connect(**kw)
            finally:
                if old is not None:
                    os.environ["PGPASSWORD"] = old
            msg = str(err.value)
            assert "password" in msg, msg
    for user in ("postgres", "orrery_owner"):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(**dict(env_free, host="127.0.0.1", port=u.port, user=user))
