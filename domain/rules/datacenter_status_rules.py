"""A data center's status from its hosts and storage domains, as oVirt's
pool monitor keeps it: the hosts of a data center, master domain choice, SPM election
and the administrator's "Select as SPM"; ``refresh_data_center`` is called by every
decision that can change any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from domain.base import DomainError, Tx
from domain.cluster import Cluster
from domain.current import current, current_all
from domain.datacenter import DataCenter, SpmChanged, set_data_center_status
from domain.host import Host
from domain.statuses import DataCenterStatus, HostStatus, StorageDomainStatus
from domain.storage import StorageDomain, StorageDomainMasterChanged, StorageDomainType


def hosts_of(tx: Tx, dc_id: UUID) -> list[Any]:
    """The hosts of the data center's clusters after this transaction, by (name, id)."""

    clusters = {c.id for c in current_all(tx, Cluster) if c.data_center_id == dc_id}
    return [h for h in current_all(tx, Host) if h.cluster_id in clusters]


def spm_candidates(tx: Tx, dc_id: UUID) -> list[Any]:
    """Up hosts that may be SPM, best first: highest priority, then name, then id."""
    ups = [h for h in hosts_of(tx, dc_id) if h.status == HostStatus.UP and h.spm_priority >= 0]
    return sorted(ups, key=lambda h: (-h.spm_priority, h.name, h.id))


def refresh_data_center(tx: Tx, dc_id: UUID) -> None:
    """Brings master domain, SPM and status in line with the hosts and storage domains."""

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
