"""Clusters: CPU type, memory overcommit, scheduling and migration policy, HA reservation.

A cluster belongs to one data center and carries that data center's management network
(``LogicalNetwork.cluster_ids``) from the moment it is created.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.datacenter import (
    DataCenter,
    _version_key,
    check_version,
    current_vms,
    get_current,
)


class SchedulingPolicy(StrEnum):
    NONE = "none"
    EVENLY_DISTRIBUTED = "evenly_distributed"
    POWER_SAVING = "power_saving"
    VM_EVENLY_DISTRIBUTED = "vm_evenly_distributed"


class MigrationPolicy(StrEnum):
    MINIMAL_DOWNTIME = "minimal_downtime"
    POST_COPY = "post_copy"
    SUSPEND_WORKLOAD = "suspend_workload"
    LEGACY = "legacy"


CPU_TYPES = (
    "Intel Nehalem Family",
    "Intel Westmere Family",
    "Intel SandyBridge Family",
    "Intel IvyBridge Family",
    "Intel Haswell Family",
    "Intel Broadwell Family",
    "Intel Skylake Client Family",
    "Intel Skylake Server Family",
    "Intel Cascadelake Server Family",
    "Intel Icelake Server Family",
    "AMD Opteron G4",
    "AMD Opteron G5",
    "AMD EPYC",
    "Secure AMD EPYC",
)
DEFAULT_CPU_TYPE = "Intel Nehalem Family"
MIN_OVERCOMMIT, MAX_OVERCOMMIT = 100, 400


class Cluster(Aggregate, frozen=True, kw_only=True):
    KIND = "cluster"
    LABEL = "Cluster"

    name: str
    data_center_id: UUID
    description: str = ""
    cpu_type: str = DEFAULT_CPU_TYPE
    memory_overcommit: int = 100
    scheduling_policy: SchedulingPolicy = SchedulingPolicy.NONE
    migration_policy: MigrationPolicy = MigrationPolicy.MINIMAL_DOWNTIME
    ha_reservation: bool = False
    compatibility_version: str = ""
    created_at: str = ""


class ClusterAdded(Event, frozen=True, kw_only=True):
    CREATES = "Cluster"
    name: str
    data_center_id: UUID
    description: str = ""
    cpu_type: str = DEFAULT_CPU_TYPE
    memory_overcommit: int = 100
    scheduling_policy: SchedulingPolicy = SchedulingPolicy.NONE
    migration_policy: MigrationPolicy = MigrationPolicy.MINIMAL_DOWNTIME
    ha_reservation: bool = False
    compatibility_version: str = ""
    created_at: str = ""


class ClusterUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    cpu_type: str | UnsetType = UNSET
    memory_overcommit: int | UnsetType = UNSET
    scheduling_policy: SchedulingPolicy | UnsetType = UNSET
    migration_policy: MigrationPolicy | UnsetType = UNSET
    ha_reservation: bool | UnsetType = UNSET
    compatibility_version: str | UnsetType = UNSET


class ClusterRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


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


def _check_version(dc: DataCenter, version: str, action: str) -> None:
    check_version(version, "version")
    if _version_key(version) < _version_key(dc.compatibility_version):
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
    from domain.network import MANAGEMENT_NETWORK, LogicalNetwork, attach_network_unchecked

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
    from domain.datacenter import current_all

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
    from domain.host import Host
    from domain.statuses import HostStatus

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
        if cluster.compatibility_version and _version_key(compatibility_version) < _version_key(
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
    from domain.affinity import AffinityGroup, AffinityGroupRemoved
    from domain.datacenter import current_all
    from domain.host import Host
    from domain.network import LogicalNetwork, NetworkDetachedFromCluster
    from domain.permission import remove_object_permissions

    cluster = tx.engine.get(Cluster, cluster_id)
    if any(h.cluster_id == cluster_id for h in tx.engine.all(Host)):
        raise DomainError("Cannot remove Cluster. Host Cluster contains one or more Hosts.")
    if any(getattr(v, "cluster_id", None) == cluster_id for v in current_vms(tx)):
        raise DomainError(
            "Cannot remove Cluster. One or more VMs are still assigned to this Cluster."
        )
    for label, cls_name, module in (
        ("Templates", "Template", "domain.template"),
        ("VM Pools", "VmPool", "domain.vmpool"),
    ):
        cls = _optional_class(module, cls_name)
        if cls is not None and any(
            getattr(o, "cluster_id", None) == cluster_id for o in tx.engine.all(cls)
        ):
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


def _optional_class(module: str, name: str) -> Any:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, name, None)


__all__ = [
    "Cluster",
    "ClusterAdded",
    "ClusterRemoved",
    "ClusterUpdated",
    "MigrationPolicy",
    "SchedulingPolicy",
    "add_cluster",
    "remove_cluster",
    "update_cluster",
]
