"""Virtual disks: images on a data storage domain, floating or attached to VMs.

A disk is ``locked`` while the host side works on its image (create, copy, extend,
move) and becomes ``ok`` when the host reports the operation done (``illegal`` when a
create or copy failed). Attachments to VMs live in the Vm aggregate.

The infrastructure objects (hosts, storage domains, networks, vNIC profiles) belong
to another area; this module reads them by ``KIND`` and the attribute names of
docs/model.md only, through the small helpers below, which the compute modules share.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import AGGREGATE_TYPES, Aggregate, DomainError, Event, InvalidInput, NotFound, Tx
from domain.statuses import DiskStatus, StorageDomainStatus, VmStatus

GiB = 1 << 30
MAX_DISK_SIZE = 1 << 50  # 1 PiB: far above anything a storage domain offers
FILE_STORAGE = frozenset({"nfs", "posixfs", "localfs", "glusterfs"})
BLOCK_STORAGE = frozenset({"iscsi", "fcp"})


class DiskFormat(StrEnum):
    RAW = "raw"
    COW = "cow"


class DiskInterface(StrEnum):
    VIRTIO = "virtio"
    VIRTIO_SCSI = "virtio_scsi"
    IDE = "ide"
    SATA = "sata"


# -- reading the infrastructure areas by KIND ---------------------------------------------


def objects_of_kind(engine: Any, kind: str) -> Iterator[Any]:
    """Every live object whose aggregate class has this ``KIND`` ("host", ...)."""
    for cls in list(AGGREGATE_TYPES.values()):
        if kind == cls.KIND:
            yield from engine.all(cls)


def find_of_kind(engine: Any, kind: str, obj_id: UUID | None) -> Any | None:
    if obj_id is None:
        return None
    obj = engine.objects.get(obj_id)
    return obj if obj is not None and kind == obj.KIND else None


def get_of_kind(engine: Any, kind: str, obj_id: UUID, *, label: str, field: str) -> Any:
    obj = find_of_kind(engine, kind, obj_id)
    if obj is None:
        raise NotFound(f"{label} {obj_id} not found.", field=field)
    return obj


def storage_domain_dc(engine: Any, sd_id: UUID | None) -> UUID | None:
    sd = find_of_kind(engine, "storage_domain", sd_id)
    return getattr(sd, "data_center_id", None) if sd is not None else None


def require_active_data_domain(
    engine: Any,
    sd_id: UUID,
    *,
    action: str,
    type_: str,
    data_center_id: UUID | None = None,
    field: str = "storage_domain",
) -> Any:
    """The storage domain, when it is an active data domain (of ``data_center_id``)."""
    sd = get_of_kind(engine, "storage_domain", sd_id, label="Storage Domain", field=field)
    if str(getattr(sd, "domain_type", "data")) != "data":
        raise DomainError(
            f"Cannot {action} {type_}. The Storage Domain is not a data domain.", field=field
        )
    if data_center_id is not None and sd.data_center_id != data_center_id:
        raise DomainError(
            f"Cannot {action} {type_}. The Storage Domain is not in the VM's Data Center.",
            field=field,
        )
    if sd.data_center_id is None or getattr(sd, "status", None) != StorageDomainStatus.ACTIVE:
        raise DomainError(f"Cannot {action} {type_}. Storage Domain is not active.", field=field)
    return sd


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


def _attached_vms(engine: Any, disk_id: UUID) -> list[Any]:
    from domain.vm import Vm

    return [v for v in engine.all(Vm) if any(a.disk_id == disk_id for a in v.disk_attachments)]


def check_size(size: int, field: str = "provisioned_size") -> None:
    if size <= 0:
        raise InvalidInput("Disk size must be greater than zero.", field=field)
    if size > MAX_DISK_SIZE:
        raise InvalidInput("Disk size is too large.", field=field)


def add_disk(
    tx: Tx,
    *,
    name: str,
    provisioned_size: int,
    storage_domain_id: UUID,
    format: DiskFormat = DiskFormat.COW,
    sparse: bool = True,
    description: str = "",
    shareable: bool = False,
    bootable: bool = False,
    data_center_id: UUID | None = None,
    id: UUID | None = None,
) -> UUID:
    """A new blank (floating) disk; locked until the host reports the image created."""
    check_size(provisioned_size)
    sd = require_active_data_domain(
        tx.engine, storage_domain_id, action="add", type_="Disk", data_center_id=data_center_id
    )
    check_format(sd, format, sparse)
    check_space(sd, provisioned_size, sparse)
    if shareable and format == DiskFormat.COW:
        raise DomainError(
            "Cannot add Disk. Shareable disks must use the raw format.", field="shareable"
        )
    disk_id = tx.new_id(id)
    tx.emit(
        DiskAdded,
        disk_id,
        name=name,
        description=description,
        provisioned_size=provisioned_size,
        format=format,
        sparse=sparse,
        storage_domain_id=storage_domain_id,
        shareable=shareable,
        bootable=bootable,
        created_at=tx.now.isoformat(),
    )
    grant_creator(tx, "disk", disk_id)
    return disk_id


def grant_creator(tx: Tx, kind: str, obj_id: UUID) -> None:
    """The user who created a disk or template becomes its owner (DiskOperator,
    TemplateOwner), whoever it is, as oVirt's AddDisk and AddVmTemplate do. Disks made
    for a VM or a template from other images belong to that VM or template instead."""
    from domain.permission import grant_owner

    actor = tx.ctx.meta.actor_id
    if actor is not None:
        grant_owner(tx, actor, kind, obj_id)


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


def update_disk(
    tx: Tx,
    disk_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    shareable: bool | UnsetType = UNSET,
    bootable: bool | UnsetType = UNSET,
    provisioned_size: int | UnsetType = UNSET,
) -> None:
    disk = tx.engine.get(Disk, disk_id, field="disk")
    if disk.status == DiskStatus.LOCKED:
        raise DomainError(
            f"Cannot edit Disk: The following disks are locked: {disk.name}. "
            "Please try again in a few minutes."
        )
    if shareable is not UNSET and shareable != disk.shareable:
        if shareable and disk.format == DiskFormat.COW:
            raise DomainError(
                "Cannot edit Disk. Shareable disks must use the raw format.", field="shareable"
            )
        if not shareable and len(_attached_vms(tx.engine, disk_id)) > 1:
            raise DomainError(
                "Cannot edit Disk. The disk is attached to more than one VM.", field="shareable"
            )
    grow = provisioned_size is not UNSET and provisioned_size != disk.provisioned_size
    if grow:
        assert isinstance(provisioned_size, int)
        _check_extend(tx, disk, provisioned_size)
    changes = {
        k: v
        for k, v in dict(
            name=name, description=description, shareable=shareable, bootable=bootable
        ).items()
        if v is not UNSET and v != getattr(disk, k)
    }
    if changes:
        tx.emit(DiskUpdated, disk_id, **changes)
    if grow:
        tx.emit(DiskExtendStarted, disk_id, provisioned_size=provisioned_size)


def _check_extend(tx: Tx, disk: Disk, size: int) -> None:
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
    _check_extend(tx, disk, provisioned_size)
    tx.emit(DiskExtendStarted, disk_id, provisioned_size=provisioned_size)


def move_disk(tx: Tx, disk_id: UUID, storage_domain_id: UUID) -> None:
    disk = tx.engine.get(Disk, disk_id, field="disk")
    if disk.status != DiskStatus.OK:
        if disk.status == DiskStatus.LOCKED:
            raise DomainError(
                f"Cannot move Disk: The following disks are locked: {disk.name}. "
                "Please try again in a few minutes."
            )
        raise DomainError(f"Cannot move Disk. The disk is {disk.status.value}.")
    if storage_domain_id == disk.storage_domain_id:
        raise DomainError(
            "Cannot move Disk. The source and target storage domains are the same.",
            field="storage_domain",
        )
    if disk.template_id is not None:
        raise DomainError("Cannot move Disk. The disk belongs to a Template.")
    dc = storage_domain_dc(tx.engine, disk.storage_domain_id)
    sd = require_active_data_domain(
        tx.engine, storage_domain_id, action="move", type_="Disk", data_center_id=dc
    )
    check_format(sd, disk.format, disk.sparse, action="move")
    tx.emit(DiskMoveStarted, disk_id, move_target_id=storage_domain_id)


def remove_disk(tx: Tx, disk_id: UUID) -> None:
    """Removes a disk (detaching it from VMs that are down)."""
    from domain.template import Template
    from domain.vm import detach_disk_unchecked

    disk = tx.engine.get(Disk, disk_id, field="disk")
    if disk.status == DiskStatus.LOCKED:
        raise DomainError(
            f"Cannot remove Disk: The following disks are locked: {disk.name}. "
            "Please try again in a few minutes."
        )
    if disk.template_id is not None and tx.engine.find(Template, disk.template_id) is not None:
        raise DomainError("Cannot remove Disk. The disk belongs to a Template.")
    vms = _attached_vms(tx.engine, disk_id)
    for vm in vms:
        if vm.status != VmStatus.DOWN:
            raise DomainError("Cannot remove Disk. The disk is attached to a running VM.")
        if any(s.status != "ok" and s.snapshot_type != "active" for s in vm.snapshots):
            raise DomainError("Cannot remove Disk. VM is previewing a Snapshot.")
    for vm in vms:
        detach_disk_unchecked(tx, vm.id, disk_id)
    remove_disk_unchecked(tx, disk_id)


def discard_disk(tx: Tx, disk_id: UUID, volume_ids: tuple[UUID, ...]) -> None:
    """The disk (detached by the caller) is to go with its image: locked until the host
    reports its volumes deleted, then removed (``report_disk_operation``). Unlike a plain
    removal, whose volumes are deleted best effort, a discard is resumed after a Manager
    restart until the host confirms it (a pool revert drops a user's data this way)."""
    tx.emit(DiskDiscardStarted, disk_id, volume_ids=volume_ids or (disk_id,))


def remove_disk_unchecked(tx: Tx, disk_id: UUID) -> None:
    """Removes the disk and the permissions given on it (callers checked the rules)."""
    from domain.permission import remove_object_permissions

    remove_object_permissions(tx, disk_id)
    tx.emit(DiskRemoved, disk_id)


def report_disk_operation(
    tx: Tx,
    disk_id: UUID,
    *,
    ok: bool = True,
    actual_size: int | None = None,
    reason: str = "",
) -> None:
    """The host side reports that the image operation on a locked disk finished.

    Completing the last image of an image-locked VM or a locked template unlocks it; a
    completed discard removes the disk.
    """
    from domain.template import template_images_settled
    from domain.vm import vm_images_settled

    disk = tx.engine.get(Disk, disk_id, field="disk")
    if disk.status != DiskStatus.LOCKED or not disk.operation:
        raise DomainError(f"Disk {disk.name} has no image operation in progress.")
    op = disk.operation
    if op == "remove" and ok:
        remove_disk_unchecked(tx, disk_id)
        return
    if ok:
        tx.emit(
            DiskOperationCompleted,
            disk_id,
            operation=op,
            actual_size=actual_size,
            storage_domain_id=disk.move_target_id if op == "move" else None,
        )
    else:
        tx.emit(DiskOperationFailed, disk_id, operation=op, reason=reason)
    if op in ("create", "copy"):
        for vm in _attached_vms(tx.engine, disk_id):
            vm_images_settled(tx, vm.id, changed={disk_id: ok})
        if disk.template_id is not None:
            template_images_settled(tx, disk.template_id, changed={disk_id: ok})


__all__ = [
    "Disk",
    "DiskAdded",
    "DiskDiscardStarted",
    "DiskFormat",
    "DiskInterface",
    "DiskRemoved",
    "add_disk",
    "discard_disk",
    "extend_disk",
    "move_disk",
    "remove_disk",
    "report_disk_operation",
    "update_disk",
]
