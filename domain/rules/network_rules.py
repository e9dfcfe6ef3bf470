"""Logical networks and vNIC profiles across data centers, clusters, hosts, VMs
and templates: VLAN uniqueness, attaching to and detaching from clusters (hosts'
network compliance rechecked), and edits or removal refused while VMs or templates use a
profile.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import DomainError, Tx
from domain.cluster import Cluster
from domain.current import current_all, get_current
from domain.datacenter import DataCenter
from domain.network import (
    MANAGEMENT_NETWORK,
    MAX_MTU,
    MAX_VLAN,
    MIN_MTU,
    USAGES,
    LogicalNetwork,
    NetworkAdded,
    NetworkDetachedFromCluster,
    NetworkRemoved,
    NetworkUpdated,
    VnicProfile,
    VnicProfileRemoved,
    VnicProfileUpdated,
    add_profile_unchecked,
    attach_network_unchecked,
    profiles_of,
)
from domain.permission import remove_object_permissions
from domain.rules.host_rules import check_hosts_networks
from domain.template import Template
from domain.vm import Vm


def _vms_using_profiles(tx: Tx, profile_ids: set[UUID]) -> list[Any]:
    return [
        vm
        for vm in current_all(tx, Vm)
        if any(nic.vnic_profile_id in profile_ids for nic in vm.nics)
    ]


def add_network(
    tx: Tx,
    *,
    name: str,
    data_center_id: UUID,
    description: str = "",
    usages: tuple[str, ...] = ("vm",),
    vlan_id: int | None = None,
    mtu: int = 0,
    required: bool = True,
    cluster_ids: tuple[UUID, ...] = (),
    id: UUID | None = None,
) -> UUID:
    """Adds a logical network; a VM network gets a vNIC profile of the same name."""

    get_current(tx, DataCenter, data_center_id, field="data_center")
    _check_name(name)
    tx.engine.require_unique_name(("network", data_center_id), name, label="Network")
    _check_values(usages=usages, vlan_id=vlan_id, mtu=mtu)
    if "management" in usages:
        raise DomainError(
            "Cannot add Logical Network. The Data Center already has a management network.",
            field="usages",
        )
    _check_vlan_free(tx, data_center_id, vlan_id, None, "add")
    for cid in cluster_ids:
        c = get_current(tx, Cluster, cid, field="cluster_ids")
        if c.data_center_id != data_center_id:
            raise DomainError(
                "Cannot attach Logical Network to Cluster. The Cluster is in another Data Center.",
                field="cluster_ids",
            )
    net_id = tx.new_id(id)
    tx.emit(
        NetworkAdded,
        net_id,
        name=name,
        data_center_id=data_center_id,
        description=description,
        usages=tuple(usages),
        vlan_id=vlan_id,
        mtu=mtu,
        required=required,
    )
    if "vm" in usages:
        add_profile_unchecked(tx, net_id, name)
    for cid in sorted(set(cluster_ids)):
        attach_network_unchecked(tx, net_id, cid)
    if required and cluster_ids:
        for cid in sorted(set(cluster_ids)):
            check_hosts_networks(tx, cid)
    return net_id


def update_network(
    tx: Tx,
    net_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    usages: tuple[str, ...] | UnsetType = UNSET,
    vlan_id: int | UnsetType | None = UNSET,
    mtu: int | UnsetType = UNSET,
    required: bool | UnsetType = UNSET,
) -> None:
    net = tx.engine.get(LogicalNetwork, net_id)
    mgmt = net.name == MANAGEMENT_NETWORK
    if name is not UNSET and name != net.name:
        if mgmt:
            raise DomainError(
                "Cannot edit Logical Network. The management network cannot be renamed.",
                field="name",
            )
        _check_name(name, "edit")
        other = tx.engine.by_name(("network", net.data_center_id), name)
        if other is not None and other != net_id:
            raise DomainError(
                "Cannot edit Logical Network. The Network name is already in use.", field="name"
            )
    _check_values(usages=usages, vlan_id=vlan_id, mtu=mtu, action="edit")
    if usages is not UNSET:
        if mgmt and "management" not in usages:
            raise DomainError(
                "Cannot edit Logical Network. The management network must keep the "
                "management usage.",
                field="usages",
            )
        if not mgmt and "management" in usages:
            raise DomainError(
                "Cannot edit Logical Network. The Data Center already has a management network.",
                field="usages",
            )
        if "vm" not in usages and net.is_vm_network:
            used = _vms_using_profiles(tx, {p.id for p in profiles_of(tx, net_id)})
            if used:
                raise DomainError(
                    "Cannot edit Logical Network. The Network is used by VMs: "
                    + ", ".join(sorted(v.name for v in used))
                    + ".",
                    field="usages",
                )
            _check_templates(
                tx,
                {p.id for p in profiles_of(tx, net_id)},
                "Cannot edit Logical Network. The Network is used by Templates:",
            )
    if vlan_id is not UNSET:
        _check_vlan_free(tx, net.data_center_id, vlan_id, net_id, "edit")
    values = dict(
        name=name,
        description=description,
        usages=tuple(usages) if usages is not UNSET else UNSET,
        vlan_id=vlan_id,
        mtu=mtu,
        required=required,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(net, k)}
    if not changes:
        return
    tx.emit(NetworkUpdated, net_id, **changes)
    if changes.get("required") is True or ("name" in changes and net.required):
        for cid in net.cluster_ids:
            check_hosts_networks(tx, cid)
    if "usages" in changes:
        new_usages: tuple[str, ...] = tuple(usages) if usages is not UNSET else ()
        profiles = profiles_of(tx, net_id)
        if "vm" in new_usages and not profiles:
            add_profile_unchecked(tx, net_id, net.name if name is UNSET else name)
        if "vm" not in new_usages:
            for p in profiles:
                _drop_permissions(tx, p.id)
                tx.emit(VnicProfileRemoved, p.id)


def remove_network(tx: Tx, net_id: UUID) -> None:
    net = tx.engine.get(LogicalNetwork, net_id)
    if net.name == MANAGEMENT_NETWORK:
        raise DomainError(
            "Cannot remove Logical Network. The Management Network ('ovirtmgmt') cannot be removed."
        )
    used = _vms_using_profiles(tx, {p.id for p in profiles_of(tx, net_id)})
    if used:
        raise DomainError(
            "Cannot remove Logical Network. The Network is being used by VMs: "
            + ", ".join(sorted(v.name for v in used))
            + "."
        )
    _check_templates(
        tx,
        {p.id for p in profiles_of(tx, net_id)},
        "Cannot remove Logical Network. The Network is being used by Templates:",
    )
    remove_network_unchecked(tx, net_id)


def remove_network_unchecked(tx: Tx, net_id: UUID) -> None:
    for p in profiles_of(tx, net_id):
        _drop_permissions(tx, p.id)
        tx.emit(VnicProfileRemoved, p.id)
    _drop_permissions(tx, net_id)
    tx.emit(NetworkRemoved, net_id)


def _drop_permissions(tx: Tx, obj_id: UUID) -> None:

    remove_object_permissions(tx, obj_id)


def attach_network(tx: Tx, net_id: UUID, cluster_id: UUID) -> None:

    net = tx.engine.get(LogicalNetwork, net_id, field="network")
    cluster = tx.engine.get(Cluster, cluster_id, field="cluster")
    if cluster.data_center_id != net.data_center_id:
        raise DomainError(
            "Cannot attach Logical Network to Cluster. The Cluster is in another Data Center.",
            field="cluster",
        )
    if cluster_id in net.cluster_ids:
        raise DomainError(
            "Cannot attach Logical Network to Cluster. The Network is already attached to "
            "the Cluster.",
            field="network",
        )
    attach_network_unchecked(tx, net_id, cluster_id)
    if net.required:
        check_hosts_networks(tx, cluster_id)


def detach_network(tx: Tx, net_id: UUID, cluster_id: UUID) -> None:

    net = tx.engine.get(LogicalNetwork, net_id, field="network")
    tx.engine.get(Cluster, cluster_id, field="cluster")
    if cluster_id not in net.cluster_ids:
        raise DomainError(
            "Cannot detach Logical Network from Cluster. The Network is not attached to "
            "the Cluster.",
            field="network",
        )
    if "management" in net.usages:
        raise DomainError(
            "Cannot detach Logical Network from Cluster. The management network cannot be "
            "detached from a Cluster.",
            field="network",
        )
    used = [
        vm
        for vm in _vms_using_profiles(tx, {p.id for p in profiles_of(tx, net_id)})
        if vm.cluster_id == cluster_id
    ]
    if used:
        raise DomainError(
            "Cannot detach Logical Network from Cluster. The Network is being used by VMs: "
            + ", ".join(sorted(v.name for v in used))
            + "."
        )
    tx.emit(NetworkDetachedFromCluster, net_id, cluster_id=cluster_id)


def update_vnic_profile(
    tx: Tx,
    profile_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    port_mirroring: bool | UnsetType = UNSET,
    pass_through: bool | UnsetType = UNSET,
) -> None:
    p = tx.engine.get(VnicProfile, profile_id)
    if name is not UNSET and name != p.name:
        other = tx.engine.by_name(("vnic_profile", p.network_id), name)
        if other is not None and other != profile_id:
            raise DomainError(
                "Cannot edit VM network interface profile. The name is already in use.",
                field="name",
            )
    mirroring = p.port_mirroring if port_mirroring is UNSET else port_mirroring
    passthrough = p.pass_through if pass_through is UNSET else pass_through
    if mirroring and passthrough:
        raise DomainError(
            "Cannot edit VM network interface profile. Port mirroring and passthrough "
            "cannot be combined.",
            field="pass_through",
        )
    if (
        (port_mirroring is not UNSET or pass_through is not UNSET)
        and _vms_using_profiles(tx, {profile_id})
        and (mirroring, passthrough) != (p.port_mirroring, p.pass_through)
    ):
        raise DomainError(
            "Cannot edit VM network interface profile. The profile is used by VMs.",
            field="port_mirroring",
        )
    values = dict(
        name=name,
        description=description,
        port_mirroring=port_mirroring,
        pass_through=pass_through,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(p, k)}
    if changes:
        tx.emit(VnicProfileUpdated, profile_id, **changes)


def remove_vnic_profile(tx: Tx, profile_id: UUID) -> None:
    tx.engine.get(VnicProfile, profile_id)
    used = _vms_using_profiles(tx, {profile_id})
    if used:
        raise DomainError(
            "Cannot remove VM network interface profile. The profile is used by VMs: "
            + ", ".join(sorted(v.name for v in used))
            + "."
        )
    _check_templates(
        tx,
        {profile_id},
        "Cannot remove VM network interface profile. The profile is used by Templates:",
    )
    _drop_permissions(tx, profile_id)
    tx.emit(VnicProfileRemoved, profile_id)


def _check_name(name: str, action: str = "add") -> None:
    if not name:
        raise DomainError("Network name must not be empty.", field="name")
    if len(name) > 256 or not all(ch.isalnum() or ch in "_-." for ch in name):
        raise DomainError(
            f"Cannot {action} Logical Network. The Network name may contain only letters, "
            "digits, '-', '_' and '.'.",
            field="name",
        )


def _check_values(
    *,
    usages: tuple[str, ...] | UnsetType = UNSET,
    vlan_id: int | UnsetType | None = UNSET,
    mtu: int | UnsetType = UNSET,
    action: str = "add",
) -> None:
    if usages is not UNSET:
        for u in usages:
            if u not in USAGES:
                raise DomainError(
                    f"Cannot {action} Logical Network. Unknown usage {u!r}.", field="usages"
                )
        if len(set(usages)) != len(usages):
            raise DomainError(
                f"Cannot {action} Logical Network. A usage is given twice.", field="usages"
            )
    if vlan_id is not UNSET and vlan_id is not None and not 0 <= vlan_id <= MAX_VLAN:
        raise DomainError(
            f"Cannot {action} Logical Network. VLAN ID must be between 0 and {MAX_VLAN}.",
            field="vlan_id",
        )
    if mtu is not UNSET and mtu != 0 and not MIN_MTU <= mtu <= MAX_MTU:
        raise DomainError(
            f"Cannot {action} Logical Network. MTU must be 0 (default) or between "
            f"{MIN_MTU} and {MAX_MTU}.",
            field="mtu",
        )


def _check_vlan_free(
    tx: Tx, dc_id: UUID, vlan_id: int | None, own_id: UUID | None, action: str
) -> None:
    if vlan_id is None:
        return
    for n in current_all(tx, LogicalNetwork):
        if n.data_center_id == dc_id and n.vlan_id == vlan_id and n.id != own_id:
            raise DomainError(
                f"Cannot {action} Logical Network. The specified VLAN ID is already in use "
                f"by Network {n.name}.",
                field="vlan_id",
            )


def _check_templates(tx: Tx, profile_ids: set[UUID], message: str) -> None:
    names = _templates_using_profiles(tx, profile_ids)
    if names:
        raise DomainError(f"{message} {', '.join(names)}.")


def _templates_using_profiles(tx: Tx, profile_ids: set[UUID]) -> list[str]:
    """Names of the templates whose NICs use one of the profiles (VMs made from them would
    get the profile)."""
    return sorted(
        t.name
        for t in current_all(tx, Template)
        if any(nic.vnic_profile_id in profile_ids for nic in t.nics)
    )
