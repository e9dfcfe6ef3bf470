"""VM pool commands: create (with its VMs), resize, allocate to users, detach, remove."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, ShortText
from commands.registry import handles
from domain import vmpool
from domain.base import Tx
from domain.rules import vmpool_rules
from domain.vmpool import PoolType

# Room for the "-N" suffix of the pool's VM names (VM names are at most 64 characters).
PoolName = Annotated[str, msgspec.Meta(min_length=1, max_length=59, pattern=r"^[\w.\-]+$")]
PoolSize = Annotated[int, msgspec.Meta(ge=1, le=vmpool.MAX_POOL_SIZE)]
Count = Annotated[int, msgspec.Meta(ge=0, le=vmpool.MAX_POOL_SIZE)]
UserVms = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class AddVmPool(Command, frozen=True, kw_only=True):
    name: PoolName
    cluster_id: UUID
    template_id: UUID
    size: PoolSize
    prestarted_vms: Count = 0
    max_user_vms: UserVms = 1
    stateless: bool = True
    pool_type: PoolType = PoolType.AUTOMATIC
    description: ShortText = ""
    id: UUID | None = None


class UpdateVmPool(Command, frozen=True, kw_only=True):
    vm_pool_id: UUID
    name: PoolName | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    size: PoolSize | UnsetType = UNSET
    prestarted_vms: Count | UnsetType = UNSET
    max_user_vms: UserVms | UnsetType = UNSET


class RemoveVmPool(Command, frozen=True, kw_only=True):
    vm_pool_id: UUID


class AllocateVm(Command, frozen=True, kw_only=True):
    """Gives a VM of the pool to a user and runs it (oVirt's allocatevm)."""

    vm_pool_id: UUID
    user_id: UUID
    start: bool = True


class ReturnVmToPool(Command, frozen=True, kw_only=True):
    vm_pool_id: UUID
    vm_id: UUID


class DetachVmFromPool(Command, frozen=True, kw_only=True):
    vm_pool_id: UUID
    vm_id: UUID


@handles(AddVmPool)
def _add(tx: Tx, c: AddVmPool) -> UUID:
    return vmpool_rules.add_vm_pool(
        tx,
        name=c.name,
        cluster_id=c.cluster_id,
        template_id=c.template_id,
        size=c.size,
        prestarted_vms=c.prestarted_vms,
        max_user_vms=c.max_user_vms,
        stateless=c.stateless,
        pool_type=c.pool_type,
        description=c.description,
        id=c.id,
    )


@handles(UpdateVmPool)
def _update(tx: Tx, c: UpdateVmPool) -> list[UUID]:
    return vmpool_rules.update_vm_pool(
        tx,
        c.vm_pool_id,
        name=c.name,
        description=c.description,
        size=c.size,
        prestarted_vms=c.prestarted_vms,
        max_user_vms=c.max_user_vms,
    )


@handles(RemoveVmPool)
def _remove(tx: Tx, c: RemoveVmPool) -> None:
    vmpool_rules.remove_vm_pool(tx, c.vm_pool_id)


@handles(AllocateVm)
def _allocate(tx: Tx, c: AllocateVm) -> UUID:
    return vmpool_rules.allocate_vm(tx, c.vm_pool_id, c.user_id, start=c.start)


@handles(ReturnVmToPool)
def _return(tx: Tx, c: ReturnVmToPool) -> None:
    vmpool_rules.return_vm(tx, c.vm_pool_id, c.vm_id)


@handles(DetachVmFromPool)
def _detach(tx: Tx, c: DetachVmFromPool) -> None:
    vmpool_rules.detach_vm(tx, c.vm_pool_id, c.vm_id)
