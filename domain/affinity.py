"""Affinity groups of a cluster: VM-to-VM (positive/negative, enforcing/soft) and
VM-to-host (``hosts_positive``/``hosts_enforcing``). The scheduler reads them."""

from __future__ import annotations

from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, Event, Tx
from domain.current import current_all


class AffinityGroup(Aggregate, frozen=True, kw_only=True):
    KIND = "affinity_group"
    LABEL = "Affinity Group"

    name: str
    cluster_id: UUID
    description: str = ""
    positive: bool = True
    enforcing: bool = True
    vm_ids: tuple[UUID, ...] = ()
    host_ids: tuple[UUID, ...] = ()
    hosts_positive: bool = True
    hosts_enforcing: bool = False

    def name_scope(self) -> tuple[object, ...]:
        return ("affinity_group", self.cluster_id)


class AffinityGroupAdded(Event, frozen=True, kw_only=True):
    CREATES = "AffinityGroup"
    name: str
    cluster_id: UUID
    description: str = ""
    positive: bool = True
    enforcing: bool = True
    vm_ids: tuple[UUID, ...] = ()
    host_ids: tuple[UUID, ...] = ()
    hosts_positive: bool = True
    hosts_enforcing: bool = False


class AffinityGroupUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    positive: bool | UnsetType = UNSET
    enforcing: bool | UnsetType = UNSET
    vm_ids: tuple[UUID, ...] | UnsetType = UNSET
    host_ids: tuple[UUID, ...] | UnsetType = UNSET
    hosts_positive: bool | UnsetType = UNSET
    hosts_enforcing: bool | UnsetType = UNSET


class AffinityGroupRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


def drop_member(tx: Tx, object_id: UUID) -> None:
    """Takes a VM or host out of every group (call before the VM or host is removed)."""
    for g in current_all(tx, AffinityGroup):
        if object_id in g.vm_ids:
            tx.emit(AffinityGroupUpdated, g.id, vm_ids=tuple(v for v in g.vm_ids if v != object_id))
        elif object_id in g.host_ids:
            tx.emit(
                AffinityGroupUpdated,
                g.id,
                host_ids=tuple(h for h in g.host_ids if h != object_id),
            )


def groups_of_vm(engine: object, vm_id: UUID) -> list[AffinityGroup]:
    return sorted(
        (g for g in engine.all(AffinityGroup) if vm_id in g.vm_ids),  # type: ignore[attr-defined]
        key=lambda g: (g.name, g.id),
    )


__all__ = [
    "AffinityGroup",
    "AffinityGroupAdded",
    "AffinityGroupRemoved",
    "AffinityGroupUpdated",
    "drop_member",
    "groups_of_vm",
]
