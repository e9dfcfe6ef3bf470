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

from domain.base import Aggregate, DomainError, Event
from domain.values import QuotaMode

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


__all__ = [
    "ClusterLimit",
    "Consumption",
    "Quota",
    "QuotaAdded",
    "QuotaCheck",
    "QuotaRemoved",
    "QuotaUpdated",
    "StorageLimit",
    "check_consumption",
]
