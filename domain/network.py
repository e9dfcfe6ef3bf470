"""Logical networks of a data center, their clusters, and the vNIC profiles VMs plug into.

Every data center has ``ovirtmgmt`` (it cannot be removed, renamed or detached from a
cluster); every VM network gets a vNIC profile of its own name when it is created.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.current import current_all, get_current

MANAGEMENT_NETWORK = "ovirtmgmt"
USAGES = ("vm", "management", "migration", "display", "storage", "gluster", "default_route")
MAX_VLAN = 4094
MIN_MTU, MAX_MTU = 68, 65520


class LogicalNetwork(Aggregate, frozen=True, kw_only=True):
    KIND = "network"
    LABEL = "Network"

    name: str
    data_center_id: UUID
    description: str = ""
    usages: tuple[str, ...] = ("vm",)
    vlan_id: int | None = None
    mtu: int = 0
    required: bool = True
    cluster_ids: tuple[UUID, ...] = ()

    def name_scope(self) -> tuple[object, ...]:
        return ("network", self.data_center_id)

    @property
    def is_vm_network(self) -> bool:
        return "vm" in self.usages


class NetworkAdded(Event, frozen=True, kw_only=True):
    CREATES = "LogicalNetwork"
    name: str
    data_center_id: UUID
    description: str = ""
    usages: tuple[str, ...] = ("vm",)
    vlan_id: int | None = None
    mtu: int = 0
    required: bool = True


class NetworkUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    usages: tuple[str, ...] | UnsetType = UNSET
    vlan_id: int | UnsetType | None = UNSET
    mtu: int | UnsetType = UNSET
    required: bool | UnsetType = UNSET


class NetworkAttachedToCluster(Event, frozen=True, kw_only=True):
    cluster_id: UUID

    def evolve(self, agg: Any) -> Any:
        ids = tuple(sorted({*agg.cluster_ids, self.cluster_id}))
        return msgspec.structs.replace(agg, version=self.originator_version, cluster_ids=ids)


class NetworkDetachedFromCluster(Event, frozen=True, kw_only=True):
    cluster_id: UUID

    def evolve(self, agg: Any) -> Any:
        ids = tuple(c for c in agg.cluster_ids if c != self.cluster_id)
        return msgspec.structs.replace(agg, version=self.originator_version, cluster_ids=ids)


class NetworkRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


class VnicProfile(Aggregate, frozen=True, kw_only=True):
    KIND = "vnic_profile"
    LABEL = "VM network interface profile"

    name: str
    network_id: UUID
    description: str = ""
    port_mirroring: bool = False
    pass_through: bool = False

    def name_scope(self) -> tuple[object, ...]:
        return ("vnic_profile", self.network_id)


class VnicProfileAdded(Event, frozen=True, kw_only=True):
    CREATES = "VnicProfile"
    name: str
    network_id: UUID
    description: str = ""
    port_mirroring: bool = False
    pass_through: bool = False


class VnicProfileUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    port_mirroring: bool | UnsetType = UNSET
    pass_through: bool | UnsetType = UNSET


class VnicProfileRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- helpers -------------------------------------------------------------------------------


def profiles_of(tx: Tx, net_id: UUID) -> list[VnicProfile]:
    return [p for p in current_all(tx, VnicProfile) if p.network_id == net_id]


# -- networks -----------------------------------------------------------------------------
def add_management_network(tx: Tx, dc_id: UUID, *, id: UUID | None = None) -> UUID:
    net_id = tx.new_id(id)
    tx.emit(
        NetworkAdded,
        net_id,
        name=MANAGEMENT_NETWORK,
        data_center_id=dc_id,
        description="Management Network",
        usages=("vm", "management", "display", "migration"),
    )
    add_profile_unchecked(tx, net_id, MANAGEMENT_NETWORK)
    return net_id


def add_profile_unchecked(
    tx: Tx, net_id: UUID, name: str, *, id: UUID | None = None, **extra: Any
) -> UUID:
    pid = tx.new_id(id)
    tx.emit(VnicProfileAdded, pid, name=name, network_id=net_id, **extra)
    return pid


def attach_network_unchecked(tx: Tx, net_id: UUID, cluster_id: UUID) -> None:
    tx.emit(NetworkAttachedToCluster, net_id, cluster_id=cluster_id)


def required_networks(tx: Tx, cluster_id: UUID) -> list[str]:
    """Names of the networks every host of the cluster must have."""
    return sorted(
        n.name
        for n in current_all(tx, LogicalNetwork)
        if cluster_id in n.cluster_ids and n.required
    )


# -- vNIC profiles --------------------------------------------------------------------------
def add_vnic_profile(
    tx: Tx,
    *,
    name: str,
    network_id: UUID,
    description: str = "",
    port_mirroring: bool = False,
    pass_through: bool = False,
    id: UUID | None = None,
) -> UUID:
    net = get_current(tx, LogicalNetwork, network_id, field="network")
    if not net.is_vm_network:
        raise DomainError(
            "Cannot add VM network interface profile. The Network is not a VM network.",
            field="network",
        )
    if port_mirroring and pass_through:
        raise DomainError(
            "Cannot add VM network interface profile. Port mirroring and passthrough "
            "cannot be combined.",
            field="pass_through",
        )
    tx.engine.require_unique_name(
        ("vnic_profile", network_id), name, label="VM network interface profile"
    )
    return add_profile_unchecked(
        tx,
        network_id,
        name,
        id=id,
        description=description,
        port_mirroring=port_mirroring,
        pass_through=pass_through,
    )


__all__ = [
    "MANAGEMENT_NETWORK",
    "LogicalNetwork",
    "NetworkAdded",
    "NetworkAttachedToCluster",
    "NetworkDetachedFromCluster",
    "NetworkRemoved",
    "NetworkUpdated",
    "VnicProfile",
    "VnicProfileAdded",
    "VnicProfileRemoved",
    "VnicProfileUpdated",
    "add_vnic_profile",
]
