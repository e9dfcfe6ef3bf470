"""Hosts: add, install, monitor reports, maintenance, activation, loss, removal."""

from __future__ import annotations

import pytest

from commands.host import (
    ActivateHost,
    AddHost,
    ConfirmHostRebooted,
    DeactivateHost,
    FinishHostMaintenance,
    InstallHost,
    MarkHostNonResponsive,
    RemoveHost,
    ReportHostConnectionLost,
    ReportHostConnectionRestored,
    ReportHostInstalled,
    ReportHostStorageUnreachable,
    SetHostNonOperational,
    UpdateHost,
)
from commands.network import AddNetwork
from domain.datacenter import DataCenter
from domain.host import HOST_TRANSITIONS, Host, HostStatusChanged
from domain.statuses import HostStatus
from domain.storage import StorageDomain
from tests.unit.helpers import World
from tests.unit.test_infra_world import GIB, caps, cluster, dc, host, rejects, up_dc

pytestmark = pytest.mark.unit


def _setup(w: World):
    d = dc(w)
    return d, cluster(w, d)


def test_add_host_defaults_and_installing() -> None:
    w = World()
    _d, c = _setup(w)
    h = w.run(AddHost(name="h1", address="10.0.0.1", cluster_id=c))
    obj = w.engine.get(Host, h)
    assert (obj.status, obj.port, obj.spm_priority) == (HostStatus.INSTALLING, 54321, 5)


def test_host_name_and_address_unique() -> None:
    w = World()
    _d, c = _setup(w)
    w.run(AddHost(name="h1", address="10.0.0.1", cluster_id=c))
    rejects(w, AddHost(name="h1", address="10.0.0.2", cluster_id=c), "name is already in use")
    rejects(
        w, AddHost(name="h2", address="10.0.0.1", cluster_id=c), "same address", field="address"
    )
    w.run(AddHost(name="h3", address="10.0.0.1", port=54322, cluster_id=c))


def test_install_initializing_capabilities_up() -> None:
    w = World()
    _d, c = _setup(w)
    h = w.run(AddHost(name="h1", address="a", cluster_id=c))
    rejects(w, caps(h), "not monitored")
    w.run(ReportHostInstalled(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.INITIALIZING
    assert w.run(caps(h, cpu_cores=16, memory_total=64 * GIB)) == "up"
    obj = w.engine.get(Host, h)
    assert (obj.status, obj.cpu_cores, obj.memory_total, obj.kvm) == ("up", 16, 64 * GIB, True)
    assert obj.networks == ("ovirtmgmt",)


def test_install_failure_then_reinstall() -> None:
    w = World()
    _d, c = _setup(w)
    h = w.run(AddHost(name="h1", address="a", cluster_id=c))
    w.run(ReportHostInstalled(host_id=h, success=False, message="ssh: connection refused"))
    obj = w.engine.get(Host, h)
    assert obj.status == HostStatus.INSTALL_FAILED
    assert "ssh" in obj.status_detail
    rejects(w, ActivateHost(host_id=h), "installation failed")
    rejects(w, ReportHostInstalled(host_id=h), "not installing")
    w.run(InstallHost(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.INSTALLING


def test_without_required_networks_host_is_non_operational() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c, "h1", up=False)
    w.run(ReportHostInstalled(host_id=h))
    # Without KVM the host still runs VMs (TCG): it comes up, the fact is recorded.
    assert w.run(caps(h, kvm=False)) == "up"
    assert w.engine.get(Host, h).kvm is False
    w.run(DeactivateHost(host_id=h))
    w.run(ActivateHost(host_id=h))
    assert w.run(caps(h, networks=())) == "non_operational"
    assert w.engine.get(Host, h).status_detail == "network_unreachable"
    w.run(ActivateHost(host_id=h))
    assert w.run(caps(h)) == "up"


def test_new_required_network_makes_hosts_without_it_non_operational() -> None:
    w = World()
    d, c = _setup(w)
    h1 = host(w, c, "h1", port=1)
    h2 = host(w, c, "h2", port=2, networks=("ovirtmgmt", "storage", "backup"))
    w.run(AddNetwork(name="storage", data_center_id=d, cluster_ids=(c,), required=True))
    assert w.engine.get(Host, h1).status == HostStatus.NON_OPERATIONAL
    assert w.engine.get(Host, h1).status_detail == "network_unreachable"
    assert w.engine.get(Host, h2).status == HostStatus.UP
    from commands.network import AttachNetworkToCluster, UpdateNetwork

    net = w.run(AddNetwork(name="backup", data_center_id=d, required=False))
    w.run(AttachNetworkToCluster(network_id=net, cluster_id=c))
    assert w.engine.get(Host, h2).status == HostStatus.UP  # optional network
    extra = w.run(AddNetwork(name="extra", data_center_id=d, required=False, cluster_ids=(c,)))
    assert w.engine.get(Host, h2).status == HostStatus.UP
    w.run(UpdateNetwork(network_id=extra, required=True))
    assert w.engine.get(Host, h2).status == HostStatus.NON_OPERATIONAL


def test_duplicate_hardware_uuid_is_non_operational() -> None:
    w = World()
    _d, c = _setup(w)
    host(w, c, "h1", port=1)
    h2 = host(w, c, "h2", port=2, up=False)
    w.run(ReportHostInstalled(host_id=h2))
    h1 = w.engine.by_name(("host",), "h1")
    assert w.run(caps(h2, hardware_uuid=f"hw-{h1}")) == "non_operational"
    assert w.engine.get(Host, h2).status_detail == "duplicate_hardware_uuid"


def test_connection_lost_restored_and_non_responsive_cycle() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c)
    w.run(ReportHostConnectionLost(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.CONNECTING
    w.run(ReportHostConnectionRestored(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.UP
    w.run(ReportHostConnectionLost(host_id=h))
    assert w.run(MarkHostNonResponsive(host_id=h)) == {"unknown_vm_ids": []}
    assert w.engine.get(Host, h).status == HostStatus.NON_RESPONSIVE
    w.run(ReportHostConnectionRestored(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.INITIALIZING
    w.run(caps(h))
    assert w.engine.get(Host, h).status == HostStatus.UP


def test_illegal_transitions_are_rejected() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c, up=False)  # installing
    rejects(w, ReportHostConnectionRestored(host_id=h), "Cannot reconnect Host")
    rejects(w, DeactivateHost(host_id=h), "Host is installing")
    rejects(w, FinishHostMaintenance(host_id=h), "not preparing for maintenance")
    rejects(w, ConfirmHostRebooted(host_id=h), "not in Non Responsive")
    w.run(ReportHostInstalled(host_id=h))
    w.run(caps(h))
    rejects(w, ActivateHost(host_id=h), "already active")
    rejects(w, InstallHost(host_id=h), "Maintenance")
    w.run(DeactivateHost(host_id=h))
    rejects(w, DeactivateHost(host_id=h), "already in Maintenance")
    rejects(w, MarkHostNonResponsive(host_id=h), "Cannot mark Host as non responsive")
    rejects(w, SetHostNonOperational(host_id=h, reason="x"), "Cannot set Host to Non Operational")
    rejects(w, ReportHostConnectionLost(host_id=h), "Cannot mark Host as connecting")


def test_maintenance_and_activate() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c)
    assert w.run(DeactivateHost(host_id=h)) == "maintenance"
    w.run(ActivateHost(host_id=h))
    assert w.engine.get(Host, h).status == HostStatus.INITIALIZING
    w.run(caps(h))
    assert w.engine.get(Host, h).status == HostStatus.UP


def test_non_operational_with_reason_and_recovery() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c)
    from domain.base import DomainError
    from domain.rules.host_rules import set_non_operational
    from tests.unit.test_infra_world import decide

    with pytest.raises(DomainError, match="needs a reason"):
        decide(w, set_non_operational, h, "")
    w.run(SetHostNonOperational(host_id=h, reason="cpu_type_incompatible_with_cluster"))
    obj = w.engine.get(Host, h)
    assert (obj.status, obj.status_detail) == (
        "non_operational",
        "cpu_type_incompatible_with_cluster",
    )
    w.run(ActivateHost(host_id=h))
    w.run(caps(h))
    assert w.engine.get(Host, h).status_detail == ""


def test_storage_unreachable_from_one_host_of_several() -> None:
    w = World()
    d, _c, hs, sd = up_dc(w, hosts=2)
    w.run(ReportHostStorageUnreachable(host_id=hs[1], storage_domain_id=sd))
    obj = w.engine.get(Host, hs[1])
    assert (obj.status, obj.status_detail) == ("non_operational", "storage_domain_unreachable")
    assert w.engine.get(StorageDomain, sd).status == "active"
    # The last up host cannot reach it either: the domain is inactive, the DC not operational.
    w.run(ReportHostStorageUnreachable(host_id=hs[0], storage_domain_id=sd))
    assert w.engine.get(StorageDomain, sd).status == "inactive"
    assert w.engine.get(DataCenter, d).status == "not_operational"
    assert w.engine.get(DataCenter, d).spm_host_id is None


def test_update_host_rules() -> None:
    w = World()
    d, c = _setup(w)
    other = cluster(w, d, "c2")
    h = host(w, c)
    w.run(UpdateHost(host_id=h, spm_priority=9, description="x"))
    assert w.engine.get(Host, h).spm_priority == 9
    rejects(w, UpdateHost(host_id=h, address="new"), "only in Maintenance", field="address")
    rejects(w, UpdateHost(host_id=h, cluster_id=other), "Maintenance mode", field="cluster")
    w.run(DeactivateHost(host_id=h))
    w.run(UpdateHost(host_id=h, cluster_id=other, address="new"))
    obj = w.engine.get(Host, h)
    assert (obj.cluster_id, obj.address) == (other, "new")
    d2 = dc(w, "dc2")
    far = cluster(w, d2, "far")
    rejects(w, UpdateHost(host_id=h, cluster_id=far), "another Data Center")


def test_remove_host_only_when_parked() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c)
    rejects(w, RemoveHost(host_id=h), "Host is operational")
    w.run(DeactivateHost(host_id=h))
    w.run(RemoveHost(host_id=h))
    assert w.engine.find(Host, h) is None


def test_confirm_rebooted_takes_non_responsive_host_down() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c)
    w.run(ReportHostConnectionLost(host_id=h))
    w.run(MarkHostNonResponsive(host_id=h))
    assert w.run(ConfirmHostRebooted(host_id=h)) == {"down_vm_ids": []}
    assert w.engine.get(Host, h).status == HostStatus.DOWN
    w.run(RemoveHost(host_id=h))


def test_every_host_status_change_follows_the_table() -> None:
    w = World()
    _d, _c, hs, _sd = up_dc(w, hosts=2)
    h = hs[0]
    for cmd in (
        ReportHostConnectionLost(host_id=h),
        MarkHostNonResponsive(host_id=h),
        ReportHostConnectionRestored(host_id=h),
        caps(h),
        DeactivateHost(host_id=h),
        ActivateHost(host_id=h),
        caps(h, kvm=False),
        DeactivateHost(host_id=h),
        InstallHost(host_id=h),
    ):
        w.run(cmd)
    prev = HostStatus.INSTALLING
    for e in w.log:
        if isinstance(e, HostStatusChanged) and e.originator_id == h:
            assert prev == e.status or e.status in HOST_TRANSITIONS[prev], (prev, e.status)
            prev = e.status
    assert prev == HostStatus.INSTALLING


def test_host_lost_while_non_operational_comes_back_non_operational() -> None:
    w = World()
    _d, c = _setup(w)
    h = host(w, c)
    w.run(SetHostNonOperational(host_id=h, reason="storage_domain_unreachable"))
    w.run(ReportHostConnectionLost(host_id=h))
    w.run(ReportHostConnectionRestored(host_id=h))
    obj = w.engine.get(Host, h)
    assert (obj.status, obj.status_detail) == ("non_operational", "storage_domain_unreachable")


def test_initializing_host_that_cannot_reach_storage_is_non_operational() -> None:
    w = World()
    d, c, _hs, sd = up_dc(w)
    late = host(w, c, "late", up=False, port=9)
    w.run(ReportHostInstalled(host_id=late))
    w.run(ReportHostStorageUnreachable(host_id=late, storage_domain_id=sd))
    assert w.engine.get(Host, late).status == HostStatus.NON_OPERATIONAL
    # Capabilities of a non-operational host are recorded but do not bring it up.
    assert w.run(caps(late)) == "non_operational"
    assert w.engine.get(StorageDomain, sd).status == "active"
    assert w.engine.get(DataCenter, d).status == "up"
    rejects(
        w,
        ReportHostStorageUnreachable(host_id=late, storage_domain_id=sd),
        "Host is non_operational",
    )
