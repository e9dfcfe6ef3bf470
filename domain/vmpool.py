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

from domain.base import Aggregate, DomainError, Event, InvalidInput, Tx
from domain.disk import Disk, discard_disk
from domain.statuses import VM_ON_HOST, DiskStatus, VmStatus
from domain.template import Template
from domain.vm import (
    DiskAttachment,
    SnapshotType,
    Vm,
    VmUpdated,
    _locked,
    add_vm,
    cluster_dc,
    disk_layers,
    get_vm,
    remove_vm,
    shutdown_vm,
    start_vm,
    stop_vm,
    template_disk_attachments,
)

MAX_POOL_SIZE = 1000
# The statuses of a VM that can be handed out, best first.
_ALLOCATABLE = (VmStatus.UP, VmStatus.POWERING_UP, VmStatus.WAIT_FOR_LAUNCH, VmStatus.DOWN)
# The statuses a removed user's VM is shut down from (the others are powered off).
_SHUTDOWN_FROM = (VmStatus.UP, VmStatus.POWERING_UP, VmStatus.REBOOT_IN_PROGRESS, VmStatus.PAUSED)


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


def _check_counts(action: str, size: int, prestarted: int, max_user_vms: int) -> None:
    if not 1 <= size <= MAX_POOL_SIZE:
        raise InvalidInput(f"Pool size must be between 1 and {MAX_POOL_SIZE}.", field="size")
    if prestarted < 0:
        raise InvalidInput("prestarted_vms must not be negative.", field="prestarted_vms")
    if prestarted > size:
        raise DomainError(
            f"Cannot {action} VM-Pool. Prestarted VMs cannot exceed the number of VMs in the "
            "VM-Pool.",
            field="prestarted_vms",
        )
    if max_user_vms < 1:
        raise InvalidInput("max_user_vms must be at least 1.", field="max_user_vms")


def add_vm_pool(
    tx: Tx,
    *,
    name: str,
    cluster_id: UUID,
    template_id: UUID,
    size: int,
    prestarted_vms: int = 0,
    max_user_vms: int = 1,
    stateless: bool = True,
    pool_type: PoolType = PoolType.AUTOMATIC,
    description: str = "",
    id: UUID | None = None,
) -> UUID:
    tx.engine.require_unique_name(("vm_pool",), name, label="VM-Pool")
    _check_counts("add", size, prestarted_vms, max_user_vms)
    cluster_dc(tx, cluster_id)
    tx.engine.get(Template, template_id, field="template")
    pool_id = tx.new_id(id)
    tx.emit(
        VmPoolAdded,
        pool_id,
        name=name,
        description=description,
        cluster_id=cluster_id,
        template_id=template_id,
        prestarted_vms=prestarted_vms,
        max_user_vms=max_user_vms,
        stateless=stateless,
        pool_type=pool_type,
        created_at=tx.now.isoformat(),
    )
    _grow(tx, pool_id, name, cluster_id, template_id, stateless, first=1, count=size)
    return pool_id


def _grow(
    tx: Tx,
    pool_id: UUID,
    name: str,
    cluster_id: UUID,
    template_id: UUID,
    stateless: bool,
    *,
    first: int,
    count: int,
) -> list[UUID]:
    made = []
    for i in range(first, first + count):
        vm_name = f"{name}-{i}"
        if tx.engine.by_name(("vm",), vm_name) is not None:
            raise DomainError(
                f"Cannot add VM-Pool. The VM name {vm_name} is already in use.", field="name"
            )
        vm_id = add_vm(
            tx,
            name=vm_name,
            cluster_id=cluster_id,
            template_id=template_id,
            stateless=stateless,
            pool_id=pool_id,
        )
        tx.emit(VmPoolVmAdded, pool_id, vm_id=vm_id)
        made.append(vm_id)
    return made


def get_pool(tx: Tx, pool_id: UUID) -> VmPool:
    return tx.engine.get(VmPool, pool_id, field="vm_pool")


def update_vm_pool(
    tx: Tx,
    pool_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    size: int | UnsetType = UNSET,
    prestarted_vms: int | UnsetType = UNSET,
    max_user_vms: int | UnsetType = UNSET,
) -> list[UUID]:
    """Changes the pool; a larger ``size`` adds VMs (a pool never shrinks this way)."""
    pool = get_pool(tx, pool_id)
    new_size = pool.size if size is UNSET else size
    if new_size < pool.size:
        raise DomainError(
            "Cannot edit VM-Pool. Decreasing the number of VMs is not supported; detach or "
            "remove VMs instead.",
            field="size",
        )
    _check_counts(
        "edit",
        new_size,
        pool.prestarted_vms if prestarted_vms is UNSET else prestarted_vms,
        pool.max_user_vms if max_user_vms is UNSET else max_user_vms,
    )
    if name is not UNSET and name != pool.name:
        tx.engine.require_unique_name(("vm_pool",), name, label="VM-Pool", own_id=pool_id)
    changes = {
        k: v
        for k, v in dict(
            name=name,
            description=description,
            prestarted_vms=prestarted_vms,
            max_user_vms=max_user_vms,
        ).items()
        if v is not UNSET and v != getattr(pool, k)
    }
    if changes:
        tx.emit(VmPoolUpdated, pool_id, **changes)
    if new_size > pool.size:
        return _grow(
            tx,
            pool_id,
            pool.name if name is UNSET else name,
            pool.cluster_id,
            pool.template_id,
            pool.stateless,
            first=pool.next_index,
            count=new_size - pool.size,
        )
    return []


def allocatable(engine: Any, vm: Vm) -> bool:
    """Whether a free pool VM can be handed out: in a status of ``_ALLOCATABLE`` (not
    ``image_locked``, which a revert is), no snapshot operation running, every disk ok
    (a revert whose disk creation failed leaves it illegal: the VM waits for an
    administrator)."""
    if vm.status not in _ALLOCATABLE or vm.snapshot_locked():
        return False
    for att in vm.disk_attachments:
        disk = engine.find(Disk, att.disk_id)
        if disk is None or disk.status != DiskStatus.OK:
            return False
    return True


def allocate_vm(tx: Tx, pool_id: UUID, user_id: UUID, *, start: bool = True) -> UUID:
    """Hands a free VM of the pool to ``user_id`` (running ones first) and runs it."""
    from domain.user import User

    pool = get_pool(tx, pool_id)
    tx.engine.get(User, user_id, field="user")
    if len(pool.vms_of(user_id)) >= pool.max_user_vms:
        raise DomainError(
            "Cannot allocate and run VM from VM-Pool. The user has reached the maximum number "
            "of VMs allowed from this VM-Pool."
        )
    assigned = pool.assigned()
    free = [
        vm
        for vm_id in pool.vm_ids
        if vm_id not in assigned
        and (vm := tx.engine.find(Vm, vm_id)) is not None
        and allocatable(tx.engine, vm)
    ]
    if not free:
        raise DomainError(
            "Cannot allocate and run VM from VM-Pool. There are no available VMs in the VM-Pool."
        )
    # A prestarted VM first (up, then on its way up), then the pool's order.
    chosen = sorted(free, key=lambda v: _ALLOCATABLE.index(v.status))[0]
    if start and chosen.status == VmStatus.DOWN:
        start_vm(tx, chosen.id)
    tx.emit(VmPoolVmAllocated, pool_id, vm_id=chosen.id, user_id=user_id)
    _grant_user(tx, chosen.id, user_id)
    return chosen.id


def _user_role_grants(tx: Tx, vm_id: UUID, user_id: UUID) -> tuple[UUID | None, list[UUID]]:
    """UserRole's id (None before first start) and the user's UserRole permissions on the
    VM."""
    from domain.permission import Permission
    from domain.role import BUILTIN_BY_NAME, Role

    role_id = BUILTIN_BY_NAME["UserRole"].id
    if tx.engine.find(Role, role_id) is None:
        return None, []
    perms = [
        p.id
        for p in tx.engine.all(Permission)
        if p.role_id == role_id and p.user_id == user_id and p.object_id == vm_id
    ]
    return role_id, perms


def _grant_user(tx: Tx, vm_id: UUID, user_id: UUID) -> None:
    """The user gets UserRole on the VM it was handed, as oVirt's allocation does (that is
    what lets it see and use the VM)."""
    from domain.permission import add_permission

    role_id, existing = _user_role_grants(tx, vm_id, user_id)
    if role_id is not None and not existing:
        add_permission(
            tx,
            role_id=role_id,
            user_id=user_id,
            object_kind="vm",
            object_id=vm_id,
            check_object=False,
        )


def _revoke_user(tx: Tx, pool: VmPool, vm_id: UUID) -> None:
    """The VM goes back to the pool: its user loses the UserRole the allocation gave."""
    from domain.permission import PermissionRemoved

    user_id = pool.assigned().get(vm_id)
    if user_id is not None:
        for perm_id in _user_role_grants(tx, vm_id, user_id)[1]:
            tx.emit(PermissionRemoved, perm_id)


def vms_to_prestart(engine: Any, pool_id: UUID) -> list[UUID]:
    """The pool's down, unassigned VMs the prestart policy should run so that
    ``prestarted_vms`` of them are up (or on their way up)."""
    from domain.statuses import VM_RUNNING

    pool = engine.get(VmPool, pool_id, field="vm_pool")
    assigned = pool.assigned()
    free = [
        v
        for vm_id in pool.vm_ids
        if vm_id not in assigned and (v := engine.find(Vm, vm_id)) is not None
    ]
    running = sum(1 for v in free if v.status in VM_RUNNING)
    down = [v.id for v in free if v.status == VmStatus.DOWN and allocatable(engine, v)]
    return down[: max(0, pool.prestarted_vms - running)]


def reverts(pool: VmPool) -> bool:
    """Whether the pool reverts the VMs it takes back: automatic and stateless pools do;
    manual pools and stateful ones keep the user's changes."""
    return pool.pool_type == PoolType.AUTOMATIC and pool.stateless


def _revert(tx: Tx, pool: VmPool, vm_id: UUID) -> None:
    """Takes a down VM back to the template's state (see the module's docstring)."""
    vm = get_vm(tx, vm_id)
    template = tx.engine.find(Template, pool.template_id)
    template_disks = (
        [d for d_id in template.disk_ids if (d := tx.engine.find(Disk, d_id)) is not None]
        if template is not None
        else []
    )
    if not vm.disk_attachments and not template_disks:
        return  # nothing of the user's to drop, nothing to make
    made_from = {d.id for d in template_disks}
    removed, detached = [], []
    for att in vm.disk_attachments:
        disk = tx.engine.find(Disk, att.disk_id)
        if disk is None:
            continue
        shared = any(v.id != vm_id and v.attachment(disk.id) is not None for v in tx.engine.all(Vm))
        if disk.base_disk_id in made_from and not shared:
            removed.append(disk.id)
        else:
            detached.append(disk.id)
    for disk_id in removed:  # the user's data goes, for sure (resumed after a restart)
        discard_disk(tx, disk_id, (disk_id, *disk_layers(vm, disk_id)))
    attachments = template_disk_attachments(tx, template_disks)
    tx.emit(
        VmPoolRevertStarted,
        vm_id,
        pool_id=pool.id,
        disk_attachments=tuple(attachments),
        removed_disk_ids=tuple(removed),
        detached_disk_ids=tuple(detached),
        status=VmStatus.IMAGE_LOCKED if attachments else VmStatus.DOWN,
    )


def return_vm(tx: Tx, pool_id: UUID, vm_id: UUID) -> None:
    """The user gives the VM back to the pool (it must be down); an automatic pool
    reverts it."""
    pool = get_pool(tx, pool_id)
    if vm_id not in pool.assigned():
        raise DomainError("Cannot return VM to VM-Pool. The VM is not allocated to a user.")
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot return VM to VM-Pool. VM is running.")
    if reverts(pool):
        locked = [
            d.name
            for a in vm.disk_attachments
            if (d := tx.engine.find(Disk, a.disk_id)) is not None and d.status == DiskStatus.LOCKED
        ]
        if locked:
            raise DomainError(
                "Cannot return VM to VM-Pool: The following disks are locked: "
                f"{', '.join(locked)}. Please try again in a few minutes."
            )
        if vm.snapshot_locked():
            raise DomainError(
                "Cannot return VM to VM-Pool. The VM is performing an operation on a Snapshot. "
                "Please wait for the operation to finish, and try again."
            )
    _revoke_user(tx, pool, vm_id)
    tx.emit(VmPoolVmReleased, pool_id, vm_id=vm_id)
    if reverts(pool):
        _revert(tx, pool, vm_id)


def release_user(tx: Tx, user_id: UUID) -> None:
    """The user is being removed: the pool VMs assigned to it are no longer (its
    permissions go with the user). A manual pool's VMs stay as they are, free for the next
    user once down; an automatic pool reverts a down one now and takes a running one down
    (shut down, reverted once down), so that nobody is handed the removed user's session."""
    for pool in sorted(tx.engine.all(VmPool), key=lambda p: p.id):
        for a in pool.assignments:
            if a.user_id != user_id:
                continue
            tx.emit(VmPoolVmReleased, pool.id, vm_id=a.vm_id)
            vm = tx.engine.find(Vm, a.vm_id)
            if vm is None or not reverts(pool):
                continue
            if vm.status == VmStatus.DOWN:
                _revert(tx, pool, vm.id)
            elif vm.status in _SHUTDOWN_FROM:
                # powering_down: not handed out again before it is down and reverted
                shutdown_vm(tx, vm.id, reason="The VM-Pool user was removed")
            elif vm.status in VM_ON_HOST:
                stop_vm(tx, vm.id, reason="The VM-Pool user was removed")


def vm_went_down(tx: Tx, pool_id: UUID, vm_id: UUID, *, was: VmStatus | None = None) -> None:
    """An automatic pool takes its VM back as soon as it is down and, when stateless,
    reverts it: a VM that was handed out, or that ran at all (``was``, its status before;
    a launch that failed before the guest ran leaves nothing to revert)."""
    pool = tx.engine.find(VmPool, pool_id)
    if pool is None or pool.pool_type != PoolType.AUTOMATIC:
        return
    assigned = vm_id in pool.assigned()
    if assigned:
        _revoke_user(tx, pool, vm_id)
        tx.emit(VmPoolVmReleased, pool_id, vm_id=vm_id)
    if reverts(pool) and (assigned or was != VmStatus.WAIT_FOR_LAUNCH):
        _revert(tx, pool, vm_id)


def detach_vm(tx: Tx, pool_id: UUID, vm_id: UUID) -> None:
    """Takes a down VM out of the pool; it lives on as an ordinary VM."""
    pool = get_pool(tx, pool_id)
    vm = get_vm(tx, vm_id)
    if vm.pool_id != pool_id:
        raise DomainError("Cannot detach VM from VM-Pool. The VM is not in this VM-Pool.")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("detach")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot detach VM from VM-Pool. VM is running.")
    if pool.size <= 1:
        raise DomainError("Cannot detach VM from VM-Pool. A VM-Pool must keep at least one VM.")
    _revoke_user(tx, pool, vm_id)
    tx.emit(VmPoolVmDetached, pool_id, vm_id=vm_id)
    tx.emit(VmUpdated, vm_id, pool_id=None)


def remove_vm_pool(tx: Tx, pool_id: UUID) -> None:
    """Removes the pool, its VMs (which must all be down) and the permissions on it."""
    from domain.permission import remove_object_permissions

    pool = get_pool(tx, pool_id)
    vms = [v for vm_id in pool.vm_ids if (v := tx.engine.find(Vm, vm_id)) is not None]
    for vm in vms:
        if vm.status == VmStatus.IMAGE_LOCKED:
            raise DomainError(
                "Cannot remove VM-Pool: VM is locked. Please try again in a few minutes."
            )
        if vm.status != VmStatus.DOWN:
            raise DomainError("Cannot remove VM-Pool. VM is running.")
    for vm in vms:
        remove_vm(tx, vm.id, force=True)
    remove_object_permissions(tx, pool_id)
    tx.emit(VmPoolRemoved, pool_id)


__all__ = [
    "PoolType",
    "VmPool",
    "VmPoolRevertStarted",
    "add_vm_pool",
    "allocatable",
    "allocate_vm",
    "detach_vm",
    "release_user",
    "remove_vm_pool",
    "return_vm",
    "reverts",
    "update_vm_pool",
]
