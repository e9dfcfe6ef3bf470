"""Data centers: storage type, compatibility version, quota mode; and their clusters."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.statuses import DataCenterStatus

DEFAULT_VERSION = "4.7"
SUPPORTED_VERSIONS = ("4.2", "4.3", "4.4", "4.5", "4.6", "4.7")


class QuotaMode(StrEnum):
    DISABLED = "disabled"
    AUDIT = "audit"
    ENFORCED = "enforced"


class DataCenter(Aggregate, frozen=True, kw_only=True):
    KIND = "data_center"
    LABEL = "Data Center"

    name: str
    description: str = ""
    local: bool = False
    compatibility_version: str = DEFAULT_VERSION
    quota_mode: QuotaMode = QuotaMode.DISABLED
    status: DataCenterStatus = DataCenterStatus.UNINITIALIZED
    spm_host_id: UUID | None = None
    created_at: str = ""


class DataCenterAdded(Event, frozen=True, kw_only=True):
    CREATES = "DataCenter"
    name: str
    description: str = ""
    local: bool = False
    compatibility_version: str = DEFAULT_VERSION
    quota_mode: QuotaMode = QuotaMode.DISABLED
    created_at: str = ""


class DataCenterUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    local: bool | UnsetType = UNSET
    compatibility_version: str | UnsetType = UNSET
    quota_mode: QuotaMode | UnsetType = UNSET


class DataCenterStatusChanged(Event, frozen=True, kw_only=True):
    status: DataCenterStatus


class DataCenterRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


def check_version(version: str, field: str = "version") -> str:
    if version not in SUPPORTED_VERSIONS:
        raise DomainError(
            f"Compatibility version {version} is not supported; "
            f"use one of {', '.join(SUPPORTED_VERSIONS)}.",
            field=field,
        )
    return version


def add_data_center(
    tx: Tx,
    *,
    name: str,
    description: str = "",
    local: bool = False,
    compatibility_version: str = DEFAULT_VERSION,
    quota_mode: QuotaMode = QuotaMode.DISABLED,
    id: UUID | None = None,
    management_network_id: UUID | None = None,
) -> UUID:
    """Creates a data center and, as oVirt does, its ``ovirtmgmt`` network."""
    from domain.network import add_management_network

    tx.engine.require_unique_name(("data_center",), name, label="Data Center")
    check_version(compatibility_version, "version")
    dc_id = tx.new_id(id)
    tx.emit(
        DataCenterAdded,
        dc_id,
        name=name,
        description=description,
        local=local,
        compatibility_version=compatibility_version,
        quota_mode=quota_mode,
        created_at=tx.now.isoformat(),
    )
    add_management_network(tx, dc_id, id=management_network_id)
    return dc_id


def update_data_center(
    tx: Tx,
    dc_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    local: bool | UnsetType = UNSET,
    compatibility_version: str | UnsetType = UNSET,
    quota_mode: QuotaMode | UnsetType = UNSET,
) -> None:
    dc = tx.engine.get(DataCenter, dc_id)
    if name is not UNSET and name != dc.name:
        tx.engine.require_unique_name(("data_center",), name, label="Data Center", own_id=dc_id)
    if compatibility_version is not UNSET:
        check_version(compatibility_version, "version")
        if compatibility_version < dc.compatibility_version:
            raise DomainError(
                "Cannot update Data Center compatibility version to a lower version.",
                field="version",
            )
    if local is not UNSET and local != dc.local and _has_storage(tx, dc_id):
        raise DomainError(
            "Cannot update Data Center storage type. The Data Center has storage domains.",
            field="local",
        )
    changes = {
        k: v
        for k, v in dict(
            name=name,
            description=description,
            local=local,
            compatibility_version=compatibility_version,
            quota_mode=quota_mode,
        ).items()
        if v is not UNSET and v != getattr(dc, k)
    }
    if changes:
        tx.emit(DataCenterUpdated, dc_id, **changes)


def remove_data_center(tx: Tx, dc_id: UUID, *, force: bool = False) -> None:
    from domain.cluster import Cluster
    from domain.network import LogicalNetwork, remove_network_unchecked

    dc = tx.engine.get(DataCenter, dc_id)
    if any(c.data_center_id == dc_id for c in tx.engine.all(Cluster)):
        raise DomainError("Cannot remove Data Center. The Data Center contains Clusters.")
    if not force and _has_storage(tx, dc_id):
        raise DomainError("Cannot remove Data Center. Detach or remove all Storage Domains first.")
    for net in list(tx.engine.all(LogicalNetwork)):
        if net.data_center_id == dc_id:
            remove_network_unchecked(tx, net.id)
    tx.emit(DataCenterRemoved, dc.id)


def _has_storage(tx: Tx, dc_id: UUID) -> bool:
    from domain import storage

    return any(sd.data_center_id == dc_id for sd in tx.engine.all(storage.StorageDomain))


def set_data_center_status(tx: Tx, dc_id: UUID, status: DataCenterStatus) -> None:
    dc = tx.engine.get(DataCenter, dc_id)
    if dc.status != status:
        tx.emit(DataCenterStatusChanged, dc_id, status=status)


__all__ = [
    "DataCenter",
    "DataCenterAdded",
    "DataCenterRemoved",
    "DataCenterStatusChanged",
    "DataCenterUpdated",
    "QuotaMode",
    "add_data_center",
    "remove_data_center",
    "update_data_center",
]
