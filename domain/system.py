"""The system object and first-start initialization: built-in roles, the Everyone group, the
``Default`` data center and cluster, the Blank template, and ``admin@internal`` as SuperUser.

Initialization happens once: the ``SystemInitialized`` event creates the system object and
its presence means "done". Every piece is created only when missing and every id is fixed
(oVirt's well-known ids where they exist, uuid5 names otherwise), so two managers starting
together collide on the same ids instead of creating things twice.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid5

import msgspec

from domain.base import Aggregate, Event, Tx

# oVirt's id of the system object (the target of system-wide permissions).
SYSTEM_ID = UUID("aaa00000-0000-0000-0000-123456789aaa")
BLANK_TEMPLATE_ID = UUID("00000000-0000-0000-0000-000000000000")
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


def _blank_template_factory() -> Any:
    """``domain.template.add_blank_template`` once that module provides it, else None."""
    if importlib.util.find_spec("domain.template") is None:
        return None
    module = importlib.import_module("domain.template")
    return getattr(module, "add_blank_template", None)


def initialize_system(tx: Tx, *, admin_password_hash: str | None) -> dict[str, Any]:
    """Creates what a fresh installation starts with; does nothing once initialized."""
    from domain.cluster import add_cluster
    from domain.datacenter import DataCenter, add_data_center
    from domain.permission import add_permission, permissions_of
    from domain.role import SUPER_USER_ROLE_ID, add_builtin_roles
    from domain.user import ADMIN_USER_NAME, add_everyone_group, add_user, find_user

    engine = tx.engine
    if is_initialized(engine):
        return {"initialized": False}
    out: dict[str, Any] = {"initialized": True}
    with seeing_own_events(tx) as sync:
        out["roles"] = len(add_builtin_roles(tx))
        add_everyone_group(tx)
        sync()

        dc_id = engine.by_name(("data_center",), DEFAULT_NAME)
        if dc_id is None:
            dc_id = add_data_center(
                tx,
                name=DEFAULT_NAME,
                description="The default Data Center",
                id=None if engine.exists(DEFAULT_DATA_CENTER_ID) else DEFAULT_DATA_CENTER_ID,
                management_network_id=None
                if engine.exists(DEFAULT_MANAGEMENT_NETWORK_ID)
                else DEFAULT_MANAGEMENT_NETWORK_ID,
            )
            sync()
        out["data_center_id"] = dc_id

        cluster_id = engine.by_name(("cluster",), DEFAULT_NAME)
        if cluster_id is None and engine.find(DataCenter, dc_id) is not None:
            cluster_id = add_cluster(
                tx,
                name=DEFAULT_NAME,
                data_center_id=dc_id,
                description="The default server cluster",
                id=None if engine.exists(DEFAULT_CLUSTER_ID) else DEFAULT_CLUSTER_ID,
            )
            sync()
        out["cluster_id"] = cluster_id

        add_blank = _blank_template_factory()
        if add_blank is not None and not engine.exists(BLANK_TEMPLATE_ID):
            add_blank(tx)
            sync()
        out["blank_template"] = engine.exists(BLANK_TEMPLATE_ID)

        admin = find_user(engine, ADMIN_USER_NAME)
        if admin is None:
            admin_id = add_user(
                tx,
                user_name=ADMIN_USER_NAME,
                password_hash=admin_password_hash,
                name="admin",
                id=None if engine.exists(ADMIN_USER_ID) else ADMIN_USER_ID,
            )
            sync()
        else:
            admin_id = admin.id
        out["admin_user_id"] = admin_id

        if not any(
            p.role_id == SUPER_USER_ROLE_ID and p.object_id is None and p.user_id == admin_id
            for p in permissions_of(engine, admin_id)
        ):
            add_permission(
                tx,
                role_id=SUPER_USER_ROLE_ID,
                user_id=admin_id,
                id=None if engine.exists(ADMIN_PERMISSION_ID) else ADMIN_PERMISSION_ID,
            )
            sync()

        tx.emit(SystemInitialized, SYSTEM_ID, initialized_at=tx.now.isoformat())
    return out


__all__ = [
    "ADMIN_USER_ID",
    "BLANK_TEMPLATE_ID",
    "DEFAULT_CLUSTER_ID",
    "DEFAULT_DATA_CENTER_ID",
    "SYSTEM_ID",
    "System",
    "SystemInitialized",
    "UnknownUserLoginFailed",
    "initialize_system",
    "is_initialized",
    "seeing_own_events",
]
