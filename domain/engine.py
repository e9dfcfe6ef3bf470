"""The whole installation's state in memory, built by applying events in log order.

Decisions read it through a Tx; the command layer applies committed events to it.
Replaying the same log into a fresh Engine always gives the same state (``digest``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from domain.base import Aggregate, DomainError, Event, NotFound

A = TypeVar("A", bound=Aggregate)

_encoder = msgspec.json.Encoder(order="deterministic")


class VersionMismatch(Exception):
    """An event does not follow its aggregate's current version (a bug or a gap)."""


class Engine:
    def __init__(self) -> None:
        self.objects: dict[UUID, Aggregate] = {}
        self._by_type: dict[type[Aggregate], dict[UUID, Aggregate]] = {}
        self._names: dict[tuple[Any, ...], UUID] = {}
        # Deleted ids keep their last version so an id is never reused.
        self._tombstones: dict[UUID, int] = {}
        self.position = 0  # the last notification id applied
        # Called when ``all()`` starts iterating (None: no check). The command layer sets
        # it in test mode to assert that the iterating thread may read the Engine (the
        # writer changes it concurrently); the domain never sets it.
        self.iteration_guard: Callable[[], None] | None = None

    # -- reading -----------------------------------------------------------------
    def exists(self, obj_id: UUID) -> bool:
        return obj_id in self.objects or obj_id in self._tombstones

    def version_of(self, obj_id: UUID) -> int:
        obj = self.objects.get(obj_id)
        if obj is not None:
            return obj.version
        return self._tombstones.get(obj_id, 0)

    def get(self, cls: type[A], obj_id: UUID, *, field: str | None = None) -> A:
        """The object, or NotFound naming it the way oVirt does."""
        obj = self.objects.get(obj_id)
        if not isinstance(obj, cls):
            raise NotFound(f"{cls.LABEL} {obj_id} not found.", field=field)
        return obj

    def find(self, cls: type[A], obj_id: UUID | None) -> A | None:
        obj = self.objects.get(obj_id) if obj_id is not None else None
        return obj if isinstance(obj, cls) else None

    def all(self, cls: type[A]) -> Iterator[A]:
        if self.iteration_guard is not None:
            self.iteration_guard()
        for sub, objs in self._by_type.items():
            if issubclass(sub, cls):
                yield from objs.values()  # type: ignore[misc]

    def count(self, cls: type[A]) -> int:
        return sum(len(o) for s, o in self._by_type.items() if issubclass(s, cls))

    def by_name(self, scope: tuple[Any, ...], name: str) -> UUID | None:
        return self._names.get((*scope, name))

    def require_unique_name(
        self, scope: tuple[Any, ...], name: str, *, label: str, own_id: UUID | None = None
    ) -> None:
        other = self._names.get((*scope, name))
        if other is not None and other != own_id:
            raise DomainError(
                f"Cannot add {label}. The {label} name is already in use.", field="name"
            )

    # -- writing -----------------------------------------------------------------
    def apply(self, event: Event) -> None:
        oid = event.originator_id
        old = self.objects.get(oid)
        expected = (old.version if old is not None else self._tombstones.get(oid, 0)) + 1
        if event.originator_version != expected:
            raise VersionMismatch(
                f"{event.TOPIC} v{event.originator_version} on {oid}, expected v{expected}"
            )
        if old is None and event.CREATES is None:
            raise VersionMismatch(f"{event.TOPIC} on unknown object {oid}")
        new = event.evolve(old)
        self._put(oid, old, new)
        if new is None:
            self._tombstones[oid] = event.originator_version

    def restore(self, obj_id: UUID, obj: Aggregate | None, tombstone: int | None) -> None:
        """Puts an object back as it was (undo of an unsaved batch)."""
        self._put(obj_id, self.objects.get(obj_id), obj)
        if tombstone is None:
            self._tombstones.pop(obj_id, None)
        else:
            self._tombstones[obj_id] = tombstone

    def tombstone_of(self, obj_id: UUID) -> int | None:
        return self._tombstones.get(obj_id)

    def _put(self, oid: UUID, old: Aggregate | None, new: Aggregate | None) -> None:
        if old is not None and new is not None and type(old) is type(new):
            key = _name_key(new)
            if key == _name_key(old):  # the common change: replace in place
                self.objects[oid] = new
                self._by_type[type(new)][oid] = new
                if key is not None:
                    self._names[key] = oid
                return
        if old is not None:
            self._by_type[type(old)].pop(oid, None)
            key = _name_key(old)
            if key is not None and self._names.get(key) == oid:
                del self._names[key]
        if new is None:
            self.objects.pop(oid, None)
            return
        self.objects[oid] = new
        self._by_type.setdefault(type(new), {})[oid] = new
        key = _name_key(new)
        if key is not None:
            self._names[key] = oid

    def copy(self) -> Engine:
        """A copy that changes independently (the aggregates, immutable, are shared)."""
        other = Engine()
        other.objects = dict(self.objects)
        other._by_type = {t: dict(objs) for t, objs in self._by_type.items()}
        other._names = dict(self._names)
        other._tombstones = dict(self._tombstones)
        other.position = self.position
        return other

    @classmethod
    def from_parts(
        cls,
        by_type: Iterable[Iterable[Aggregate]],
        tombstones: dict[UUID, int],
        position: int,
    ) -> Engine:
        """An Engine holding these objects (each group of one type, in ``all()`` order),
        deleted ids and position; the names index is derived from the objects."""
        engine = cls()
        objects = engine.objects
        names = engine._names
        for group in by_type:
            for obj in group:
                oid = obj.id
                objects[oid] = obj
                engine._by_type.setdefault(type(obj), {})[oid] = obj
                key = _name_key(obj)
                if key is not None:
                    names[key] = oid
        engine._tombstones = dict(tombstones)
        engine.position = position
        return engine

    def groups(self) -> Iterator[tuple[type[Aggregate], dict[UUID, Aggregate]]]:
        """Each aggregate type with its objects by id, in ``all()`` order."""
        yield from self._by_type.items()

    def tombstones(self) -> dict[UUID, int]:
        """Deleted ids and their last versions (a copy)."""
        return dict(self._tombstones)

    def names(self) -> dict[tuple[Any, ...], UUID]:
        """The names index (a copy): scoped name -> id."""
        return dict(self._names)

    def apply_all(self, events: Iterable[Event]) -> None:
        for e in events:
            self.apply(e)

    # -- comparing ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Every object as plain data, keyed by id: comparable across replays."""
        return {str(k): msgspec.to_builtins(v) for k, v in sorted(self.objects.items())}

    def digest(self) -> str:
        h = hashlib.sha256()
        for oid in sorted(self.objects):
            obj = self.objects[oid]
            h.update(type(obj).__name__.encode())
            h.update(_encoder.encode(obj))
        return h.hexdigest()


def _name_key(obj: Aggregate) -> tuple[Any, ...] | None:
    scope = obj.name_scope()
    if scope is None:
        return None
    return (*scope, getattr(obj, "name", None))
