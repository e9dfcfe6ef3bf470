"""Shared builders for the infrastructure tests (data centers, clusters, hosts, storage),
and tests of the transaction view the infrastructure decisions read through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from commands.cluster import AddCluster
from commands.datacenter import AddDataCenter
from commands.host import AddHost, ReportHostCapabilities, ReportHostInstalled
from commands.messages import Command
from commands.storage import AddStorageDomain, AttachStorageDomain
from domain.base import Ctx, DomainError, Meta, Tx
from domain.current import current, current_all
from domain.datacenter import DataCenter
from domain.host import Host
from domain.network import LogicalNetwork
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

GIB = 1 << 30


def rejects(w: World, cmd: Command, match: str, *, field: str | None = None) -> DomainError:
    """Runs a command that must fail with ``match`` in its message and write nothing."""
    before_log, before = len(w.log), w.engine.digest()
    with pytest.raises(DomainError) as e:
        w.run(cmd)
    assert match in e.value.message, e.value.message
    if field is not None:
        assert e.value.field == field
    assert len(w.log) == before_log
    assert w.engine.digest() == before
    return e.value


def decide(w: World, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Runs a domain decision function directly, applying its events like World.run."""
    tx = Tx(w.engine, Ctx(now=w.now, meta=Meta()), w.next_id)
    value = fn(tx, *args, **kw)
    for e in tx.events:
        w.engine.apply(e)
    w.log.extend(tx.events)
    return value


def dc(w: World, name: str = "dc", **kw: Any) -> UUID:
    return w.run(AddDataCenter(name=name, **kw))


def cluster(w: World, dc_id: UUID, name: str = "c", **kw: Any) -> UUID:
    return w.run(AddCluster(name=name, data_center_id=dc_id, **kw))


def caps(host_id: UUID, **kw: Any) -> ReportHostCapabilities:
    values: dict[str, Any] = dict(
        cpu_model="Intel Xeon",
        cpu_cores=8,
        memory_total=16 * GIB,
        libvirt_version="9.0.0",
        qemu_version="7.2.0",
        kvm=True,
        hardware_uuid=f"hw-{host_id}",
        networks=("ovirtmgmt",),
    )
    values.update(kw)
    return ReportHostCapabilities(host_id=host_id, **values)


def host(
    w: World, cluster_id: UUID, name: str = "h1", *, up: bool = True, port: int = 54321, **kw: Any
) -> UUID:
    """Adds a host and (``up``) takes it through install and the first report."""
    caps_kw = {k: kw.pop(k) for k in list(kw) if k in ("cpu_cores", "memory_total", "networks")}
    hid = w.run(
        AddHost(name=name, address=f"{name}.example", cluster_id=cluster_id, port=port, **kw)
    )
    if up:
        w.run(ReportHostInstalled(host_id=hid))
        w.run(caps(hid, **caps_kw))
    return hid


def nfs(w: World, name: str = "data1", *, dc_id: UUID | None = None, **kw: Any) -> UUID:
    kw.setdefault("address", "nfs.example")
    kw.setdefault("path", f"/exports/{name}")
    sd = w.run(AddStorageDomain(name=name, storage_type="nfs", **kw))
    if dc_id is not None:
        w.run(AttachStorageDomain(storage_domain_id=sd, data_center_id=dc_id))
    return sd


def up_dc(w: World, *, hosts: int = 1, name: str = "dc") -> tuple[UUID, UUID, list[UUID], UUID]:
    """A data center that is up: a cluster, ``hosts`` up hosts, an active master domain."""
    d = dc(w, name)
    c = cluster(w, d, f"{name}-c")
    hs = [host(w, c, f"{name}-h{i}", port=54321 + i) for i in range(hosts)]
    sd = nfs(w, f"{name}-data", dc_id=d)
    return d, c, hs, sd


# -- the tests of this module ---------------------------------------------------------------
def test_current_sees_the_transactions_own_events() -> None:
    w = World()
    d = dc(w)
    tx = Tx(w.engine, Ctx(now=w.now), w.next_id)
    from domain.rules.datacenter_rules import update_data_center

    update_data_center(tx, d, description="new")
    assert w.engine.get(DataCenter, d).description == ""
    got = current(tx, DataCenter, d)
    assert got is not None and got.description == "new"


def test_current_all_includes_created_and_drops_removed() -> None:
    w = World()
    d = dc(w)
    tx = Tx(w.engine, Ctx(now=w.now), w.next_id)
    from domain.rules.datacenter_rules import add_data_center, remove_data_center

    new = add_data_center(tx, name="other")
    remove_data_center(tx, d)
    names = [x.name for x in current_all(tx, DataCenter)]
    assert names == ["other"]
    assert all(n.data_center_id == new for n in current_all(tx, LogicalNetwork))


def test_builders_make_an_up_data_center() -> None:
    w = World()
    d, _c, hs, _sd = up_dc(w, hosts=2)
    assert w.engine.get(DataCenter, d).status == "up"
    assert all(w.engine.get(Host, h).status == "up" for h in hs)
