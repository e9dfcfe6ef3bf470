"""Virtual disks: images on a data storage domain, floating or attached to VMs.

A disk is ``locked`` while the host side works on its image (create, copy, extend,
move) and becomes ``ok`` when the host reports the operation done (``illegal`` when a
create or copy failed). Attachments to VMs live in the Vm aggregate.

The infrastructure objects (hosts, storage domains, networks, vNIC profiles) belong
to another area; this module reads them by ``KIND`` and the attribute names of
docs/model.md only, through the small helpers below, which the compute modules share.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, InvalidInput, Tx
from domain.statuses import DiskStatus
from domain.values import GiB

MAX_DISK_SIZE = 1 << 50  # 1 PiB: far above anything a storage domain offers
FILE_STORAGE = frozenset({"nfs", "posixfs", "localfs", "glusterfs"})
BLOCK_STORAGE = frozenset({"iscsi", "fcp"})


class DiskFormat(StrEnum):
    RAW = "raw"
    COW = "cow"


def check_format(
    sd: Any, fmt: DiskFormat, sparse: bool, *, action: str = "add", type_: str = "Disk"
) -> None:
    """raw+sparse only on file domains; on block storage thin provisioning needs cow."""
    storage_type = str(getattr(sd, "storage_type", "nfs"))
    if fmt == DiskFormat.RAW and sparse and storage_type in BLOCK_STORAGE:
        raise DomainError(
            f"Cannot {action} {type_}. Disk configuration (RAW Sparse) is incompatible "
            "with the storage domain type.",
            field="sparse",
        )


def check_space(
    sd: Any, size: int, sparse: bool, *, action: str = "add", type_: str = "Disk"
) -> None:
    """oVirt's low-space rules, once the domain's space is known (reported by a host):
    a preallocated disk must fit, and nothing new goes on a domain below its critical
    space blocker (GiB)."""
    available = int(getattr(sd, "available", 0) or 0)
    if available + int(getattr(sd, "used", 0) or 0) <= 0:
        return  # space not reported yet
    blocker = int(getattr(sd, "critical_space_blocker", 0) or 0) * GiB
    if available < blocker or (not sparse and size > available):
        raise DomainError(
            f"Cannot {action} {type_}. Low disk space on Storage Domain {sd.name}.",
            field="storage_domain",
        )


# -- the aggregate ---------------------------------------------------------------------------


class Disk(Aggregate, frozen=True, kw_only=True):
    KIND = "disk"
    LABEL = "Disk"

    name: str
    description: str = ""
    provisioned_size: int
    actual_size: int = 0
    format: DiskFormat = DiskFormat.COW
    sparse: bool = True
    storage_domain_id: UUID
    status: DiskStatus = DiskStatus.LOCKED
    shareable: bool = False
    bootable: bool = False
    template_id: UUID | None = None
    base_disk_id: UUID | None = None
    # What the host side is doing to the image: "", create, copy, extend, move, remove.
    operation: str = ""
    move_target_id: UUID | None = None
    created_at: str = ""
    # While a discard runs (operation "remove"): the volumes to delete, base first.
    volume_ids: tuple[UUID, ...] = ()

    def name_scope(self) -> tuple[Any, ...] | None:
        return None  # aliases may repeat, as in oVirt


class DiskAdded(Event, frozen=True, kw_only=True):
    CREATES = "Disk"
    name: str
    description: str = ""
    provisioned_size: int
    format: DiskFormat
    sparse: bool
    storage_domain_id: UUID
    status: DiskStatus = DiskStatus.LOCKED
    shareable: bool = False
    bootable: bool = False
    template_id: UUID | None = None
    base_disk_id: UUID | None = None
    operation: str = "create"
    created_at: str = ""


class DiskUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    shareable: bool | UnsetType = UNSET
    bootable: bool | UnsetType = UNSET


class DiskExtendStarted(Event, frozen=True, kw_only=True):
    provisioned_size: int
    status: DiskStatus = DiskStatus.LOCKED
    operation: str = "extend"


class DiskMoveStarted(Event, frozen=True, kw_only=True):
    move_target_id: UUID
    status: DiskStatus = DiskStatus.LOCKED
    operation: str = "move"


class DiskDiscardStarted(Event, frozen=True, kw_only=True):
    """The disk's image is to be deleted by the host side (``volume_ids``: its volumes,
    base first, snapshot layers after); the disk goes once the host reports them gone."""

    volume_ids: tuple[UUID, ...]
    status: DiskStatus = DiskStatus.LOCKED
    operation: str = "remove"


class DiskOperationCompleted(Event, frozen=True, kw_only=True):
    """The host reports the image operation done: the disk is ok again."""

    operation: str
    actual_size: int | None = None
    storage_domain_id: UUID | None = None  # set when a move finished

    def evolve(self, agg: Any) -> Any:
        changes: dict[str, Any] = {
            "status": DiskStatus.OK,
            "operation": "",
            "move_target_id": None,
        }
        if self.actual_size is not None:
            changes["actual_size"] = self.actual_size
        if self.storage_domain_id is not None:
            changes["storage_domain_id"] = self.storage_domain_id
        return msgspec.structs.replace(agg, version=self.originator_version, **changes)


class DiskOperationFailed(Event, frozen=True, kw_only=True):
    """A create, copy or discard that failed leaves the disk illegal; a failed move or
    extend leaves it ok where it was."""

    operation: str
    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        failed_image = self.operation in ("create", "copy", "remove")
        status = DiskStatus.ILLEGAL if failed_image else DiskStatus.OK
        return msgspec.structs.replace(
            agg, version=self.originator_version, status=status, operation="", move_target_id=None
        )


class DiskRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- decisions --------------------------------------------------------------------------


def check_size(size: int, field: str = "provisioned_size") -> None:
    if size <= 0:
        raise InvalidInput("Disk size must be greater than zero.", field=field)
    if size > MAX_DISK_SIZE:
        raise InvalidInput("Disk size is too large.", field=field)


def copy_disk_image(
    tx: Tx,
    source: Disk,
    *,
    thin: bool,
    storage_domain_id: UUID | None = None,
    template_id: UUID | None = None,
    name: str | None = None,
    format: DiskFormat | None = None,
) -> UUID:
    """A new disk from ``source``: a thin layer over it (``base_disk_id``) or a full copy.

    Callers check the rules of their own action first (VM or template create).
    """
    target = storage_domain_id or source.storage_domain_id
    if thin:
        fmt, sparse, base = DiskFormat.COW, True, source.id
        target = source.storage_domain_id
    else:
        fmt = format or source.format
        sparse = source.sparse if fmt == source.format else fmt == DiskFormat.COW
        base = None
    disk_id = tx.new_id()
    tx.emit(
        DiskAdded,
        disk_id,
        name=name or source.name,
        description=source.description,
        provisioned_size=source.provisioned_size,
        format=fmt,
        sparse=sparse,
        storage_domain_id=target,
        shareable=source.shareable,
        bootable=source.bootable,
        template_id=template_id,
        base_disk_id=base,
        operation="copy",
        created_at=tx.now.isoformat(),
    )
    return disk_id


def check_extend(tx: Tx, disk: Disk, size: int) -> None:
    check_size(size)
    if size < disk.provisioned_size:
        raise DomainError(
            "Cannot edit Disk. Requested disk size is smaller than the current size.",
            field="provisioned_size",
        )
    if disk.template_id is not None:
        raise DomainError("Cannot edit Disk. The disk belongs to a Template.")
    if disk.status != DiskStatus.OK:
        raise DomainError(f"Cannot edit Disk. The disk is {disk.status.value}.")


def extend_disk(tx: Tx, disk_id: UUID, provisioned_size: int) -> None:
    """Grows the disk; it is locked until the host reports the image extended."""
    disk = tx.engine.get(Disk, disk_id, field="disk")
    if disk.status == DiskStatus.LOCKED:
        raise DomainError(
            f"Cannot edit Disk: The following disks are locked: {disk.name}. "
            "Please try again in a few minutes."
        )
    if provisioned_size == disk.provisioned_size:
        raise DomainError(
            "Cannot edit Disk. Requested disk size is the current size.",
            field="provisioned_size",
        )
    check_extend(tx, disk, provisioned_size)
    tx.emit(DiskExtendStarted, disk_id, provisioned_size=provisioned_size)


def discard_disk(tx: Tx, disk_id: UUID, volume_ids: tuple[UUID, ...]) -> None:
    """The disk (detached by the caller) is to go with its image: locked until the host
    reports its volumes deleted, then removed (``report_disk_operation``). Unlike a plain
    removal, whose volumes are deleted best effort, a discard is resumed after a Manager
    restart until the host confirms it (a pool revert drops a user's data this way)."""
    tx.emit(DiskDiscardStarted, disk_id, volume_ids=volume_ids or (disk_id,))


__all__ = [
    "Disk",
    "DiskAdded",
    "DiskDiscardStarted",
    "DiskFormat",
    "DiskRemoved",
    "discard_disk",
    "extend_disk",
]
