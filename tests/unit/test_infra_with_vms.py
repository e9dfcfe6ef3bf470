"""Infrastructure rules that depend on VMs, with the real VM area (domain.vm)."""

from __future__ import annotations

import pytest

import domain.vm as vm_area
from commands.affinity import AddAffinityGroup, UpdateAffinityGroup
from commands.cluster import RemoveCluster
from commands.host import (
    ConfirmHostRebooted,
    DeactivateHost,
    FinishHostMaintenance,
    MarkHostNonResponsive,
    RemoveHost,
    ReportHostConnectionLost,
    ReportHostConnectionRestored,
)
from commands.network import AddNetwork, DetachNetworkFromCluster, RemoveNetwork
from domain.host import Host
from domain.network import VnicProfile
from domain.rules import template_rules, vm_rules, vm_run_rules
from domain.scheduling import schedule
from domain.statuses import HostStatus, VmStatus
from tests.unit.helpers import World
from tests.unit.test_infra_world import GIB, decide, host, rejects, up_dc

pytestmark = pytest.mark.unit


def setup(hosts: int = 2):
    w = World()
    d, c, hs, _sd = up_dc(w, hosts=hosts)
    decide(w, template_rules.add_blank_template)
    return w, d, c, hs


def new_vm(w: World, c, name: str, memory: int = GIB):
    return decide(w, vm_rules.add_vm, name=name, cluster_id=c, memory=memory)


def run_vm(w: World, vm_id, host_id=None):
    h = decide(w, vm_run_rules.start_vm, vm_id, host_id=host_id)
    decide(w, vm_run_rules.report_vm_status, vm_id, VmStatus.UP, h)
    return h


def test_remove_host_refused_while_vms_run_on_it() -> None:
    w, _d, c, hs = setup()
    vm = new_vm(w, c, "vm1")
    h = run_vm(w, vm, hs[0])
    rejects(w, RemoveHost(host_id=h), "Cannot remove Host. Host has running VMs.")


def test_maintenance_waits_for_vms_to_leave() -> None:
    w, _d, c, hs = setup()
    vm = new_vm(w, c, "vm1")
    h = run_vm(w, vm, hs[0])
    assert w.run(DeactivateHost(host_id=h)) == "preparing_for_maintenance"
    rejects(w, FinishHostMaintenance(host_id=h), "still has running VMs")
    decide(w, vm_run_rules.report_vm_status, vm, VmStatus.DOWN, h)
    w.run(FinishHostMaintenance(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.MAINTENANCE


def test_the_maintenance_reason_stays_until_maintenance_and_is_no_non_operational_reason() -> None:
    w, _d, c, hs = setup()
    vm = new_vm(w, c, "vm1")
    h = run_vm(w, vm, hs[0])
    w.run(DeactivateHost(host_id=h, reason="kernel upgrade"))
    obj = w.engine.get(Host, h)
    assert (obj.status, obj.status_detail) == ("preparing_for_maintenance", "kernel upgrade")
    w.run(ReportHostConnectionLost(host_id=h))
    w.run(ReportHostConnectionRestored(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.UP  # not non-operational "kernel upgrade"
    w.run(DeactivateHost(host_id=h, reason="disk swap"))
    decide(w, vm_run_rules.report_vm_status, vm, VmStatus.DOWN, h)
    w.run(FinishHostMaintenance(host_id=h))
    obj = w.engine.get(Host, h)
    assert (obj.status, obj.status_detail) == ("maintenance", "disk swap")


def test_non_responsive_host_makes_its_vms_unknown_and_confirm_reboot_downs_them() -> None:
    w, _d, c, hs = setup()
    a, b = new_vm(w, c, "a"), new_vm(w, c, "b")
    run_vm(w, a, hs[0])
    run_vm(w, b, hs[0])
    w.run(ReportHostConnectionLost(host_id=hs[0]))
    out = w.run(MarkHostNonResponsive(host_id=hs[0]))
    assert out == {"unknown_vm_ids": [a, b]}
    assert w.engine.get(vm_area.Vm, a).status == VmStatus.UNKNOWN
    rejects(w, DeactivateHost(host_id=hs[0]), "confirm that the Host has been rebooted")
    assert w.run(ConfirmHostRebooted(host_id=hs[0])) == {"down_vm_ids": [a, b]}
    assert w.engine.get(vm_area.Vm, b).status == VmStatus.DOWN
    assert w.engine.get(Host, hs[0]).status == HostStatus.DOWN


def test_remove_cluster_refused_with_vms() -> None:
    w, _d, c, hs = setup(hosts=1)
    new_vm(w, c, "vm1")
    w.run(DeactivateHost(host_id=hs[0]))
    w.run(RemoveHost(host_id=hs[0]))
    rejects(w, RemoveCluster(cluster_id=c), "One or more VMs are still assigned")


def test_network_in_use_by_a_vm_nic() -> None:
    w, d, c, _hs = setup()
    net = w.run(AddNetwork(name="red", data_center_id=d, cluster_ids=(c,), required=False))
    profile = next(p.id for p in w.engine.all(VnicProfile) if p.network_id == net)
    vm = new_vm(w, c, "vm1")
    decide(w, vm_rules.add_nic, vm, name="nic1", vnic_profile_id=profile)
    rejects(w, RemoveNetwork(network_id=net), "being used by VMs: vm1")
    rejects(w, DetachNetworkFromCluster(network_id=net, cluster_id=c), "being used by VMs")


def test_scheduler_counts_memory_of_running_vms_and_requires_nic_networks() -> None:
    w, d, c, hs = setup()
    big = new_vm(w, c, "big", memory=15 * GIB)
    run_vm(w, big, hs[0])
    vm = new_vm(w, c, "next", memory=2 * GIB)
    r = schedule(w.engine, w.engine.get(vm_area.Vm, vm))
    assert r.host_id == hs[1]
    assert "Not enough memory" in next(x for x in r.scores if x.host_id == hs[0]).reason
    net = w.run(AddNetwork(name="red", data_center_id=d, cluster_ids=(c,), required=False))
    profile = next(p.id for p in w.engine.all(VnicProfile) if p.network_id == net)
    decide(w, vm_rules.add_nic, vm, name="nic1", vnic_profile_id=profile)
    r = schedule(w.engine, w.engine.get(vm_area.Vm, vm))
    assert r.host_id is None
    third = host(w, c, "z-red", port=77, networks=("ovirtmgmt", "red"))
    assert schedule(w.engine, w.engine.get(vm_area.Vm, vm)).host_id == third


def test_affinity_members_must_be_in_the_cluster_and_groups_may_not_contradict() -> None:
    w, d, c, hs = setup()
    from tests.unit.test_infra_world import cluster

    other_c = cluster(w, d, "other")
    a, b = new_vm(w, c, "a"), new_vm(w, c, "b")
    stranger = new_vm(w, other_c, "stranger")
    far_host = host(w, other_c, "far", port=88)
    rejects(
        w,
        AddAffinityGroup(name="g", cluster_id=c, vm_ids=(a, stranger)),
        "not in the Affinity Group's Cluster",
        field="vms",
    )
    rejects(
        w,
        AddAffinityGroup(name="g", cluster_id=c, host_ids=(far_host,)),
        "not in the Affinity Group's Cluster",
        field="hosts",
    )
    g = w.run(AddAffinityGroup(name="together", cluster_id=c, vm_ids=(a, b), positive=True))
    rejects(
        w,
        AddAffinityGroup(name="apart", cluster_id=c, vm_ids=(b, a), positive=False),
        "contradicts Affinity Group together",
    )
    w.run(
        AddAffinityGroup(
            name="apart-soft", cluster_id=c, vm_ids=(a, b), positive=False, enforcing=False
        )
    )
    w.run(UpdateAffinityGroup(affinity_group_id=g, host_ids=(hs[1],), hosts_enforcing=True))
    run_vm(w, a, hs[1])
    r = schedule(w.engine, w.engine.get(vm_area.Vm, b))
    assert r.host_id == hs[1]


def test_storage_domain_with_disks_of_running_vms_cannot_be_deactivated() -> None:
    from commands.storage import DeactivateStorageDomain
    from domain.rules import disk_rules
    from domain.storage import StorageDomain
    from tests.unit.test_infra_world import nfs

    w, d, c, hs = setup()
    second = nfs(w, "second", dc_id=d)
    vm = new_vm(w, c, "vm1")
    disk = decide(w, disk_rules.add_disk, name="d1", provisioned_size=GIB, storage_domain_id=second)
    decide(w, disk_rules.report_disk_operation, disk)
    decide(w, vm_rules.attach_disk, vm, disk)
    run_vm(w, vm, hs[0])
    rejects(
        w,
        DeactivateStorageDomain(storage_domain_id=second),
        "running with disks on this domain: vm1",
    )
    decide(w, vm_run_rules.report_vm_status, vm, VmStatus.DOWN, hs[0])
    w.run(DeactivateStorageDomain(storage_domain_id=second))
    assert w.engine.get(StorageDomain, second).status == "maintenance"


def test_maybe_finish_maintenance_after_the_last_vm_left() -> None:
    from domain.rules.host_rules import maybe_finish_maintenance

    w, _d, c, hs = setup()
    vm = new_vm(w, c, "vm1")
    h = run_vm(w, vm, hs[0])
    w.run(DeactivateHost(host_id=h))
    assert decide(w, maybe_finish_maintenance, h) is False
    assert w.engine.get(Host, h).status == HostStatus.PREPARING_FOR_MAINTENANCE
    decide(w, vm_run_rules.report_vm_status, vm, VmStatus.DOWN, h)
    assert decide(w, maybe_finish_maintenance, h) is True
    assert w.engine.get(Host, h).status == HostStatus.MAINTENANCE
    assert decide(w, maybe_finish_maintenance, h) is False


def test_drop_member_takes_a_vm_out_of_its_groups() -> None:
    from domain.affinity import AffinityGroup, drop_member

    w, _d, c, _hs = setup()
    a, b = new_vm(w, c, "a"), new_vm(w, c, "b")
    g = w.run(AddAffinityGroup(name="g", cluster_id=c, vm_ids=(a, b)))
    decide(w, drop_member, a)
    assert w.engine.get(AffinityGroup, g).vm_ids == (b,)
