"""Per-object history (Nova's instance actions): every event on any object, kept after
the object is deleted: who, when, which command, the correlation id, and a field-level
before/after diff computed by comparing the aggregate before and after the event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from domain.base import CREDENTIAL_FIELDS, redacted
from domain.engine import Engine
from projections.db import ViewDB
from projections.engine_view import object_name
from projections.runner import Change, Projection

_enc = msgspec.json.Encoder(order="deterministic")
_dec = msgspec.json.Decoder()

HISTORY_COLUMNS = (
    "position",
    "object_id",
    "kind",
    "name",
    "version",
    "topic",
    "action",
    "time",
    "user_name",
    "user_id",
    "command",
    "command_id",
    "correlation_id",
    "diff",
)
_SKIP = {"version"}


def diff(before: Any, after: Any) -> dict[str, list[Any]]:
    """{field: [before, after]} for every field that differs (plain JSON values)."""
    b = _plain(before) if before is not None else {}
    a = _plain(after) if after is not None else {}
    out: dict[str, list[Any]] = {}
    for k in sorted(set(a) | set(b)):
        if k in _SKIP:
            continue
        if before is not None and after is not None and k == "id":
            continue
        va, vb = a.get(k), b.get(k)
        if va != vb:
            out[k] = [vb, va]
    return out


def _plain(obj: Any) -> dict[str, Any]:
    """The object as plain JSON data, credential fields masked (``redacted``; its copy
    only made when the object has such a field: most have none)."""
    data = msgspec.to_builtins(obj)
    if not CREDENTIAL_FIELDS.isdisjoint(data):
        data = redacted(data)
    return data


class ObjectHistory(Projection):
    name = "object_history"
    tables = ("history",)
    digest_order = {"history": "position"}

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[tuple[Any, ...]] = []

    def create_tables(self, db: ViewDB) -> None:
        cols = ", ".join(
            f"{c} {'BIGINT' if c in ('position', 'version') else 'TEXT'}"
            f"{' PRIMARY KEY' if c == 'position' else ''}"
            for c in HISTORY_COLUMNS
        )
        db.execute(f"CREATE TABLE IF NOT EXISTS {{history}} ({cols})")
        db.execute(
            f'CREATE INDEX IF NOT EXISTS "{db.bare("history_object")}" '
            "ON {history} (object_id, position)"
        )

    def load(self, db: ViewDB) -> None:
        self._rows = []

    def observe(self, change: Change, engine: Engine) -> None:
        ev = change.event
        obj = change.after if change.after is not None else change.before
        if obj is None:
            return
        if ev.CREATES is not None:
            action = "created"
        elif ev.DELETES:
            action = "deleted"
        else:
            action = "changed"
        m = ev.meta
        self._rows.append(
            (
                change.position,
                str(ev.originator_id),
                type(obj).KIND,
                object_name(obj),
                ev.originator_version,
                ev.TOPIC,
                action,
                ev.timestamp.isoformat(),
                m.actor,
                str(m.actor_id) if m.actor_id else None,
                m.command,
                m.command_id,
                m.correlation_id,
                _enc.encode(diff(change.before, change.after)).decode(),
            )
        )

    def prepare(self) -> Callable[[ViewDB], None]:
        rows, self._rows = self._rows, []

        def write(db: ViewDB) -> None:
            if rows:
                cols = ", ".join(HISTORY_COLUMNS)
                marks = ", ".join("?" for _ in HISTORY_COLUMNS)
                db.executemany(f"INSERT INTO {{history}} ({cols}) VALUES ({marks})", rows)

        return write


def object_history(
    db: ViewDB, object_id: Any, *, after: int | None = None, max: int | None = None
) -> list[dict[str, Any]]:
    """Every action on the object, oldest first (works for deleted objects too)."""
    try:
        key = str(UUID(str(object_id)))
    except ValueError:
        return []
    sql = f"SELECT {', '.join(HISTORY_COLUMNS)} FROM {{history}} WHERE object_id = ?"
    params: list[Any] = [key]
    if after is not None:
        sql += " AND position > ?"
        params.append(int(after))
    sql += " ORDER BY position"
    if max is not None:
        sql += " LIMIT ?"
        params.append(int(max))
    out = []
    for row in db.query(sql, params):
        r = dict(zip(HISTORY_COLUMNS, row, strict=True))
        r["position"] = int(r["position"])
        r["version"] = int(r["version"])
        r["diff"] = _dec.decode(r["diff"])
        out.append(r)
    return out


def position_at(db: ViewDB, when: str) -> int:
    """The last position whose event happened at or before ``when`` (ISO-8601), via
    the history table; 0 when nothing had happened yet."""
    rows = db.query("SELECT MAX(position) FROM {history} WHERE time <= ?", (when,))
    return int(rows[0][0] or 0)
