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

import importlib
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import AGGREGATE_TYPES, Aggregate, DomainError, Event, Tx
from domain.statuses import DataCenterStatus, HostStatus, StorageDomainStatus

DEFAULT_VERSION = "4.7"
SUPPORTED_VERSIONS = ("4.2", "4.3", "4.4", "4.5", "4.6", "4.7")

A = TypeVar("A", bound=Aggregate)


class QuotaMode(StrEnum):
    DISABLED = "disabled"
    AUDIT = "audit"
    ENFORCED = "enforced"


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
def current(tx: Tx, cls: type[A], obj_id: UUID | None) -> A | None:
    """The object as it will be once the events ``tx`` emitted so far are applied."""
    if obj_id is None:
        return None
    obj: Any = tx.engine.objects.get(obj_id)
    seen = tx.engine.version_of(obj_id)  # events up to here are already in the engine
    for e in tx.events:
        if e.originator_id == obj_id and e.originator_version > seen:
            obj = e.evolve(obj)
    return obj if isinstance(obj, cls) else None


def current_all(tx: Tx, cls: type[A]) -> list[A]:
    """Every object of ``cls`` after the events ``tx`` emitted, ordered by (name, id)."""
    objs: dict[UUID, Any] = {o.id: o for o in tx.engine.all(cls)}
    for e in tx.events:
        oid = e.originator_id
        if e.originator_version <= tx.engine.version_of(oid):
            continue  # already applied to the engine (a decision that syncs as it goes)
        if oid in objs:
            objs[oid] = e.evolve(objs[oid])
        elif e.CREATES is not None and issubclass(AGGREGATE_TYPES[e.CREATES], cls):
            objs[oid] = e.evolve(None)
    return sorted((o for o in objs.values() if o is not None), key=_order)


def _order(o: Any) -> tuple[str, UUID]:
    return (str(getattr(o, "name", "")), o.id)


def get_current(tx: Tx, cls: type[A], obj_id: UUID, *, field: str | None = None) -> A:
    obj = current(tx, cls, obj_id)
    if obj is None:
        return tx.engine.get(cls, obj_id, field=field)  # raises NotFound
    return obj


def vm_module() -> Any:
    """domain.vm when that area is present (imported lazily: it depends on us)."""
    try:
        return importlib.import_module("domain.vm")
    except ImportError:
        return None


def current_vms(tx: Tx) -> list[Any]:
    mod = vm_module()
    return [] if mod is None else current_all(tx, mod.Vm)


def engine_vms(engine: Any) -> list[Any]:
    mod = vm_module()
    return [] if mod is None else list(engine.all(mod.Vm))


# -- decisions ---------------------------------------------------------------------------
def check_version(version: str, field: str = "version") -> str:
    if version not in SUPPORTED_VERSIONS:
        raise DomainError(
            f"Compatibility version {version} is not supported; "
            f"use one of {', '.join(SUPPORTED_VERSIONS)}.",
            field=field,
        )
    return version


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


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
        other = tx.engine.by_name(("data_center",), name)
        if other is not None and other != dc_id:
            raise DomainError(
                "Cannot edit Data Center. The Data Center name is already in use.", field="name"
            )
    if compatibility_version is not UNSET:
        check_version(compatibility_version, "version")
        if _version_key(compatibility_version) < _version_key(dc.compatibility_version):
            raise DomainError(
                "Cannot update Data Center compatibility version to a lower version.",
                field="version",
            )
        from domain.cluster import Cluster

        for c in tx.engine.all(Cluster):
            if (
                c.data_center_id == dc_id
                and c.compatibility_version  # "" on clusters recorded before versions
                and _version_key(c.compatibility_version) < _version_key(compatibility_version)
            ):
                raise DomainError(
                    "Cannot update Data Center compatibility version to a value that is "
                    f"greater than its Cluster {c.name}'s version.",
                    field="version",
                )
    if local is not UNSET and local != dc.local and _has_storage(tx, dc_id):
        raise DomainError(
            "Cannot update Data Center storage type. The Data Center has storage domains.",
            field="local",
        )
    if local is True and not dc.local:
        from domain.cluster import Cluster
        from domain.host import Host

        clusters = [c.id for c in tx.engine.all(Cluster) if c.data_center_id == dc_id]
        hosts = [h for h in tx.engine.all(Host) if h.cluster_id in clusters]
        if len(clusters) > 1 or len(hosts) > 1:
            raise DomainError(
                "Cannot update Data Center storage type. A local Data Center can contain "
                "only one Cluster and one Host.",
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
    """Removes an empty data center; ``force`` also lets go of its storage domains."""
    from domain.cluster import Cluster
    from domain.network import LogicalNetwork, remove_network_unchecked
    from domain.permission import remove_object_permissions
    from domain.quota import Quota, QuotaRemoved
    from domain.storage import StorageDomain, StorageDomainDetached

    dc = tx.engine.get(DataCenter, dc_id)
    if any(c.data_center_id == dc_id for c in tx.engine.all(Cluster)):
        raise DomainError("Cannot remove Data Center. The Data Center contains Clusters.")
    domains = sorted(
        (sd for sd in tx.engine.all(StorageDomain) if sd.data_center_id == dc_id),
        key=_order,
    )
    if domains and not force:
        if any(sd.status == StorageDomainStatus.ACTIVE for sd in domains):
            raise DomainError(
                "Cannot remove Data Center. The Data Center has active Storage Domains. "
                "Deactivate and detach them first."
            )
        raise DomainError("Cannot remove Data Center. Detach or remove all Storage Domains first.")
    for sd in domains:
        tx.emit(
            StorageDomainDetached,
            sd.id,
            data_center_id=None,
            status=StorageDomainStatus.UNATTACHED,
            master=False,
        )
    for q in sorted(tx.engine.all(Quota), key=_order):
        if q.data_center_id == dc_id:
            remove_object_permissions(tx, q.id)
            tx.emit(QuotaRemoved, q.id)
    for net in sorted(tx.engine.all(LogicalNetwork), key=_order):
        if net.data_center_id == dc_id:
            remove_network_unchecked(tx, net.id)
    remove_object_permissions(tx, dc.id)
    tx.emit(DataCenterRemoved, dc.id)


def _has_storage(tx: Tx, dc_id: UUID) -> bool:
    from domain import storage

    return any(sd.data_center_id == dc_id for sd in tx.engine.all(storage.StorageDomain))


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
def hosts_of(tx: Tx, dc_id: UUID) -> list[Any]:
    """The hosts of the data center's clusters after this transaction, by (name, id)."""
    from domain.cluster import Cluster
    from domain.host import Host

    clusters = {c.id for c in current_all(tx, Cluster) if c.data_center_id == dc_id}
    return [h for h in current_all(tx, Host) if h.cluster_id in clusters]


def spm_candidates(tx: Tx, dc_id: UUID) -> list[Any]:
    """Up hosts that may be SPM, best first: highest priority, then name, then id."""
    ups = [h for h in hosts_of(tx, dc_id) if h.status == HostStatus.UP and h.spm_priority >= 0]
    return sorted(ups, key=lambda h: (-h.spm_priority, h.name, h.id))


def refresh_data_center(tx: Tx, dc_id: UUID) -> None:
    """Brings master domain, SPM and status in line with the hosts and storage domains."""
    from domain.storage import (
        StorageDomain,
        StorageDomainMasterChanged,
        StorageDomainType,
    )

    dc = current(tx, DataCenter, dc_id)
    if dc is None:
        return
    data = [
        sd
        for sd in current_all(tx, StorageDomain)
        if sd.data_center_id == dc_id and sd.domain_type == StorageDomainType.DATA
    ]
    masters = [sd for sd in data if sd.master]
    active = [sd for sd in data if sd.status == StorageDomainStatus.ACTIVE]
    master = masters[0] if masters else None
    for extra in masters[1:]:  # never more than one (repair, should not happen)
        tx.emit(StorageDomainMasterChanged, extra.id, master=False)
    if active and (master is None or master.status != StorageDomainStatus.ACTIVE):
        if master is not None:
            tx.emit(StorageDomainMasterChanged, master.id, master=False)
        master = active[0]
        tx.emit(StorageDomainMasterChanged, master.id, master=True)

    spm = dc.spm_host_id
    need_spm = master is not None and master.status == StorageDomainStatus.ACTIVE
    if spm is not None:
        host = next((h for h in hosts_of(tx, dc_id) if h.id == spm), None)
        if not need_spm or host is None or host.status != HostStatus.UP:
            tx.emit(SpmChanged, dc_id, spm_host_id=None)
            spm = None
    if master is None:
        set_data_center_status(tx, dc_id, DataCenterStatus.UNINITIALIZED)
        return
    if master.status == StorageDomainStatus.MAINTENANCE:
        set_data_center_status(tx, dc_id, DataCenterStatus.MAINTENANCE)
        return
    if master.status != StorageDomainStatus.ACTIVE:
        set_data_center_status(tx, dc_id, DataCenterStatus.NOT_OPERATIONAL)
        return
    if spm is None:
        candidates = spm_candidates(tx, dc_id)
        if not candidates:
            set_data_center_status(tx, dc_id, DataCenterStatus.NON_RESPONSIVE)
            return
        set_data_center_status(tx, dc_id, DataCenterStatus.CONTEND)
        tx.emit(SpmChanged, dc_id, spm_host_id=candidates[0].id)
    set_data_center_status(tx, dc_id, DataCenterStatus.UP)


def refresh_data_centers(tx: Tx, dc_ids: Iterable[UUID | None]) -> None:
    for dc_id in sorted({d for d in dc_ids if d is not None}):
        refresh_data_center(tx, dc_id)


def select_spm(tx: Tx, dc_id: UUID, host_id: UUID) -> None:
    """The administrator's "Select as SPM": moves the SPM role to an up host of the DC."""
    from domain.host import Host

    dc = tx.engine.get(DataCenter, dc_id, field="data_center")
    host = tx.engine.get(Host, host_id, field="host")
    if host.id not in {h.id for h in hosts_of(tx, dc_id)}:
        raise DomainError("Cannot force select SPM. The Host is not in the Data Center.")
    if host.status != HostStatus.UP:
        raise DomainError("Cannot force select SPM. The Host is not active.")
    if host.spm_priority < 0:
        raise DomainError("Cannot force select SPM. The Host is marked as never to be SPM.")
    if dc.spm_host_id == host_id:
        raise DomainError("Cannot force select SPM. The Host is already SPM.")
    if dc.status not in (DataCenterStatus.UP, DataCenterStatus.CONTEND):
        raise DomainError("Cannot force select SPM. The Data Center is not up.")
    tx.emit(SpmChanged, dc_id, spm_host_id=None)
    set_data_center_status(tx, dc_id, DataCenterStatus.CONTEND)
    tx.emit(SpmChanged, dc_id, spm_host_id=host_id)
    set_data_center_status(tx, dc_id, DataCenterStatus.UP)


__all__ = [
    "DC_TRANSITIONS",
    "DataCenter",
    "DataCenterAdded",
    "DataCenterRemoved",
    "DataCenterStatusChanged",
    "DataCenterUpdated",
    "QuotaMode",
    "SpmChanged",
    "add_data_center",
    "current",
    "current_all",
    "refresh_data_center",
    "remove_data_center",
    "update_data_center",
]
