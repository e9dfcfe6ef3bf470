"""Role and permission commands, and recording a denied action for the audit feed."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain import permission, role
from domain.base import Tx
from domain.rules import access_rules

Permit = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Kind = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class AddRole(Command, frozen=True, kw_only=True):
    name: Name
    description: ShortText = ""
    administrative: bool = False
    permits: list[Permit] = []
    view_children: bool = True
    id: UUID | None = None


class UpdateRole(Command, frozen=True, kw_only=True):
    role_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    administrative: bool | UnsetType = UNSET
    permits: list[Permit] | UnsetType = UNSET
    view_children: bool | UnsetType = UNSET


class RemoveRole(Command, frozen=True, kw_only=True):
    role_id: UUID


class AddPermission(Command, frozen=True, kw_only=True):
    """Gives ``role_id`` to a user or a group on an object; ``object_kind="system"`` (the
    default) means the whole system."""

    role_id: UUID
    user_id: UUID | None = None
    group_id: UUID | None = None
    object_kind: Kind = permission.SYSTEM
    object_id: UUID | None = None
    id: UUID | None = None


class RemovePermission(Command, frozen=True, kw_only=True):
    permission_id: UUID


class RecordPermissionDenied(Command, frozen=True, kw_only=True):
    """The API refused ``user_id`` an action for lack of ``permit`` on an object."""

    user_id: UUID
    permit: Permit
    action: ShortText = ""
    object_kind: Kind = permission.SYSTEM
    object_id: UUID | None = None


@handles(AddRole)
def _add_role(tx: Tx, c: AddRole) -> UUID:
    return role.add_role(
        tx,
        name=c.name,
        description=c.description,
        administrative=c.administrative,
        permits=tuple(c.permits),
        view_children=c.view_children,
        id=c.id,
    )


@handles(UpdateRole)
def _update_role(tx: Tx, c: UpdateRole) -> None:
    access_rules.update_role(
        tx,
        c.role_id,
        name=c.name,
        description=c.description,
        administrative=c.administrative,
        permits=UNSET if c.permits is UNSET else tuple(c.permits),
        view_children=c.view_children,
    )


@handles(RemoveRole)
def _remove_role(tx: Tx, c: RemoveRole) -> None:
    access_rules.remove_role(tx, c.role_id)


@handles(AddPermission)
def _add_permission(tx: Tx, c: AddPermission) -> UUID:
    return access_rules.add_permission(
        tx,
        role_id=c.role_id,
        user_id=c.user_id,
        group_id=c.group_id,
        object_kind=c.object_kind,
        object_id=c.object_id,
        id=c.id,
        by=c.actor_id,
    )


@handles(RemovePermission)
def _remove_permission(tx: Tx, c: RemovePermission) -> None:
    access_rules.remove_permission(tx, c.permission_id, by=c.actor_id)


@handles(RecordPermissionDenied)
def _denied(tx: Tx, c: RecordPermissionDenied) -> bool:
    return access_rules.record_permission_denied(
        tx,
        c.user_id,
        c.permit,
        action=c.action,
        object_kind=c.object_kind,
        object_id=c.object_id,
    )
