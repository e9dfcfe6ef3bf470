"""Cluster commands and their handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain import cluster
from domain.base import Tx
from domain.cluster import MigrationPolicy, SchedulingPolicy
from domain.rules import cluster_rules

Version = Annotated[str, msgspec.Meta(pattern=r"^\d+\.\d+$")]
Overcommit = Annotated[int, msgspec.Meta(ge=cluster.MIN_OVERCOMMIT, le=cluster.MAX_OVERCOMMIT)]
CpuType = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class AddCluster(Command, frozen=True, kw_only=True):
    name: Name
    data_center_id: UUID
    description: ShortText = ""
    cpu_type: CpuType = cluster.DEFAULT_CPU_TYPE
    memory_overcommit: Overcommit = 100
    scheduling_policy: SchedulingPolicy = SchedulingPolicy.NONE
    migration_policy: MigrationPolicy = MigrationPolicy.MINIMAL_DOWNTIME
    ha_reservation: bool = False
    version: Version | None = None
    id: UUID | None = None


class UpdateCluster(Command, frozen=True, kw_only=True):
    cluster_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    cpu_type: CpuType | UnsetType = UNSET
    memory_overcommit: Overcommit | UnsetType = UNSET
    scheduling_policy: SchedulingPolicy | UnsetType = UNSET
    migration_policy: MigrationPolicy | UnsetType = UNSET
    ha_reservation: bool | UnsetType = UNSET
    version: Version | UnsetType = UNSET


class RemoveCluster(Command, frozen=True, kw_only=True):
    cluster_id: UUID


@handles(AddCluster)
def _add_cluster(tx: Tx, c: AddCluster) -> UUID:
    return cluster_rules.add_cluster(
        tx,
        name=c.name,
        data_center_id=c.data_center_id,
        description=c.description,
        cpu_type=c.cpu_type,
        memory_overcommit=c.memory_overcommit,
        scheduling_policy=c.scheduling_policy,
        migration_policy=c.migration_policy,
        ha_reservation=c.ha_reservation,
        compatibility_version=c.version,
        id=c.id,
    )


@handles(UpdateCluster)
def _update_cluster(tx: Tx, c: UpdateCluster) -> None:
    cluster_rules.update_cluster(
        tx,
        c.cluster_id,
        name=c.name,
        description=c.description,
        cpu_type=c.cpu_type,
        memory_overcommit=c.memory_overcommit,
        scheduling_policy=c.scheduling_policy,
        migration_policy=c.migration_policy,
        ha_reservation=c.ha_reservation,
        compatibility_version=c.version,
    )


@handles(RemoveCluster)
def _remove_cluster(tx: Tx, c: RemoveCluster) -> None:
    cluster_rules.remove_cluster(tx, c.cluster_id)
