"""Tags: a named hierarchy (a tag may have a parent) attached to VMs, hosts, users,
groups and templates. Removing a tag removes its sub-tags, as oVirt does."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, Tx
from domain.current import current_all

TAGGABLE_KINDS = frozenset({"vm", "host", "user", "group", "template"})


class Tag(Aggregate, frozen=True, kw_only=True):
    KIND = "tag"
    LABEL = "Tag"

    name: str
    description: str = ""
    parent_id: UUID | None = None
    object_ids: tuple[UUID, ...] = ()


class TagAdded(Event, frozen=True, kw_only=True):
    CREATES = "Tag"
    name: str
    description: str = ""
    parent_id: UUID | None = None


class TagUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    parent_id: UUID | UnsetType | None = UNSET


class TagAttached(Event, frozen=True, kw_only=True):
    object_id: UUID

    def evolve(self, agg: Any) -> Any:
        ids = (*agg.object_ids, self.object_id)
        return msgspec.structs.replace(agg, version=self.originator_version, object_ids=ids)


class TagDetached(Event, frozen=True, kw_only=True):
    object_id: UUID

    def evolve(self, agg: Any) -> Any:
        ids = tuple(o for o in agg.object_ids if o != self.object_id)
        return msgspec.structs.replace(agg, version=self.originator_version, object_ids=ids)


class TagRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


def _check_parent(tx: Tx, tag_id: UUID | None, parent_id: UUID | None, action: str) -> None:
    if parent_id is None:
        return
    tx.engine.get(Tag, parent_id, field="parent")
    seen: set[UUID] = set()
    cur: UUID | None = parent_id
    while cur is not None and cur not in seen:
        if cur == tag_id:
            raise DomainError(
                f"Cannot {action} Tag. A Tag cannot be its own ancestor.", field="parent"
            )
        seen.add(cur)
        parent = tx.engine.find(Tag, cur)
        cur = parent.parent_id if parent is not None else None


def add_tag(
    tx: Tx,
    *,
    name: str,
    description: str = "",
    parent_id: UUID | None = None,
    id: UUID | None = None,
) -> UUID:
    tx.engine.require_unique_name(("tag",), name, label="Tag")
    _check_parent(tx, None, parent_id, "add")
    tag_id = tx.new_id(id)
    tx.emit(TagAdded, tag_id, name=name, description=description, parent_id=parent_id)
    return tag_id


def update_tag(
    tx: Tx,
    tag_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    parent_id: UUID | UnsetType | None = UNSET,
) -> None:
    tag = tx.engine.get(Tag, tag_id)
    if name is not UNSET and name != tag.name:
        other = tx.engine.by_name(("tag",), name)
        if other is not None and other != tag_id:
            raise DomainError("Cannot edit Tag. The Tag name is already in use.", field="name")
    if parent_id is not UNSET:
        _check_parent(tx, tag_id, parent_id, "edit")
    values = dict(name=name, description=description, parent_id=parent_id)
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(tag, k)}
    if changes:
        tx.emit(TagUpdated, tag_id, **changes)


def remove_tag(tx: Tx, tag_id: UUID) -> None:
    tx.engine.get(Tag, tag_id)
    tags = current_all(tx, Tag)
    doomed = [tag_id]
    i = 0
    while i < len(doomed):
        doomed.extend(t.id for t in tags if t.parent_id == doomed[i])
        i += 1
    for tid in reversed(doomed):  # children first
        tx.emit(TagRemoved, tid)


def attach_tag(tx: Tx, tag_id: UUID, object_id: UUID) -> None:
    tag = tx.engine.get(Tag, tag_id, field="tag")
    obj = tx.engine.objects.get(object_id)
    if obj is None:
        raise DomainError(f"Cannot attach Tag. Object {object_id} not found.", field="object")
    if obj.KIND not in TAGGABLE_KINDS:
        raise DomainError(f"Cannot attach Tag. A {obj.LABEL} cannot be tagged.", field="object")
    if object_id in tag.object_ids:
        raise DomainError("Cannot attach Tag. The Tag is already attached.", field="object")
    tx.emit(TagAttached, tag_id, object_id=object_id)


def detach_tag(tx: Tx, tag_id: UUID, object_id: UUID) -> None:
    tag = tx.engine.get(Tag, tag_id, field="tag")
    if object_id not in tag.object_ids:
        raise DomainError("Cannot detach Tag. The Tag is not attached.", field="object")
    tx.emit(TagDetached, tag_id, object_id=object_id)


def detach_everywhere(tx: Tx, object_id: UUID) -> None:
    """Removes an object from every tag (call before the object is removed)."""
    for t in current_all(tx, Tag):
        if object_id in t.object_ids:
            tx.emit(TagDetached, t.id, object_id=object_id)


def tags_of(engine: Any, object_id: UUID) -> list[Tag]:
    return sorted(
        (t for t in engine.all(Tag) if object_id in t.object_ids), key=lambda t: (t.name, t.id)
    )


__all__ = [
    "Tag",
    "TagAdded",
    "TagAttached",
    "TagDetached",
    "TagRemoved",
    "TagUpdated",
    "add_tag",
    "attach_tag",
    "detach_everywhere",
    "detach_tag",
    "remove_tag",
    "tags_of",
    "update_tag",
]
