"""The projection runner: catch up from the log in large batches, then follow it live.

Every projection keeps its position (the last notification id it has absorbed) in the
``tracking`` table, written in the SAME transaction as its rows, so a crash at any point
leaves rows and position consistent: a restart resumes exactly where the last commit
stopped (exactly-once). Gaps in notification ids are normal (rolled-back appends): the
runner always reads ``notification_id > position`` in id order, which the log's table
lock makes equal to commit order, so a gap never stalls it and nothing is skipped.

Projections share one in-memory domain ``Engine`` that the runner advances event by
event; each projection sees ``Change(position, event, before, after)`` with the engine
as it stood right after that event (for name lookups), buffers its rows, and writes them
in ``flush`` inside the batch transaction. A projection that can restore the engine from
its own tables (the engine view) spares a replay on restart.

Coalesced batches: when every projection keeps only each object's last change of a
batch (``Projection.coalesces``: the engine view), a batch is folded object by object
(``_absorb_coalesced``): a run of plain updates becomes one ``replace`` from one decode
of the run's concatenated JSON, and each projection observes one ``Change`` per object.
The engine ends where event-by-event application would.

Live following: PostgreSQL LISTEN on the library's channel (the insert NOTIFYs it), the
in-process bus (``attach(bus)``), and a slow poll as a safety net; whichever wakes first.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple
from uuid import UUID

import msgspec

from commands.store import EventLog, decode_event, parse_topic, topic_of
from domain.base import EVENT_TYPES, Aggregate, Event
from domain.engine import Engine, VersionMismatch
from projections.db import ViewDB

log = logging.getLogger("orrery.projections")

DEFAULT_BATCH = 20_000
_GC_PAUSE_ROWS = 1_000


_DECODERS: dict[str, Any] = {}


def fast_decode(topic: str, state: bytes) -> Event:
    """decode_event with the decoder cached per stored topic (current versions only;
    older shapes go through decode_event and its upcasters)."""
    dec = _DECODERS.get(topic)
    if dec is None:
        name, version = parse_topic(topic)
        cls = EVENT_TYPES.get(name)
        if cls is None or version != cls.VERSION:
            return decode_event(topic, state)
        dec = _DECODERS[topic] = msgspec.json.Decoder(cls)
    return dec.decode(state)


# topic -> (event class or None, its JSON merges as its payload) for coalesced batches
_TOPIC_INFO: dict[str, tuple[type[Event] | None, bool]] = {}
_ENVELOPE = ("originator_id", "originator_version", "timestamp", "meta")


def _topic_info(topic: str) -> tuple[type[Event] | None, bool]:
    """The event class of a stored topic and whether its events *merge*: a current-
    version, plain update (the default ``Event.evolve``: copy the set fields onto the
    aggregate) whose payload fields are all required or default to UNSET, so that the
    keys of its stored JSON are exactly its ``payload()`` and a run of such events on
    one object equals ONE ``replace`` with the union of their JSON fields."""
    info = _TOPIC_INFO.get(topic)
    if info is None:
        name, version = parse_topic(topic)
        cls = EVENT_TYPES.get(name)
        merges = (
            cls is not None
            and version == cls.VERSION
            and cls.CREATES is None
            and not cls.DELETES
            and cls.evolve is Event.evolve
            and not cls.__struct_config__.array_like
            and cls.__struct_config__.tag is None
            and all(
                f.name in _ENVELOPE or f.required or f.default is msgspec.UNSET
                for f in msgspec.structs.fields(cls)
            )
        )
        info = _TOPIC_INFO[topic] = (cls, merges)
    return info


class Change(NamedTuple):
    """One event as a projection sees it: the object before and after it."""

    position: int
    event: Event
    before: Aggregate | None
    after: Aggregate | None


class StalePosition(Exception):
    """Another runner moved a projection's position: reload and carry on."""


class Projection:
    """Base of a projection. Subclasses set ``name`` and ``tables`` and implement
    ``create_tables``, ``observe`` and ``prepare``; ``position`` is kept by the runner."""

    name: str = ""
    tables: tuple[str, ...] = ()
    # True: the projection keeps only each object's LAST change of a batch, so the
    # runner may coalesce a batch per object (see ``ProjectionRunner._absorb_coalesced``)
    # and call ``observe`` once per object touched, with the engine at the batch's end.
    coalesces: bool = False
    # Columns ordering rows for the content digest, per table.
    digest_order: dict[str, str] = {}

    def __init__(self) -> None:
        self.position = 0

    def create_tables(self, db: ViewDB) -> None:
        raise NotImplementedError

    def load(self, db: ViewDB) -> None:
        """Called after (re)start and after a rollback: drop buffers, reload caches."""

    def observe(self, change: Change, engine: Engine) -> None:
        raise NotImplementedError

    def flush(self, db: ViewDB) -> None:
        """Writes the buffered rows (inside the batch transaction)."""
        self.prepare()(db)

    def prepare(self) -> Callable[[ViewDB], None]:
        """Detaches the buffered rows as immutable data and returns the function that
        writes them inside the batch transaction (possibly on another thread, while
        the next batch is being observed)."""
        raise NotImplementedError

    def restore_engine(self, db: ViewDB) -> Engine | None:
        """An Engine at ``self.position`` from the projection's own tables, if it can."""
        return None

    def digest(self, db: ViewDB) -> dict[str, str]:
        """A content digest per table, independent of the backend."""
        out = {}
        for t in self.tables:
            order = self.digest_order.get(t, "1")
            h = hashlib.sha256()
            n = 0
            for row in db.query(f"SELECT * FROM {{{t}}} ORDER BY {order}"):
                h.update(repr(tuple(_norm(v) for v in row)).encode())
                n += 1
            out[t] = f"{n}:{h.hexdigest()}"
        return out


def _norm(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, memoryview | bytes):
        return bytes(v).decode()
    return v


def ensure_tracking(db: ViewDB) -> None:
    with db.transaction():
        db.execute(
            "CREATE TABLE IF NOT EXISTS {tracking} ("
            "name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at DOUBLE PRECISION)"
        )


def read_positions(db: ViewDB) -> dict[str, int]:
    return {n: int(p) for n, p in db.query("SELECT name, position FROM {tracking}")}


Row = tuple[int, str, bytes, Any, int]


class LogReader:
    """Reads (notification id, topic, state, originator key, originator version) rows
    after a position, in id order. The key identifies the object (``_as_uuid``).

    On PostgreSQL it uses its own connection and a lean query (the library's
    select_notifications builds dict rows and Notification objects we do not need);
    on SQLite it goes through the library's recorder.
    """

    def __init__(self, log_: EventLog) -> None:
        self.log = log_
        self._conn: Any = None
        self._sql = ""
        if log_.is_postgres:
            import psycopg

            from projections.db import split_schema

            conninfo, _ = split_schema(log_.database_url or "")
            rec: Any = log_.recorder
            self._conninfo = conninfo
            # The object's id as its 16 bytes (a cheap, hashable key; no Python UUID
            # per row) and its version: what a coalesced batch groups and checks by.
            oid = (
                "uuid_send(originator_id)"
                if getattr(rec.datastore, "originator_id_type", "uuid") == "uuid"
                else "originator_id"
            )
            table = f'"{rec.datastore.schema}"."{rec.events_table_name}"'
            where = "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            self._sql = (
                f"SELECT notification_id, topic, state, {oid}, originator_version "
                f"FROM {table} {where}"
            )
            # For coalesced batches the server also cuts each JSON object's braces
            # off (``body``), so runs concatenate without a slice per event here.
            self._sql_bodies = (
                "SELECT notification_id, topic, "
                "'\\x2c'::bytea || substring(state FROM 2 FOR length(state) - 2), "
                f"{oid}, originator_version FROM {table} {where}"
            )
            self._psycopg = psycopg
            self.channel = rec.channel_name

    def fetch(self, after: int, limit: int, *, bodies: bool = False) -> list[Row]:
        """Rows after ``after``; with ``bodies`` each state comes as its JSON object's
        body: a comma, then the object without its braces (``_whole`` undoes it)."""
        if not self._sql:
            notes = self.log.recorder.select_notifications(
                start=after, limit=limit, inclusive_of_start=False
            )
            return [
                (
                    n.id,
                    n.topic,
                    b"," + bytes(n.state)[1:-1] if bodies else n.state,
                    n.originator_id,
                    n.originator_version,
                )
                for n in notes
            ]
        for attempt in range(5):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._psycopg.connect(self._conninfo, autocommit=True)
                with self._conn.cursor(binary=True) as cur:
                    sql = self._sql_bodies if bodies else self._sql
                    cur.execute(sql, (after, limit), prepare=True)
                    return cur.fetchall()
            except self._psycopg.OperationalError:
                if attempt == 4:
                    raise
                self._conn = None
                time.sleep(0.2 * (attempt + 1))
        return []  # pragma: no cover

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ProjectionRunner:
    """Runs projections over the log into one view database.

    ``catch_up()`` absorbs everything written so far; ``start()`` also follows the log
    in a thread; ``wait_for(position, timeout)`` is read-your-writes.
    """

    def __init__(
        self,
        log_: EventLog,
        db: ViewDB,
        projections: Sequence[Projection],
        *,
        batch: int = DEFAULT_BATCH,
        poll: float = 1.0,
    ) -> None:
        if not projections:
            raise ValueError("no projections")
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names repeat: {names}")
        self.log = log_
        self.db = db
        self.projections = list(projections)
        self.batch = batch
        self.poll = poll
        self.reader = LogReader(log_)
        self.engine = Engine()
        self._uuids: dict[Any, UUID] = {}  # originator keys seen -> ids (coalesced batches)
        self.position = 0  # every projection has absorbed at least this far
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.RLock()  # one batch at a time
        self.batches = 0
        self.events = 0
        self.last_error: BaseException | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        # Called with the new position after each committed batch (benchmarks, tests).
        self.on_commit: list[Callable[[int], None]] = []
        self._init()

    # -- state -------------------------------------------------------------------------
    def _init(self) -> None:
        ensure_tracking(self.db)
        with self.db.transaction():
            for p in self.projections:
                p.create_tables(self.db)
        self._reload()

    def _reload(self) -> None:
        """Positions and engine from the database (start, and after any failure)."""
        stored = read_positions(self.db)
        for p in self.projections:
            p.position = stored.get(p.name, 0)
            p.load(self.db)
        low = min(p.position for p in self.projections)
        engine = None
        for p in self.projections:
            if p.position == low:
                engine = p.restore_engine(self.db)
                if engine is not None:
                    break
        if engine is None:
            engine = Engine()
            for nid, ev in self.log.iter_all(0, batch=self.batch):
                if nid > low:
                    break
                engine.apply(ev)
                engine.position = nid
        engine.position = low
        self.engine = engine
        self._set_position(low)

    def _set_position(self, pos: int) -> None:
        with self._cond:
            self.position = pos
            self._cond.notify_all()

    # -- absorbing ---------------------------------------------------------------------
    def catch_up(
        self, progress: Callable[[int], None] | None = None, *, upto: int | None = None
    ) -> int:
        """Absorbs every event committed so far (or up to ``upto``); returns how many.

        Large catch-ups pipeline: the next batch is read in a thread, and a batch's
        transaction commits in another thread while the following batch is absorbed
        (at most one commit in flight; rows are detached before, so no sharing).
        """
        total = 0
        with self._lock:
            if upto is not None and self.position >= upto:
                return 0
            bodies = self._coalesces(self.position)
            rows = self.reader.fetch(self.position, self.batch, bodies=bodies)
            if not rows:
                return 0
            big = len(rows) >= self.batch
            prefetch = _Prefetch(self.reader, self.batch) if big else None
            pause = _GcPause() if big else None
            try:
                while rows:
                    if upto is not None and rows[-1][0] > upto:
                        rows = [r for r in rows if r[0] <= upto]
                        if rows:
                            self._absorb(rows, pipelined=False, bodies=bodies)
                            total += len(rows)
                        break
                    after = rows[-1][0]
                    if prefetch is not None:
                        prefetch.request(after, self._coalesces(after))
                    self._absorb(rows, pipelined=big, bodies=bodies)
                    total += len(rows)
                    if pause is not None:
                        pause.tick()
                    if progress is not None:
                        progress(self.engine.position)
                    if prefetch is not None:
                        rows, bodies = prefetch.get()
                        if len(rows) < self.batch:
                            prefetch.close()
                            prefetch = None
                    else:
                        bodies = self._coalesces(after)
                        rows = self.reader.fetch(after, self.batch, bodies=bodies)
                self._join_commit()
            except BaseException:
                self._abandon()
                raise
            finally:
                if pause is not None:
                    pause.close()
                if prefetch is not None:
                    prefetch.close()
            if progress is not None:
                progress(self.position)
        return total

    def _coalesces(self, after: int) -> bool:
        """Whether the batch after ``after`` is absorbed coalesced: every projection
        keeps only last changes and none is ahead of ``after``."""
        return all(p.coalesces and p.position <= after for p in self.projections)

    def _absorb(self, rows: Sequence[Row], *, pipelined: bool, bodies: bool = False) -> None:
        """Absorbs a batch; ``bodies``: its rows were read for ``_absorb_coalesced``."""
        engine = self.engine
        projections = self.projections
        objects = engine.objects
        last = engine.position
        n = len(rows)
        if bodies and rows:
            # The batch's rows live until the batch is folded: tens of thousands of
            # young containers that the cyclic GC would scan (and promote up to full
            # collections) many times over, for nothing. Pause it meanwhile.
            paused = len(rows) >= _GC_PAUSE_ROWS and gc.isenabled()
            if paused:
                gc.disable()
            try:
                self._absorb_coalesced(rows)
            finally:
                if paused:
                    gc.enable()
            last = rows[-1][0]
            rows = ()
        for nid, topic, state, _, _ in rows:
            event = fast_decode(topic, state if isinstance(state, bytes) else bytes(state))
            oid = event.originator_id
            before = objects.get(oid)
            engine.apply(event)
            change = Change(nid, event, before, objects.get(oid))
            for p in projections:
                if nid > p.position:
                    p.observe(change, engine)
            last = nid
        engine.position = last
        # Detach every projection's rows now (this thread); write them later.
        writers = [(p, p.prepare()) for p in projections if last > p.position]
        self._join_commit()
        if pipelined:
            if self._committer is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix="orrery-view")
            self._pending = self._committer.submit(self._commit, last, writers, n)
        else:
            self._commit(last, writers, n)

    def _absorb_coalesced(self, rows: Sequence[Row]) -> None:
        """Advances the engine over a batch object by object, folding each run of
        merging updates (``_topic_info``) into one ``replace`` instead of decoding and
        applying every event; other events are decoded and evolved one by one. The
        engine ends exactly where ``Engine.apply`` event by event would (objects,
        versions, tombstones; the name index too, names being unique), with the same
        version checks. Each projection then observes, per object touched, one
        ``Change``: the position of the object's last event, that event (for a merged
        run: its envelope, carrying the run's merged payload), ``before`` the object
        before that event or run, ``after`` its state at the batch's end."""
        groups: dict[Any, list[Row]] = {}
        for row in rows:
            g = groups.get(row[3])
            if g is None:
                groups[row[3]] = [row]
            else:
                g.append(row)
        engine = self.engine
        objects = engine.objects
        topic_info = _TOPIC_INFO
        changes = []
        uuids = self._uuids
        if len(uuids) > 1_000_000:
            uuids.clear()
        for key, events in groups.items():
            oid = uuids.get(key)
            if oid is None:
                oid = uuids[key] = _as_uuid(key)
            cur = objects.get(oid)
            tomb = engine.tombstone_of(oid)
            version = cur.version if cur is not None else (tomb or 0)
            before: Aggregate | None = cur
            last_event: Event | None = None
            # An open run of merging events: the object before it, the typed payload
            # merged so far, and the stored JSON of the current class's events.
            base: Aggregate | None = None
            acc: dict[str, Any] = {}
            parts: list[bytes] = []
            run_cls: type[Event] | None = None
            run_topic = None  # the topic of the events in ``parts``
            for _, topic, state, _, v in events:
                if v != version + 1:
                    raise VersionMismatch(f"{topic} v{v} on {oid}, expected v{version + 1}")
                version = v
                if topic == run_topic:  # the common case: the run goes on
                    parts.append(state)
                    continue
                cls, merges = topic_info.get(topic) or _topic_info(topic)
                if merges and cur is not None:
                    if base is None:
                        base = before = cur
                        acc = {}
                    elif parts:
                        last_event = _merge(run_cls, parts, acc)
                    run_cls, run_topic, parts = cls, topic, [state]
                    continue
                if base is not None:  # close the open run
                    last_event = _merge(run_cls, parts, acc)
                    cur = msgspec.structs.replace(
                        base, version=last_event.originator_version, **acc
                    )
                    base, parts, run_cls, run_topic = None, [], None, None
                event = fast_decode(topic, _whole(state))
                if cur is None and event.CREATES is None:
                    raise VersionMismatch(f"{event.TOPIC} on unknown object {oid}")
                before = cur
                cur = event.evolve(cur)
                if cur is None:
                    tomb = event.originator_version
                last_event = event
            if base is not None:
                last_event = _merge(run_cls, parts, acc)
                cur = msgspec.structs.replace(base, version=last_event.originator_version, **acc)
            engine.restore(oid, cur, tomb)
            assert last_event is not None
            changes.append(Change(events[-1][0], last_event, before, cur))
        engine.position = rows[-1][0]
        for p in self.projections:
            observe = p.observe
            for change in changes:
                observe(change, engine)

    def _join_commit(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _abandon(self) -> None:
        """After any failure: let an in-flight commit finish, then reload from the
        database (positions, buffers, engine) so nothing half-absorbed survives."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except BaseException:
                log.debug("in-flight commit failed too", exc_info=True)
        self._reload()

    def _commit(self, last: int, writers: list[tuple[Projection, Any]], n: int) -> None:
        db = self.db
        now = time.time()
        with db.transaction():
            curs = []
            for p, write in writers:
                write(db)
                curs.append(
                    db.execute(
                        "UPDATE {tracking} SET position = ?, updated_at = ? "
                        "WHERE name = ? AND position = ?",
                        (last, now, p.name, p.position),
                    )
                )
            db.sync()
            for (p, _), cur in zip(writers, curs, strict=True):
                if cur.rowcount == 0:
                    if p.position != 0 or read_positions(db).get(p.name) is not None:
                        raise StalePosition(f"projection {p.name} was moved by another runner")
                    db.execute(
                        "INSERT INTO {tracking} (name, position, updated_at) VALUES (?, ?, ?)",
                        (p.name, last, now),
                    )
        for p, _ in writers:
            p.position = max(p.position, last)
        self.batches += 1
        self.events += n
        self._set_position(last)
        for fn in self.on_commit:
            fn(last)

    # -- following ---------------------------------------------------------------------
    def notify(self, *_: Any) -> None:
        """Wakes the follower (the bus calls this with each committed batch)."""
        self._wake.set()

    def attach(self, bus: Any) -> ProjectionRunner:
        bus.subscribe(self.notify)
        return self

    def start(self) -> ProjectionRunner:
        if self._threads:
            return self
        self._stop.clear()
        t = threading.Thread(target=self._follow, name="orrery-projections", daemon=True)
        self._threads.append(t)
        if self.reader._sql:
            lt = threading.Thread(target=self._listen, name="orrery-listen", daemon=True)
            self._threads.append(lt)
        for th in self._threads:
            th.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._join_commit()
        if self._committer is not None:
            self._committer.shutdown()
            self._committer = None
        self.reader.close()

    def _follow(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.catch_up()
                self.last_error = None
                delay = 0.05
            except Exception as e:
                self.last_error = e
                log.exception("projection batch failed; retrying")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._wake.set()

    def _absorb_now(self) -> None:
        """Catches up on this thread when nobody else is (one thread hand-off less
        between a NOTIFY and the view commit); otherwise wakes the follower."""
        if not self._lock.acquire(blocking=False):
            self._wake.set()
            return
        try:
            self.catch_up()
        except Exception:
            self._wake.set()  # the follower retries with its back-off and logging
        finally:
            self._lock.release()

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.reader._conninfo, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self.reader.channel}"')
                    self._wake.set()  # anything missed while (re)connecting
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._absorb_now()
            except Exception:
                if self._stop.is_set():
                    return
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                time.sleep(0.5)

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """True once every projection has absorbed ``position`` (False on timeout)."""
        if self.position >= position:
            return True
        deadline = time.monotonic() + timeout
        if not self._threads:
            while self.position < position and time.monotonic() < deadline:
                if self.catch_up() == 0:
                    time.sleep(0.005)
            return self.position >= position
        self._wake.set()
        with self._cond:
            while self.position < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def digest(self) -> dict[str, dict[str, str]]:
        return {p.name: p.digest(self.db) for p in self.projections}


def _merge(cls: type[Event] | None, parts: list[bytes], acc: dict[str, Any]) -> Event:
    """Adds the payload of a run of one class's events to ``acc`` and returns the run's
    last event. The run's stored JSON objects are concatenated into one and decoded
    into the class's payload struct (``_payload_decoder``): msgspec keeps the last value
    of a repeated key (``tests/unit/test_projection_coalesce.py`` holds it to that), so
    each field comes from the last event that set it; the envelope keys are skipped
    unparsed."""
    assert cls is not None
    event = fast_decode(topic_of(cls), _whole(parts[-1]))
    if len(parts) == 1:
        acc.update(event.payload())
        return event
    doc = bytearray().join(parts)
    doc[0] = 0x7B  # the first body's comma -> "{"
    doc.append(0x7D)
    merged = _payload_decoder(cls).decode(doc)
    unset = msgspec.UNSET
    for f in merged.__struct_fields__:
        v = getattr(merged, f)
        if v is not unset:
            acc[f] = v
    return event


_PAYLOAD_DECODERS: dict[type[Event], Any] = {}


def _payload_decoder(cls: type[Event]) -> Any:
    """A decoder of a struct with ``cls``'s payload fields (same names in JSON, same
    types and constraints), every one defaulting to UNSET."""
    dec = _PAYLOAD_DECODERS.get(cls)
    if dec is None:
        fields = [f for f in msgspec.structs.fields(cls) if f.name not in _ENVELOPE]
        payload = msgspec.defstruct(
            f"{cls.__name__}Payload",
            [(f.name, f.type, msgspec.UNSET) for f in fields],
            kw_only=True,
            gc=False,
            rename={f.name: f.encode_name for f in fields},
        )
        dec = _PAYLOAD_DECODERS[cls] = msgspec.json.Decoder(payload)
    return dec


def _whole(body: bytes) -> bytes:
    """A stored JSON object from its body (``LogReader.fetch(bodies=True)``)."""
    return b"{" + bytes(body)[1:] + b"}"


def _as_uuid(key: Any) -> UUID:
    """An originator id as the log reader keys it (16 bytes, text or a UUID)."""
    if isinstance(key, UUID):
        return key
    if isinstance(key, bytes | memoryview):
        return UUID(bytes=bytes(key))
    return UUID(str(key))


class _GcPause:
    """Pauses Python's cyclic GC during a large catch-up (start-up, replay, a follower
    far behind): batch after batch of rows (tuples, bytes) are allocated and freed by
    reference counting, and the collector would only scan them, over and over, for
    nothing (~10% of a catch-up). Cyclic garbage of other threads waits at most
    ``every`` seconds: a full collection runs then. A GC disabled by someone else is
    left alone."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.paused = gc.isenabled()
        if self.paused:
            gc.disable()
        self.since = time.monotonic()

    def tick(self) -> None:
        if self.paused and time.monotonic() - self.since > self.every:
            gc.collect()
            self.since = time.monotonic()

    def close(self) -> None:
        if self.paused:
            self.paused = False
            gc.enable()


class _Prefetch:
    """Reads the next batch in a thread while the current one is absorbed."""

    def __init__(self, reader: LogReader, batch: int) -> None:
        self._reader = LogReader(reader.log) if reader._sql else reader
        self._own = self._reader is not reader
        self._batch = batch
        self._req: queue.SimpleQueue[tuple[int, bool] | None] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            req = self._req.get()
            if req is None:
                return
            after, bodies = req
            try:
                self._out.put((self._reader.fetch(after, self._batch, bodies=bodies), bodies))
            except BaseException as e:
                self._out.put(e)

    def request(self, after: int, bodies: bool) -> None:
        self._req.put((after, bodies))

    def get(self) -> tuple[list[Row], bool]:
        out = self._out.get()
        if isinstance(out, BaseException):
            raise out
        return out

    def close(self) -> None:
        self._req.put(None)
        self._thread.join(timeout=10)
        if self._own:
            self._reader.close()


def replay_engine(events: Iterable[tuple[int, Event]], upto: int | None = None) -> Engine:
    """A fresh Engine from (notification id, event) pairs, stopping after ``upto``."""
    engine = Engine()
    for nid, ev in events:
        if upto is not None and nid > upto:
            break
        engine.apply(ev)
        engine.position = nid
    return engine
