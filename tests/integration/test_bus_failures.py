"""The write side when things go wrong, on SQLite and PostgreSQL: a failed commit leaves
the Engine equal to the log (also with a second batch decided on top of it), refused
commands write nothing, group commit really groups, the idempotency window is bounded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

import commands.bus as bus_module
from commands.bootstrap import open_bus
from commands.bus import CommandBus
from commands.datacenter import AddDataCenter, UpdateDataCenter
from commands.messages import Command
from commands.registry import HANDLERS
from commands.store import PendingInsert, libpq_url
from domain.base import DomainError
from domain.datacenter import DataCenter
from tests.conftest import pg_owner_url

pytestmark = pytest.mark.integration


def _replayed_digest(store_location: dict) -> str:
    fresh = open_bus(**store_location, start=False)
    try:
        return fresh.engine.digest()
    finally:
        fresh.log.close()


def _fail_appends(bus: CommandBus, should_fail: Callable[[int], bool]) -> list[int]:
    """Makes the log's append raise (like a dropped connection) when should_fail(call#)."""
    real = bus.log.send_append
    calls = [0]
    failed: list[int] = []

    def send(stored: Any, prepared: str | None = None) -> PendingInsert:
        calls[0] += 1
        if should_fail(calls[0]):
            failed.append(calls[0])
            return PendingInsert(None, OperationalError("connection dropped (test)"))
        return real(stored, prepared)

    bus.log.send_append = send  # type: ignore[method-assign]
    return failed


def test_failed_commit_is_undone_in_memory(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="dc")).value
        _fail_appends(bus, lambda n: n == 1)
        with pytest.raises(OperationalError):
            bus.execute(UpdateDataCenter(data_center_id=dc, description="lost"))
        assert bus.engine.get(DataCenter, dc).description == ""
        assert bus.engine.digest() == _replayed_digest(store_location)
        # The bus goes on working, from the right version.
        bus.execute(UpdateDataCenter(data_center_id=dc, description="kept"))
        assert bus.engine.get(DataCenter, dc).version == 2
        assert bus.engine.digest() == _replayed_digest(store_location)
    finally:
        bus.stop()


def test_failed_commit_under_load_redecides_the_next_batch(store_location) -> None:
    """Many clients; some commits fail while the next batch is already decided on top.
    Every command either commits once or gets the error; memory equals the log."""
    bus = open_bus(**store_location)
    try:
        dcs = [bus.execute(AddDataCenter(name=f"dc{i}")).value for i in range(8)]
        failed = _fail_appends(bus, lambda n: n in (3, 7, 8, 15))
        per = 15
        outcomes: list[tuple[int, int, BaseException | None]] = []
        start = threading.Barrier(len(dcs))

        def client(i: int) -> None:
            start.wait()
            for n in range(per):
                cmd = UpdateDataCenter(data_center_id=dcs[i], description=f"{i}-{n}")
                try:
                    bus.execute(cmd)
                    outcomes.append((i, n, None))
                except BaseException as e:
                    outcomes.append((i, n, e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(dcs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failed, "no commit failed: the test did not test anything"
        errors = [e for *_, e in outcomes if e is not None]
        assert errors and all(isinstance(e, OperationalError) for e in errors)
        assert bus.engine.digest() == _replayed_digest(store_location)
        # Each successful command is in the log exactly once, failed ones not at all.
        ok = {(i, n) for i, n, e in outcomes if e is None}
        logged = [
            ev.description
            for _, ev in bus.log.iter_all()
            if isinstance(ev, bus_module.Event) and type(ev).__name__ == "DataCenterUpdated"
        ]
        assert sorted(logged) == sorted(f"{i}-{n}" for i, n in ok)
        for i, dc in enumerate(dcs):
            mine = [n for j, n, e in outcomes if j == i and e is None]
            assert bus.engine.get(DataCenter, dc).version == 1 + len(mine)
    finally:
        bus.stop()


def test_refused_commands_write_nothing(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="taken")).value
        head = bus.log.head()
        bad = [
            AddDataCenter(name="taken", command_id="bad-name"),
            UpdateDataCenter(data_center_id=dc, version="4.2", command_id="bad-version"),
            AddDataCenter(name="x", version="9.9", command_id="bad-unsupported"),
        ]
        futs = [bus.submit(c) for c in bad]
        for f in futs:
            assert isinstance(f.exception(10), DomainError)
        assert bus.log.head() == head
        good = bus.submit(AddDataCenter(name="fine", command_id="good"))
        bad_again = bus.submit(AddDataCenter(name="taken", command_id="bad-name-2"))
        assert good.result(10).events >= 1
        assert isinstance(bad_again.exception(10), DomainError)
        ids = {ev.meta.command_id for _, ev in bus.log.iter_all()}
        assert "good" in ids
        assert not ids & {"bad-name", "bad-version", "bad-unsupported", "bad-name-2"}
        assert bus.engine.digest() == _replayed_digest(store_location)
    finally:
        bus.stop()


def test_group_commit_batches_concurrent_commands(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        dcs = [bus.execute(AddDataCenter(name=f"g{i}")).value for i in range(16)]
        before = bus.batches
        per = 10
        start = threading.Barrier(len(dcs))

        def client(dc: Any) -> None:
            start.wait()
            for n in range(per):
                bus.execute(UpdateDataCenter(data_center_id=dc, description=str(n)))

        threads = [threading.Thread(target=client, args=(dc,)) for dc in dcs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        commands = len(dcs) * per
        assert bus.batches - before < commands / 2  # several commands per transaction
        assert bus.engine.digest() == _replayed_digest(store_location)
    finally:
        bus.stop()


def test_idempotency_window_is_bounded(store_location, monkeypatch) -> None:
    monkeypatch.setattr(bus_module, "IDEMPOTENCY_WINDOW", 10)
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="w", command_id="w-0")).value
        for n in range(30):
            cmd = UpdateDataCenter(data_center_id=dc, description=str(n), command_id=f"w-{n + 1}")
            bus.execute(cmd)
        assert len(bus._done) == 10
        head = bus.log.head()
        # A recent id is still answered from memory, without writing.
        again = bus.execute(
            UpdateDataCenter(data_center_id=dc, description="29", command_id="w-30")
        )
        assert again.events == 1
        assert bus.log.head() == head
    finally:
        bus.stop()
    # Rebuilt from the log after a restart, the window is bounded too.
    bus2 = open_bus(**store_location, start=False)
    try:
        assert len(bus2._done) == 10
        assert "w-30" in bus2._done
    finally:
        bus2.log.close()


def test_duplicate_command_in_flight_runs_once(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="dup")).value
        cmd = UpdateDataCenter(data_center_id=dc, description="once", command_id="dup-1")
        futs = [bus.submit(cmd) for _ in range(20)]
        results = [f.result(10) for f in futs]
        assert len({r.position for r in results}) == 1
        assert bus.engine.get(DataCenter, dc).version == 2
    finally:
        bus.stop()


def test_postgres_insert_failure_is_undone(pg_schema_url) -> None:
    """A real failure inside PostgreSQL's transaction (a trigger refuses one row): the
    whole batch is rolled back, its commands get the error, memory equals the log."""
    import psycopg

    loc = {"database_url": pg_schema_url, "data_dir": None}
    bus = open_bus(**loc)
    try:
        dcs = [bus.execute(AddDataCenter(name=f"p{i}")).value for i in range(6)]
        schema = pg_schema_url.rsplit("schema=", 1)[1]
        # The owner's doing: the Manager's role may not add triggers to the log.
        with psycopg.connect(libpq_url(pg_owner_url()), autocommit=True) as conn:
            conn.execute(
                f"""CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$BEGIN RAISE EXCEPTION 'refused by test'; END$$"""
            )
            conn.execute(
                f"""CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".orrery_events
                FOR EACH ROW WHEN (position('boom' in convert_from(NEW.state, 'UTF8')) > 0)
                EXECUTE FUNCTION "{schema}".refuse()"""
            )
        futs = [
            bus.submit(UpdateDataCenter(data_center_id=dc, description=f"d{i}"))
            for i, dc in enumerate(dcs)
        ]
        futs.append(bus.submit(UpdateDataCenter(data_center_id=dcs[0], description="boom")))
        errors = [f.exception(20) for f in futs]
        assert errors[-1] is not None
        assert "refused by test" in str(errors[-1])
        assert bus.engine.digest() == _replayed_digest(loc)
        # Afterwards the bus works on.
        bus.execute(UpdateDataCenter(data_center_id=dcs[1], description="after"))
        assert bus.engine.digest() == _replayed_digest(loc)
    finally:
        bus.stop()


def test_postgres_dropped_connection_is_retried(pg_schema_url) -> None:
    import psycopg

    loc = {"database_url": pg_schema_url, "data_dir": None}
    bus = open_bus(**loc)
    try:
        dc = bus.execute(AddDataCenter(name="conn")).value
        writer = bus.log.recorder._writer_conn  # the connection the writer keeps
        assert writer is not None and not writer.closed
        with psycopg.connect(pg_schema_url.split("?")[0], autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(%s)", (writer.info.backend_pid,)
            ).fetchone()
        assert killed == (True,), "the writer's connection was not found"
        bus.execute(UpdateDataCenter(data_center_id=dc, description="after the drop"))
        assert bus.engine.get(DataCenter, dc).description == "after the drop"
        assert bus.engine.digest() == _replayed_digest(loc)
    finally:
        bus.stop()


class _Explode(Command, frozen=True, kw_only=True):
    """Test-only command whose handler has a bug."""

    NAME = "TestExplode"


def _explode(tx: Any, cmd: _Explode) -> None:
    raise RuntimeError("handler bug (test)")


def test_a_handler_bug_fails_only_its_command(store_location, monkeypatch) -> None:
    monkeypatch.setitem(HANDLERS, _Explode, _explode)
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="bug")).value
        futs = [
            bus.submit(UpdateDataCenter(data_center_id=dc, description="1")),
            bus.submit(_Explode()),
            bus.submit(UpdateDataCenter(data_center_id=dc, description="2")),
        ]
        assert futs[0].result(10).events == 1
        assert isinstance(futs[1].exception(10), RuntimeError)
        assert futs[2].result(10).events == 1
        assert bus.engine.get(DataCenter, dc).description == "2"
        assert bus.engine.digest() == _replayed_digest(store_location)
    finally:
        bus.stop()
