"""Quotas: per-cluster vCPU/memory limits and per-storage-domain GB limits of a data center.

``check_consumption`` is the pure rule: given a quota, the data center's quota mode,
what is already consumed and what an action asks for, it says ok / over the threshold
/ in the grace zone / over the limit. In ``audit`` mode nothing is blocked (the result
carries warnings); in ``enforced`` mode going beyond limit + grace raises DomainError.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.datacenter import DataCenter, QuotaMode

UNLIMITED = -1
GIB = 1024**3
MIB = 1024**2


class ClusterLimit(msgspec.Struct, frozen=True, kw_only=True):
    """vCPU and memory (bytes) limits; ``cluster_id`` None applies to every cluster of
    the data center together. -1 means unlimited."""

    cluster_id: UUID | None = None
    vcpu_limit: int = UNLIMITED
    memory_limit: int = UNLIMITED


class StorageLimit(msgspec.Struct, frozen=True, kw_only=True):
    """Storage limit in GiB; ``storage_domain_id`` None covers all domains together."""

    storage_domain_id: UUID | None = None
    limit_gb: int = UNLIMITED


class Quota(Aggregate, frozen=True, kw_only=True):
    KIND = "quota"
    LABEL = "Quota"

    name: str
    data_center_id: UUID
    description: str = ""
    cluster_limits: tuple[ClusterLimit, ...] = ()
    storage_limits: tuple[StorageLimit, ...] = ()
    threshold: int = 80
    grace: int = 20

    def name_scope(self) -> tuple[object, ...]:
        return ("quota", self.data_center_id)


class QuotaAdded(Event, frozen=True, kw_only=True):
    CREATES = "Quota"
    name: str
    data_center_id: UUID
    description: str = ""
    cluster_limits: tuple[ClusterLimit, ...] = ()
    storage_limits: tuple[StorageLimit, ...] = ()
    threshold: int = 80
    grace: int = 20


class QuotaUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    cluster_limits: tuple[ClusterLimit, ...] | UnsetType = UNSET
    storage_limits: tuple[StorageLimit, ...] | UnsetType = UNSET
    threshold: int | UnsetType = UNSET
    grace: int | UnsetType = UNSET


class QuotaRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- the pure check ---------------------------------------------------------------------------
class Consumption(msgspec.Struct, frozen=True, kw_only=True):
    """Resources in one cluster and/or one storage domain."""

    cluster_id: UUID | None = None
    vcpus: int = 0
    memory: int = 0
    storage_domain_id: UUID | None = None
    storage_gb: float = 0.0


class QuotaCheck(msgspec.Struct, frozen=True, kw_only=True):
    """``level``: ok, threshold (above threshold %), grace (above 100 %, within grace),
    exceeded (beyond limit + grace). ``warnings`` are oVirt-style audit messages."""

    allowed: bool
    level: str
    warnings: tuple[str, ...] = ()


_LEVELS = ("ok", "threshold", "grace", "exceeded")


def _level(used: float, asked: float, limit: float, threshold: int, grace: int) -> str:
    if limit == UNLIMITED or asked <= 0:
        return "ok"
    total = used + asked
    if total > limit * (100 + grace) / 100:
        return "exceeded"
    if total > limit:
        return "grace"
    if total > limit * threshold / 100:
        return "threshold"
    return "ok"


def _cluster_limit(quota: Quota, cluster_id: UUID | None) -> ClusterLimit | None:
    specific = [c for c in quota.cluster_limits if c.cluster_id == cluster_id]
    if specific:
        return specific[0]
    glob = [c for c in quota.cluster_limits if c.cluster_id is None]
    return glob[0] if glob else None


def _storage_limit(quota: Quota, sd_id: UUID | None) -> StorageLimit | None:
    specific = [s for s in quota.storage_limits if s.storage_domain_id == sd_id]
    if specific:
        return specific[0]
    glob = [s for s in quota.storage_limits if s.storage_domain_id is None]
    return glob[0] if glob else None


def check_consumption(
    quota: Quota,
    mode: QuotaMode,
    *,
    used: Consumption,
    requested: Consumption,
    action: str = "run VM",
) -> QuotaCheck:
    """Checks ``requested`` on top of ``used`` against the quota. Pure."""
    mode = QuotaMode(mode)
    if mode == QuotaMode.DISABLED:
        return QuotaCheck(allowed=True, level="ok")
    findings: list[tuple[str, str]] = []
    cl = _cluster_limit(quota, requested.cluster_id)
    missing: list[str] = []
    if cl is None and (requested.vcpus > 0 or requested.memory > 0):
        missing.append("cluster")
    if cl is not None:
        findings.append(
            (
                "vcpu",
                _level(used.vcpus, requested.vcpus, cl.vcpu_limit, quota.threshold, quota.grace),
            )
        )
        findings.append(
            (
                "memory",
                _level(
                    used.memory, requested.memory, cl.memory_limit, quota.threshold, quota.grace
                ),
            )
        )
    sl = _storage_limit(quota, requested.storage_domain_id)
    if sl is None and requested.storage_gb > 0:
        missing.append("storage")
    if sl is not None:
        findings.append(
            (
                "storage",
                _level(
                    used.storage_gb, requested.storage_gb, sl.limit_gb, quota.threshold, quota.grace
                ),
            )
        )
    worst = max((lvl for _, lvl in findings), key=_LEVELS.index, default="ok")
    if missing:
        worst = "exceeded"
    warnings: list[str] = []
    for res in missing:
        warnings.append(f"Quota {quota.name} has no {res} limit for the requested resources.")
    for res, lvl in findings:
        if lvl == "threshold":
            warnings.append(f"Quota {quota.name} {res} usage is above its threshold.")
        elif lvl == "grace":
            warnings.append(f"Quota {quota.name} {res} limit exceeded, within grace.")
        elif lvl == "exceeded":
            warnings.append(f"Quota {quota.name} {res} limit exceeded.")
    if worst == "exceeded" and mode == QuotaMode.ENFORCED:
        kinds = [r for r, lvl in findings if lvl == "exceeded"] + missing
        raise DomainError(
            f"Cannot {action}. Quota {quota.name} has insufficient "
            f"{' and '.join(kinds)} resources and the operation was blocked. "
            "Contact your administrator.",
            field="quota",
        )
    return QuotaCheck(allowed=True, level=worst, warnings=tuple(warnings))


# -- decisions ---------------------------------------------------------------------------------
def _check_limits(
    tx: Tx,
    dc_id: UUID,
    cluster_limits: tuple[ClusterLimit, ...] | UnsetType,
    storage_limits: tuple[StorageLimit, ...] | UnsetType,
) -> None:
    from domain.cluster import Cluster
    from domain.storage import StorageDomain

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


def _check_percent(threshold: int | UnsetType, grace: int | UnsetType) -> None:
    if threshold is not UNSET and not 0 <= threshold <= 100:
        raise DomainError("Quota threshold must be between 0 and 100 percent.", field="threshold")
    if grace is not UNSET and not 0 <= grace <= 100:
        raise DomainError("Quota grace must be between 0 and 100 percent.", field="grace")


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
    from domain.datacenter import current_vms

    users = [v.name for v in current_vms(tx) if getattr(v, "quota_id", None) == quota_id]
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
    from domain.permission import remove_object_permissions

    remove_object_permissions(tx, quota_id)
    tx.emit(QuotaRemoved, quota_id)


__all__ = [
    "ClusterLimit",
    "Consumption",
    "Quota",
    "QuotaAdded",
    "QuotaCheck",
    "QuotaRemoved",
    "QuotaUpdated",
    "StorageLimit",
    "add_quota",
    "check_consumption",
    "remove_quota",
    "update_quota",
]
