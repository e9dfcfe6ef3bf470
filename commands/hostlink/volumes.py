"""Where a disk's volumes live on a file storage domain: pure path arithmetic over the
domain's objects, no host, no bus, no Engine.

A disk's base volume is named after the disk; every snapshot covering it puts a qcow2
layer named after the snapshot on top, so the active volume (``disk_leaf``) is derived
from the VM's snapshot list, never stored apart. Imports only ``domain``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.disk import Disk
from domain.statuses import SnapshotStatus
from domain.vm import SnapshotType, Vm


def volume_path(sd_root: str, sd_id: UUID, disk_id: UUID) -> str:
    """Where a disk's base volume lives on a file storage domain (volume id = disk id)."""
    return f"{sd_root}/{sd_id}/images/{disk_id}/{disk_id}"


def disk_leaf(vm: Vm, disk: Disk, root: str, *, before: UUID | None = None) -> str:
    """The disk's active volume: the layer of the newest settled snapshot covering it
    (only those older than ``before`` when given), else the disk's base volume. While a
    snapshot covering the disk is in preview (and no ``before``), the preview layer named
    after the ``saved`` preview-type record (see ``snapshots.Snapshots.preview``)."""
    if before is None:
        previewed = next((s for s in vm.snapshots if s.status == SnapshotStatus.IN_PREVIEW), None)
        saved = next((s for s in vm.snapshots if s.snapshot_type == SnapshotType.PREVIEW), None)
        if (
            previewed is not None
            and saved is not None
            and previewed.config is not None
            and disk.id in previewed.config.disk_ids
        ):
            return f"{root}/{disk.storage_domain_id}/images/{disk.id}/{saved.id}"
    volume = disk.id
    for snap in vm.snapshots:
        if before is not None and snap.id == before:
            break
        if snap.snapshot_type != SnapshotType.REGULAR or snap.config is None:
            continue
        if snap.status == SnapshotStatus.LOCKED and snap.operation == "create":
            continue
        if disk.id in snap.config.disk_ids:
            volume = snap.id
    return f"{root}/{disk.storage_domain_id}/images/{disk.id}/{volume}"


def image_format(disk_format: Any) -> Any:
    """qemu-img's name for a disk's format ("cow" -> qcow2, else raw)."""
    return "qcow2" if str(disk_format) == "cow" else "raw"
