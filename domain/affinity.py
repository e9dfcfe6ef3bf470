"""Affinity groups of a cluster: VM-to-VM (positive/negative, enforcing/soft) and
VM-to-host (``hosts_positive``/``hosts_enforcing``). The scheduler reads them."""

from __future__ import annotations

from itertools import combinations
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.datacenter import current_all, current_vms


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


def _check_members(
    tx: Tx, cluster_id: UUID, vm_ids: tuple[UUID, ...], host_ids: tuple[UUID, ...], action: str
) -> None:
    from domain.host import Host

    if len(set(vm_ids)) != len(vm_ids):
        raise DomainError(f"Cannot {action} Affinity Group. A VM is listed twice.", field="vms")
    if len(set(host_ids)) != len(host_ids):
        raise DomainError(f"Cannot {action} Affinity Group. A Host is listed twice.", field="hosts")
    vms = {v.id: v for v in current_vms(tx)}
    for vid in vm_ids:
        vm = vms.get(vid)
        if vm is None:
            raise DomainError(f"Cannot {action} Affinity Group. VM {vid} not found.", field="vms")
        if vm.cluster_id != cluster_id:
            raise DomainError(
                f"Cannot {action} Affinity Group. VM {vm.name} is not in the Affinity Group's "
                "Cluster.",
                field="vms",
            )
    for hid in host_ids:
        host = tx.engine.get(Host, hid, field="hosts")
        if host.cluster_id != cluster_id:
            raise DomainError(
                f"Cannot {action} Affinity Group. Host {host.name} is not in the Affinity "
                "Group's Cluster.",
                field="hosts",
            )


def _check_contradiction(tx: Tx, group: AffinityGroup, action: str) -> None:
    """Two enforcing VM groups may not demand together and apart for the same pair."""
    if not group.enforcing:
        return
    mine = set(combinations(sorted(group.vm_ids), 2))
    for other in current_all(tx, AffinityGroup):
        if other.id == group.id or other.cluster_id != group.cluster_id:
            continue
        if not other.enforcing or other.positive == group.positive:
            continue
        if mine & set(combinations(sorted(other.vm_ids), 2)):
            raise DomainError(
                f"Cannot {action} Affinity Group. Affinity group contradicts Affinity Group "
                f"{other.name}.",
                field="vms",
            )


def add_affinity_group(
    tx: Tx,
    *,
    name: str,
    cluster_id: UUID,
    description: str = "",
    positive: bool = True,
    enforcing: bool = True,
    vm_ids: tuple[UUID, ...] = (),
    host_ids: tuple[UUID, ...] = (),
    hosts_positive: bool = True,
    hosts_enforcing: bool = False,
    id: UUID | None = None,
) -> UUID:
    from domain.cluster import Cluster

    tx.engine.get(Cluster, cluster_id, field="cluster")
    tx.engine.require_unique_name(("affinity_group", cluster_id), name, label="Affinity Group")
    vm_ids, host_ids = tuple(vm_ids), tuple(host_ids)
    _check_members(tx, cluster_id, vm_ids, host_ids, "add")
    gid = tx.new_id(id)
    fields = dict(
        name=name,
        cluster_id=cluster_id,
        description=description,
        positive=positive,
        enforcing=enforcing,
        vm_ids=vm_ids,
        host_ids=host_ids,
        hosts_positive=hosts_positive,
        hosts_enforcing=hosts_enforcing,
    )
    _check_contradiction(tx, AffinityGroup(id=gid, **fields), "add")  # type: ignore[arg-type]
    tx.emit(AffinityGroupAdded, gid, **fields)
    return gid


def update_affinity_group(
    tx: Tx,
    group_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    positive: bool | UnsetType = UNSET,
    enforcing: bool | UnsetType = UNSET,
    vm_ids: tuple[UUID, ...] | UnsetType = UNSET,
    host_ids: tuple[UUID, ...] | UnsetType = UNSET,
    hosts_positive: bool | UnsetType = UNSET,
    hosts_enforcing: bool | UnsetType = UNSET,
) -> None:
    import msgspec

    g = tx.engine.get(AffinityGroup, group_id)
    if name is not UNSET and name != g.name:
        other = tx.engine.by_name(("affinity_group", g.cluster_id), name)
        if other is not None and other != group_id:
            raise DomainError(
                "Cannot edit Affinity Group. The Affinity Group name is already in use.",
                field="name",
            )
    values = dict(
        name=name,
        description=description,
        positive=positive,
        enforcing=enforcing,
        vm_ids=tuple(vm_ids) if vm_ids is not UNSET else UNSET,
        host_ids=tuple(host_ids) if host_ids is not UNSET else UNSET,
        hosts_positive=hosts_positive,
        hosts_enforcing=hosts_enforcing,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(g, k)}
    if not changes:
        return
    new = msgspec.structs.replace(g, **changes)
    _check_members(tx, g.cluster_id, new.vm_ids, new.host_ids, "edit")
    _check_contradiction(tx, new, "edit")
    tx.emit(AffinityGroupUpdated, group_id, **changes)


def remove_affinity_group(tx: Tx, group_id: UUID) -> None:
    from domain.permission import remove_object_permissions

    tx.engine.get(AffinityGroup, group_id)
    remove_object_permissions(tx, group_id)
    tx.emit(AffinityGroupRemoved, group_id)


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
    "add_affinity_group",
    "drop_member",
    "groups_of_vm",
    "remove_affinity_group",
    "update_affinity_group",
]
