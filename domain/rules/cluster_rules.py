"""Clusters within their data center: compatibility versions against the data
center's, the management network attached on creation, a cluster with hosts, VMs,
templates or pools refused removal (its affinity groups, network attachments and
permissions go with it), and the data center a cluster's objects belong to.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.affinity import AffinityGroup, AffinityGroupRemoved
from domain.base import DomainError, Tx
from domain.cluster import (
    CPU_TYPES,
    DEFAULT_CPU_TYPE,
    MAX_OVERCOMMIT,
    MIN_OVERCOMMIT,
    Cluster,
    ClusterAdded,
    ClusterRemoved,
    ClusterUpdated,
    MigrationPolicy,
    SchedulingPolicy,
)
from domain.current import current_all, get_current
from domain.datacenter import DataCenter, check_version, version_key
from domain.host import Host
from domain.network import (
    MANAGEMENT_NETWORK,
    LogicalNetwork,
    NetworkDetachedFromCluster,
    attach_network_unchecked,
)
from domain.permission import remove_object_permissions
from domain.statuses import HostStatus
from domain.template import Template
from domain.vm import Vm
from domain.vmpool import VmPool


def _check_version(dc: DataCenter, version: str, action: str) -> None:
    check_version(version, "version")
    if version_key(version) < version_key(dc.compatibility_version):
        raise DomainError(
            f"Cannot {action} Cluster. The Cluster's compatibility version is lower than "
            "its Data Center's.",
            field="version",
        )


def add_cluster(
    tx: Tx,
    *,
    name: str,
    data_center_id: UUID,
    description: str = "",
    cpu_type: str = DEFAULT_CPU_TYPE,
    memory_overcommit: int = 100,
    scheduling_policy: SchedulingPolicy = SchedulingPolicy.NONE,
    migration_policy: MigrationPolicy = MigrationPolicy.MINIMAL_DOWNTIME,
    ha_reservation: bool = False,
    compatibility_version: str | None = None,
    id: UUID | None = None,
) -> UUID:

    dc = get_current(tx, DataCenter, data_center_id, field="data_center")
    tx.engine.require_unique_name(("cluster",), name, label="Cluster")
    _check_settings(cpu_type=cpu_type, memory_overcommit=memory_overcommit)
    version = compatibility_version or dc.compatibility_version
    _check_version(dc, version, "add")
    if dc.local and any(c.data_center_id == data_center_id for c in tx.engine.all(Cluster)):
        raise DomainError(
            "Cannot add Cluster. A local storage Data Center can contain only one Cluster.",
            field="data_center",
        )
    cluster_id = tx.new_id(id)
    tx.emit(
        ClusterAdded,
        cluster_id,
        name=name,
        data_center_id=data_center_id,
        description=description,
        cpu_type=cpu_type,
        memory_overcommit=memory_overcommit,
        scheduling_policy=SchedulingPolicy(scheduling_policy),
        migration_policy=MigrationPolicy(migration_policy),
        ha_reservation=ha_reservation,
        compatibility_version=version,
        created_at=tx.now.isoformat(),
    )

    for net in current_all(tx, LogicalNetwork):
        if net.data_center_id == data_center_id and net.name == MANAGEMENT_NETWORK:
            attach_network_unchecked(tx, net.id, cluster_id)
    return cluster_id


def update_cluster(
    tx: Tx,
    cluster_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    cpu_type: str | UnsetType = UNSET,
    memory_overcommit: int | UnsetType = UNSET,
    scheduling_policy: SchedulingPolicy | UnsetType = UNSET,
    migration_policy: MigrationPolicy | UnsetType = UNSET,
    ha_reservation: bool | UnsetType = UNSET,
    compatibility_version: str | UnsetType = UNSET,
) -> None:

    cluster = tx.engine.get(Cluster, cluster_id)
    if name is not UNSET and name != cluster.name:
        other = tx.engine.by_name(("cluster",), name)
        if other is not None and other != cluster_id:
            raise DomainError(
                "Cannot edit Cluster. The Cluster name is already in use.", field="name"
            )
    _check_settings(cpu_type=cpu_type, memory_overcommit=memory_overcommit, action="edit")
    if (
        cpu_type is not UNSET
        and cpu_type != cluster.cpu_type
        and any(
            h.cluster_id == cluster_id and h.status == HostStatus.UP for h in tx.engine.all(Host)
        )
    ):
        raise DomainError(
            "Cannot edit Cluster. The CPU type cannot be changed while the Cluster "
            "has active Hosts.",
            field="cpu_type",
        )
    if compatibility_version is not UNSET:
        dc = tx.engine.get(DataCenter, cluster.data_center_id)
        _check_version(dc, compatibility_version, "edit")
        if cluster.compatibility_version and version_key(compatibility_version) < version_key(
            cluster.compatibility_version
        ):
            raise DomainError(
                "Cannot edit Cluster. The compatibility version cannot be lowered.",
                field="version",
            )
    values = dict(
        name=name,
        description=description,
        cpu_type=cpu_type,
        memory_overcommit=memory_overcommit,
        scheduling_policy=scheduling_policy,
        migration_policy=migration_policy,
        ha_reservation=ha_reservation,
        compatibility_version=compatibility_version,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(cluster, k)}
    if changes:
        tx.emit(ClusterUpdated, cluster_id, **changes)


def remove_cluster(tx: Tx, cluster_id: UUID) -> None:

    cluster = tx.engine.get(Cluster, cluster_id)
    if any(h.cluster_id == cluster_id for h in tx.engine.all(Host)):
        raise DomainError("Cannot remove Cluster. Host Cluster contains one or more Hosts.")
    if any(v.cluster_id == cluster_id for v in current_all(tx, Vm)):
        raise DomainError(
            "Cannot remove Cluster. One or more VMs are still assigned to this Cluster."
        )
    for label, cls in (("Templates", Template), ("VM Pools", VmPool)):
        if any(o.cluster_id == cluster_id for o in tx.engine.all(cls)):
            raise DomainError(
                f"Cannot remove Cluster. One or more {label} are still assigned to this Cluster."
            )
    for g in current_all(tx, AffinityGroup):
        if g.cluster_id == cluster_id:
            remove_object_permissions(tx, g.id)
            tx.emit(AffinityGroupRemoved, g.id)
    for net in current_all(tx, LogicalNetwork):
        if cluster_id in net.cluster_ids:
            tx.emit(NetworkDetachedFromCluster, net.id, cluster_id=cluster_id)
    remove_object_permissions(tx, cluster.id)
    tx.emit(ClusterRemoved, cluster.id)


def cluster_dc(tx: Tx, cluster_id: UUID) -> UUID:
    return tx.engine.get(Cluster, cluster_id, field="cluster").data_center_id


def _check_settings(
    *, cpu_type: Any = UNSET, memory_overcommit: Any = UNSET, action: str = "add"
) -> None:
    if cpu_type is not UNSET and cpu_type not in CPU_TYPES:
        raise DomainError(
            f"Cannot {action} Cluster. CPU type {cpu_type!r} is not supported.", field="cpu_type"
        )
    if memory_overcommit is not UNSET and not (
        MIN_OVERCOMMIT <= memory_overcommit <= MAX_OVERCOMMIT
    ):
        raise DomainError(
            f"Cannot {action} Cluster. Memory overcommit must be between "
            f"{MIN_OVERCOMMIT} and {MAX_OVERCOMMIT} percent.",
            field="memory_overcommit",
        )
