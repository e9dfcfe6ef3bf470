"""Data centers and clusters: names, versions, local storage, removal, status and SPM."""

from __future__ import annotations

import itertools

import pytest

from commands.cluster import RemoveCluster, UpdateCluster
from commands.datacenter import (
    AddDataCenter,
    RemoveDataCenter,
    SelectSpm,
    UpdateDataCenter,
)
from commands.host import (
    DeactivateHost,
    MarkHostNonResponsive,
    ReportHostConnectionLost,
    UpdateHost,
)
from commands.storage import DeactivateStorageDomain, DetachStorageDomain
from domain.base import NotFound
from domain.cluster import Cluster
from domain.datacenter import DC_TRANSITIONS, DataCenter, DataCenterStatusChanged
from domain.network import LogicalNetwork, VnicProfile
from domain.statuses import DataCenterStatus
from domain.storage import StorageDomain
from tests.unit.helpers import World
from tests.unit.test_infra_world import cluster, dc, host, nfs, rejects, up_dc

pytestmark = pytest.mark.unit


def test_new_data_center_is_uninitialized_with_ovirtmgmt_and_its_profile() -> None:
    w = World()
    d = dc(w, "dc1", description="first")
    obj = w.engine.get(DataCenter, d)
    assert obj.status == DataCenterStatus.UNINITIALIZED
    assert obj.spm_host_id is None
    nets = [n for n in w.engine.all(LogicalNetwork) if n.data_center_id == d]
    assert [n.name for n in nets] == ["ovirtmgmt"]
    assert "management" in nets[0].usages
    profiles = [p for p in w.engine.all(VnicProfile) if p.network_id == nets[0].id]
    assert [p.name for p in profiles] == ["ovirtmgmt"]


def test_data_center_names_are_unique() -> None:
    w = World()
    dc(w, "dc1")
    rejects(w, AddDataCenter(name="dc1"), "name is already in use", field="name")
    other = dc(w, "dc2")
    rejects(w, UpdateDataCenter(data_center_id=other, name="dc1"), "already in use")


def test_unsupported_and_lower_version_rejected() -> None:
    w = World()
    rejects(w, AddDataCenter(name="x", version="3.6"), "not supported", field="version")
    d = dc(w, version="4.4")
    w.run(UpdateDataCenter(data_center_id=d, version="4.5"))
    assert w.engine.get(DataCenter, d).compatibility_version == "4.5"
    rejects(w, UpdateDataCenter(data_center_id=d, version="4.4"), "lower version")


def test_dc_version_may_not_pass_its_clusters() -> None:
    w = World()
    d = dc(w, version="4.4")
    cluster(w, d, "c1")
    rejects(w, UpdateDataCenter(data_center_id=d, version="4.6"), "Cluster c1")
    w.run(UpdateCluster(cluster_id=w.engine.by_name(("cluster",), "c1"), version="4.6"))
    w.run(UpdateDataCenter(data_center_id=d, version="4.6"))


def test_update_writes_only_changes() -> None:
    w = World()
    d = dc(w, description="same")
    n = len(w.log)
    w.run(UpdateDataCenter(data_center_id=d, description="same"))
    assert len(w.log) == n
    w.run(UpdateDataCenter(data_center_id=d, quota_mode="audit"))
    assert w.engine.get(DataCenter, d).quota_mode == "audit"


def test_storage_type_fixed_once_domains_attached() -> None:
    w = World()
    d, *_ = up_dc(w)
    rejects(w, UpdateDataCenter(data_center_id=d, local=True), "has storage domains", field="local")


def test_remove_refuses_clusters_then_storage_unless_forced() -> None:
    w = World()
    d, c, hs, sd = up_dc(w)
    rejects(w, RemoveDataCenter(data_center_id=d), "contains Clusters")
    # Move everything out of the way but the storage.
    w.run(DeactivateHost(host_id=hs[0]))
    from commands.host import RemoveHost

    w.run(RemoveHost(host_id=hs[0]))
    w.run(RemoveCluster(cluster_id=c))
    rejects(w, RemoveDataCenter(data_center_id=d), "active Storage Domains")
    w.run(RemoveDataCenter(data_center_id=d, force=True))
    assert w.engine.find(DataCenter, d) is None
    left = w.engine.get(StorageDomain, sd)
    assert left.data_center_id is None and left.status == "unattached" and not left.master
    assert not [n for n in w.engine.all(LogicalNetwork) if n.data_center_id == d]
    assert not list(w.engine.all(VnicProfile))


def test_remove_empty_data_center() -> None:
    w = World()
    d = dc(w)
    w.run(RemoveDataCenter(data_center_id=d))
    assert w.engine.find(DataCenter, d) is None
    with pytest.raises(NotFound):
        w.run(RemoveDataCenter(data_center_id=d))


# -- status and SPM ---------------------------------------------------------------------------
def _statuses(w: World, dc_id) -> list[str]:
    return [
        str(e.status)
        for e in w.log
        if isinstance(e, DataCenterStatusChanged) and e.originator_id == dc_id
    ]


def test_first_active_data_domain_brings_dc_up_through_contend() -> None:
    w = World()
    d, _c, hs, sd = up_dc(w)
    obj = w.engine.get(DataCenter, d)
    assert obj.status == DataCenterStatus.UP
    assert obj.spm_host_id == hs[0]
    assert w.engine.get(StorageDomain, sd).master
    assert _statuses(w, d) == ["contend", "up"]


def test_spm_elected_by_priority_then_name() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    host(w, c, "b-host", spm_priority=5, port=1)
    a = host(w, c, "a-host", spm_priority=5, port=2)
    host(w, c, "z-host", spm_priority=2, port=3)
    host(w, c, "never", spm_priority=-1, port=4)
    nfs(w, dc_id=d)
    assert w.engine.get(DataCenter, d).spm_host_id == a


def test_high_priority_wins_and_never_spm_host_alone_leaves_dc_non_responsive() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    lone = host(w, c, "lone", spm_priority=-1)
    nfs(w, dc_id=d)
    obj = w.engine.get(DataCenter, d)
    assert obj.spm_host_id is None
    assert obj.status == DataCenterStatus.NON_RESPONSIVE
    w.run(UpdateHost(host_id=lone, spm_priority=10))
    assert w.engine.get(DataCenter, d).spm_host_id is None  # an edit does not elect
    # The next host event in the DC re-evaluates it: "lone" may now be SPM.
    host(w, c, "other", spm_priority=10, port=2)
    obj = w.engine.get(DataCenter, d)
    assert obj.status == DataCenterStatus.UP
    assert obj.spm_host_id == lone  # elected while "other" was still initializing


def test_spm_loss_reelects_and_last_host_loss_makes_dc_non_responsive() -> None:
    w = World()
    d, _c, hs, _sd = up_dc(w, hosts=2)
    first = w.engine.get(DataCenter, d).spm_host_id
    other = next(h for h in hs if h != first)
    w.run(ReportHostConnectionLost(host_id=first))
    obj = w.engine.get(DataCenter, d)
    assert obj.spm_host_id == other and obj.status == "up"
    w.run(ReportHostConnectionLost(host_id=other))
    w.run(MarkHostNonResponsive(host_id=other))
    obj = w.engine.get(DataCenter, d)
    assert obj.spm_host_id is None and obj.status == DataCenterStatus.NON_RESPONSIVE


def test_select_spm_moves_the_role() -> None:
    w = World()
    d, _c, hs, _sd = up_dc(w, hosts=2)
    spm = w.engine.get(DataCenter, d).spm_host_id
    other = next(h for h in hs if h != spm)
    rejects(w, SelectSpm(data_center_id=d, host_id=spm), "already SPM")
    w.run(SelectSpm(data_center_id=d, host_id=other))
    assert w.engine.get(DataCenter, d).spm_host_id == other
    assert _statuses(w, d)[-2:] == ["contend", "up"]


def test_select_spm_rejects_host_of_other_dc_and_never_spm() -> None:
    w = World()
    d, _c, _hs, _sd = up_dc(w)
    d2, c2, hs2, _ = up_dc(w, name="two")
    rejects(w, SelectSpm(data_center_id=d, host_id=hs2[0]), "not in the Data Center")
    never = host(w, c2, "never", spm_priority=-1, port=9)
    rejects(w, SelectSpm(data_center_id=d2, host_id=never), "never to be SPM")


def test_all_data_domains_in_maintenance_puts_dc_in_maintenance() -> None:
    w = World()
    d, _c, _hs, sd = up_dc(w)
    w.run(DeactivateStorageDomain(storage_domain_id=sd))
    obj = w.engine.get(DataCenter, d)
    assert obj.status == DataCenterStatus.MAINTENANCE
    assert obj.spm_host_id is None
    w.run(DetachStorageDomain(storage_domain_id=sd))
    assert w.engine.get(DataCenter, d).status == DataCenterStatus.UNINITIALIZED


def test_every_dc_status_change_follows_the_table() -> None:
    w = World()
    d, _c, hs, _sd = up_dc(w, hosts=2)
    for h in hs:
        w.run(ReportHostConnectionLost(host_id=h))
    for h in hs:
        w.run(MarkHostNonResponsive(host_id=h))
    seen = [DataCenterStatus.UNINITIALIZED, *map(DataCenterStatus, _statuses(w, d))]
    for a, b in itertools.pairwise(seen):
        assert b in DC_TRANSITIONS[a], (a, b)


# -- clusters ---------------------------------------------------------------------------------
def test_cluster_gets_the_management_network_and_defaults() -> None:
    w = World()
    d = dc(w, version="4.5")
    c = cluster(w, d)
    obj = w.engine.get(Cluster, c)
    assert obj.memory_overcommit == 100 and obj.scheduling_policy == "none"
    assert obj.compatibility_version == "4.5"
    mgmt = next(n for n in w.engine.all(LogicalNetwork) if n.data_center_id == d)
    assert mgmt.cluster_ids == (c,)


def test_cluster_rules() -> None:
    w = World()
    d = dc(w, version="4.5")
    cluster(w, d, "c1")
    from commands.cluster import AddCluster

    rejects(w, AddCluster(name="c1", data_center_id=d), "name is already in use")
    rejects(
        w,
        AddCluster(name="c2", data_center_id=d, cpu_type="Z80"),
        "not supported",
        field="cpu_type",
    )
    rejects(
        w, AddCluster(name="c2", data_center_id=d, version="4.4"), "lower than", field="version"
    )
    with pytest.raises(NotFound):
        w.run(AddCluster(name="c2", data_center_id=w.next_id()))


def test_local_dc_takes_one_cluster_and_one_host() -> None:
    w = World()
    d = dc(w, local=True)
    c = cluster(w, d, "c1")
    from commands.cluster import AddCluster
    from commands.host import AddHost

    rejects(w, AddCluster(name="c2", data_center_id=d), "only one Cluster")
    host(w, c, "h1", up=False)
    rejects(w, AddHost(name="h2", address="h2", cluster_id=c), "only one Host")


def test_cluster_update_and_cpu_type_locked_while_hosts_up() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    w.run(UpdateCluster(cluster_id=c, memory_overcommit=150, scheduling_policy="power_saving"))
    obj = w.engine.get(Cluster, c)
    assert (obj.memory_overcommit, obj.scheduling_policy) == (150, "power_saving")
    host(w, c)
    rejects(w, UpdateCluster(cluster_id=c, cpu_type="AMD EPYC"), "active Hosts", field="cpu_type")


def test_remove_cluster_only_without_hosts() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    h = host(w, c, up=False)
    rejects(w, RemoveCluster(cluster_id=c), "contains one or more Hosts")
    from commands.host import RemoveHost, ReportHostInstalled

    w.run(ReportHostInstalled(host_id=h, success=False, message="ssh failed"))
    w.run(RemoveHost(host_id=h))
    w.run(RemoveCluster(cluster_id=c))
    assert w.engine.find(Cluster, c) is None
    mgmt = next(n for n in w.engine.all(LogicalNetwork) if n.data_center_id == d)
    assert mgmt.cluster_ids == ()
