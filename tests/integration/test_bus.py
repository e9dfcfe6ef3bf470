"""The write side on SQLite and on PostgreSQL: idempotency, group commit, clean failures,
conflict retry across two writers, and rebuild-from-log equality."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlsplit

import pytest

from commands.bootstrap import open_bus
from commands.datacenter import AddCluster, AddDataCenter, RemoveDataCenter, UpdateDataCenter
from commands.store import libpq_url
from domain.base import DomainError
from domain.datacenter import DataCenter
from tests.conftest import pg_owner_url

pytestmark = pytest.mark.integration


def test_idempotent_resubmission_writes_nothing(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        first = bus.execute(AddDataCenter(name="dc1", command_id="cmd-1"))
        head = bus.log.head()
        again = bus.execute(AddDataCenter(name="dc1", command_id="cmd-1"))
        assert again == first
        assert bus.log.head() == head
    finally:
        bus.stop()
    # After a restart the id is still known (rebuilt from the events' metadata).
    bus2 = open_bus(**store_location)
    try:
        again = bus2.execute(AddDataCenter(name="dc1", command_id="cmd-1"))
        assert again.created == first.created
        assert bus2.log.head() == head
    finally:
        bus2.stop()


def test_rule_violation_in_a_batch_fails_alone(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        bus.execute(AddDataCenter(name="taken"))
        head = bus.log.head()
        cmds = [AddDataCenter(name=f"dc{i}") for i in range(50)] + [AddDataCenter(name="taken")]
        futs = [bus.submit(c) for c in cmds]
        errors = [f.exception(10) for f in futs]
        assert sum(e is not None for e in errors) == 1
        assert isinstance(errors[-1], DomainError)
        assert "name is already in use" in str(errors[-1])
        # Each data center brings its ovirtmgmt network: 2 events per success.
        assert bus.log.head() - head >= 100
        assert bus.batches < 51  # group commit: fewer transactions than commands
    finally:
        bus.stop()


def test_commands_from_an_event_loop(store_location) -> None:
    """execute_async: results, refusals and resubmitted ids reach coroutines on the loop,
    many commands share a transaction, and a cancelled caller does not break the rest."""
    bus = open_bus(**store_location)
    try:

        async def main() -> None:
            made = await asyncio.gather(
                *(
                    bus.execute_async(AddDataCenter(name=f"a{i}", command_id=f"a{i}"))
                    for i in range(40)
                )
            )
            assert len({r.created[0] for r in made}) == 40
            batches = bus.batches
            # Two coroutines submit the same command id at once: one transaction, one result.
            twins = await asyncio.gather(
                bus.execute_async(AddDataCenter(name="twin", command_id="twin")),
                bus.execute_async(AddDataCenter(name="twin", command_id="twin")),
            )
            assert twins[0] == twins[1]
            with pytest.raises(DomainError, match="name is already in use"):
                await bus.execute_async(AddDataCenter(name="a0"))
            dc = made[0].created[0]
            slow = asyncio.ensure_future(
                bus.execute_async(UpdateDataCenter(data_center_id=dc, description="late"))
            )
            slow.cancel()
            done = await bus.execute_async(UpdateDataCenter(data_center_id=dc, description="now"))
            assert done.position > 0
            assert bus.batches > batches

        asyncio.run(main())
        assert bus.batches < 45  # the 40 concurrent adds were group-committed
    finally:
        bus.stop()


def test_rebuild_from_log_gives_identical_state(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="a")).value
        bus.execute(AddCluster(name="c1", data_center_id=dc))
        bus.execute(UpdateDataCenter(data_center_id=dc, description="changed"))
        other = bus.execute(AddDataCenter(name="b")).value
        bus.execute(RemoveDataCenter(data_center_id=other))
        digest = bus.engine.digest()
    finally:
        bus.stop()
    fresh = open_bus(**store_location, start=False)
    assert fresh.engine.digest() == digest
    assert fresh.engine.get(DataCenter, dc).description == "changed"


def test_conflicting_writers_retry_on_fresh_state(store_location) -> None:
    """Two buses on one log (two Manager processes): both update the same object;
    each conflict is retried on fresh state and every update lands once."""
    a = open_bus(**store_location)
    b = open_bus(**store_location)
    try:
        dc = a.execute(AddDataCenter(name="shared")).value
        b.catch_up()
        n = 20
        errs: list[BaseException] = []

        def writer(bus, tag):
            for i in range(n):
                try:
                    bus.execute(UpdateDataCenter(data_center_id=dc, description=f"{tag}{i}"))
                except BaseException as e:  # pragma: no cover - reported below
                    errs.append(e)

        ts = [threading.Thread(target=writer, args=(x, t)) for x, t in ((a, "a"), (b, "b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs
        a.catch_up()
        b.catch_up()
        assert a.engine.get(DataCenter, dc).version == 1 + 2 * n
        assert a.engine.digest() == b.engine.digest()
    finally:
        a.stop()
        b.stop()


def test_postgres_over_a_unix_socket(pg_schema_url) -> None:
    """libpq's socket form of the URL (``?host=/dir``) reaches the same database."""
    import psycopg

    with psycopg.connect(libpq_url(pg_owner_url())) as conn:  # a setting only it may read
        (dirs,) = conn.execute("SHOW unix_socket_directories").fetchone()
        port = conn.info.port
    u = urlsplit(pg_schema_url)
    netloc = f"{u.netloc.rpartition('@')[0]}@:{port}"
    socket_url = f"{u.scheme}://{netloc}{u.path}?host={dirs.split(',')[0]}&{u.query}"
    bus = open_bus(database_url=socket_url)
    try:
        dc = bus.execute(AddDataCenter(name="via-socket")).value
        assert bus.log.recorder._writer_conn.info.host.startswith("/")
    finally:
        bus.stop()
        bus.log.close()
    tcp = open_bus(database_url=pg_schema_url, start=False)
    try:
        assert tcp.engine.get(DataCenter, dc).name == "via-socket"
    finally:
        tcp.log.close()
