"""The read side as the API uses it: one object that runs the projections and answers
lookups, lists (with oVirt search), the event feed, per-object history and as-of reads.

    read = open_read_side(bus=bus)          # or open_read_side(database_url, data_dir)
    result = bus.execute(cmd)
    read.wait_for(result.position)          # read-your-writes, bounded
    read.get("vm", vm_id)                   # -> dict | None
    read.list("vm", 'name=web* and status=up sortby name desc', max=10, page=2)
    read.events(from_=100, max=50)          # GET /events?from=100
    read.history(vm_id)                     # every action, even after deletion
    read.object_as_of(vm_id, when="2026-11-26T10:00:00Z")

Reads use their own connection per thread; the runner writes through its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from commands.store import EventLog
from domain.base import AGGREGATE_TYPES, Aggregate
from projections import engine_view, feed, history, search, timetravel
from projections.db import DEFAULT_PREFIX, ViewDB
from projections.replay import default_projections
from projections.runner import Projection, ProjectionRunner
from projections.search import SearchError

__all__ = ["ReadSide", "SearchError", "open_read_side"]


class ReadSide:
    def __init__(
        self,
        log: EventLog,
        database_url: str | None = None,
        data_dir: Path | str | None = None,
        *,
        projections: Sequence[Projection] | None = None,
        prefix: str = DEFAULT_PREFIX,
        batch: int = 20_000,
        poll: float = 1.0,
    ) -> None:
        self.log = log
        self.database_url = database_url if database_url is not None else log.database_url
        self.data_dir = data_dir
        self.prefix = prefix
        self.projections = list(projections) if projections is not None else default_projections()
        self._writer = ViewDB(self.database_url, data_dir, prefix=prefix)
        self.runner = ProjectionRunner(log, self._writer, self.projections, batch=batch, poll=poll)
        self._local = threading.local()
        self._readers: list[ViewDB] = []
        self._readers_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------
    def start(self, bus: Any = None) -> ReadSide:
        """Catches up, then follows the log (and the bus, when given) in a thread."""
        self.runner.catch_up()
        if bus is not None:
            self.runner.attach(bus)
        self.runner.start()
        return self

    def close(self) -> None:
        self.runner.close()
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers = []
        self._writer.close()

    @property
    def position(self) -> int:
        """The last notification id every projection has absorbed."""
        return self.runner.position

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Blocks until the views include ``position`` (a CommandResult.position);
        False when ``timeout`` seconds pass first."""
        return self.runner.wait_for(position, timeout)

    def db(self) -> ViewDB:
        """This thread's read connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = ViewDB(self.database_url, self.data_dir, prefix=self.prefix)
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    # -- objects ----------------------------------------------------------------------
    def get(self, kind: str | None, obj_id: UUID | str) -> dict[str, Any] | None:
        """The live object (plain dict as the aggregate's fields) or None."""
        return engine_view.get_object(self.db(), kind_name(kind), obj_id)

    def get_deleted(self, obj_id: UUID | str) -> dict[str, Any] | None:
        """A deleted object's tombstone: kind, name, version, deleted_at, last_state."""
        return engine_view.get_deleted(self.db(), obj_id)

    def kind_of(self, obj_id: UUID | str) -> str | None:
        return engine_view.kind_of(self.db(), obj_id)

    def list(
        self,
        kind: str | None,
        search: str | None = None,
        max: int | None = None,
        page: int | None = None,
        case_sensitive: bool = False,
    ) -> list[dict[str, Any]]:
        """Objects of a kind matching an oVirt search; raises SearchError (400)."""
        return _search(self.db(), kind_name(kind), search, max, page, case_sensitive)

    # -- typed reads: the domain's own aggregate objects ----------------------------------
    def get_aggregate(self, kind: str | None, obj_id: UUID | str) -> Aggregate | None:
        """Like ``get`` but the aggregate object (``Vm``, ``Host`` ...). ``kind`` is the
        REST kind ("vm") or the class name ("Vm"); None accepts any."""
        try:
            key = str(UUID(str(obj_id)))
        except ValueError:
            return None
        k = kind_name(kind)
        if k is None:
            rows = self.db().query("SELECT type, data FROM {objects} WHERE id = ?", (key,))
        else:
            rows = self.db().query(
                "SELECT type, data FROM {objects} WHERE id = ? AND kind = ?", (key, k)
            )
        return _typed(*rows[0]) if rows else None

    def list_aggregates(
        self,
        kind: str | None,
        search: str | None = None,
        max: int | None = None,
        page: int | None = None,
        case_sensitive: bool = False,
    ) -> list[Aggregate]:
        """Like ``list`` but aggregate objects; raises SearchError (400)."""
        rows = _search_rows(self.db(), kind_name(kind), search, max, page, case_sensitive)
        out = []
        for type_name, data in rows:
            obj = _typed(type_name, data)
            if obj is not None:
                out.append(obj)
        return out

    def find_by_name(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object of ``kind`` named exactly ``name`` (case-sensitive), or None."""
        rows = self.db().query(
            "SELECT data FROM {objects} WHERE kind = ? AND name = ? ORDER BY id LIMIT 1",
            (kind, name),
        )
        return engine_view.decode_row_data(rows[0][0]) if rows else None

    def count(self, kind: str) -> int:
        rows = self.db().query("SELECT COUNT(*) FROM {objects} WHERE kind = ?", (kind,))
        return int(rows[0][0])

    # -- feed and history -------------------------------------------------------------
    def events(
        self,
        from_: int | None = None,
        max: int | None = 100,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        descending: bool = False,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """The audit feed: entries with index > from_; filters: feed.FEED_FILTERS."""
        return feed.list_events(
            self.db(),
            from_=from_,
            max=max,
            since=since,
            until=until,
            descending=descending,
            **filters,
        )

    def history(
        self, obj_id: UUID | str, *, after: int | None = None, max: int | None = None
    ) -> list[dict[str, Any]]:
        """Every action on an object (even deleted): who, when, command, diff."""
        return history.object_history(self.db(), obj_id, after=after, max=max)

    # -- time travel (from the log) ----------------------------------------------------
    def state_as_of(
        self, position: int | None = None, *, when: str | datetime | None = None
    ) -> dict[str, Any]:
        return timetravel.snapshot_at(self.log, position, when=when)

    def object_as_of(
        self,
        obj_id: UUID | str,
        position: int | None = None,
        *,
        when: str | datetime | None = None,
    ) -> dict[str, Any] | None:
        return timetravel.object_at(self.log, obj_id, position, when=when)


def kind_name(kind: str | None) -> str | None:
    """The REST kind for a kind or an aggregate class name ("Vm" -> "vm")."""
    if kind is None:
        return None
    cls = AGGREGATE_TYPES.get(kind)
    return cls.KIND if cls is not None else kind


def _typed(type_name: str, data: str) -> Aggregate | None:
    cls = AGGREGATE_TYPES.get(type_name)
    if cls is None:
        return None
    return msgspec.json.decode(data, type=cls)


def _search_rows(
    db: ViewDB,
    kind: str | None,
    text: str | None,
    max: int | None,
    page: int | None,
    case_sensitive: bool,
) -> list[tuple[str, str]]:
    return search.search_rows(db, kind, text, max=max, page=page, case_sensitive=case_sensitive)


def _search(
    db: ViewDB,
    kind: str | None,
    text: str | None,
    max: int | None,
    page: int | None,
    case_sensitive: bool,
) -> list[dict[str, Any]]:
    return search.search_objects(db, kind, text, max=max, page=page, case_sensitive=case_sensitive)


def open_read_side(
    database_url: str | None = None,
    data_dir: Path | str | None = None,
    *,
    bus: Any = None,
    start: bool = True,
    **options: Any,
) -> ReadSide:
    """The read side over the bus's log (or a log opened from the location),
    caught up and following."""
    log = bus.log if bus is not None else EventLog(database_url, data_dir)
    read = ReadSide(log, database_url or log.database_url, data_dir, **options)
    if start:
        read.start(bus)
    return read
