"""The system object and first-start initialization: built-in roles, the Everyone group, the
``Default`` data center and cluster, the Blank template, and ``admin@internal`` as SuperUser.

Initialization happens once: the ``SystemInitialized`` event creates the system object and
its presence means "done". Every piece is created only when missing and every id is fixed
(oVirt's well-known ids where they exist, uuid5 names otherwise), so two managers starting
together collide on the same ids instead of creating things twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid5

import msgspec

from domain.base import Aggregate, Event, Tx
from domain.values import BLANK_TEMPLATE_ID

# oVirt's id of the system object (the target of system-wide permissions).
SYSTEM_ID = UUID("aaa00000-0000-0000-0000-123456789aaa")
DEFAULT_NAME = "Default"

_NS = UUID("6f1d0c0e-4c59-5b8e-9d5c-0a7e3b1f2c41")  # Orrery's namespace for derived ids
DEFAULT_DATA_CENTER_ID = uuid5(_NS, "data_center/Default")
DEFAULT_MANAGEMENT_NETWORK_ID = uuid5(_NS, "network/Default/ovirtmgmt")
DEFAULT_CLUSTER_ID = uuid5(_NS, "cluster/Default")
ADMIN_USER_ID = uuid5(_NS, "user/admin@internal")
ADMIN_PERMISSION_ID = uuid5(_NS, "permission/admin@internal/SuperUser/system")


class System(Aggregate, frozen=True, kw_only=True):
    KIND = "system"
    LABEL = "System"

    initialized_at: str = ""


class SystemInitialized(Event, frozen=True, kw_only=True):
    CREATES = "System"
    initialized_at: str = ""


class UnknownUserLoginFailed(Event, frozen=True, kw_only=True):
    """A login under a name no user has: recorded on the system object."""

    user_name: str
    reason: str
    source: str = ""
    count: int = 1

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(agg, version=self.originator_version)


def is_initialized(engine: Any) -> bool:
    return engine.find(System, SYSTEM_ID) is not None


@contextmanager
def seeing_own_events(tx: Tx) -> Iterator[Any]:
    """Lets later steps of one decision see what earlier steps emitted.

    ``sync()`` applies the events emitted so far to the engine; on leaving, the engine is
    put back exactly as it was, so the command layer applies the Tx's events as usual.
    Only for multi-step decisions such as first-start initialization.
    """
    engine = tx.engine
    undo: dict[UUID, tuple[Any, int | None]] = {}
    applied = 0

    def sync() -> None:
        nonlocal applied
        for ev in tx.events[applied:]:
            oid = ev.originator_id
            if oid not in undo:
                undo[oid] = (engine.objects.get(oid), engine.tombstone_of(oid))
            engine.apply(ev)
        applied = len(tx.events)

    try:
        yield sync
    finally:
        for oid, (obj, tomb) in undo.items():
            engine.restore(oid, obj, tomb)


__all__ = [
    "ADMIN_USER_ID",
    "BLANK_TEMPLATE_ID",
    "DEFAULT_CLUSTER_ID",
    "DEFAULT_DATA_CENTER_ID",
    "SYSTEM_ID",
    "System",
    "SystemInitialized",
    "UnknownUserLoginFailed",
    "is_initialized",
    "seeing_own_events",
]
