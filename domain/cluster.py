"""Clusters: CPU type, memory overcommit, scheduling and migration policy, HA reservation.

A cluster belongs to one data center and carries that data center's management network
(``LogicalNetwork.cluster_ids``) from the moment it is created.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, Event


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


__all__ = [
    "Cluster",
    "ClusterAdded",
    "ClusterRemoved",
    "ClusterUpdated",
    "MigrationPolicy",
    "SchedulingPolicy",
]
