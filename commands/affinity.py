"""Affinity group commands."""

from __future__ import annotations

from uuid import UUID

from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain.base import Tx
from domain.rules import affinity_rules


class AddAffinityGroup(Command, frozen=True, kw_only=True):
    name: Name
    cluster_id: UUID
    description: ShortText = ""
    positive: bool = True
    enforcing: bool = True
    vm_ids: tuple[UUID, ...] = ()
    host_ids: tuple[UUID, ...] = ()
    hosts_positive: bool = True
    hosts_enforcing: bool = False
    id: UUID | None = None


class UpdateAffinityGroup(Command, frozen=True, kw_only=True):
    affinity_group_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    positive: bool | UnsetType = UNSET
    enforcing: bool | UnsetType = UNSET
    vm_ids: tuple[UUID, ...] | UnsetType = UNSET
    host_ids: tuple[UUID, ...] | UnsetType = UNSET
    hosts_positive: bool | UnsetType = UNSET
    hosts_enforcing: bool | UnsetType = UNSET


class RemoveAffinityGroup(Command, frozen=True, kw_only=True):
    affinity_group_id: UUID


@handles(AddAffinityGroup)
def _add(tx: Tx, c: AddAffinityGroup) -> UUID:
    return affinity_rules.add_affinity_group(
        tx,
        name=c.name,
        cluster_id=c.cluster_id,
        description=c.description,
        positive=c.positive,
        enforcing=c.enforcing,
        vm_ids=c.vm_ids,
        host_ids=c.host_ids,
        hosts_positive=c.hosts_positive,
        hosts_enforcing=c.hosts_enforcing,
        id=c.id,
    )


@handles(UpdateAffinityGroup)
def _update(tx: Tx, c: UpdateAffinityGroup) -> None:
    affinity_rules.update_affinity_group(
        tx,
        c.affinity_group_id,
        name=c.name,
        description=c.description,
        positive=c.positive,
        enforcing=c.enforcing,
        vm_ids=c.vm_ids,
        host_ids=c.host_ids,
        hosts_positive=c.hosts_positive,
        hosts_enforcing=c.hosts_enforcing,
    )


@handles(RemoveAffinityGroup)
def _remove(tx: Tx, c: RemoveAffinityGroup) -> None:
    affinity_rules.remove_affinity_group(tx, c.affinity_group_id)
