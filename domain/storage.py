"""Storage domains (data, iso, export), their attachment to a data center, and the master.

A domain starts ``unattached``; attached to one data center it is in ``maintenance``
until activated. The first active data domain of a data center becomes its master;
when the master leaves (maintenance, inactive, detached) another active data domain
takes the role. Detach only from maintenance, remove only when unattached (or with
``force``, oVirt's destroy). ``refresh_data_center`` keeps master, SPM and status right.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.statuses import StorageDomainStatus

SD = StorageDomainStatus


class StorageDomainType(StrEnum):
    DATA = "data"
    ISO = "iso"
    EXPORT = "export"


class StorageType(StrEnum):
    NFS = "nfs"
    POSIXFS = "posixfs"
    LOCALFS = "localfs"
    GLUSTERFS = "glusterfs"
    ISCSI = "iscsi"
    FCP = "fcp"


FILE_TYPES = frozenset(
    {StorageType.NFS, StorageType.POSIXFS, StorageType.LOCALFS, StorageType.GLUSTERFS}
)

SD_TRANSITIONS: dict[StorageDomainStatus, frozenset[StorageDomainStatus]] = {
    SD.UNATTACHED: frozenset({SD.MAINTENANCE, SD.LOCKED}),
    SD.MAINTENANCE: frozenset({SD.ACTIVE, SD.ACTIVATING, SD.UNATTACHED, SD.DETACHING, SD.LOCKED}),
    SD.ACTIVATING: frozenset({SD.ACTIVE, SD.MAINTENANCE, SD.INACTIVE}),
    SD.ACTIVE: frozenset({SD.MAINTENANCE, SD.PREPARING_FOR_MAINTENANCE, SD.INACTIVE, SD.LOCKED}),
    SD.PREPARING_FOR_MAINTENANCE: frozenset({SD.MAINTENANCE, SD.ACTIVE, SD.INACTIVE}),
    SD.INACTIVE: frozenset({SD.ACTIVE, SD.ACTIVATING, SD.MAINTENANCE}),
    SD.DETACHING: frozenset({SD.UNATTACHED, SD.MAINTENANCE}),
    SD.LOCKED: frozenset({SD.UNATTACHED, SD.MAINTENANCE, SD.ACTIVE}),
}


class StorageDomain(Aggregate, frozen=True, kw_only=True):
    KIND = "storage_domain"
    LABEL = "Storage Domain"

    name: str
    data_center_id: UUID | None = None
    description: str = ""
    domain_type: StorageDomainType = StorageDomainType.DATA
    storage_type: StorageType = StorageType.NFS
    status: StorageDomainStatus = StorageDomainStatus.UNATTACHED
    master: bool = False
    address: str = ""
    path: str = ""
    available: int = 0
    used: int = 0
    warning_low_space: int = 10
    critical_space_blocker: int = 5
    created_at: str = ""


class StorageDomainAdded(Event, frozen=True, kw_only=True):
    CREATES = "StorageDomain"
    name: str
    description: str = ""
    domain_type: StorageDomainType = StorageDomainType.DATA
    storage_type: StorageType = StorageType.NFS
    address: str = ""
    path: str = ""
    available: int = 0
    used: int = 0
    warning_low_space: int = 10
    critical_space_blocker: int = 5
    created_at: str = ""


class StorageDomainUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    warning_low_space: int | UnsetType = UNSET
    critical_space_blocker: int | UnsetType = UNSET


class StorageDomainAttached(Event, frozen=True, kw_only=True):
    data_center_id: UUID
    status: StorageDomainStatus = StorageDomainStatus.MAINTENANCE


class StorageDomainStatusChanged(Event, frozen=True, kw_only=True):
    status: StorageDomainStatus


class StorageDomainMasterChanged(Event, frozen=True, kw_only=True):
    master: bool


class StorageDomainDetached(Event, frozen=True, kw_only=True):
    data_center_id: UUID | None
    status: StorageDomainStatus
    master: bool


class StorageDomainSpaceReported(Event, frozen=True, kw_only=True):
    available: int
    used: int


class StorageDomainRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- validation ----------------------------------------------------------------------------


def space_check(available: int, used: int) -> None:
    if available < 0:
        raise DomainError("Available space must not be negative.", field="available")
    if used < 0:
        raise DomainError("Used space must not be negative.", field="used")


# -- decisions ------------------------------------------------------------------------------


def update_storage_domain(
    tx: Tx,
    sd_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    warning_low_space: int | UnsetType = UNSET,
    critical_space_blocker: int | UnsetType = UNSET,
) -> None:
    sd = tx.engine.get(StorageDomain, sd_id)
    if name is not UNSET and name != sd.name:
        other = tx.engine.by_name(("storage_domain",), name)
        if other is not None and other != sd_id:
            raise DomainError(
                "Cannot edit Storage Domain. The Storage Domain name is already in use.",
                field="name",
            )
    values = dict(
        name=name,
        description=description,
        warning_low_space=warning_low_space,
        critical_space_blocker=critical_space_blocker,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(sd, k)}
    if changes:
        tx.emit(StorageDomainUpdated, sd_id, **changes)


def report_space(tx: Tx, sd_id: UUID, *, available: int, used: int) -> None:
    sd = tx.engine.get(StorageDomain, sd_id)
    space_check(available, used)
    if (sd.available, sd.used) != (available, used):
        tx.emit(StorageDomainSpaceReported, sd_id, available=available, used=used)


def masters_of(engine: Any, dc_id: UUID) -> list[StorageDomain]:
    return [sd for sd in engine.all(StorageDomain) if sd.data_center_id == dc_id and sd.master]


__all__ = [
    "SD_TRANSITIONS",
    "StorageDomain",
    "StorageDomainAdded",
    "StorageDomainAttached",
    "StorageDomainDetached",
    "StorageDomainMasterChanged",
    "StorageDomainRemoved",
    "StorageDomainSpaceReported",
    "StorageDomainStatusChanged",
    "StorageDomainType",
    "StorageDomainUpdated",
    "StorageType",
    "report_space",
    "update_storage_domain",
]
