"""Time travel: the state of one object or of the whole engine as of a notification id
or a moment: the whole engine from the nearest checkpoint at or before it plus the log
after that (``engine_at``), one object from its own snapshots and events.

A moment maps to a log position: the last notification whose event happened at or
before it (the log prefix up to there is a state that really existed). One object is
rebuilt from its own events (the store's per-aggregate ``select_events``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from commands import checkpoints
from commands.store import EventLog
from domain.base import redacted
from domain.engine import Engine

log = logging.getLogger("orrery.timetravel")


def parse_when(text: str | datetime) -> datetime:
    """ISO-8601 (``Z`` accepted) to an aware UTC datetime; naive means UTC."""
    if isinstance(text, datetime):
        dt = text
    else:
        t = text.strip()
        if t.endswith(("Z", "z")):
            t = t[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(t)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def position_at(log: EventLog, when: str | datetime, *, batch: int = 20_000) -> int:
    """The last notification id whose event's timestamp is <= ``when`` (0: none)."""
    t = parse_when(when)
    best = 0
    after = 0
    ts_only = msgspec.json.Decoder(_Stamp)
    while True:
        rows = log.read_raw(after, batch)
        if not rows:
            return best
        for n in rows:
            stamp = ts_only.decode(n.state).timestamp
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            if stamp <= t:
                best = n.id
        after = rows[-1].id


class _Stamp(msgspec.Struct):
    timestamp: datetime


def engine_at(
    source: Any, position: int | None = None, *, when: str | datetime | None = None
) -> Engine:
    """A fresh Engine holding everything up to ``position`` (or up to ``when``; the
    whole log when neither), from ``source``: a CommandBus or its EventLog.

    It starts from the nearest checkpoint at or before the position (the write side's
    rows in the log's database, ``commands.checkpoints``: a full row and the deltas
    after it) and applies the log from there, so its cost is bounded by the
    checkpoints' interval, not the log's length; with no checkpoint it replays from 0.
    """
    event_log: EventLog = source if isinstance(source, EventLog) else source.log
    if when is not None:
        position = position_at(event_log, when)
    engine = None
    try:
        loaded = checkpoints.load(checkpoints.CheckpointStore(event_log), position, window=False)
        engine = loaded.engine if loaded is not None else None
    except Exception:
        log.warning("reading checkpoints failed: replaying from the start", exc_info=True)
    if engine is None:
        engine = Engine()
    checkpoints.replay_tail(event_log, engine, position)
    return engine


def object_at(
    log: EventLog,
    object_id: UUID | str,
    position: int | None = None,
    *,
    when: str | datetime | None = None,
) -> dict[str, Any] | None:
    """One object as of a position or moment (None: not yet created, or deleted),
    from its own events. Returns the object as plain data plus ``kind``."""
    oid = UUID(str(object_id))
    limit_t = parse_when(when) if when is not None else None
    limit_version = None
    if position is not None:
        # Versions committed at or before the position: ask the log for their ids.
        limit_version = _version_at(log, oid, position)
    obj = None
    if limit_t is None:
        # By version: start from the newest snapshot at or below it.
        if limit_version == 0:
            return None
        obj = log.aggregate_at(oid, limit_version)
        events = []
    else:
        events = log.events_of(oid)
    for ev in events:
        if limit_version is not None and ev.originator_version > limit_version:
            break
        if limit_t is not None:
            stamp = ev.timestamp if ev.timestamp.tzinfo else ev.timestamp.replace(tzinfo=UTC)
            if stamp > limit_t:
                break
        obj = ev.evolve(obj)
    if obj is None:
        return None
    out = redacted(msgspec.to_builtins(obj))
    out["kind"] = type(obj).KIND
    return out


def _version_at(log: EventLog, oid: UUID, position: int) -> int:
    """The aggregate's version at a log position (0 when it did not exist yet)."""
    rec: Any = log.recorder
    if log.is_postgres:
        with rec.datastore.get_connection() as conn, conn.cursor() as cur:
            cur.execute(
                f'SELECT MAX(originator_version) AS v FROM "{rec.datastore.schema}".'
                f'"{rec.events_table_name}" WHERE originator_id = %s AND notification_id <= %s',
                (oid, position),
            )
            row = cur.fetchone()
            return int(row["v"] or 0)
    with rec.datastore.transaction(commit=False) as c:
        c.execute(
            f"SELECT MAX(originator_version) FROM {rec.events_table_name} "
            "WHERE originator_id = ? AND rowid <= ?",
            (oid.hex, position),
        )
        row = c.fetchone()
        return int(row[0] or 0)


def snapshot_at(
    log: EventLog, position: int | None = None, *, when: str | datetime | None = None
) -> dict[str, Any]:
    """The whole engine as plain data: {"position", "objects": {id: {..., kind}}}."""
    engine = engine_at(log, position, when=when)
    objects = {}
    for oid, obj in sorted(engine.objects.items()):
        d = redacted(msgspec.to_builtins(obj))
        d["kind"] = type(obj).KIND
        objects[str(oid)] = d
    return {"position": engine.position, "objects": objects, "digest": engine.digest()}
