"""Storage domains across data centers, hosts, disks and VMs: adding through an
up host, attaching to a data center of the right storage type, activation, maintenance
refused while running VMs use disks on it, detaching and removal; each change refreshes
the data center's status.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.base import DomainError, NotFound, Tx
from domain.cluster import Cluster
from domain.current import current, current_all, get_current
from domain.datacenter import DataCenter
from domain.disk import Disk
from domain.host import Host
from domain.permission import remove_object_permissions
from domain.rules.datacenter_status_rules import hosts_of, refresh_data_center
from domain.statuses import VM_ON_HOST, HostStatus, StorageDomainStatus
from domain.storage import (
    FILE_TYPES,
    SD,
    SD_TRANSITIONS,
    StorageDomain,
    StorageDomainAdded,
    StorageDomainAttached,
    StorageDomainDetached,
    StorageDomainRemoved,
    StorageDomainStatusChanged,
    StorageDomainType,
    StorageType,
    space_check,
)
from domain.vm import Vm


def add_storage_domain(
    tx: Tx,
    *,
    name: str,
    domain_type: StorageDomainType = StorageDomainType.DATA,
    storage_type: StorageType = StorageType.NFS,
    address: str = "",
    path: str = "",
    description: str = "",
    available: int = 0,
    used: int = 0,
    warning_low_space: int = 10,
    critical_space_blocker: int = 5,
    host_id: UUID | None = None,
    data_center_id: UUID | None = None,
    id: UUID | None = None,
) -> UUID:
    """Adds an unattached domain (and attaches it when ``data_center_id`` is given).

    ``host_id``, when given, is the host that creates the domain: it must be up.
    """

    domain_type = StorageDomainType(domain_type)
    storage_type = StorageType(storage_type)
    tx.engine.require_unique_name(("storage_domain",), name, label="Storage Domain")
    _check_connection(storage_type, address, path)
    if domain_type != StorageDomainType.DATA and storage_type not in (
        StorageType.NFS,
        StorageType.POSIXFS,
        StorageType.GLUSTERFS,
    ):
        raise DomainError(
            f"Cannot add Storage Domain. {domain_type.upper()} domains must be on nfs, "
            "posixfs or glusterfs storage.",
            field="storage_type",
        )
    for sd in tx.engine.all(StorageDomain):
        if _same_connection(sd, storage_type, address, path):
            raise DomainError(
                "Cannot add Storage Domain. The storage connection is already used by "
                f"Storage Domain {sd.name}.",
                field="path",
            )
    space_check(available, used)
    if host_id is not None:
        host = tx.engine.get(Host, host_id, field="host")
        if host.status != HostStatus.UP:
            raise DomainError("Cannot add Storage Domain. The Host is not active.", field="host")
    if data_center_id is not None:
        tx.engine.get(DataCenter, data_center_id, field="data_center")
    sd_id = tx.new_id(id)
    tx.emit(
        StorageDomainAdded,
        sd_id,
        name=name,
        description=description,
        domain_type=domain_type,
        storage_type=storage_type,
        address=address,
        path=path,
        available=available,
        used=used,
        warning_low_space=warning_low_space,
        critical_space_blocker=critical_space_blocker,
        created_at=tx.now.isoformat(),
    )
    if data_center_id is not None:
        attach_storage_domain(tx, sd_id, data_center_id)
    return sd_id


def _up_hosts(tx: Tx, dc_id: UUID) -> list[Any]:
    return [h for h in hosts_of(tx, dc_id) if h.status == HostStatus.UP]


def attach_storage_domain(tx: Tx, sd_id: UUID, dc_id: UUID, *, activate: bool = True) -> None:
    """Attaches an unattached domain to a data center (in maintenance) and, by default,
    activates it, as oVirt's attach action does."""

    sd = _sd(tx, sd_id)
    dc = get_current(tx, DataCenter, dc_id, field="data_center")
    if sd.data_center_id is not None or sd.status != SD.UNATTACHED:
        raise DomainError(
            "Cannot attach Storage Domain. The Storage Domain is already attached to a "
            "Data Center.",
            field="storage_domain",
        )
    if sd.storage_type == StorageType.LOCALFS and not dc.local:
        raise DomainError(
            "Cannot attach Storage Domain. Local storage can be attached only to a local "
            "Data Center.",
            field="data_center",
        )
    if dc.local and sd.storage_type != StorageType.LOCALFS:
        raise DomainError(
            "Cannot attach Storage Domain. A local Data Center accepts only local storage.",
            field="data_center",
        )
    if sd.domain_type in (StorageDomainType.ISO, StorageDomainType.EXPORT):
        for other in current_all(tx, StorageDomain):
            if other.data_center_id == dc_id and other.domain_type == sd.domain_type:
                label = "an ISO" if sd.domain_type == StorageDomainType.ISO else "an Export"
                raise DomainError(
                    f"Cannot attach Storage Domain. The Data Center already contains {label} "
                    "domain.",
                    field="storage_domain",
                )
    if not _up_hosts(tx, dc_id):
        raise DomainError(
            "Cannot attach Storage Domain. There is no active Host in the Data Center.",
            field="data_center",
        )
    has_master = any(o.master and o.data_center_id == dc_id for o in current_all(tx, StorageDomain))
    if sd.domain_type != StorageDomainType.DATA and not has_master:
        raise DomainError(
            "Cannot attach Storage Domain. The Data Center must have an active data domain first.",
            field="storage_domain",
        )
    tx.emit(StorageDomainAttached, sd_id, data_center_id=dc_id, status=SD.MAINTENANCE)
    if activate:
        activate_storage_domain(tx, sd_id)
    else:
        refresh_data_center(tx, dc_id)


def activate_storage_domain(tx: Tx, sd_id: UUID) -> None:
    sd = _sd(tx, sd_id)
    if sd.data_center_id is None:
        raise DomainError(
            "Cannot activate Storage Domain. The Storage Domain is not attached to a Data Center."
        )
    if sd.status == SD.ACTIVE:
        raise DomainError("Cannot activate Storage Domain. Storage Domain is already active.")
    if sd.status not in (SD.MAINTENANCE, SD.INACTIVE):
        raise DomainError(f"Cannot activate Storage Domain. Storage Domain status is {sd.status}.")
    if not _up_hosts(tx, sd.data_center_id):
        raise DomainError(
            "Cannot activate Storage Domain. There is no active Host in the Data Center."
        )
    if sd.domain_type != StorageDomainType.DATA and not _has_active_master(tx, sd.data_center_id):
        raise DomainError(
            "Cannot activate Storage Domain. The Data Center has no active master data domain."
        )
    _set_status(tx, sd, SD.ACTIVE, "activate")
    refresh_data_center(tx, sd.data_center_id)


def _vms_with_disks_on(tx: Tx, sd_id: UUID) -> list[str]:
    """Names of running VMs that use a disk on the domain."""
    disks = {d.id for d in tx.engine.all(Disk) if d.storage_domain_id == sd_id}
    if not disks:
        return []
    return sorted(
        vm.name
        for vm in current_all(tx, Vm)
        if vm.status in VM_ON_HOST and any(a.disk_id in disks for a in vm.disk_attachments)
    )


def deactivate_storage_domain(tx: Tx, sd_id: UUID) -> None:
    """Maintenance. The master's role moves to another active data domain; the last
    active data domain may go only after the ISO/export domains."""
    sd = _sd(tx, sd_id)
    if sd.data_center_id is None:
        raise DomainError(
            "Cannot deactivate Storage Domain. The Storage Domain is not attached to a Data Center."
        )
    if sd.status == SD.MAINTENANCE:
        raise DomainError(
            "Cannot deactivate Storage Domain. Storage Domain is already in maintenance."
        )
    if sd.status not in (SD.ACTIVE, SD.INACTIVE):
        raise DomainError(
            f"Cannot deactivate Storage Domain. Storage Domain status is {sd.status}."
        )
    dc_id = sd.data_center_id
    if sd.master:
        others = [
            o
            for o in current_all(tx, StorageDomain)
            if o.data_center_id == dc_id and o.id != sd_id and o.status == SD.ACTIVE
        ]
        if others and not any(o.domain_type == StorageDomainType.DATA for o in others):
            raise DomainError(
                "Cannot deactivate Master Data Domain while there are ISO/Export domains "
                "active in the Data Center. Please deactivate the ISO/Export domains first."
            )
    running = _vms_with_disks_on(tx, sd_id)
    if running:
        raise DomainError(
            "Cannot deactivate Storage Domain. The following VMs are running with disks on "
            "this domain: " + ", ".join(running) + "."
        )
    _set_status(tx, sd, SD.MAINTENANCE, "deactivate")
    refresh_data_center(tx, dc_id)


def detach_storage_domain(tx: Tx, sd_id: UUID) -> None:
    sd = _sd(tx, sd_id)
    if sd.data_center_id is None:
        raise DomainError(
            "Cannot detach Storage Domain. The Storage Domain is not attached to a Data Center."
        )
    if sd.status != SD.MAINTENANCE:
        raise DomainError("Cannot detach Storage Domain. Storage Domain is not in maintenance.")
    dc_id = sd.data_center_id
    others = [
        o for o in current_all(tx, StorageDomain) if o.data_center_id == dc_id and o.id != sd_id
    ]
    if sd.master and others:
        raise DomainError(
            "Cannot detach the master Storage Domain while other Storage Domains are attached "
            "to the Data Center."
        )
    if not _up_hosts(tx, dc_id) and not sd.master:
        raise DomainError(
            "Cannot detach Storage Domain. There is no active Host in the Data Center."
        )
    tx.emit(StorageDomainDetached, sd_id, data_center_id=None, status=SD.UNATTACHED, master=False)
    refresh_data_center(tx, dc_id)


def remove_storage_domain(tx: Tx, sd_id: UUID, *, force: bool = False) -> None:
    """Removes an unattached domain; ``force`` (destroy) also one still attached, as long
    as it is not active."""
    sd = _sd(tx, sd_id)
    if sd.data_center_id is not None:
        if not force:
            raise DomainError(
                "Cannot remove Storage Domain. The Storage Domain is attached to a Data "
                "Center. Detach it first."
            )
        if sd.status == SD.ACTIVE:
            raise DomainError(
                "Cannot destroy Storage Domain. The Storage Domain is active; move it to "
                "maintenance first."
            )
        if sd.master and any(
            o.data_center_id == sd.data_center_id and o.id != sd_id
            for o in current_all(tx, StorageDomain)
        ):
            raise DomainError(
                "Cannot destroy the master Storage Domain from the Data Center without another "
                "active Storage Domain to take its place. Either activate another Storage "
                "Domain in the Data Center, or remove the Data Center."
            )

    disks = sorted(
        d.name for d in tx.engine.all(Disk) if sd_id in (d.storage_domain_id, d.move_target_id)
    )
    if disks:
        raise DomainError(
            "Cannot remove Storage Domain. The Storage Domain contains Disks: "
            + ", ".join(disks)
            + ". Remove or move them first."
        )
    remove_object_permissions(tx, sd_id)
    tx.emit(StorageDomainRemoved, sd_id)
    if sd.data_center_id is not None:
        refresh_data_center(tx, sd.data_center_id)


def _check_connection(storage_type: StorageType, address: str, path: str) -> None:
    needs_address = storage_type in (StorageType.NFS, StorageType.GLUSTERFS, StorageType.ISCSI)
    needs_path = storage_type in FILE_TYPES
    if needs_address and not address:
        raise DomainError(
            f"Cannot add Storage Domain. A {storage_type} Storage Domain needs an address.",
            field="address",
        )
    if needs_path and not path:
        raise DomainError(
            f"Cannot add Storage Domain. A {storage_type} Storage Domain needs a path.",
            field="path",
        )
    if storage_type in (StorageType.NFS, StorageType.LOCALFS) and not path.startswith("/"):
        raise DomainError(
            "Cannot add Storage Domain. The path must be absolute (start with '/').",
            field="path",
        )
    if storage_type == StorageType.NFS and (":" in address or "/" in address or " " in address):
        raise DomainError(
            "Cannot add Storage Domain. The NFS address must be a host name or IP address.",
            field="address",
        )
    if storage_type == StorageType.FCP and (address or path):
        raise DomainError(
            "Cannot add Storage Domain. A fcp Storage Domain takes neither address nor path.",
            field="address" if address else "path",
        )


def _same_connection(sd: StorageDomain, storage_type: StorageType, address: str, path: str) -> bool:
    if storage_type not in FILE_TYPES or sd.storage_type not in FILE_TYPES:
        return False
    return (sd.address, sd.path.rstrip("/") or "/") == (address, path.rstrip("/") or "/")


def _sd(tx: Tx, sd_id: UUID) -> StorageDomain:

    return get_current(tx, StorageDomain, sd_id, field="storage_domain")


def _set_status(tx: Tx, sd: StorageDomain, status: StorageDomainStatus, action: str) -> None:
    if sd.status == status:
        return
    if status not in SD_TRANSITIONS[sd.status]:
        raise DomainError(f"Cannot {action} Storage Domain. Storage Domain status is {sd.status}.")
    tx.emit(StorageDomainStatusChanged, sd.id, status=status)


def _has_active_master(tx: Tx, dc_id: UUID) -> bool:
    return any(
        o.master and o.status == SD.ACTIVE and o.data_center_id == dc_id
        for o in current_all(tx, StorageDomain)
    )


def check_named_data_center(tx: Tx, sd_id: UUID, dc_id: UUID | None) -> None:
    """``datacenters/{dc}/storagedomains/{sd}`` names a domain of that data center."""
    sd = tx.engine.get(StorageDomain, sd_id)
    if dc_id is not None and sd.data_center_id != dc_id:
        raise NotFound(f"Entity not found: Storage Domain: id={sd_id}", field="data_center_id")


def check_removing_host(tx: Tx, host_id: UUID, sd_id: UUID) -> None:
    """The host a removal names must be up, and of the domain's data center when it is
    attached, to reach the storage."""
    h = tx.engine.get(Host, host_id, field="host")
    if h.status != HostStatus.UP:
        raise DomainError(f"Cannot remove Storage Domain. Host {h.name} is not up.", field="host")
    dc_id = tx.engine.get(StorageDomain, sd_id).data_center_id
    cluster = current(tx, Cluster, h.cluster_id)
    if dc_id is not None and (cluster is None or cluster.data_center_id != dc_id):
        raise DomainError(
            f"Cannot remove Storage Domain. Host {h.name} is not in the Storage Domain's "
            "Data Center.",
            field="host",
        )
