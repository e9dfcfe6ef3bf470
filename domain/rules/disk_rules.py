"""Disks against the storage domains, VMs and templates that hold them: creation on
an active data domain (with the owner's permission), edits and removal refused while a
VM or template needs the disk, the host's report that an image operation finished
(unlocking the VM or template whose images are then all settled), and the disk copies a
VM made from a template gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import DomainError, Tx
from domain.disk import (
    Disk,
    DiskAdded,
    DiskExtendStarted,
    DiskFormat,
    DiskMoveStarted,
    DiskOperationCompleted,
    DiskOperationFailed,
    DiskRemoved,
    DiskUpdated,
    check_extend,
    check_format,
    check_size,
    check_space,
    copy_disk_image,
)
from domain.permission import remove_object_permissions
from domain.rules.access_rules import grant_owner
from domain.statuses import DiskStatus, StorageDomainStatus, TemplateStatus, VmStatus
from domain.storage import StorageDomain, StorageDomainType
from domain.template import Template, TemplateImagesReady
from domain.values import DiskAttachment, DiskInterface
from domain.vm import Vm, VmImagesReady, detach_disk_unchecked, get_vm


def _attached_vms(engine: Any, disk_id: UUID) -> list[Any]:

    return [v for v in engine.all(Vm) if any(a.disk_id == disk_id for a in v.disk_attachments)]


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

    actor = tx.ctx.meta.actor_id
    if actor is not None:
        grant_owner(tx, actor, kind, obj_id)


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
        check_extend(tx, disk, provisioned_size)
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


def remove_disk(tx: Tx, disk_id: UUID) -> None:
    """Removes a disk (detaching it from VMs that are down)."""

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


def remove_disk_unchecked(tx: Tx, disk_id: UUID) -> None:
    """Removes the disk and the permissions given on it (callers checked the rules)."""

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


def template_disk_attachments(
    tx: Tx, disks: list[Disk], *, clone: bool = False, storage_domain_id: UUID | None = None
) -> list[DiskAttachment]:
    """A VM's own disks made from a template's ``disks`` (callers checked them): thin
    layers over them (``base_disk_id``) or full copies, locked until the host reports
    them created, attached as the template has them."""
    attachments = []
    for d in disks:
        new_disk = copy_disk_image(
            tx,
            d,
            thin=not clone,
            storage_domain_id=storage_domain_id if clone else None,
            name=d.name,
        )
        attachments.append(
            DiskAttachment(
                disk_id=new_disk, interface=DiskInterface.VIRTIO_SCSI, bootable=d.bootable
            )
        )
    return attachments


def vm_images_settled(tx: Tx, vm_id: UUID, *, changed: Mapping[UUID, bool]) -> None:
    """Called when a disk of an image-locked VM settles: once all have, the VM is down."""
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.IMAGE_LOCKED:
        return
    failed = []
    for att in vm.disk_attachments:
        if att.disk_id in changed:
            if not changed[att.disk_id]:
                failed.append(att.disk_id)
            continue
        disk = tx.engine.find(Disk, att.disk_id)
        if disk is None:
            continue
        if disk.status == DiskStatus.LOCKED:
            return
        if disk.status == DiskStatus.ILLEGAL:
            failed.append(att.disk_id)
    tx.emit(VmImagesReady, vm_id, failed_disk_ids=tuple(failed))


def template_images_settled(tx: Tx, template_id: UUID, *, changed: Mapping[UUID, bool]) -> None:
    template = tx.engine.find(Template, template_id)
    if template is None or template.status != TemplateStatus.LOCKED:
        return
    failed = []
    for disk_id in template.disk_ids:
        if disk_id in changed:
            if not changed[disk_id]:
                failed.append(disk_id)
            continue
        disk = tx.engine.find(Disk, disk_id)
        if disk is None:
            continue
        if disk.status == DiskStatus.LOCKED:
            return
        if disk.status == DiskStatus.ILLEGAL:
            failed.append(disk_id)
    tx.emit(
        TemplateImagesReady,
        template_id,
        status=TemplateStatus.ILLEGAL if failed else TemplateStatus.OK,
        failed_disk_ids=tuple(failed),
    )


def storage_domain_dc(engine: Any, sd_id: UUID | None) -> UUID | None:
    sd = engine.find(StorageDomain, sd_id)
    return sd.data_center_id if sd is not None else None


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
    sd = engine.get(StorageDomain, sd_id, field=field)
    if sd.domain_type != StorageDomainType.DATA:
        raise DomainError(
            f"Cannot {action} {type_}. The Storage Domain is not a data domain.", field=field
        )
    if data_center_id is not None and sd.data_center_id != data_center_id:
        raise DomainError(
            f"Cannot {action} {type_}. The Storage Domain is not in the VM's Data Center.",
            field=field,
        )
    if sd.data_center_id is None or sd.status != StorageDomainStatus.ACTIVE:
        raise DomainError(f"Cannot {action} {type_}. Storage Domain is not active.", field=field)
    return sd


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
