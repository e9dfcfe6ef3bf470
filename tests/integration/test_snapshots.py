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
