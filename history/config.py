"""Configuration history: type-2 rows for every tracked object, driven by domain events.

``ConfigTracker`` keeps a domain ``Engine``, applies each event and, for every changed
object of a tracked kind, closes its open row and opens a new one. Only the
status-independent configuration counts as a change (a VM starting is not a new
configuration; a memory change is). Rows tile time: ``[valid_from, valid_to)``, the open
row has ``valid_to`` NULL, the last row of a removed object is ``deleted``. Several
changes of one object at the same instant update the row opened at that instant in
place, so no zero-length versions appear and batch boundaries never change the result;
when such a change brings the object back to the configuration of the row it closed,
that row is reopened and the same-instant row is dropped (``dropped``), so two
consecutive rows never hold one configuration.
VM NICs (``Vm.nics``) are tracked as children of kind ``vm_interface``.

Pure: no I/O. The warehouse persists ``touched`` rows after each batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from domain.base import Aggregate, Event
from domain.engine import Engine

TRACKED_KINDS = frozenset(
    {"data_center", "cluster", "host", "storage_domain", "network", "vm", "disk", "user", "tag"}
)
CHILD_KIND = "vm_interface"

# Fields that follow the object's status or live statistics, not its configuration.
VOLATILE_FIELDS = frozenset(
    {
        "version",
        "status",
        "status_detail",
        "run_on_host_id",
        "migrating_to_host_id",
        "available",
        "used",
        "actual_size",
        "spm_host_id",
        "master",
        "snapshots",
        "assignments",
        "exit_reason",
        "exit_status",
        "operation",
        "move_target_id",
        # a user's credentials and login state are not its configuration
        "password_hash",
        "password_changed_at",
        "failed_logins",
        "locked_until",
        "group_ids",
    }
)
VOLATILE_PREFIXES = ("guest_", "last_", "stat_")

# kind -> (parent kind, attribute holding the parent's id)
PARENT = {
    "cluster": "data_center_id",
    "network": "data_center_id",
    "storage_domain": "data_center_id",
    "host": "cluster_id",
    "vm": "cluster_id",
    "disk": "storage_domain_id",
    CHILD_KIND: "vm_id",
}

_encode = msgspec.json.Encoder(order="deterministic").encode


def naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


@dataclass
class Row:
    history_id: int
    kind: str
    object_id: UUID
    create_date: datetime
    valid_from: datetime
    valid_to: datetime | None
    deleted: bool
    parent_version: int | None
    cols: dict[str, Any]
    config: str
    persisted: bool = False  # already in the database (an update must replace it)

    def values(self) -> dict[str, Any]:
        return {
            "history_id": self.history_id,
            "kind": self.kind,
            "object_id": self.object_id,
            "create_date": self.create_date,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "deleted": self.deleted,
            "parent_version": self.parent_version,
            **self.cols,
            "config": self.config,
        }


def _uuid(v: Any) -> UUID | None:
    return v if isinstance(v, UUID) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    if v is None or v is msgspec.UNSET:
        return None
    return str(v)


def config_of(obj: Any) -> dict[str, Any]:
    """The object's status-independent configuration as plain JSON-able data."""
    data = msgspec.to_builtins(obj)
    secret = getattr(obj, "SECRET_FIELDS", frozenset())
    return {
        k: v
        for k, v in data.items()
        if k not in VOLATILE_FIELDS and k not in secret and not k.startswith(VOLATILE_PREFIXES)
    }


def columns_of(kind: str, obj: Any, parent_id: UUID | None = None) -> dict[str, Any]:
    """The common report columns, read by attribute name (missing ones are NULL)."""
    g = lambda name: getattr(obj, name, None)  # noqa: E731
    memory = _int(g("memory") if kind == "vm" else g("memory_total"))
    if kind == "vm":
        sockets, cores, threads = g("cpu_sockets"), g("cpu_cores"), g("cpu_threads")
        otype, os_type, host = g("vm_type"), g("os_type"), g("placement_host_id")
    elif kind == "host":
        sockets, cores, threads = g("cpu_sockets"), g("cpu_cores"), g("cpu_threads")
        otype, os_type, host = g("host_type"), g("os_version") or g("host_os"), None
    else:
        sockets = cores = threads = None
        os_type = host = None
        otype = {
            "storage_domain": g("domain_type"),
            "disk": g("format"),
            CHILD_KIND: g("interface"),
        }.get(kind)
    return {
        "name": _str(g("name")),
        "description": _str(g("description")),
        "data_center_id": _uuid(g("data_center_id")),
        "cluster_id": _uuid(g("cluster_id")),
        "host_id": _uuid(host),
        "storage_domain_id": _uuid(g("storage_domain_id")),
        "vm_id": parent_id if kind == CHILD_KIND else None,
        "template_id": _uuid(g("template_id")),
        "memory_mb": memory >> 20 if memory is not None else None,
        "cpu_sockets": _int(sockets),
        "cpu_cores": _int(cores),
        "cpu_threads": _int(threads),
        "os_type": _str(os_type),
        "object_type": _str(otype),
    }


@dataclass
class ConfigTracker:
    """Turns the event stream into type-2 rows. ``apply(event, record=False)`` only
    advances the engine (replaying events already in the warehouse)."""

    next_id: int = 1
    open: dict[UUID, Row] = field(default_factory=dict)
    engine: Engine = field(default_factory=Engine)
    touched: dict[int, Row] = field(default_factory=dict)
    # the row each object's open row followed (closed at the open row's valid_from)
    closed: dict[UUID, Row] = field(default_factory=dict)
    # history_ids of rows that no longer exist (the warehouse deletes persisted ones)
    dropped: set[int] = field(default_factory=set)

    def apply(self, event: Event, *, record: bool = True) -> None:
        oid = event.originator_id
        old = self.engine.objects.get(oid)
        self.engine.apply(event)
        if not record:
            return
        new = self.engine.objects.get(oid)
        obj = new if new is not None else old
        if obj is None or obj.KIND not in TRACKED_KINDS:
            return
        ts = naive_utc(event.timestamp)
        if new is None:
            self._delete(oid, ts)
        else:
            self._upsert(new.KIND, oid, new, columns_of(new.KIND, new), config_of(new), ts)
        if obj.KIND == "vm":
            self._children(old, new, ts)

    # -- rows -------------------------------------------------------------------------
    def _parent_version(self, kind: str, cols: dict[str, Any]) -> int | None:
        attr = PARENT.get(kind)
        pid = cols.get(attr) if attr else None
        row = self.open.get(pid) if pid is not None else None
        return row.history_id if row is not None else None

    def _upsert(
        self, kind: str, oid: UUID, obj: Any, cols: dict[str, Any], cfg: dict, ts: datetime
    ) -> None:
        config = _encode(cfg).decode()
        cur = self.open.get(oid)
        if cur is not None and cur.config == config:
            return
        parent_version = self._parent_version(kind, cols)
        if cur is not None and cur.valid_from >= ts:
            prev = self.closed.get(oid)
            if prev is not None and prev.valid_to == cur.valid_from and prev.config == config:
                self._reopen(prev, cur, cols, parent_version)
                return
            cur.cols, cur.config, cur.parent_version = cols, config, parent_version
            self.touched[cur.history_id] = cur
            return
        if cur is not None:
            cur.valid_to = ts
            self.touched[cur.history_id] = cur
            self.closed[oid] = cur
        row = Row(
            history_id=self.next_id,
            kind=kind,
            object_id=oid,
            create_date=cur.create_date if cur is not None else ts,
            valid_from=ts,
            valid_to=None,
            deleted=False,
            parent_version=parent_version,
            cols=cols,
            config=config,
        )
        self.next_id += 1
        self.open[oid] = row
        self.touched[row.history_id] = row

    def _reopen(self, prev: Row, cur: Row, cols: dict[str, Any], parent: int | None) -> None:
        """Drops ``cur`` (opened at the instant ``prev`` closed) and reopens ``prev``."""
        del self.closed[prev.object_id]
        self.touched.pop(cur.history_id, None)
        if cur.persisted:
            self.dropped.add(cur.history_id)
        prev.valid_to, prev.cols, prev.parent_version = None, cols, parent
        self.open[prev.object_id] = prev
        self.touched[prev.history_id] = prev

    def _delete(self, oid: UUID, ts: datetime) -> None:
        self.closed.pop(oid, None)
        cur = self.open.pop(oid, None)
        if cur is None:
            return
        cur.valid_to = max(ts, cur.valid_from)
        cur.deleted = True
        self.touched[cur.history_id] = cur

    def _children(self, old: Aggregate | None, new: Aggregate | None, ts: datetime) -> None:
        before = {n.id: n for n in getattr(old, "nics", ()) or ()}
        after = {n.id: n for n in getattr(new, "nics", ()) or ()}
        for nid in before.keys() - after.keys():
            self._delete(nid, ts)
        if new is None:
            return
        for nid, nic in after.items():
            cfg = config_of(nic)
            profile = self.engine.find(Aggregate, getattr(nic, "vnic_profile_id", None))
            net = self.engine.find(Aggregate, getattr(profile, "network_id", None))
            if net is not None:
                cfg["network_name"] = getattr(net, "name", None)
            cols = columns_of(CHILD_KIND, nic, parent_id=new.id)
            self._upsert(CHILD_KIND, nid, nic, cols, cfg, ts)

    def take_touched(self) -> list[Row]:
        rows = sorted(self.touched.values(), key=lambda r: r.history_id)
        return rows

    def take_dropped(self) -> list[int]:
        return sorted(self.dropped)

    def flushed(self) -> None:
        for r in self.touched.values():
            r.persisted = True
        self.touched.clear()
        self.dropped.clear()
