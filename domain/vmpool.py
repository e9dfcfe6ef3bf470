"""VM pools: ``size`` VMs from one template, handed out to users.

Creating a pool creates its VMs, named ``name-1`` .. ``name-N``. An automatic pool takes
a VM back when it goes down; a manual pool keeps it assigned until it is returned.
``assignments`` pairs vm_id -> user_id (a tuple of ``PoolAssignment``, ordered by time of
allocation; ``VmPool.assigned()`` gives it as a dict).

Reverting: a VM an automatic (stateless) pool takes back is reverted to its template's
state before anyone else can take it (``VmPoolRevertStarted``): the disks the pool made
for it are discarded (``discard_disk``: locked until the host reports their volumes,
snapshot layers included, deleted; then removed), fresh thin layers over the template's
disks are made the way a thin VM gets its disks (``template_disk_attachments``:
``DiskAdded`` -> the host link's CreateImage over the template's volume ->
``ReportDiskOperation``), and the VM is ``image_locked`` until they are reported created
(``VmImagesReady``). An image-locked VM, or one with a disk that is not ok, is never
handed out. A Manager restarted meanwhile finds the new disks and the discarded ones
locked and carries both out again (the host link resumes unfinished image operations).
Manual pools, and automatic pools that are not stateless (oVirt's stateful pools), keep
the user's changes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, Event, Tx
from domain.statuses import VmStatus
from domain.values import DiskAttachment, SnapshotType

MAX_POOL_SIZE = 1000


class PoolType(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class PoolAssignment(msgspec.Struct, frozen=True, kw_only=True):
    vm_id: UUID
    user_id: UUID


class VmPool(Aggregate, frozen=True, kw_only=True):
    KIND = "vm_pool"
    LABEL = "VM-Pool"

    name: str
    description: str = ""
    cluster_id: UUID
    template_id: UUID
    size: int = 0
    prestarted_vms: int = 0
    max_user_vms: int = 1
    stateless: bool = True
    pool_type: PoolType = PoolType.AUTOMATIC
    vm_ids: tuple[UUID, ...] = ()
    assignments: tuple[PoolAssignment, ...] = ()
    next_index: int = 1
    created_at: str = ""

    def assigned(self) -> dict[UUID, UUID]:
        """vm_id -> user_id."""
        return {a.vm_id: a.user_id for a in self.assignments}

    def vms_of(self, user_id: UUID) -> list[UUID]:
        return [a.vm_id for a in self.assignments if a.user_id == user_id]


class VmPoolAdded(Event, frozen=True, kw_only=True):
    CREATES = "VmPool"
    name: str
    description: str = ""
    cluster_id: UUID
    template_id: UUID
    prestarted_vms: int = 0
    max_user_vms: int = 1
    stateless: bool = True
    pool_type: PoolType = PoolType.AUTOMATIC
    created_at: str = ""


class VmPoolUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    prestarted_vms: int | UnsetType = UNSET
    max_user_vms: int | UnsetType = UNSET


class VmPoolVmAdded(Event, frozen=True, kw_only=True):
    vm_id: UUID

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg,
            version=self.originator_version,
            vm_ids=(*agg.vm_ids, self.vm_id),
            size=agg.size + 1,
            next_index=agg.next_index + 1,
        )


class VmPoolVmDetached(Event, frozen=True, kw_only=True):
    vm_id: UUID

    def evolve(self, agg: Any) -> Any:
        assignments = tuple(a for a in agg.assignments if a.vm_id != self.vm_id)
        return msgspec.structs.replace(
            agg,
            version=self.originator_version,
            vm_ids=tuple(v for v in agg.vm_ids if v != self.vm_id),
            size=agg.size - 1,
            assignments=assignments,
        )


class VmPoolVmAllocated(Event, frozen=True, kw_only=True):
    vm_id: UUID
    user_id: UUID

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg,
            version=self.originator_version,
            assignments=(
                *agg.assignments,
                PoolAssignment(vm_id=self.vm_id, user_id=self.user_id),
            ),
        )


class VmPoolVmReleased(Event, frozen=True, kw_only=True):
    vm_id: UUID

    def evolve(self, agg: Any) -> Any:
        assignments = tuple(a for a in agg.assignments if a.vm_id != self.vm_id)
        return msgspec.structs.replace(
            agg, version=self.originator_version, assignments=assignments
        )


class VmPoolRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


class VmPoolRevertStarted(Event, frozen=True, kw_only=True):
    """On the VM: its pool takes it back to the template's state. ``disk_attachments``
    are the fresh thin disks (locked until created); ``removed_disk_ids`` the pool's old
    disks (detached and discarded), ``detached_disk_ids`` other disks the user
    had attached (kept, floating). Snapshots other than the active one go with the old
    disks. ``status`` is ``image_locked`` while disks are to be created."""

    pool_id: UUID
    disk_attachments: tuple[DiskAttachment, ...] = ()
    removed_disk_ids: tuple[UUID, ...] = ()
    detached_disk_ids: tuple[UUID, ...] = ()
    status: VmStatus = VmStatus.IMAGE_LOCKED

    def evolve(self, agg: Any) -> Any:
        active = tuple(s for s in agg.snapshots if s.snapshot_type == SnapshotType.ACTIVE)
        return msgspec.structs.replace(
            agg,
            version=self.originator_version,
            disk_attachments=self.disk_attachments,
            snapshots=active,
            status=self.status,
        )


def get_pool(tx: Tx, pool_id: UUID) -> VmPool:
    return tx.engine.get(VmPool, pool_id, field="vm_pool")


def reverts(pool: VmPool) -> bool:
    """Whether the pool reverts the VMs it takes back: automatic and stateless pools do;
    manual pools and stateful ones keep the user's changes."""
    return pool.pool_type == PoolType.AUTOMATIC and pool.stateless


__all__ = [
    "PoolType",
    "VmPool",
    "VmPoolRevertStarted",
    "reverts",
]
