"""Disk commands: floating disks, resize, move, removal, and the host's image reports."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, ShortText
from commands.registry import handles
from domain import disk
from domain.base import Tx
from domain.disk import DiskFormat
from domain.rules import disk_rules

DiskAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
DiskSize = Annotated[int, msgspec.Meta(gt=0, le=disk.MAX_DISK_SIZE)]


class AddDisk(Command, frozen=True, kw_only=True):
    """A floating disk (attach it with AttachDisk, or use AddVmDisk)."""

    name: DiskAlias
    provisioned_size: DiskSize
    storage_domain_id: UUID
    format: DiskFormat = DiskFormat.COW
    sparse: bool = True
    description: ShortText = ""
    shareable: bool = False
    bootable: bool = False
    id: UUID | None = None


class UpdateDisk(Command, frozen=True, kw_only=True):
    disk_id: UUID
    name: DiskAlias | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    shareable: bool | UnsetType = UNSET
    bootable: bool | UnsetType = UNSET
    provisioned_size: DiskSize | UnsetType = UNSET


class ExtendDisk(Command, frozen=True, kw_only=True):
    disk_id: UUID
    provisioned_size: DiskSize


class MoveDisk(Command, frozen=True, kw_only=True):
    disk_id: UUID
    storage_domain_id: UUID


class RemoveDisk(Command, frozen=True, kw_only=True):
    disk_id: UUID


class ReportDiskOperation(Command, frozen=True, kw_only=True):
    """The host side finished the image operation on a locked disk."""

    disk_id: UUID
    ok: bool = True
    actual_size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1000)] = ""


@handles(AddDisk)
def _add(tx: Tx, c: AddDisk) -> UUID:
    return disk_rules.add_disk(
        tx,
        name=c.name,
        provisioned_size=c.provisioned_size,
        storage_domain_id=c.storage_domain_id,
        format=c.format,
        sparse=c.sparse,
        description=c.description,
        shareable=c.shareable,
        bootable=c.bootable,
        id=c.id,
    )


@handles(UpdateDisk)
def _update(tx: Tx, c: UpdateDisk) -> None:
    disk_rules.update_disk(
        tx,
        c.disk_id,
        name=c.name,
        description=c.description,
        shareable=c.shareable,
        bootable=c.bootable,
        provisioned_size=c.provisioned_size,
    )


@handles(ExtendDisk)
def _extend(tx: Tx, c: ExtendDisk) -> None:
    disk.extend_disk(tx, c.disk_id, c.provisioned_size)


@handles(MoveDisk)
def _move(tx: Tx, c: MoveDisk) -> None:
    disk_rules.move_disk(tx, c.disk_id, c.storage_domain_id)


@handles(RemoveDisk)
def _remove(tx: Tx, c: RemoveDisk) -> None:
    disk_rules.remove_disk(tx, c.disk_id)


@handles(ReportDiskOperation)
def _report(tx: Tx, c: ReportDiskOperation) -> None:
    disk_rules.report_disk_operation(
        tx, c.disk_id, ok=c.ok, actual_size=c.actual_size, reason=c.reason
    )
