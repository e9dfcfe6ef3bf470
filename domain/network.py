"""Logical networks of a data center and the vNIC profiles VMs plug into."""

from __future__ import annotations

from uuid import UUID

from domain.base import Aggregate, DomainError, Event, Tx

MANAGEMENT_NETWORK = "ovirtmgmt"


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

    def name_scope(self) -> tuple[object, ...]:
        return ("network", self.data_center_id)


class NetworkAdded(Event, frozen=True, kw_only=True):
    CREATES = "LogicalNetwork"
    name: str
    data_center_id: UUID
    description: str = ""
    usages: tuple[str, ...] = ("vm",)
    vlan_id: int | None = None
    mtu: int = 0
    required: bool = True


class NetworkRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


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
    return net_id


def remove_network_unchecked(tx: Tx, net_id: UUID) -> None:
    tx.emit(NetworkRemoved, net_id)


def _check_name(name: str) -> None:
    if not name:
        raise DomainError("Network name must not be empty.", field="name")
