"""Checkpoints of the write side: the whole Engine (objects, deleted ids, position) and the
idempotency window of command ids at one log position, so that a start loads the newest
one and applies only the log after it, and time travel starts near any position.

Where: the table ``orrery_checkpoints`` in the log's own database (PostgreSQL schema, or
the SQLite log file), not files in DATA_DIR: the Manager keeps no state of its own apart
from its database, a checkpoint is saved and backed up with the log it summarises, and
one transaction makes a row atomic (no tmp + rename dance, no torn file after a crash).

Rows are *full* (every object) or *deltas* (the objects changed, and the ids deleted,
since the row before, named by ``prev``): a full row every ``every`` events, a delta
every ``every // deltas`` events in between. Loading at a position: the newest full row
at or before it, then its deltas in order while each names the one before, then the log
after the last one. A row carries its schema (``SCHEMA``: this format's version and a
fingerprint of the domain model's source) in a column and inside its blob, and a hash
of its blob: a row of another schema is never read (a full replay then), a corrupt or
truncated one is skipped like a missing one. They are a cache: dropping the table costs
only a replay.

The idempotency window goes with the rows of the newest chain (a full row the whole
window, a delta the command ids remembered since the row before); a newer full row
clears it from the older ones. Only what a replay would restore of a result is kept
(created ids, position, event count; a value only when it is an id), so no command's
returned secret reaches the table; refusals (DomainError: class, message, field) are
kept too, which a replay could not give back.

Writing never slows the writer: the bus's listener only compares its position with the
next due one and wakes the checkpoint thread, which takes the committed state under
``bus.lock`` (``CommandBus.committed_state``: dict copies of immutable aggregates, the
not-yet-committed batches undone in the copy) and encodes and writes it off the lock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import msgspec

import domain
from commands.store import EventLog, decode_event
from domain.base import AGGREGATE_TYPES, Aggregate, DomainError
from domain.engine import Engine

log = logging.getLogger("orrery.checkpoints")

FORMAT = 2  # bump when the layout of a row's blob changes
CHECKPOINT_EVERY = 50_000  # events between full rows
DELTAS = 10  # rows per full row: a delta every CHECKPOINT_EVERY // DELTAS events
TABLE = "orrery_checkpoints"
WINDOW_REWRITE = 400_000  # command ids between two rows holding the whole window
_MAGIC = b"ORRCKPT\x01"
_HASH = 16


def _fingerprint() -> str:
    """This format's version and a hash of the domain model: its source files and the
    shape of every aggregate. Any change to either makes older rows unreadable."""
    h = hashlib.sha256(f"format {FORMAT}".encode())
    for path in sorted(Path(domain.__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    types = [AGGREGATE_TYPES[name] for name in sorted(AGGREGATE_TYPES)]
    h.update(msgspec.json.encode(msgspec.json.schema_components(types)[1], order="sorted"))
    return f"{FORMAT}:{h.hexdigest()[:32]}"


SCHEMA = _fingerprint()


# -- the blob ------------------------------------------------------------------------------
class _Group(msgspec.Struct, array_like=True):
    type: str
    objects: list[msgspec.Raw]  # each the msgpack of one object of that type
    ids: bytes  # their ids, 16 bytes each (last: PostgreSQL compresses a value only when
    # its first kilobyte compresses)


class _State(msgspec.Struct, array_like=True):
    schema: str
    position: int
    prev: int  # the row this delta follows; -1 for a full row
    groups: list[_Group]
    gone: list[tuple[bytes, int | None]]  # delta: ids no longer live (their tombstone)
    tombstones: list[tuple[bytes, int]]  # full: every deleted id; delta: new ones


WindowEntry = tuple[Any, ...]  # see CheckpointWindow


_enc = msgspec.msgpack.Encoder(uuid_format="bytes")
_state_dec = msgspec.msgpack.Decoder(_State)
_json_enc = msgspec.json.Encoder()
_window_dec = msgspec.json.Decoder(tuple[str, dict[str, tuple[Any, ...]]])
_group_decs: dict[str, msgspec.msgpack.Decoder[Any]] = {}


def _seal(payload: bytes) -> bytes:
    """Magic, the hash of the payload, the payload compressed (zlib, fast level: a row
    is read whole by every load, and the database's own compression of it happens after
    the transfer's bytes are already counted)."""
    packed = zlib.compress(payload, 1)
    return _MAGIC + hashlib.blake2b(packed, digest_size=_HASH).digest() + packed


def _unseal(blob: bytes | memoryview | None) -> bytes | None:
    """The payload, or None when the blob is not one of ours or does not match its hash."""
    if blob is None:
        return None
    raw = bytes(blob)
    head = len(_MAGIC) + _HASH
    if len(raw) < head or not raw.startswith(_MAGIC):
        return None
    packed = raw[head:]
    if hashlib.blake2b(packed, digest_size=_HASH).digest() != raw[len(_MAGIC) : head]:
        return None
    try:
        return zlib.decompress(packed)
    except zlib.error:
        return None


def _group(cls: type[Aggregate], objs: Iterable[Aggregate]) -> _Group:
    encode = _enc.encode
    listed = list(objs)
    return _Group(
        cls.__name__,
        [msgspec.Raw(encode(o)) for o in listed],
        b"".join(o.id.bytes for o in listed),
    )


def encode_state(engine: Engine, prev: Engine | None, prev_position: int) -> bytes:
    """A full row's blob (``prev`` None), else a delta from ``prev``'s state."""
    gone: list[tuple[bytes, int | None]] = []
    if prev is None:
        groups = [_group(cls, objs.values()) for cls, objs in engine.groups() if objs]
        tombs = [(oid.bytes, v) for oid, v in engine.tombstones().items()]
    else:
        before = prev.objects
        changed: dict[type[Aggregate], list[Aggregate]] = {}
        for oid, obj in engine.objects.items():
            if before.get(oid) is not obj:
                changed.setdefault(type(obj), []).append(obj)
        groups = [_group(cls, objs) for cls, objs in changed.items()]
        now = engine.objects
        tomb_now = engine.tombstones()
        gone = [(oid.bytes, tomb_now.get(oid)) for oid in before if oid not in now]
        tomb_before = prev.tombstones()
        tombs = [(oid.bytes, v) for oid, v in tomb_now.items() if tomb_before.get(oid) != v]
    state = _State(
        SCHEMA, engine.position, -1 if prev is None else prev_position, groups, gone, tombs
    )
    return _seal(_enc.encode(state))


def decode_state(blob: bytes | memoryview | None) -> _State | None:
    """A row's content with its objects still encoded, or None when it is not one of
    this schema's or does not match its hash."""
    payload = _unseal(blob)
    if payload is None:
        return None
    try:
        state = _state_dec.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if state.schema != SCHEMA:
        return None
    for g in state.groups:
        if g.type not in AGGREGATE_TYPES or len(g.ids) != 16 * len(g.objects):
            return None
    return state


def _decoder(type_name: str) -> msgspec.msgpack.Decoder[Any]:
    dec = _group_decs.get(type_name)
    if dec is None:
        dec = _group_decs[type_name] = msgspec.msgpack.Decoder(AGGREGATE_TYPES[type_name])
    return dec


def engine_of(states: list[_State]) -> Engine:
    """The Engine of a full row (``states[0]``) and the deltas after it, each of which
    follows the one before. The rows are read newest first and each live object is
    decoded once, from the newest row that holds it; the Engine is built once."""
    newest: dict[bytes, tuple[str, msgspec.Raw] | None] = {}
    setdefault = newest.setdefault
    for state in reversed(states):
        for b, _tomb in state.gone:
            setdefault(b, None)
        for g in state.groups:
            ids, name = g.ids, g.type
            for i, raw in enumerate(g.objects):
                setdefault(ids[16 * i : 16 * i + 16], (name, raw))
    # In the order the live Engine had them: the full row's, then each delta's new ones.
    order: dict[bytes, None] = {}
    for state in states:
        for g in state.groups:
            ids = g.ids
            order.update(dict.fromkeys(ids[k : k + 16] for k in range(0, len(ids), 16)))
    by_type: dict[str, list[Aggregate]] = {}
    for b in order:
        found = newest[b]
        if found is not None:
            name, raw = found
            by_type.setdefault(name, []).append(_decoder(name).decode(raw))
    tombstones: dict[UUID, int] = {}
    for state in states:
        for b, tomb in state.gone:
            if tomb is not None:
                tombstones[UUID(bytes=b)] = tomb
        tombstones.update((UUID(bytes=b), v) for b, v in state.tombstones)
    return Engine.from_parts(by_type.values(), tombstones, states[-1].position)


def encode_window(entries: dict[str, WindowEntry]) -> bytes:
    """The window's blob: JSON (its ids' 128-bit integers do not fit msgpack)."""
    return _seal(_json_enc.encode([SCHEMA, entries]))


def decode_window(blob: bytes | memoryview | None) -> dict[str, WindowEntry] | None:
    payload = _unseal(blob)
    if payload is None:
        return None
    try:
        schema, entries = _window_dec.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return entries if schema == SCHEMA else None


def error_of(cls_name: str, message: str, field: str | None) -> DomainError:
    """A remembered refusal back as its exception (an unknown class as DomainError)."""
    cls = _error_classes().get(cls_name, DomainError)
    try:
        return cls(message, field=field)
    except TypeError:
        return DomainError(message, field=field)


def _error_classes() -> dict[str, type[DomainError]]:
    out: dict[str, type[DomainError]] = {}
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        c = todo.pop()
        out[c.__name__] = c
        todo.extend(c.__subclasses__())
    return out


# -- the table -----------------------------------------------------------------------------
class Row(msgspec.Struct, frozen=True):
    position: int
    full: bool
    prev: int
    state: bytes


class CheckpointStore:
    """The checkpoint rows in the log's database (created on first use)."""

    def __init__(self, event_log: EventLog) -> None:
        rec: Any = event_log.recorder
        self.log = event_log
        self._ds = rec.datastore
        self.pg = event_log.is_postgres
        if self.pg:
            self.table = f'"{self._ds.schema}"."{TABLE}"'
            self._p = "%s"
            blob = "BYTEA"
        else:
            self.table = TABLE
            self._p = "?"
            blob = "BLOB"
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "position BIGINT PRIMARY KEY, schema TEXT NOT NULL, is_full INTEGER NOT NULL, "
            f"prev BIGINT NOT NULL, created_at TEXT NOT NULL, state {blob} NOT NULL, "
            f"idempotency {blob}, window_full INTEGER NOT NULL DEFAULT 0)",
            (),
            commit=True,
        )

    def execute(self, sql: str, params: tuple[Any, ...], *, commit: bool) -> list[Any]:
        sql = sql.replace("?", self._p)
        with self._ds.transaction(commit=commit) as cur:
            cur.execute(sql, params)
            try:
                rows = cur.fetchall()
            except Exception:  # no result set (DDL, INSERT)
                return []
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in rows or []]

    def save(
        self,
        position: int,
        full: bool,
        prev: int,
        state: bytes,
        window: bytes | None,
        *,
        window_full: bool = False,
    ) -> None:
        """Writes one row in one transaction. A row with the whole window clears the
        older rows' windows."""
        p = self._p
        now = datetime.now(UTC).isoformat()
        with self._ds.transaction(commit=True) as cur:
            cur.execute(
                f"INSERT INTO {self.table} (position, schema, is_full, prev, created_at, "
                f"state, idempotency, window_full) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, "
                f"{p}, {p}) ON CONFLICT (position) DO UPDATE SET schema = excluded.schema, "
                "is_full = excluded.is_full, prev = excluded.prev, "
                "created_at = excluded.created_at, state = excluded.state, "
                "idempotency = excluded.idempotency, window_full = excluded.window_full",
                (position, SCHEMA, 1 if full else 0, prev, now, state, window, int(window_full)),
            )
            if window_full:
                cur.execute(
                    f"UPDATE {self.table} SET idempotency = NULL "
                    f"WHERE position < {p} AND idempotency IS NOT NULL",
                    (position,),
                )

    def positions(self) -> list[tuple[int, bool]]:
        """(position, full) of every row of this schema, oldest first."""
        rows = self.execute(
            f"SELECT position, is_full FROM {self.table} WHERE schema = ? ORDER BY position",
            (SCHEMA,),
            commit=False,
        )
        return [(int(a), bool(b)) for a, b in rows]

    def chain(self, upto: int | None = None, *, before_full: int | None = None) -> list[Row]:
        """The newest full row of this schema at or before ``upto`` (older than
        ``before_full`` when given) and every row of this schema after it up to
        ``upto``, oldest first."""
        cond, params = "", []
        if upto is not None:
            cond += " AND position <= ?"
            params.append(upto)
        limit_full = cond
        full_params = list(params)
        if before_full is not None:
            limit_full += " AND position < ?"
            full_params.append(before_full)
        found = self.execute(
            f"SELECT MAX(position) FROM {self.table} WHERE schema = ? AND is_full = 1{limit_full}",
            (SCHEMA, *full_params),
            commit=False,
        )
        base = found[0][0] if found else None
        if base is None:
            return []
        rows = self.execute(
            f"SELECT position, is_full, prev, state FROM {self.table} "
            f"WHERE schema = ? AND position >= ?{cond} ORDER BY position",
            (SCHEMA, int(base), *params),
            commit=False,
        )
        return [
            Row(int(pos), bool(full), int(prev), bytes(state)) for pos, full, prev, state in rows
        ]

    def windows(self) -> list[bytes]:
        """The window blobs to merge for a start, oldest first: the newest row's back to
        the newest one holding a whole window."""
        base = self.execute(
            f"SELECT MAX(position) FROM {self.table} WHERE schema = ? AND window_full = 1 "
            "AND idempotency IS NOT NULL",
            (SCHEMA,),
            commit=False,
        )
        if not base or base[0][0] is None:
            return []
        rows = self.execute(
            f"SELECT idempotency FROM {self.table} WHERE schema = ? AND position >= ? "
            "AND idempotency IS NOT NULL ORDER BY position",
            (SCHEMA, int(base[0][0])),
            commit=False,
        )
        return [bytes(r[0]) for r in rows]

    def delete_all(self) -> None:
        self.execute(f"DELETE FROM {self.table}", (), commit=True)


class Loaded(msgspec.Struct):
    engine: Engine
    window: dict[str, WindowEntry]
    rows: int  # rows applied (a full one and its deltas)


def load(store: CheckpointStore, upto: int | None = None, *, window: bool = True) -> Loaded | None:
    """The Engine at the newest usable checkpoint at or before ``upto`` (the newest of
    all when None); None when there is none. A corrupt full row makes it try the one
    before; a corrupt or missing delta ends the chain there (more tail to replay)."""
    before: int | None = None
    while True:
        rows = store.chain(upto, before_full=before)
        if not rows:
            return None
        head = rows[0]
        state = decode_state(head.state)
        if state is None or state.prev != -1 or state.position != head.position:
            log.warning("checkpoint at %d is unreadable: skipped", head.position)
            before = head.position
            continue
        states = [state]
        for row in rows[1:]:
            delta = decode_state(row.state)
            if delta is None or delta.prev != states[-1].position or delta.position != row.position:
                log.warning("checkpoint delta at %d does not follow: chain ends", row.position)
                break
            states.append(delta)
        try:
            engine = engine_of(states)
        except Exception:
            log.warning("checkpoint at %d does not load: skipped", head.position, exc_info=True)
            before = head.position
            continue
        applied = len(states)
        entries: dict[str, WindowEntry] = {}
        if window:
            # The rows' windows follow each other (each holds the ids remembered since
            # the row before), whatever happened to the Engine's chain; an unreadable
            # one loses only its own ids.
            for blob in store.windows():
                got = decode_window(blob)
                if got is None:
                    log.warning("a checkpoint's idempotency window is unreadable: skipped")
                    continue
                entries.update(got)
        return Loaded(engine, entries, applied)


def replay_tail(
    event_log: EventLog,
    engine: Engine,
    upto: int | None = None,
    note: Callable[[Any, int], None] | None = None,
    batch: int = 20_000,
) -> int:
    """Applies the log after the Engine's position (up to ``upto``); returns how many."""
    n = 0
    rec = event_log.recorder
    while True:
        rows = rec.select_notifications(
            start=engine.position, limit=batch, stop=upto, inclusive_of_start=False
        )
        if not rows:
            return n
        for r in rows:
            if upto is not None and r.id > upto:
                return n
            ev = decode_event(r.topic, r.state)
            engine.apply(ev)
            engine.position = r.id
            if note is not None:
                note(ev, r.id)
            n += 1


# -- writing -------------------------------------------------------------------------------
class _Bus(Protocol):
    lock: Any
    log: EventLog

    @property
    def engine(self) -> Engine: ...
    def committed_state(self) -> Engine: ...
    def window_entries(self, since: int | None = None) -> tuple[dict[str, WindowEntry], int]: ...
    def window_added(self) -> int: ...
    def subscribe(self, fn: Callable[[list[tuple[int, Any]]], None]) -> None: ...
    def on_stop(self, fn: Callable[[], None]) -> None: ...


class CheckpointWriter:
    """Writes the bus's checkpoints in a thread of its own: a full row every ``every``
    events, a delta every ``every // deltas``, and a full row at a clean stop."""

    def __init__(self, bus: _Bus, *, every: int = CHECKPOINT_EVERY, deltas: int = DELTAS) -> None:
        if every < 1 or deltas < 1:
            raise ValueError("checkpoint intervals must be positive")
        self.bus = bus
        self.every = every
        self.step = max(1, every // deltas)
        self.store = CheckpointStore(bus.log)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._prev: Engine | None = None  # the state of the last row written
        self._prev_window: int | None = None  # window ids remembered up to the last row
        self._window_base = 0  # ... up to the last row holding the whole window
        self._last_full = -1
        self._due = bus.engine.position + self.step
        self.written = 0
        self.failures = 0
        self.cpu_s = 0.0  # CPU time the checkpoint thread spent writing rows

    def start(self) -> CheckpointWriter:
        if self._thread is None:
            self.bus.subscribe(self.on_committed)
            self.bus.on_stop(self.stop)
            self._thread = threading.Thread(
                target=self._run, name="orrery-checkpoints", daemon=True
            )
            self._thread.start()
        return self

    def on_committed(self, pairs: list[tuple[int, Any]]) -> None:
        """A bus listener (on the writer thread): only notes that one is due."""
        if self.bus.engine.position >= self._due:
            self._due = 1 << 62  # until the thread has written it
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            cpu0 = time.thread_time()
            try:
                self.write_now()
            except Exception:
                self.failures += 1
                log.exception("writing a checkpoint failed")
                self._due = self.bus.engine.position + self.step
            finally:
                self.cpu_s += time.thread_time() - cpu0

    def write_now(self, *, full: bool | None = None) -> int | None:
        """Takes the committed state and writes a row for it now (full when due or
        asked); returns its position, None when the last row is already there."""
        with self._write_lock:
            engine = self.bus.committed_state()
            pos = engine.position
            prev = self._prev
            if prev is not None and prev.position == pos and (not full or self._last_full == pos):
                self._due = pos + self.step
                return None
            if full is None:
                full = prev is None or pos - self._last_full >= self.every
            # The window goes whole into this process's first row and then again only
            # after WINDOW_REWRITE ids (merging at a start reads at most that many);
            # otherwise the ids remembered since the row before.
            since = self._prev_window
            if since is not None and self.bus.window_added() - self._window_base > WINDOW_REWRITE:
                since = None
            if prev is not None and prev.position == pos:
                since = None  # this row replaces the last one, whose ids it must hold too
            try:
                entries, count = self.bus.window_entries(since)
                state = encode_state(engine, None if full else prev, prev.position if prev else -1)
                self.store.save(
                    pos,
                    full,
                    -1 if full or prev is None else prev.position,
                    state,
                    encode_window(entries),
                    window_full=since is None,
                )
            except Exception:
                self._prev = None  # the chain is broken: the next row is a full one
                raise
            self._prev, self._prev_window = engine, count
            if since is None:
                self._window_base = count
            if full:
                self._last_full = pos
            self._due = pos + self.step
            self.written += 1
            return pos

    def stop(self) -> None:
        """Stops the thread, then writes a full row of the final state."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(30)
            self._thread = None
        try:
            self.write_now(full=True)
        except Exception:
            log.exception("writing the final checkpoint failed")
