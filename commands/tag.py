"""Tag commands."""

from __future__ import annotations

from uuid import UUID

from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain import tag
from domain.base import Tx


class AddTag(Command, frozen=True, kw_only=True):
    name: Name
    description: ShortText = ""
    parent_id: UUID | None = None
    id: UUID | None = None


class UpdateTag(Command, frozen=True, kw_only=True):
    tag_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    parent_id: UUID | UnsetType | None = UNSET


class RemoveTag(Command, frozen=True, kw_only=True):
    tag_id: UUID


class AttachTag(Command, frozen=True, kw_only=True):
    tag_id: UUID
    object_id: UUID


class DetachTag(Command, frozen=True, kw_only=True):
    tag_id: UUID
    object_id: UUID


@handles(AddTag)
def _add(tx: Tx, c: AddTag) -> UUID:
    return tag.add_tag(tx, name=c.name, description=c.description, parent_id=c.parent_id, id=c.id)


@handles(UpdateTag)
def _update(tx: Tx, c: UpdateTag) -> None:
    tag.update_tag(tx, c.tag_id, name=c.name, description=c.description, parent_id=c.parent_id)


@handles(RemoveTag)
def _remove(tx: Tx, c: RemoveTag) -> None:
    tag.remove_tag(tx, c.tag_id)


@handles(AttachTag)
def _attach(tx: Tx, c: AttachTag) -> None:
    tag.attach_tag(tx, c.tag_id, c.object_id)


@handles(DetachTag)
def _detach(tx: Tx, c: DetachTag) -> None:
    tag.detach_tag(tx, c.tag_id, c.object_id)
