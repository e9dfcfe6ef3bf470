"""Reading through a transaction: objects as they will be once the events it has emitted
so far are applied (decisions that chain, e.g. a data center refresh after a host change,
read through these rather than the engine alone)."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from domain.base import AGGREGATE_TYPES, Aggregate, Tx

A = TypeVar("A", bound=Aggregate)


def current(tx: Tx, cls: type[A], obj_id: UUID | None) -> A | None:
    """The object as it will be once the events ``tx`` emitted so far are applied."""
    if obj_id is None:
        return None
    obj: Any = tx.engine.objects.get(obj_id)
    seen = tx.engine.version_of(obj_id)  # events up to here are already in the engine
    for e in tx.events:
        if e.originator_id == obj_id and e.originator_version > seen:
            obj = e.evolve(obj)
    return obj if isinstance(obj, cls) else None


def current_all(tx: Tx, cls: type[A]) -> list[A]:
    """Every object of ``cls`` after the events ``tx`` emitted, ordered by (name, id)."""
    objs: dict[UUID, Any] = {o.id: o for o in tx.engine.all(cls)}
    for e in tx.events:
        oid = e.originator_id
        if e.originator_version <= tx.engine.version_of(oid):
            continue  # already applied to the engine (a decision that syncs as it goes)
        if oid in objs:
            objs[oid] = e.evolve(objs[oid])
        elif e.CREATES is not None and issubclass(AGGREGATE_TYPES[e.CREATES], cls):
            objs[oid] = e.evolve(None)
    return sorted((o for o in objs.values() if o is not None), key=name_order)


def name_order(o: Any) -> tuple[str, UUID]:
    return (str(getattr(o, "name", "")), o.id)


def get_current(tx: Tx, cls: type[A], obj_id: UUID, *, field: str | None = None) -> A:
    obj = current(tx, cls, obj_id)
    if obj is None:
        return tx.engine.get(cls, obj_id, field=field)  # raises NotFound
    return obj
