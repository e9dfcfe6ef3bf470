"""Type-2 configuration history: for any event sequence the rows of each object tile time
without overlap, and the latest row is the live configuration."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import domain.model  # noqa: F401
from domain.cluster import ClusterAdded
from domain.datacenter import DataCenterAdded, DataCenterStatusChanged, DataCenterUpdated
from domain.engine import Engine
from domain.network import NetworkAdded, NetworkRemoved
from domain.statuses import DataCenterStatus, VmStatus
from domain.values import Nic, VmType
from domain.vm import (
    VmAdded,
    VmNicAdded,
    VmNicRemoved,
    VmNicUpdated,
    VmRemoved,
    VmStatusReported,
    VmUpdated,
)
from history.config import ConfigTracker, Row, config_of, naive_utc
from history.warehouse import Warehouse

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BLANK = uuid.UUID(int=0)


class Gen:
    """Builds a valid event sequence from a list of random choices."""

    def __init__(self, seed: int) -> None:
        self.engine = Engine()
        self.rnd = random.Random(seed)
        self.now = T0
        self.events: list = []
        self.n = 0

    def new_id(self) -> uuid.UUID:
        self.n += 1
        return uuid.UUID(int=(7 << 100) + self.n)

    def emit(self, cls, oid, **kw) -> None:
        ev = cls(
            originator_id=oid,
            originator_version=self.engine.version_of(oid) + 1,
            timestamp=self.now,
            **kw,
        )
        self.engine.apply(ev)
        self.events.append(ev)

    def live(self, kind: str) -> list:
        return [o for o in self.engine.objects.values() if kind == o.KIND]

    def step(self, op: int, pick: int, value: int, advance: int) -> None:
        self.now += timedelta(minutes=advance)
        dcs, vms, clusters = self.live("data_center"), self.live("vm"), self.live("cluster")
        nets = self.live("network")
        op = op % 12
        if op == 0 or not dcs:
            self.emit(DataCenterAdded, self.new_id(), name=f"dc{self.n}")
        elif op == 1:
            self.emit(DataCenterUpdated, dcs[pick % len(dcs)].id, description=f"d{value % 3}")
        elif op == 2:
            status = list(DataCenterStatus)[value % len(DataCenterStatus)]
            self.emit(DataCenterStatusChanged, dcs[pick % len(dcs)].id, status=status)
        elif op == 3:
            dc = dcs[pick % len(dcs)]
            self.emit(ClusterAdded, self.new_id(), name=f"c{self.n}", data_center_id=dc.id)
        elif op == 4:
            dc = dcs[pick % len(dcs)]
            self.emit(NetworkAdded, self.new_id(), name=f"n{self.n}", data_center_id=dc.id)
        elif op == 5 and nets:
            self.emit(NetworkRemoved, nets[pick % len(nets)].id)
        elif op == 6 and clusters:
            self.emit(
                VmAdded,
                self.new_id(),
                name=f"vm{self.n}",
                cluster_id=clusters[pick % len(clusters)].id,
                template_id=BLANK,
                memory=(1 + value % 4) << 30,
                cpu_sockets=1,
                cpu_cores=1 + value % 2,
                cpu_threads=1,
                os_type="other",
                vm_type=VmType.SERVER,
                status=VmStatus.DOWN,
            )
        elif op == 7 and vms:
            self.emit(VmUpdated, vms[pick % len(vms)].id, memory=(1 + value % 4) << 30)
        elif op == 8 and vms:
            status = list(VmStatus)[value % len(VmStatus)]
            self.emit(VmStatusReported, vms[pick % len(vms)].id, status=status, host_id=BLANK)
        elif op == 9 and vms:
            nic = Nic(id=self.new_id(), name=f"nic{self.n}", mac=f"56:6f:00:00:00:{value % 99:02d}")
            self.emit(VmNicAdded, vms[pick % len(vms)].id, nic=nic)
        elif op == 10 and vms:
            vm = vms[pick % len(vms)]
            if vm.nics:
                nic = vm.nics[value % len(vm.nics)]
                if value % 2:
                    self.emit(VmNicRemoved, vm.id, nic_id=nic.id)
                else:
                    renamed = Nic(id=nic.id, name=f"{nic.name}x", mac=nic.mac)
                    self.emit(VmNicUpdated, vm.id, nic=renamed)
        elif op == 11 and vms:
            self.emit(VmRemoved, vms[pick % len(vms)].id)


steps = st.lists(
    st.tuples(
        st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.sampled_from([0, 0, 1, 5])
    ),
    min_size=1,
    max_size=60,
)


def run_tracker(events: list, batches: list[int] | None = None) -> dict[int, Row]:
    """All rows after feeding the events (flushing at the given batch sizes)."""
    t = ConfigTracker()
    stored: dict[int, Row] = {}
    for i, ev in enumerate(events):
        t.apply(ev)
        if batches and i % batches[i % len(batches)] == 0:
            flush(t, stored)
    flush(t, stored)
    return stored


def flush(t: ConfigTracker, stored: dict[int, Row]) -> None:
    """What the warehouse does with a batch: drop, then replace the touched rows."""
    for hid in t.take_dropped():
        del stored[hid]
    for r in t.take_touched():
        stored[r.history_id] = Row(**{**r.__dict__, "cols": dict(r.cols)})
    t.flushed()


def check_tiling(rows: dict[int, Row], engine: Engine) -> None:
    by_obj: dict[uuid.UUID, list[Row]] = {}
    for r in rows.values():
        by_obj.setdefault(r.object_id, []).append(r)
    live_nics = {n.id: n for o in engine.objects.values() for n in getattr(o, "nics", ())}
    for oid, rs in by_obj.items():
        rs.sort(key=lambda r: r.history_id)
        for a, b in itertools.pairwise(rs):
            assert a.valid_to is not None and not a.deleted
            assert a.valid_to == b.valid_from  # contiguous: no gap, no overlap
            assert a.valid_from < a.valid_to  # no zero-length versions in the middle
            assert a.create_date == b.create_date
            assert a.config != b.config  # a new row only for a real change
        last = rs[-1]
        live = engine.objects.get(oid) or live_nics.get(oid)
        if live is None:
            assert last.deleted and last.valid_to is not None, oid
        else:
            assert last.valid_to is None and not last.deleted
            want = config_of(live)
            got = __import__("json").loads(last.config)
            got.pop("network_name", None)
            assert got == __import__("json").loads(__import__("msgspec").json.encode(want).decode())
    tracked = {
        o.id
        for o in engine.objects.values()
        if o.KIND in {"data_center", "cluster", "network", "vm"}
    }
    assert tracked | set(live_nics) <= set(by_obj)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.integers(0, 1000))
def test_rows_tile_time_and_latest_is_live(ops, seed):
    g = Gen(seed)
    for op in ops:
        g.step(*op)
    rows = run_tracker(g.events)
    check_tiling(rows, g.engine)
    # batching never changes the result
    assert {k: v.values() for k, v in run_tracker(g.events, [1, 3, 2]).items()} == {
        k: v.values() for k, v in rows.items()
    }


def test_status_changes_do_not_make_versions():
    g = Gen(1)
    g.step(0, 0, 0, 0)
    g.step(3, 0, 0, 1)
    g.step(6, 0, 0, 1)
    for v in range(5):
        g.step(8, 0, v, 1)  # VM status reports
        g.step(2, 0, v, 1)  # DC status changes
    rows = run_tracker(g.events)
    assert sorted(r.kind for r in rows.values()) == ["cluster", "data_center", "vm"]


def test_same_instant_changes_update_the_row_in_place():
    g = Gen(2)
    g.step(0, 0, 0, 0)
    g.step(1, 0, 1, 0)  # same instant as the creation
    g.step(1, 0, 2, 5)
    rows = sorted(run_tracker(g.events).values(), key=lambda r: r.history_id)
    assert len(rows) == 2
    assert '"description":"d1"' in rows[0].config and rows[0].valid_from == naive_utc(T0)
    assert rows[1].valid_from == naive_utc(T0 + timedelta(minutes=5))


@pytest.mark.parametrize("batches", [None, [1]])
def test_a_same_instant_change_back_reopens_the_row_it_closed(batches):
    g = Gen(2)
    g.step(0, 0, 0, 0)
    g.step(1, 0, 1, 5)  # d1
    g.step(1, 0, 2, 5)  # d2 closes the d1 row ...
    g.step(1, 0, 1, 0)  # ... and, at the same instant, back to d1
    rows = sorted(run_tracker(g.events, batches).values(), key=lambda r: r.history_id)
    assert [('"description":"d1"' in r.config, r.valid_to) for r in rows] == [
        (False, naive_utc(T0 + timedelta(minutes=5))),
        (True, None),
    ]
    check_tiling({r.history_id: r for r in rows}, g.engine)


def test_a_change_back_after_a_warehouse_restart_reopens_the_stored_row(tmp_path):
    g = Gen(2)
    for op in [(0, 0, 0, 0), (1, 0, 1, 5), (1, 0, 2, 5), (1, 0, 1, 0)]:
        g.step(*op)
    log = list(enumerate(g.events, 1))
    read = lambda after, limit: [x for x in log if x[0] > after][:limit]  # noqa: E731
    path = tmp_path / "h.duckdb"
    with Warehouse(path) as w:
        w.catch_up(read, upto=3)
    with Warehouse(path) as w:  # a new process: the tracker is loaded from the rows
        w.catch_up(read)
        _, got = w.query(
            "SELECT description, valid_to IS NULL FROM config_history "
            "WHERE kind = 'data_center' ORDER BY history_id"
        )
    assert got == [("", False), ("d1", True)]


def test_nics_are_children_of_their_vm():
    g = Gen(3)
    for op in [
        (0, 0, 0, 0),
        (3, 0, 0, 1),
        (6, 0, 0, 1),
        (9, 0, 1, 1),
        (10, 0, 0, 1),
        (10, 0, 1, 1),
    ]:
        g.step(*op)
    rows = sorted(run_tracker(g.events).values(), key=lambda r: r.history_id)
    nics = [r for r in rows if r.kind == "vm_interface"]
    vm_rows = {r.valid_from: r for r in rows if r.kind == "vm"}
    vm = next(iter(vm_rows.values()))
    assert [n.cols["name"] for n in nics] == ["nic4", "nic4x"]
    assert nics[-1].deleted and all(n.cols["vm_id"] == vm.object_id for n in nics)
    # each NIC version points at the VM version current when it began
    assert all(n.parent_version == vm_rows[n.valid_from].history_id for n in nics)


@settings(max_examples=15, deadline=None)
@given(steps, st.integers(0, 1000), st.integers(1, 7))
def test_warehouse_rows_equal_tracker_rows(tmp_path_factory, ops, seed, batch):
    g = Gen(seed)
    for op in ops:
        g.step(*op)
    log = list(enumerate(g.events, 1))
    path = Path(tmp_path_factory.mktemp("wh")) / "h.duckdb"
    with Warehouse(path) as w:
        pos = w.catch_up(lambda after, limit: [x for x in log if x[0] > after][:limit], batch=batch)
        assert pos == len(log)
        cols, got = w.query("SELECT * FROM config_history ORDER BY history_id")
    want = sorted(run_tracker(g.events).values(), key=lambda r: r.history_id)
    assert [dict(zip(cols, r, strict=True)) for r in got] == [r.values() for r in want]
