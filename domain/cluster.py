"""Clusters: CPU type, memory overcommit, scheduling and migration policy, HA reservation."""

from __future__ import annotations

from uuid import UUID

from domain.base import Aggregate, Event, Tx
from domain.datacenter import DataCenter


class Cluster(Aggregate, frozen=True, kw_only=True):
    KIND = "cluster"
    LABEL = "Cluster"

    name: str
    data_center_id: UUID
    description: str = ""
    cpu_type: str = "Intel Nehalem Family"
    memory_overcommit: int = 100
    scheduling_policy: str = "none"
    migration_policy: str = "minimal_downtime"
    ha_reservation: bool = False


class ClusterAdded(Event, frozen=True, kw_only=True):
    CREATES = "Cluster"
    name: str
    data_center_id: UUID
    description: str = ""
    cpu_type: str = "Intel Nehalem Family"
    memory_overcommit: int = 100
    scheduling_policy: str = "none"
    migration_policy: str = "minimal_downtime"
    ha_reservation: bool = False


def add_cluster(
    tx: Tx, *, name: str, data_center_id: UUID, id: UUID | None = None, **settings: object
) -> UUID:
    tx.engine.get(DataCenter, data_center_id, field="data_center")
    tx.engine.require_unique_name(("cluster",), name, label="Cluster")
    cluster_id = tx.new_id(id)
    tx.emit(ClusterAdded, cluster_id, name=name, data_center_id=data_center_id, **settings)
    return cluster_id
