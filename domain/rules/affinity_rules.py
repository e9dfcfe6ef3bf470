"""Affinity groups against their cluster, VMs and hosts: members must belong to
the group's cluster; contradicting groups are refused.
"""

from __future__ import annotations

from itertools import combinations
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.affinity import (
    AffinityGroup,
    AffinityGroupAdded,
    AffinityGroupRemoved,
    AffinityGroupUpdated,
)
from domain.base import DomainError, Tx
from domain.cluster import Cluster
from domain.current import current_all
from domain.host import Host
from domain.permission import remove_object_permissions
from domain.vm import Vm


def _check_members(
    tx: Tx, cluster_id: UUID, vm_ids: tuple[UUID, ...], host_ids: tuple[UUID, ...], action: str
) -> None:

    if len(set(vm_ids)) != len(vm_ids):
        raise DomainError(f"Cannot {action} Affinity Group. A VM is listed twice.", field="vms")
    if len(set(host_ids)) != len(host_ids):
        raise DomainError(f"Cannot {action} Affinity Group. A Host is listed twice.", field="hosts")
    vms = {v.id: v for v in current_all(tx, Vm)}
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

    tx.engine.get(AffinityGroup, group_id)
    remove_object_permissions(tx, group_id)
    tx.emit(AffinityGroupRemoved, group_id)


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
