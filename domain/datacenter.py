"""Data centers: storage type, compatibility version, quota mode, status and the SPM.

A data center's status follows its master data domain and its SPM host, as in oVirt:
``uninitialized`` until a data domain is active, ``contend`` while an SPM is elected,
``up`` with an SPM and an active master, ``non_responsive`` when no host can be SPM,
``not_operational`` when the master domain is unreachable, ``maintenance`` when every
data domain is in maintenance. ``refresh_data_center`` recomputes all of that (master
domain, SPM election, status) and is called by every decision that can change it.

This module also holds ``current``/``current_all``: the state as it will be after the
events a transaction has already emitted (decisions that chain read through them).
"""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.current import get_current
from domain.statuses import DataCenterStatus
from domain.values import QuotaMode

DEFAULT_VERSION = "4.7"
SUPPORTED_VERSIONS = ("4.2", "4.3", "4.4", "4.5", "4.6", "4.7")

A = TypeVar("A", bound=Aggregate)


# The data center statuses and the changes between them that oVirt's pool monitor makes.
DC_TRANSITIONS: dict[DataCenterStatus, frozenset[DataCenterStatus]] = {
    DataCenterStatus.UNINITIALIZED: frozenset(
        {DataCenterStatus.CONTEND, DataCenterStatus.NON_RESPONSIVE, DataCenterStatus.MAINTENANCE}
    ),
    DataCenterStatus.CONTEND: frozenset(
        {
            DataCenterStatus.UP,
            DataCenterStatus.NON_RESPONSIVE,
            DataCenterStatus.NOT_OPERATIONAL,
            DataCenterStatus.MAINTENANCE,
            DataCenterStatus.UNINITIALIZED,
        }
    ),
    DataCenterStatus.UP: frozenset(
        {
            DataCenterStatus.CONTEND,
            DataCenterStatus.NON_RESPONSIVE,
            DataCenterStatus.NOT_OPERATIONAL,
            DataCenterStatus.MAINTENANCE,
            DataCenterStatus.UNINITIALIZED,
        }
    ),
    DataCenterStatus.NON_RESPONSIVE: frozenset(
        {
            DataCenterStatus.CONTEND,
            DataCenterStatus.NOT_OPERATIONAL,
            DataCenterStatus.MAINTENANCE,
            DataCenterStatus.UNINITIALIZED,
        }
    ),
    DataCenterStatus.NOT_OPERATIONAL: frozenset(
        {
            DataCenterStatus.CONTEND,
            DataCenterStatus.UP,
            DataCenterStatus.NON_RESPONSIVE,
            DataCenterStatus.MAINTENANCE,
            DataCenterStatus.UNINITIALIZED,
        }
    ),
    DataCenterStatus.MAINTENANCE: frozenset(
        {
            DataCenterStatus.CONTEND,
            DataCenterStatus.NON_RESPONSIVE,
            DataCenterStatus.NOT_OPERATIONAL,
            DataCenterStatus.UNINITIALIZED,
        }
    ),
}


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


class SpmChanged(Event, frozen=True, kw_only=True):
    """The data center's SPM host was elected (an id) or released (None)."""

    spm_host_id: UUID | None


class DataCenterRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- the transaction's view ----------------------------------------------------------------


# -- decisions ---------------------------------------------------------------------------
def check_version(version: str, field: str = "version") -> str:
    if version not in SUPPORTED_VERSIONS:
        raise DomainError(
            f"Compatibility version {version} is not supported; "
            f"use one of {', '.join(SUPPORTED_VERSIONS)}.",
            field=field,
        )
    return version


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def set_data_center_status(tx: Tx, dc_id: UUID, status: DataCenterStatus) -> None:
    dc = get_current(tx, DataCenter, dc_id)
    if dc.status == status:
        return
    if status not in DC_TRANSITIONS[dc.status]:
        raise DomainError(
            f"Cannot change Data Center status from {dc.status} to {status}.", field="status"
        )
    tx.emit(DataCenterStatusChanged, dc_id, status=status)


# -- SPM and status ---------------------------------------------------------------------------


__all__ = [
    "DC_TRANSITIONS",
    "DataCenter",
    "DataCenterAdded",
    "DataCenterRemoved",
    "DataCenterStatusChanged",
    "DataCenterUpdated",
    "QuotaMode",
    "SpmChanged",
]
