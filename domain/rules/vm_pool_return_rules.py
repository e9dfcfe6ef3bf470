"""What an automatic pool does with a VM that went down: the user's
permission on it is revoked, the VM goes back to the pool and, when stateless, its disks
revert to the template's.
"""

from __future__ import annotations

from uuid import UUID

from domain.base import Tx
from domain.disk import Disk, discard_disk
from domain.permission import Permission, PermissionRemoved
from domain.role import BUILTIN_BY_NAME, Role
from domain.rules.disk_rules import template_disk_attachments
from domain.statuses import VmStatus
from domain.template import Template
from domain.vm import Vm, disk_layers, get_vm
from domain.vmpool import PoolType, VmPool, VmPoolRevertStarted, VmPoolVmReleased, reverts


def revoke_pool_user(tx: Tx, pool: VmPool, vm_id: UUID) -> None:
    """The VM goes back to the pool: its user loses the UserRole the allocation gave."""

    user_id = pool.assigned().get(vm_id)
    if user_id is not None:
        for perm_id in user_role_grants(tx, vm_id, user_id)[1]:
            tx.emit(PermissionRemoved, perm_id)


def revert_to_template(tx: Tx, pool: VmPool, vm_id: UUID) -> None:
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


def vm_went_down(tx: Tx, pool_id: UUID, vm_id: UUID, *, was: VmStatus | None = None) -> None:
    """An automatic pool takes its VM back as soon as it is down and, when stateless,
    reverts it: a VM that was handed out, or that ran at all (``was``, its status before;
    a launch that failed before the guest ran leaves nothing to revert)."""
    pool = tx.engine.find(VmPool, pool_id)
    if pool is None or pool.pool_type != PoolType.AUTOMATIC:
        return
    assigned = vm_id in pool.assigned()
    if assigned:
        revoke_pool_user(tx, pool, vm_id)
        tx.emit(VmPoolVmReleased, pool_id, vm_id=vm_id)
    if reverts(pool) and (assigned or was != VmStatus.WAIT_FOR_LAUNCH):
        revert_to_template(tx, pool, vm_id)


def user_role_grants(tx: Tx, vm_id: UUID, user_id: UUID) -> tuple[UUID | None, list[UUID]]:
    """UserRole's id (None before first start) and the user's UserRole permissions on the
    VM."""

    role_id = BUILTIN_BY_NAME["UserRole"].id
    if tx.engine.find(Role, role_id) is None:
        return None, []
    perms = [
        p.id
        for p in tx.engine.all(Permission)
        if p.role_id == role_id and p.user_id == user_id and p.object_id == vm_id
    ]
    return role_id, perms
