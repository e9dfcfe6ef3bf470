"""The read side next to a running bus, on SQLite and on PostgreSQL: read-your-writes,
following another writer (LISTEN/NOTIFY), search on both SQL dialects, the CLI's
replay --verify catching a tampered row, and the property incremental == replay ==
as-of over random command sequences through the real bus."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.cli import main as cli
from commands.bootstrap import open_bus
from commands.cluster import AddCluster, RemoveCluster, UpdateCluster
from commands.datacenter import AddDataCenter, RemoveDataCenter, UpdateDataCenter
from commands.host import AddHost, RemoveHost, UpdateHost
from commands.system import InitializeSystem
from commands.vm import AddVm, RemoveVm, UpdateVm
from domain.base import DomainError
from projections import timetravel
from projections.db import ViewDB
from projections.read import open_read_side
from projections.replay import rebuild
from tests.conftest import drop_pg_schema, new_pg_schema, pg_url

pytestmark = pytest.mark.integration


def test_read_your_writes_and_lists(store_location) -> None:
    bus = open_bus(**store_location)
    read = open_read_side(**store_location, bus=bus)
    try:
        r = bus.execute(AddDataCenter(name="Default", actor="admin@internal"))
        dc = r.value
        for i in range(30):
            res = bus.execute(AddCluster(name=f"Cl_{i}", data_center_id=dc, actor="a@internal"))
            assert read.wait_for(res.position, 5)
            assert read.get("cluster", res.value) is not None  # visible at once
        res = bus.execute(
            UpdateDataCenter(data_center_id=dc, description="Big one", correlation_id="corr-9")
        )
        assert read.wait_for(res.position, 5)
        assert read.get("data_center", dc)["description"] == "Big one"
        assert [e["correlation_id"] for e in read.events(object_id=dc)][-1] == "corr-9"
        assert read.history(dc)[-1]["command"] == "UpdateDataCenter"
        # Search on this backend's SQL dialect.
        assert len(read.list("cluster", "datacenter=default")) == 30
        assert [c["name"] for c in read.list("cluster", "name=cl_1*", max=3)] == [
            "Cl_1",
            "Cl_10",
            "Cl_11",
        ]
        assert read.list("cluster", "name=cl_1", case_sensitive=True) == []
        assert read.list("cluster", "name=cl?1") == []  # ? is literal, not a wildcard
        assert len(read.list("cluster", "name=Cl_2* sortby name desc page 2", max=5)) == 5
        assert [d["name"] for d in read.list("data_center", "local=false")] == ["Default"]
        assert read.list("data_center", "description=big*")[0]["id"] == str(dc)
        assert read.find_by_name("data_center", "Default")["id"] == str(dc)
        assert read.count("cluster") == 30
    finally:
        read.close()
        bus.stop()


def test_follows_another_writer_through_listen_notify(pg_schema_url) -> None:
    loc = {"database_url": pg_schema_url, "data_dir": None}
    bus = open_bus(**loc)
    other = open_bus(**loc)  # another Manager process writing the same log
    read = open_read_side(**loc, bus=bus, poll=60.0)  # only LISTEN can wake it in time
    try:
        lags = []
        for i in range(20):
            res = other.execute(AddDataCenter(name=f"remote{i}"))
            t0 = time.monotonic()
            assert read.runner.wait_for(res.position, 5)
            lags.append(time.monotonic() - t0)
        assert read.count("data_center") == 20
        assert sorted(lags)[len(lags) // 2] < 0.5
    finally:
        read.close()
        other.stop()
        bus.stop()


def test_cli_replay_verify_names_a_tampered_row(store_location, capsys) -> None:
    bus = open_bus(**store_location)
    dc = bus.execute(AddDataCenter(name="dc1", actor="admin@internal")).value
    bus.execute(UpdateDataCenter(data_center_id=dc, description="x"))
    bus.stop()
    argv = ["--data-dir", str(store_location["data_dir"])]
    if store_location["database_url"]:
        argv += ["--database-url", store_location["database_url"]]
    assert cli(["replay", "--quiet", *argv]) == 0
    assert cli(["replay", "--verify", "--quiet", "--json", *argv]) == 0
    out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert out["ok"] is True and out["differences"] == []
    with ViewDB(store_location["database_url"], store_location["data_dir"]) as db:
        db.execute("UPDATE {objects} SET name = ? WHERE id = ?", ("evil", str(dc)))
    assert cli(["replay", "--verify", "--quiet", *argv]) == 1
    text = capsys.readouterr().out
    assert f"objects: row id={dc} column name: live 'evil' != replay 'dc1'" in text
    # events and state CLIs read the same log.
    assert cli(["events", "--object", str(dc), "--json", *argv]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["topic"] for x in lines] == ["DataCenterAdded", "DataCenterUpdated"]
    assert (
        cli(
            ["state", "--object", str(dc), "--position", str(lines[0]["position"]), "--json", *argv]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["description"] == ""
    assert cli(["state", "--as-of", "not a time", *argv]) == 2


# -- property: random command sequences through the real bus ---------------------------
OPS = [
    "add_dc",
    "upd_dc",
    "rm_dc",
    "add_cl",
    "upd_cl",
    "rm_cl",
    "add_host",
    "upd_host",
    "rm_host",
    "add_vm",
    "upd_vm",
    "rm_vm",
]


def _ids(bus, kind: str) -> list:
    return sorted(o.id for o in bus.engine.objects.values() if kind == type(o).KIND)


def _run(bus, op: str, a: int, b: int) -> None:
    def pick(kind: str):
        ids = _ids(bus, kind)
        return ids[a % len(ids)] if ids else None

    cmd = None
    if op == "add_dc":
        cmd = AddDataCenter(name=f"dc{a}", actor=f"u{b}")
    elif op == "upd_dc" and pick("data_center"):
        cmd = UpdateDataCenter(data_center_id=pick("data_center"), description=f"d{b}")
    elif op == "rm_dc" and pick("data_center"):
        cmd = RemoveDataCenter(data_center_id=pick("data_center"))
    elif op == "add_cl" and pick("data_center"):
        cmd = AddCluster(name=f"cl{b}", data_center_id=pick("data_center"))
    elif op == "upd_cl" and pick("cluster"):
        cmd = UpdateCluster(cluster_id=pick("cluster"), description=f"c{b}")
    elif op == "rm_cl" and pick("cluster"):
        cmd = RemoveCluster(cluster_id=pick("cluster"))
    elif op == "add_host" and pick("cluster"):
        cmd = AddHost(name=f"h{b}", address=f"10.0.0.{b}", cluster_id=pick("cluster"))
    elif op == "upd_host" and pick("host"):
        cmd = UpdateHost(host_id=pick("host"), description=f"h{b}")
    elif op == "rm_host" and pick("host"):
        cmd = RemoveHost(host_id=pick("host"))
    elif op == "add_vm" and pick("cluster"):
        cmd = AddVm(name=f"vm{b}", cluster_id=pick("cluster"), actor="admin@internal")
    elif op == "upd_vm" and pick("vm"):
        cmd = UpdateVm(vm_id=pick("vm"), description=f"v{b}")
    elif op == "rm_vm" and pick("vm"):
        cmd = RemoveVm(vm_id=pick("vm"))
    if cmd is not None:
        with contextlib.suppress(DomainError):
            bus.execute(cmd)


def _fresh(backend: str):
    if backend == "sqlite":
        tmp = tempfile.TemporaryDirectory()
        return {"database_url": None, "data_dir": Path(tmp.name)}, tmp.cleanup
    url = new_pg_schema("p_")
    tmp = tempfile.TemporaryDirectory()

    def drop() -> None:
        drop_pg_schema(url)
        tmp.cleanup()

    return {"database_url": url, "data_dir": Path(tmp.name)}, drop


_ops = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=30
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_incremental_equals_replay_equals_as_of(backend) -> None:
    if backend == "postgres" and pg_url() is None:
        pytest.skip("no PostgreSQL (set ORRERY_TEST_DATABASE_URL)")

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(ops=_ops)
    def prop(ops) -> None:
        loc, cleanup = _fresh(backend)
        try:
            bus = open_bus(**loc)
            read = open_read_side(**loc, bus=bus, batch=3)
            try:
                bus.execute(InitializeSystem())
                for op in ops:
                    _run(bus, *op)
                head = bus.log.head()
                assert read.wait_for(head, 10)
                live = read.runner.digest()
                engine_digest = bus.engine.digest()
                assert read.runner.engine.digest() == engine_digest
            finally:
                read.close()
                bus.stop()
            replayed = rebuild(bus.log, loc["database_url"], loc["data_dir"], prefix="replayed")
            assert replayed == live
            assert timetravel.snapshot_at(bus.log, head)["digest"] == engine_digest
        finally:
            cleanup()

    prop()


def test_gaps_in_notification_ids_never_stall(pg_schema_url) -> None:
    from eventsourcing.persistence import IntegrityError

    from commands.store import EventLog
    from projections.replay import default_projections
    from projections.runner import ProjectionRunner
    from tests.unit.helpers import World

    w = World()
    dc = w.run(AddDataCenter(name="dc1"))
    w.run(UpdateDataCenter(data_center_id=dc, description="after the gap"))
    log = EventLog(pg_schema_url)
    first = log.append(w.log[:2])  # the data center and its ovirtmgmt network
    with pytest.raises(IntegrityError):
        log.append(w.log[:1] * 3)  # a conflicting append rolls back, burning ids
    db = ViewDB(pg_schema_url)
    runner = ProjectionRunner(log, db, default_projections())
    runner.catch_up()
    rest = log.append(w.log[2:])
    assert rest[0] > first[-1] + 1  # a real gap
    runner.start()
    try:
        assert runner.wait_for(rest[-1], 5)
        assert runner.position == log.head()
        row = db.query("SELECT data FROM {objects} WHERE id = ?", (str(dc),))
        assert "after the gap" in row[0][0]
    finally:
        runner.close()
        db.close()
