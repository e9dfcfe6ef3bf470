"""Quotas: the pure consumption check (audit vs enforced) and the quota objects."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands.datacenter import UpdateDataCenter
from commands.quota import AddQuota, RemoveQuota, UpdateQuota
from domain.base import DomainError
from domain.quota import (
    GIB,
    ClusterLimit,
    Consumption,
    Quota,
    StorageLimit,
    check_consumption,
)
from domain.values import QuotaMode
from tests.unit.helpers import World
from tests.unit.test_infra_world import cluster, dc, rejects, up_dc

pytestmark = pytest.mark.unit

C1 = UUID(int=11)
SD1 = UUID(int=21)


def _quota(**kw) -> Quota:
    base = dict(
        id=UUID(int=1),
        name="q",
        data_center_id=UUID(int=2),
        cluster_limits=(ClusterLimit(cluster_id=C1, vcpu_limit=10, memory_limit=10 * GIB),),
        storage_limits=(StorageLimit(storage_domain_id=None, limit_gb=100),),
    )
    base.update(kw)
    return Quota(**base)


def _ask(vcpus=0, memory=0, gb=0.0) -> Consumption:
    return Consumption(
        cluster_id=C1, vcpus=vcpus, memory=memory, storage_domain_id=SD1, storage_gb=gb
    )


@pytest.mark.parametrize(
    ("used", "asked", "level"),
    [
        (0, 5, "ok"),
        (0, 8, "ok"),  # exactly the threshold is not above it
        (0, 9, "threshold"),
        (5, 6, "grace"),  # 110 %
        (10, 2, "grace"),  # 120 %: the edge of the grace
        (10, 3, "exceeded"),
    ],
)
def test_levels_in_audit_mode_never_block(used, asked, level) -> None:
    r = check_consumption(
        _quota(), QuotaMode.AUDIT, used=_ask(vcpus=used), requested=_ask(vcpus=asked)
    )
    assert r.allowed and r.level == level
    assert bool(r.warnings) == (level != "ok")


def test_enforced_blocks_beyond_grace_only() -> None:
    q = _quota()
    ok = check_consumption(q, QuotaMode.ENFORCED, used=_ask(vcpus=10), requested=_ask(vcpus=2))
    assert ok.level == "grace" and ok.allowed
    with pytest.raises(DomainError, match="Quota q has insufficient vcpu resources") as e:
        check_consumption(q, QuotaMode.ENFORCED, used=_ask(vcpus=10), requested=_ask(vcpus=3))
    assert e.value.field == "quota"
    with pytest.raises(DomainError, match="memory"):
        check_consumption(q, QuotaMode.ENFORCED, used=_ask(), requested=_ask(memory=13 * GIB))
    with pytest.raises(DomainError, match="storage"):
        check_consumption(q, QuotaMode.ENFORCED, used=_ask(gb=100), requested=_ask(gb=30))


def test_disabled_mode_and_unlimited_and_missing_limits() -> None:
    q = _quota(cluster_limits=(ClusterLimit(cluster_id=None),))
    assert check_consumption(q, "disabled", used=_ask(), requested=_ask(vcpus=999)).level == "ok"
    assert check_consumption(q, "enforced", used=_ask(), requested=_ask(vcpus=999)).level == "ok"
    none = _quota(cluster_limits=(), storage_limits=())
    audit = check_consumption(none, "audit", used=_ask(), requested=_ask(vcpus=1))
    assert audit.level == "exceeded" and "no cluster limit" in audit.warnings[0]
    with pytest.raises(DomainError):
        check_consumption(none, "enforced", used=_ask(), requested=_ask(vcpus=1))


def test_custom_threshold_and_grace() -> None:
    q = _quota(threshold=50, grace=0)
    r = check_consumption(q, "audit", used=_ask(vcpus=5), requested=_ask(vcpus=1))
    assert r.level == "threshold"
    with pytest.raises(DomainError):
        check_consumption(q, "enforced", used=_ask(vcpus=10), requested=_ask(vcpus=1))


def test_quota_objects() -> None:
    w = World()
    d, c, _hs, sd = up_dc(w)
    other = dc(w, "other")
    far = cluster(w, other, "far")
    q = w.run(
        AddQuota(
            name="gold",
            data_center_id=d,
            cluster_limits=(ClusterLimit(cluster_id=c, vcpu_limit=4),),
            storage_limits=(StorageLimit(storage_domain_id=sd, limit_gb=10),),
        )
    )
    obj = w.engine.get(Quota, q)
    assert (obj.threshold, obj.grace) == (80, 20)
    rejects(w, AddQuota(name="gold", data_center_id=d), "name is already in use")
    w.run(AddQuota(name="gold", data_center_id=other))
    rejects(
        w,
        AddQuota(name="x", data_center_id=d, cluster_limits=(ClusterLimit(cluster_id=far),)),
        "another Data Center",
        field="cluster_limits",
    )
    rejects(
        w,
        AddQuota(
            name="x",
            data_center_id=d,
            cluster_limits=(ClusterLimit(cluster_id=c), ClusterLimit(cluster_id=c)),
        ),
        "one limit per Cluster",
    )
    rejects(
        w,
        AddQuota(name="x", data_center_id=d, cluster_limits=(ClusterLimit(vcpu_limit=-5),)),
        "unlimited",
    )
    w.run(UpdateQuota(quota_id=q, threshold=70, grace=10))
    assert (w.engine.get(Quota, q).threshold, w.engine.get(Quota, q).grace) == (70, 10)
    w.run(UpdateDataCenter(data_center_id=d, quota_mode="enforced"))
    rejects(w, RemoveQuota(quota_id=q), "last Quota")
    w.run(UpdateDataCenter(data_center_id=d, quota_mode="disabled"))
    w.run(RemoveQuota(quota_id=q))
    assert w.engine.find(Quota, q) is None
