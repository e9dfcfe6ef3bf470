"""Quotas against their data center, clusters and storage domains: limits only on
objects of the quota's data center, removal refused while VMs consume the quota.
"""

from __future__ import annotations

from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import DomainError, Tx
from domain.cluster import Cluster
from domain.current import current_all
from domain.datacenter import DataCenter
from domain.permission import remove_object_permissions
from domain.quota import (
    UNLIMITED,
    ClusterLimit,
    Quota,
    QuotaAdded,
    QuotaRemoved,
    QuotaUpdated,
    StorageLimit,
)
from domain.storage import StorageDomain
from domain.values import QuotaMode
from domain.vm import Vm


def _check_limits(
    tx: Tx,
    dc_id: UUID,
    cluster_limits: tuple[ClusterLimit, ...] | UnsetType,
    storage_limits: tuple[StorageLimit, ...] | UnsetType,
) -> None:

    if cluster_limits is not UNSET:
        seen: set[UUID | None] = set()
        for cl in cluster_limits:
            if cl.cluster_id in seen:
                raise DomainError("A Quota has one limit per Cluster.", field="cluster_limits")
            seen.add(cl.cluster_id)
            if cl.cluster_id is not None:
                c = tx.engine.get(Cluster, cl.cluster_id, field="cluster_limits")
                if c.data_center_id != dc_id:
                    raise DomainError(
                        "Cannot add Quota. The Cluster is in another Data Center.",
                        field="cluster_limits",
                    )
            if cl.vcpu_limit < UNLIMITED or cl.memory_limit < UNLIMITED:
                raise DomainError(
                    "Quota limits must be -1 (unlimited) or positive.", field="cluster_limits"
                )
    if storage_limits is not UNSET:
        seen_sd: set[UUID | None] = set()
        for sl in storage_limits:
            if sl.storage_domain_id in seen_sd:
                raise DomainError(
                    "A Quota has one limit per Storage Domain.", field="storage_limits"
                )
            seen_sd.add(sl.storage_domain_id)
            if sl.storage_domain_id is not None:
                sd = tx.engine.get(StorageDomain, sl.storage_domain_id, field="storage_limits")
                if sd.data_center_id != dc_id:
                    raise DomainError(
                        "Cannot add Quota. The Storage Domain is not attached to the Data Center.",
                        field="storage_limits",
                    )
            if sl.limit_gb < UNLIMITED:
                raise DomainError(
                    "Quota limits must be -1 (unlimited) or positive.", field="storage_limits"
                )


def add_quota(
    tx: Tx,
    *,
    name: str,
    data_center_id: UUID,
    description: str = "",
    cluster_limits: tuple[ClusterLimit, ...] = (),
    storage_limits: tuple[StorageLimit, ...] = (),
    threshold: int = 80,
    grace: int = 20,
    id: UUID | None = None,
) -> UUID:
    tx.engine.get(DataCenter, data_center_id, field="data_center")
    tx.engine.require_unique_name(("quota", data_center_id), name, label="Quota")
    _check_percent(threshold, grace)
    _check_limits(tx, data_center_id, tuple(cluster_limits), tuple(storage_limits))
    qid = tx.new_id(id)
    tx.emit(
        QuotaAdded,
        qid,
        name=name,
        data_center_id=data_center_id,
        description=description,
        cluster_limits=tuple(cluster_limits),
        storage_limits=tuple(storage_limits),
        threshold=threshold,
        grace=grace,
    )
    return qid


def update_quota(
    tx: Tx,
    quota_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    cluster_limits: tuple[ClusterLimit, ...] | UnsetType = UNSET,
    storage_limits: tuple[StorageLimit, ...] | UnsetType = UNSET,
    threshold: int | UnsetType = UNSET,
    grace: int | UnsetType = UNSET,
) -> None:
    q = tx.engine.get(Quota, quota_id)
    if name is not UNSET and name != q.name:
        other = tx.engine.by_name(("quota", q.data_center_id), name)
        if other is not None and other != quota_id:
            raise DomainError("Cannot edit Quota. The Quota name is already in use.", field="name")
    _check_percent(threshold, grace)
    cl = tuple(cluster_limits) if cluster_limits is not UNSET else UNSET
    sl = tuple(storage_limits) if storage_limits is not UNSET else UNSET
    _check_limits(tx, q.data_center_id, cl, sl)
    values = dict(
        name=name,
        description=description,
        cluster_limits=cl,
        storage_limits=sl,
        threshold=threshold,
        grace=grace,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(q, k)}
    if changes:
        tx.emit(QuotaUpdated, quota_id, **changes)


def remove_quota(tx: Tx, quota_id: UUID) -> None:
    q = tx.engine.get(Quota, quota_id)

    users = [v.name for v in current_all(tx, Vm) if getattr(v, "quota_id", None) == quota_id]
    if users:
        raise DomainError(
            "Cannot remove Quota. The Quota is used by VMs: " + ", ".join(sorted(users)) + "."
        )
    dc = tx.engine.find(DataCenter, q.data_center_id)
    if dc is not None and dc.quota_mode != QuotaMode.DISABLED:
        others = [
            o for o in tx.engine.all(Quota) if o.data_center_id == q.data_center_id and o.id != q.id
        ]
        if not others:
            raise DomainError(
                "Cannot remove Quota. The Data Center's last Quota cannot be removed while "
                "quota mode is on."
            )

    remove_object_permissions(tx, quota_id)
    tx.emit(QuotaRemoved, quota_id)


def _check_percent(threshold: int | UnsetType, grace: int | UnsetType) -> None:
    if threshold is not UNSET and not 0 <= threshold <= 100:
        raise DomainError("Quota threshold must be between 0 and 100 percent.", field="threshold")
    if grace is not UNSET and not 0 <= grace <= 100:
        raise DomainError("Quota grace must be between 0 and 100 percent.", field="grace")
