"""The DuckDB warehouse: one file (``data_dir/orrery-history.duckdb``) per Manager.

Feeding it:
- ``catch_up(read)``: configuration history from the event log. ``read(after, limit)``
  returns ``[(notification_id, event), ...]`` with ids > after (``EventLog.read`` fits).
  Each batch's rows and the new log position are written in ONE DuckDB transaction,
  guarded by ``new position > stored position``: a crash loses or repeats nothing.
- ``ingest_samples(samples)``: statistics samples (``history.samples``), one transaction
  per call, batched through ``unnest`` (no per-row statements); a per-family watermark
  makes a re-sent batch a no-op.
- ``maintain(now)``: hourly and daily rollups of closed periods only (tracked, so each
  period is rolled once) and retention.
Reading: ``query(sql, params)`` (one read-only statement, all rows), ``run_sql(sql)``
(SQL from outside: under ``sql_limits``), or ``open_read_only(path)`` from another
process. Every connection is locked down once the file is open (``history.readonly``):
DuckDB reaches no other file, extension or setting, for the writer too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb

from domain.base import Event
from history import pgdialect, schema
from history.config import ConfigTracker, Row, naive_utc
from history.readonly import (
    QueryBusy,
    QueryLimits,
    QueryResult,
    check_read_only,
    lock_down,
    run_read_only,
)
from history.samples import VERSION_OF, Sample, columns, group, key_of
from history.schema import CONFIG_COLUMN_NAMES, STATS, StatsSpec

FILE_NAME = "orrery-history.duckdb"
EPOCH = datetime(1970, 1, 1)

ReadFn = Callable[[int, int], Sequence[tuple[int, Event]]]


class StaleWriter(Exception):
    """Another writer moved the tracking position past ours; this batch was not written."""


@dataclass(frozen=True)
class Retention:
    """How long each level is kept; None keeps it forever (oVirt "Full" defaults)."""

    samples: timedelta | None = timedelta(hours=24)
    hourly: timedelta | None = timedelta(days=60)
    daily: timedelta | None = timedelta(days=5 * 365)


def path_in(data_dir: Path | str) -> Path:
    return Path(data_dir) / FILE_NAME


def _us(t: datetime) -> int:
    return int((naive_utc(t) - EPOCH) / timedelta(microseconds=1))


def _from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row (the result is fully consumed)."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0][0] if rows else None


def _floor(t: datetime, unit: str) -> datetime:
    t = naive_utc(t)
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


_NP_INT = {"SMALLINT": "int16", "INTEGER": "int32", "BIGINT": "int64"}
_NP_FLOAT = {"REAL": "float32", "DOUBLE": "float64"}


_UUID_TEXT: dict[int, str] = {}


def _uuid_texts(values: list[Any]) -> list[str | None]:
    """str(uuid) for each, remembered by the uuid's int: the same objects are sampled
    every interval, and an int hashes much faster than a UUID."""
    cache = _UUID_TEXT
    if len(cache) > 2_000_000:
        cache.clear()
    out: list[str | None] = []
    for u in values:
        if u is None:
            out.append(None)
            continue
        k = u.int
        t = cache.get(k)
        if t is None:
            t = cache[k] = str(u)
        out.append(t)
    return out


def _array(typ: str, values: list[Any]) -> Any:
    """One column as a numpy array, which DuckDB scans without a per-value conversion."""
    import numpy as np

    if typ == "UUID":
        return np.array(_uuid_texts(values), dtype=object)
    if None not in values:
        if typ in _NP_INT:
            return np.array(values, dtype=_NP_INT[typ])
        if typ in _NP_FLOAT:
            return np.array(values, dtype=_NP_FLOAT[typ])
    return np.array(values, dtype=object)


def _insert_sql(spec: StatsSpec, frame: str) -> str:
    """INSERT ... SELECT from a registered frame, configuration versions joined in."""
    versions = dict(VERSION_OF[spec.base])
    joins: list[str] = []
    sel: list[str] = []
    for name, typ in spec.sample_columns():
        if name == "history_id":
            sel.append("f.history_id")
        elif name == "history_datetime":
            sel.append("make_timestamp(f.history_datetime)")
        elif name in versions:
            alias = f"v{len(joins)}"
            joins.append(
                f"LEFT JOIN open_versions {alias} "
                f"ON {alias}.object_id = CAST(f.{versions[name]} AS UUID)"
            )
            sel.append(f"{alias}.history_id")
        else:
            sel.append(f"CAST(f.{name} AS {typ})")
    return (
        "WITH open_versions AS (SELECT object_id, history_id FROM config_history "
        "WHERE valid_to IS NULL) "
        f"INSERT INTO {spec.samples} SELECT {', '.join(sel)} FROM {frame} f "
        f"{' '.join(joins)} ORDER BY f.history_id"
    )


class Warehouse:
    def __init__(
        self,
        path: Path | str,
        *,
        retention: Retention | None = None,
        rollup_grace: timedelta = timedelta(minutes=2),
        sql_limits: QueryLimits | None = None,
        sql_concurrency: int = 2,
        allowed_paths: Sequence[str] = (),
    ) -> None:
        """``sql_limits``/``sql_concurrency``: per query from outside (``run_sql``) and
        how many run at once; ``allowed_paths``: files beside the warehouse's own that
        DuckDB may still reach (a benchmark's export), none for the Manager."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        lock_down(self.con, allowed_paths)
        self.sql_limits = sql_limits or QueryLimits()
        self.sql_concurrency = sql_concurrency
        self._sql_slots = threading.BoundedSemaphore(sql_concurrency)
        self.retention = retention or Retention()
        self.rollup_grace = rollup_grace
        self._lock = threading.RLock()
        self._tracker: ConfigTracker | None = None
        with self._tx():
            schema.create_all(self.con)
            names = ["config"] + [f"samples:{s.base}" for s in STATS]
            names += [f"{lvl}:{s.base}" for s in STATS for lvl in ("hourly", "daily")]
            for n in names:
                self.con.execute(
                    "INSERT INTO history_tracking VALUES (?, 0) ON CONFLICT DO NOTHING", [n]
                )
        self._sample_ids = {
            s.base: _scalar(self.con, f"SELECT coalesce(max(history_id), 0) FROM {s.samples}")
            for s in STATS
        }
        self._versions: dict[UUID, int] = dict(
            self.con.execute(
                "SELECT object_id, history_id FROM config_history WHERE valid_to IS NULL"
            ).fetchall()
        )

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------
    class _Tx:
        def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
            self.con = con

        def __enter__(self) -> duckdb.DuckDBPyConnection:
            self.con.execute("BEGIN TRANSACTION")
            return self.con

        def __exit__(self, et: Any, *_: Any) -> None:
            if et is None:
                self.con.execute("COMMIT")
            else:
                self.con.execute("ROLLBACK")

    def _tx(self) -> Warehouse._Tx:
        return Warehouse._Tx(self.con)

    def position(self, name: str = "config") -> int:
        rows = self.con.execute(
            "SELECT position FROM history_tracking WHERE name = ?", [name]
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    def _advance(self, name: str, new: int) -> None:
        """Moves a tracking position forward inside the caller's transaction, or raises."""
        got = self.con.execute(
            "UPDATE history_tracking SET position = ? WHERE name = ? AND position < ? "
            "RETURNING position",
            [new, name, new],
        ).fetchall()
        if not got:
            raise StaleWriter(f"{name}: stored position is already >= {new}")

    # -- configuration history -----------------------------------------------------------
    def _load_tracker(self) -> ConfigTracker:
        cols = ", ".join(CONFIG_COLUMN_NAMES)
        rows = self.con.execute(
            f"SELECT {cols} FROM config_history WHERE valid_to IS NULL AND NOT deleted"
        ).fetchall()
        nxt = _scalar(self.con, "SELECT coalesce(max(history_id), 0) + 1 FROM config_history")
        tracker = ConfigTracker(next_id=nxt)
        base = (
            "history_id",
            "kind",
            "object_id",
            "create_date",
            "valid_from",
            "valid_to",
            "deleted",
            "parent_version",
        )
        # the row each open row followed: a same-instant change back to its
        # configuration reopens it (ConfigTracker.closed)
        before = self.con.execute(
            f"SELECT {', '.join('p.' + c for c in CONFIG_COLUMN_NAMES)} "
            "FROM config_history p JOIN config_history o ON o.object_id = p.object_id "
            "AND o.valid_to IS NULL AND NOT o.deleted AND p.valid_to = o.valid_from "
            "AND NOT p.deleted"
        ).fetchall()
        for into, found in ((tracker.open, rows), (tracker.closed, before)):
            for r in found:
                d = dict(zip(CONFIG_COLUMN_NAMES, r, strict=True))
                config = d.pop("config")
                fixed = {k: d.pop(k) for k in base}
                into[fixed["object_id"]] = Row(**fixed, cols=d, config=config, persisted=True)
        return tracker

    def catch_up(self, read: ReadFn, *, batch: int = 1000, upto: int | None = None) -> int:
        """Applies the log after our position; returns the new position."""
        with self._lock:
            if self._tracker is None:
                self._tracker = self._load_tracker()
            tracker = self._tracker
            stored = self.position("config")
            after = tracker.engine.position
            try:
                while upto is None or after < upto:
                    chunk = read(after, batch)
                    if upto is not None:
                        chunk = [(n, e) for n, e in chunk if n <= upto]
                    if not chunk:
                        break
                    for nid, ev in chunk:
                        tracker.apply(ev, record=nid > stored)
                        tracker.engine.position = nid
                    after = chunk[-1][0]
                    if after > stored:
                        self._flush_config(tracker, after)
                        stored = after
            except BaseException:
                self._tracker = None  # replay from the stored position next time
                raise
            return stored

    def _flush_config(self, tracker: ConfigTracker, position: int) -> None:
        rows = tracker.take_touched()
        gone = tracker.take_dropped()
        with self._tx() as con:
            old = [r.history_id for r in rows if r.persisted] + gone
            if old:
                con.execute(
                    "DELETE FROM config_history WHERE history_id IN (SELECT unnest(?))",
                    [old],
                )
            if rows:
                vals = [r.values() for r in rows]
                cols = [[v[c] for v in vals] for c in CONFIG_COLUMN_NAMES]
                types = dict(schema.CONFIG_COLUMNS)
                sel = ", ".join(
                    f"unnest(${i + 1}::{types[c]}[])" for i, c in enumerate(CONFIG_COLUMN_NAMES)
                )
                con.execute(f"INSERT INTO config_history SELECT {sel}", cols)
            self._advance("config", position)
        tracker.flushed()
        for r in rows:
            if r.valid_to is None:
                self._versions[r.object_id] = r.history_id
            elif self._versions.get(r.object_id) == r.history_id:
                del self._versions[r.object_id]

    def configuration_version(self, object_id: UUID) -> int | None:
        """history_id of the object's current configuration row."""
        return self._versions.get(object_id)

    def refresh_versions(self) -> None:
        self._versions = dict(
            self.con.execute(
                "SELECT object_id, history_id FROM config_history WHERE valid_to IS NULL"
            ).fetchall()
        )

    # -- statistics ----------------------------------------------------------------------
    def ingest_samples(self, samples: Iterable[Sample]) -> int:
        """Writes samples in one transaction; returns rows written (re-sent ones skipped)."""
        import numpy as np

        by_base = group(samples)
        written = 0
        with self._lock, self._tx() as con:
            next_ids = dict(self._sample_ids)
            for spec in STATS:
                items = by_base.get(spec.base)
                if not items:
                    continue
                mark = self.position(f"samples:{spec.base}")
                memo: dict[datetime, int] = {}
                stamps = [memo.get(s.time) or memo.setdefault(s.time, _us(s.time)) for s in items]
                seen: set[Any] = set()
                if mark in stamps:  # a batch may have been split inside one instant
                    seen = {
                        r[0]
                        for r in con.execute(
                            f"SELECT {spec.key} FROM {spec.samples} WHERE history_datetime = ?",
                            [_from_us(mark)],
                        ).fetchall()
                    }
                fresh = [
                    s
                    for s, us in zip(items, stamps, strict=True)
                    if us > mark or (us == mark and key_of(s) not in seen)
                ]
                if not fresh:
                    continue
                start = next_ids[spec.base] + 1
                n = len(fresh)
                cols = columns(spec.base, fresh)
                types = dict(spec.sample_columns())
                frame = {k: _array(types[k], v) for k, v in cols.items()}
                frame["history_id"] = np.arange(start, start + n, dtype=np.int64)
                frame["history_datetime"] = np.array([memo[s.time] for s in fresh], dtype=np.int64)
                con.register("_orrery_samples", frame)
                try:
                    con.execute(_insert_sql(spec, "_orrery_samples"))
                finally:
                    con.unregister("_orrery_samples")
                next_ids[spec.base] = start + n - 1
                top = max(memo[s.time] for s in fresh)
                if top > mark:
                    self._advance(f"samples:{spec.base}", top)
                written += n
        self._sample_ids = next_ids
        return written

    # -- rollups ---------------------------------------------------------------------------
    def _rollup_sql(self, spec: StatsSpec, level: str) -> str:
        """INSERT of one level for [$1, $2): hourly from samples, daily from hourly."""
        src = spec.samples if level == "hourly" else spec.hourly
        unit = "hour" if level == "hourly" else "day"
        group = [f"date_trunc('{unit}', history_datetime)", spec.key]
        out = ["nextval('rollup_history_id')", group[0], spec.key]
        if spec.status:
            group.append(spec.status)
            out.append(spec.status)
            out.append(
                "sum(seconds_in_status) / 60.0" if level == "hourly" else "sum(minutes_in_status)"
            )
        out.append("count(*)" if level == "hourly" else "sum(sample_count)")
        for c, m, _ in spec.measures:
            if level == "hourly":
                out += [f"avg({c})", f"max({c})"]
            else:
                out += [f"sum({c} * sample_count) / sum(sample_count)", f"max({m})"]
        for c, _ in spec.lasts:
            out.append(f"arg_max({c}, history_datetime)")
        return (
            f"INSERT INTO {(spec.hourly if level == 'hourly' else spec.daily)} "
            f"SELECT {', '.join(out)} FROM {src} "
            f"WHERE history_datetime >= $1 AND history_datetime < $2 "
            f"GROUP BY {', '.join(group)}"
        )

    def rollup(self, now: datetime) -> dict[str, int]:
        """Rolls up every closed hour, then every closed day, not rolled before."""
        now = naive_utc(now) - self.rollup_grace
        done: dict[str, int] = {}
        with self._lock:
            for level, unit, src_of in (
                ("hourly", "hour", lambda s: s.samples),
                ("daily", "day", lambda s: s.hourly),
            ):
                end = _floor(now, unit)
                for spec in STATS:
                    name = f"{level}:{spec.base}"
                    if level == "daily":
                        # a day is closed once all its hours are rolled
                        end = min(
                            _floor(now, "day"), _from_us(self.position(f"hourly:{spec.base}"))
                        )
                        end = _floor(end, "day")
                    with self._tx() as con:
                        mark = self.position(name)
                        if mark == 0:
                            first = _scalar(
                                con, f"SELECT min(history_datetime) FROM {src_of(spec)}"
                            )
                            if first is None:
                                continue
                            start = _floor(first, unit)
                        else:
                            start = _from_us(mark)
                        if start >= end:
                            continue
                        con.execute(self._rollup_sql(spec, level), [start, end])
                        n = _scalar(
                            con,
                            f"SELECT count(*) FROM "
                            f"{spec.hourly if level == 'hourly' else spec.daily} "
                            "WHERE history_datetime >= ? AND history_datetime < ?",
                            [start, end],
                        )
                        self._advance(name, _us(end))
                        done[name] = n
        return done

    def apply_retention(self, now: datetime) -> dict[str, int]:
        """Deletes what is older than the retention, never samples not yet rolled up."""
        now = naive_utc(now)
        deleted: dict[str, int] = {}
        r = self.retention
        with self._lock, self._tx() as con:
            for spec in STATS:
                for table, keep, guard in (
                    (spec.samples, r.samples, f"hourly:{spec.base}"),
                    (spec.hourly, r.hourly, f"daily:{spec.base}"),
                    (spec.daily, r.daily, None),
                ):
                    if keep is None:
                        continue
                    cutoff = now - keep
                    if guard is not None:
                        cutoff = min(cutoff, _from_us(self.position(guard)))
                    n = _scalar(con, f"DELETE FROM {table} WHERE history_datetime < ?", [cutoff])
                    if n:
                        deleted[table] = n
        return deleted

    def maintain(self, now: datetime) -> dict[str, Any]:
        return {"rolled": self.rollup(now), "deleted": self.apply_retention(now)}

    # -- reading ---------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Runs one read-only statement (else a ReadOnlyError); returns (columns, rows)."""
        res = self._read(sql, params, None)
        return res.columns, res.rows

    def run_sql(self, sql: str) -> QueryResult:
        """SQL from outside: one read-only statement under ``sql_limits`` (QueryTimeout
        when it runs past the time; ``truncated`` when it has more rows), QueryBusy when
        ``sql_concurrency`` such queries are running already."""
        if not self._sql_slots.acquire(blocking=False):
            raise QueryBusy(f"{self.sql_concurrency} warehouse queries are running already")
        try:
            return self._read(sql, None, self.sql_limits)
        finally:
            self._sql_slots.release()

    def _read(self, sql: str, params: Sequence[Any] | None, limits: QueryLimits | None) -> Any:
        check_read_only(sql)  # before a cursor is taken
        with self._lock:  # only to take the cursor: the query itself runs beside ingest
            cur = self.con.cursor()
        try:
            return run_read_only(cur, sql, params, limits)
        finally:
            cur.close()


def open_read_only(
    path: Path | str, allowed_paths: Sequence[str] = ()
) -> duckdb.DuckDBPyConnection:
    """A connection that cannot write (DuckDB refuses every change on it), locked down
    like the Manager's but for ``allowed_paths``. The PostgreSQL macros
    (``history.pgdialect``) are in the file once a Manager of this version opened it; on
    an older file they are created for this connection only (not for its cursors)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no history warehouse at {p} (run `orrery history rebuild`)")
    try:
        con = duckdb.connect(str(p), read_only=True)
        lock_down(con, allowed_paths)
        if not _scalar(
            con, "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'to_char'"
        ):
            pgdialect.register_temp(con)  # a file written before the macros existed
        return con
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise WarehouseBusy(
                f"{p} is open for writing by another process (the running Manager): "
                "query it through the Manager's API, or stop the Manager first"
            ) from e
        raise


class WarehouseBusy(Exception):
    """The DuckDB file is held by a writer in another process."""
