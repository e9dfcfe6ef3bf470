"""VM pools across VMs, templates, users and permissions: creating and growing a
pool from a template, allocating a VM to a user (started, with a UserRole permission),
the VMs to prestart, returning and releasing VMs, detaching a VM, removing the pool with
its VMs.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import DomainError, InvalidInput, Tx
from domain.disk import Disk
from domain.permission import remove_object_permissions
from domain.rules.access_rules import add_permission
from domain.rules.cluster_rules import cluster_dc
from domain.rules.vm_pool_return_rules import revert_to_template, revoke_pool_user, user_role_grants
from domain.rules.vm_rules import add_vm, remove_vm
from domain.rules.vm_run_rules import start_vm
from domain.statuses import VM_ON_HOST, VM_RUNNING, DiskStatus, VmStatus
from domain.template import Template
from domain.user import User
from domain.vm import Vm, VmUpdated, get_vm, locked_error, shutdown_vm, stop_vm
from domain.vmpool import (
    MAX_POOL_SIZE,
    PoolType,
    VmPool,
    VmPoolAdded,
    VmPoolRemoved,
    VmPoolUpdated,
    VmPoolVmAdded,
    VmPoolVmAllocated,
    VmPoolVmDetached,
    VmPoolVmReleased,
    get_pool,
    reverts,
)


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


def _grant_user(tx: Tx, vm_id: UUID, user_id: UUID) -> None:
    """The user gets UserRole on the VM it was handed, as oVirt's allocation does (that is
    what lets it see and use the VM)."""

    role_id, existing = user_role_grants(tx, vm_id, user_id)
    if role_id is not None and not existing:
        add_permission(
            tx,
            role_id=role_id,
            user_id=user_id,
            object_kind="vm",
            object_id=vm_id,
            check_object=False,
        )


def vms_to_prestart(engine: Any, pool_id: UUID) -> list[UUID]:
    """The pool's down, unassigned VMs the prestart policy should run so that
    ``prestarted_vms`` of them are up (or on their way up)."""

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
    revoke_pool_user(tx, pool, vm_id)
    tx.emit(VmPoolVmReleased, pool_id, vm_id=vm_id)
    if reverts(pool):
        revert_to_template(tx, pool, vm_id)


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
                revert_to_template(tx, pool, vm.id)
            elif vm.status in _SHUTDOWN_FROM:
                # powering_down: not handed out again before it is down and reverted
                shutdown_vm(tx, vm.id, reason="The VM-Pool user was removed")
            elif vm.status in VM_ON_HOST:
                stop_vm(tx, vm.id, reason="The VM-Pool user was removed")


def detach_vm(tx: Tx, pool_id: UUID, vm_id: UUID) -> None:
    """Takes a down VM out of the pool; it lives on as an ordinary VM."""
    pool = get_pool(tx, pool_id)
    vm = get_vm(tx, vm_id)
    if vm.pool_id != pool_id:
        raise DomainError("Cannot detach VM from VM-Pool. The VM is not in this VM-Pool.")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("detach")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot detach VM from VM-Pool. VM is running.")
    if pool.size <= 1:
        raise DomainError("Cannot detach VM from VM-Pool. A VM-Pool must keep at least one VM.")
    revoke_pool_user(tx, pool, vm_id)
    tx.emit(VmPoolVmDetached, pool_id, vm_id=vm_id)
    tx.emit(VmUpdated, vm_id, pool_id=None)


def remove_vm_pool(tx: Tx, pool_id: UUID) -> None:
    """Removes the pool, its VMs (which must all be down) and the permissions on it."""

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


# The statuses of a VM that can be handed out, best first.
_ALLOCATABLE = (VmStatus.UP, VmStatus.POWERING_UP, VmStatus.WAIT_FOR_LAUNCH, VmStatus.DOWN)


# The statuses a removed user's VM is shut down from (the others are powered off).
_SHUTDOWN_FROM = (VmStatus.UP, VmStatus.POWERING_UP, VmStatus.REBOOT_IN_PROGRESS, VmStatus.PAUSED)


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
