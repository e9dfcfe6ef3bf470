"""Fencing without power management: refused as oVirt refuses it, writing nothing."""

from __future__ import annotations

import pytest

from commands.host import AddHost, FenceHost
from domain.base import InvalidInput, NotFound
from tests.unit.helpers import World
from tests.unit.test_infra_world import cluster, dc, rejects

pytestmark = pytest.mark.unit


def test_power_management_fence_is_refused_with_the_reason() -> None:
    w = World()
    c = cluster(w, dc(w))
    h = w.run(AddHost(name="h1", address="10.0.0.1", cluster_id=c))
    for kind in ("restart", "start", "stop", "status"):
        err = rejects(w, FenceHost(host_id=h, fence_type=kind), "Power Management is not enabled")
        assert err.status == 409 and f"Cannot {kind} Host" in err.message
    bad = rejects(w, FenceHost(host_id=h, fence_type="reboot"), "Invalid fence type")
    assert isinstance(bad, InvalidInput) and bad.field == "fence_type"
    missing = rejects(w, FenceHost(host_id=w.next_id()), "not found")
    assert isinstance(missing, NotFound)
