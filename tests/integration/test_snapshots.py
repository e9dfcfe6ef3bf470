"""Aggregate snapshots: written every 50 versions from committed state, and used to load
an aggregate at any version without its whole history -- equal to a full replay."""

from __future__ import annotations

import pytest

from commands.bootstrap import open_bus
from commands.datacenter import AddDataCenter, UpdateDataCenter
from commands.snapshots import SNAPSHOT_EVERY
from domain.datacenter import DataCenter

pytestmark = pytest.mark.integration


def test_snapshots_are_written_and_equal_replay(store_location) -> None:
    bus = open_bus(**store_location)
    try:
        dc = bus.execute(AddDataCenter(name="long-lived")).value
        for i in range(2 * SNAPSHOT_EVERY + 7):
            bus.execute(UpdateDataCenter(data_center_id=dc, description=f"d{i}"))
        live = bus.engine.get(DataCenter, dc)
    finally:
        bus.stop()  # also stops the snapshot writer after it has written its queue
    log = bus.log
    snap = log.latest_snapshot(dc)
    assert snap is not None and snap.version == 2 * SNAPSHOT_EVERY
    assert log.latest_snapshot(dc, upto_version=2 * SNAPSHOT_EVERY - 1).version == SNAPSHOT_EVERY

    def replayed(version: int | None) -> DataCenter | None:
        agg = None
        for ev in log.events_of(dc, upto_version=version):
            agg = ev.evolve(agg)
        return agg

    assert log.aggregate_at(dc) == live == replayed(None)
    for v in (1, SNAPSHOT_EVERY - 1, SNAPSHOT_EVERY, SNAPSHOT_EVERY + 3, 2 * SNAPSHOT_EVERY + 1):
        assert log.aggregate_at(dc, v) == replayed(v), v
    # A snapshot is a cache: writing the same one again changes nothing.
    assert log.store_snapshot(snap) is False


def test_snapshots_from_the_engine_and_from_the_log_agree(store_location) -> None:
    """The writer takes the Engine's object when it is at the committed version, and
    rebuilds from the log otherwise; both paths store the same aggregate, in one
    transaction per drain, and a batch holding an existing snapshot still stores the rest."""
    from commands.snapshots import SnapshotWriter

    bus = open_bus(**store_location, start=False)
    try:
        dcs = [bus.execute(AddDataCenter(name=f"snap-{i}")).value for i in range(3)]
        for i in range(SNAPSHOT_EVERY - 2):  # v1 is the creation
            for dc in dcs:
                bus.execute(UpdateDataCenter(data_center_id=dc, description=f"d{i}"))
        log = bus.log
        from_engine = SnapshotWriter(log, engine=bus.engine)
        from_log = SnapshotWriter(log)
        result = bus.execute(UpdateDataCenter(data_center_id=dcs[0], description="last"))
        assert bus.engine.get(DataCenter, dcs[0]).version == SNAPSHOT_EVERY
        events = log.events_of(dcs[0], after_version=SNAPSHOT_EVERY - 1)
        from_engine.on_committed([(result.position, events[0])])
        from_engine.drain()
        assert (from_engine.written, from_engine.rebuilt) == (1, 0)
        snap = log.latest_snapshot(dcs[0])
        assert snap == bus.engine.get(DataCenter, dcs[0])

        for dc in dcs[1:]:
            bus.execute(UpdateDataCenter(data_center_id=dc, description="last"))
        # The log-only writer: the existing snapshot of dcs[0] plus two new ones.
        from_log.on_committed(
            [(0, log.events_of(dc, after_version=SNAPSHOT_EVERY - 1)[0]) for dc in dcs]
        )
        from_log.drain()
        assert (from_log.written, from_log.rebuilt) == (2, 3)
        for dc in dcs:
            assert log.latest_snapshot(dc) == bus.engine.get(DataCenter, dc)
    finally:
        bus.stop()
