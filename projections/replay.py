"""Rebuilding projections from the log, and checking a live view against a rebuild.

``rebuild`` drops the view's tables and replays every projection from notification 0.
``verify`` replays into side tables (prefix ``orrery_verify``) up to the live view's
position, compares content digests table by table, names the first differing row, and
drops the side tables again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commands.store import EventLog
from projections.db import DEFAULT_PREFIX, ViewDB
from projections.engine_view import EngineView
from projections.feed import AuditFeed
from projections.history import ObjectHistory
from projections.runner import Projection, ProjectionRunner, read_positions

VERIFY_PREFIX = "orrery_verify"


def default_projections() -> list[Projection]:
    """The standard read side: engine view, audit feed, per-object history."""
    return [EngineView(), AuditFeed(), ObjectHistory()]


def drop_all(db: ViewDB, projections: Sequence[Projection]) -> None:
    tables = [t for p in projections for t in p.tables] + ["tracking"]
    db.drop(tables)


def rebuild(
    log: EventLog,
    database_url: str | None = None,
    data_dir: Path | str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    projections: Sequence[Projection] | None = None,
    progress: Callable[[int], None] | None = None,
    upto: int | None = None,
    batch: int = 20_000,
) -> dict[str, dict[str, str]]:
    """Drops and rebuilds the projections from zero; returns their digests."""
    projs = list(projections) if projections is not None else default_projections()
    db = ViewDB(database_url, data_dir, prefix=prefix)
    try:
        drop_all(db, projs)
        runner = ProjectionRunner(log, db, projs, batch=batch)
        try:
            runner.catch_up(progress, upto=upto)
            return runner.digest()
        finally:
            runner.close()
    finally:
        db.close()


@dataclass
class VerifyResult:
    ok: bool
    position: int
    live: dict[str, dict[str, str]]
    rebuilt: dict[str, dict[str, str]]
    differences: list[str] = field(default_factory=list)


def verify(
    log: EventLog,
    database_url: str | None = None,
    data_dir: Path | str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    progress: Callable[[int], None] | None = None,
    attempts: int = 3,
) -> VerifyResult:
    """Rebuilds beside the live view and compares. The live view must exist."""
    live_db = ViewDB(database_url, data_dir, prefix=prefix)
    shadow = ViewDB(database_url, data_dir, prefix=VERIFY_PREFIX)
    try:
        if not live_db.table_exists("tracking"):
            raise LookupError("there is no live view to verify (run 'orrery replay' first)")
        projs = default_projections()
        result = None
        for _ in range(attempts):
            positions = read_positions(live_db)
            names = [p.name for p in projs]
            live_pos = {n: positions.get(n, 0) for n in names}
            position = min(live_pos.values())
            if len(set(live_pos.values())) != 1:
                raise LookupError(f"the live projections are at different positions: {live_pos}")
            drop_all(shadow, projs)
            runner = ProjectionRunner(log, shadow, projs)
            try:
                runner.catch_up(progress, upto=position)
                rebuilt = runner.digest()
            finally:
                runner.close()
            live = {p.name: p.digest(live_db) for p in projs}
            if read_positions(live_db) != positions:
                continue  # the live view moved while we looked: try again
            diffs = []
            for p in projs:
                for t in p.tables:
                    if live[p.name][t] != rebuilt[p.name][t]:
                        diffs.append(first_difference(live_db, shadow, t, p.digest_order.get(t)))
            result = VerifyResult(not diffs, position, live, rebuilt, diffs)
            break
        if result is None:
            raise RuntimeError("the live view kept moving; stop the writer and retry")
        return result
    finally:
        try:
            drop_all(shadow, default_projections())
        finally:
            shadow.close()
            live_db.close()


def first_difference(a: ViewDB, b: ViewDB, table: str, order: str | None) -> str:
    """A sentence naming the first row (in key order) where two tables differ."""
    key = order or "1"
    ra = a.query(f"SELECT * FROM {{{table}}} ORDER BY {key}")
    rb = b.query(f"SELECT * FROM {{{table}}} ORDER BY {key}")
    cols = _columns(a, table)
    for i in range(max(len(ra), len(rb))):
        x = ra[i] if i < len(ra) else None
        y = rb[i] if i < len(rb) else None
        if x is None:
            return f"{table}: row {_key(cols, y, key)} is missing from the live view"
        if y is None:
            return f"{table}: row {_key(cols, x, key)} is in the live view but not in the replay"
        nx, ny = tuple(_plain(v) for v in x), tuple(_plain(v) for v in y)
        if nx != ny:
            if _key(cols, x, key) != _key(cols, y, key):
                return (
                    f"{table}: live row {_key(cols, x, key)} vs replayed row {_key(cols, y, key)}"
                )
            for c, vx, vy in zip(cols, nx, ny, strict=False):
                if vx != vy:
                    return (
                        f"{table}: row {_key(cols, x, key)} column {c}: "
                        f"live {vx!r} != replay {vy!r}"
                    )
    return f"{table}: contents differ"


def _plain(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _key(cols: list[str], row: Any, key: str) -> str:
    if key in cols:
        return f"{key}={row[cols.index(key)]}"
    return repr(row[0])


def _columns(db: ViewDB, table: str) -> list[str]:
    if db.dialect == "pg":
        rows = db.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position",
            (db.schema, db.bare(table)),
        )
        return [r[0] for r in rows]
    rows = db.query(f"PRAGMA table_info({db.name(table)})")
    return [r[1] for r in rows]
