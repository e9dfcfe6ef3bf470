"""Logical networks and vNIC profiles."""

from __future__ import annotations

import pytest

from commands.network import (
    AddNetwork,
    AddVnicProfile,
    AttachNetworkToCluster,
    DetachNetworkFromCluster,
    RemoveNetwork,
    RemoveVnicProfile,
    UpdateNetwork,
    UpdateVnicProfile,
)
from domain.network import LogicalNetwork, VnicProfile
from tests.unit.helpers import World
from tests.unit.test_infra_world import cluster, dc, rejects

pytestmark = pytest.mark.unit


def _mgmt(w: World, d):
    return next(
        n for n in w.engine.all(LogicalNetwork) if n.data_center_id == d and n.name == "ovirtmgmt"
    )


def _profiles(w: World, net):
    return sorted(p.name for p in w.engine.all(VnicProfile) if p.network_id == net)


def test_vm_network_gets_default_profile_non_vm_network_none() -> None:
    w = World()
    d = dc(w)
    vm_net = w.run(AddNetwork(name="red", data_center_id=d, vlan_id=10, mtu=9000))
    assert _profiles(w, vm_net) == ["red"]
    obj = w.engine.get(LogicalNetwork, vm_net)
    assert (obj.vlan_id, obj.mtu, obj.required, obj.usages) == (10, 9000, True, ("vm",))
    mig = w.run(AddNetwork(name="mig", data_center_id=d, usages=("migration",)))
    assert _profiles(w, mig) == []
    rejects(w, AddVnicProfile(name="p", network_id=mig), "not a VM network")


def test_names_unique_per_dc_only() -> None:
    w = World()
    d1, d2 = dc(w, "a"), dc(w, "b")
    w.run(AddNetwork(name="red", data_center_id=d1))
    rejects(w, AddNetwork(name="red", data_center_id=d1), "name is already in use", field="name")
    w.run(AddNetwork(name="red", data_center_id=d2))
    rejects(w, AddNetwork(name="ovirtmgmt", data_center_id=d2), "already in use")


def test_vlan_mtu_usage_and_name_validation() -> None:
    w = World()
    d = dc(w)
    w.run(AddNetwork(name="v", data_center_id=d, vlan_id=100))
    rejects(w, AddNetwork(name="w", data_center_id=d, vlan_id=100), "VLAN ID is already in use")
    rejects(w, AddNetwork(name="m", data_center_id=d, mtu=20), "MTU", field="mtu")
    rejects(w, AddNetwork(name="bad name!", data_center_id=d), "may contain only", field="name")
    rejects(
        w,
        AddNetwork(name="m2", data_center_id=d, usages=("management",)),
        "already has a management network",
        field="usages",
    )


def test_ovirtmgmt_cannot_be_removed_renamed_or_detached() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    mgmt = _mgmt(w, d)
    rejects(w, RemoveNetwork(network_id=mgmt.id), "The Management Network ('ovirtmgmt') cannot")
    rejects(w, UpdateNetwork(network_id=mgmt.id, name="x"), "cannot be renamed")
    rejects(w, UpdateNetwork(network_id=mgmt.id, usages=("vm",)), "management usage")
    rejects(w, DetachNetworkFromCluster(network_id=mgmt.id, cluster_id=c), "cannot be detached")
    w.run(UpdateNetwork(network_id=mgmt.id, mtu=1500))
    assert _mgmt(w, d).mtu == 1500


def test_attach_detach_cluster() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    other_dc = dc(w, "other")
    far = cluster(w, other_dc, "far")
    net = w.run(AddNetwork(name="red", data_center_id=d, required=False))
    w.run(AttachNetworkToCluster(network_id=net, cluster_id=c))
    assert w.engine.get(LogicalNetwork, net).cluster_ids == (c,)
    rejects(w, AttachNetworkToCluster(network_id=net, cluster_id=c), "already attached")
    rejects(w, AttachNetworkToCluster(network_id=net, cluster_id=far), "another Data Center")
    w.run(DetachNetworkFromCluster(network_id=net, cluster_id=c))
    assert w.engine.get(LogicalNetwork, net).cluster_ids == ()
    rejects(w, DetachNetworkFromCluster(network_id=net, cluster_id=c), "not attached")
    rejects(
        w,
        AddNetwork(name="x", data_center_id=d, cluster_ids=(far,)),
        "another Data Center",
        field="cluster_ids",
    )


def test_update_usages_adds_or_drops_profiles_and_remove_drops_them() -> None:
    w = World()
    d = dc(w)
    net = w.run(AddNetwork(name="blue", data_center_id=d, usages=("migration",)))
    w.run(UpdateNetwork(network_id=net, usages=("vm", "migration")))
    assert _profiles(w, net) == ["blue"]
    w.run(UpdateNetwork(network_id=net, usages=("migration",)))
    assert _profiles(w, net) == []
    w.run(UpdateNetwork(network_id=net, usages=("vm",), name="green"))
    assert _profiles(w, net) == ["green"]
    w.run(RemoveNetwork(network_id=net))
    assert w.engine.find(LogicalNetwork, net) is None
    assert _profiles(w, net) == []


def test_vnic_profiles_unique_per_network_and_rules() -> None:
    w = World()
    d = dc(w)
    net = w.run(AddNetwork(name="red", data_center_id=d))
    other = w.run(AddNetwork(name="blue", data_center_id=d))
    rejects(w, AddVnicProfile(name="red", network_id=net), "name is already in use")
    w.run(AddVnicProfile(name="red", network_id=other))
    rejects(
        w,
        AddVnicProfile(name="both", network_id=net, port_mirroring=True, pass_through=True),
        "cannot be combined",
    )
    p = w.run(AddVnicProfile(name="mirror", network_id=net, port_mirroring=True))
    rejects(w, UpdateVnicProfile(vnic_profile_id=p, pass_through=True), "cannot be combined")
    rejects(w, UpdateVnicProfile(vnic_profile_id=p, name="red"), "already in use")
    w.run(UpdateVnicProfile(vnic_profile_id=p, name="mirrored"))
    assert w.engine.get(VnicProfile, p).name == "mirrored"
    w.run(RemoveVnicProfile(vnic_profile_id=p))
    assert w.engine.find(VnicProfile, p) is None


def test_update_name_vlan_conflicts() -> None:
    w = World()
    d = dc(w)
    w.run(AddNetwork(name="a", data_center_id=d, vlan_id=5))
    b = w.run(AddNetwork(name="b", data_center_id=d))
    rejects(w, UpdateNetwork(network_id=b, name="a"), "already in use", field="name")
    rejects(w, UpdateNetwork(network_id=b, vlan_id=5), "VLAN ID is already in use")
    w.run(UpdateNetwork(network_id=b, vlan_id=6))
    w.run(UpdateNetwork(network_id=b, vlan_id=None))
    assert w.engine.get(LogicalNetwork, b).vlan_id is None
