"""The event store: the eventsourcing library on PostgreSQL (production) or SQLite.

Events are msgspec Structs stored as JSON under a stable topic; a topic carries the
event's shape version (``VmCreated`` is v1, ``VmCreated/v2`` the next), and older
shapes are upcast on read by the domain's registered upcasters.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import msgspec
import psycopg
import psycopg.errors
from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Mapper,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import ClientCursor
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

import domain.model  # noqa: F401  (fills the event registry)
from domain.base import AGGREGATE_TYPES, EVENT_TYPES, UPCASTERS, Aggregate, Event

_encode = msgspec.json.Encoder().encode
_decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {}


SNAPSHOT_TOPIC = "snapshot:"


def topic_of(cls: type[Event]) -> str:
    return cls.TOPIC if cls.VERSION == 1 else f"{cls.TOPIC}/v{cls.VERSION}"


def parse_topic(topic: str) -> tuple[str, int]:
    name, _, ver = topic.partition("/v")
    return name, int(ver) if ver else 1


def encode_event(event: Event) -> tuple[str, bytes]:
    return topic_of(type(event)), _encode(event)


def decode_event(topic: str, state: bytes) -> Event:
    name, version = parse_topic(topic)
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise LookupError(f"unknown event topic {topic!r}")
    if version == cls.VERSION:
        dec = _decoders.get(cls)
        if dec is None:
            dec = _decoders[cls] = msgspec.json.Decoder(cls)
        return dec.decode(state)
    data = msgspec.json.decode(state)
    while version < cls.VERSION:
        data = UPCASTERS[(name, version)](data)
        version += 1
    return msgspec.convert(data, cls)


class _NullTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:  # pragma: no cover - never called
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:  # pragma: no cover - never called
        raise NotImplementedError


class MsgspecMapper(Mapper[UUID]):
    """Maps msgspec events to the library's StoredEvent and back."""

    def __init__(self) -> None:
        super().__init__(transcoder=_NullTranscoder())

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic, state = encode_event(domain_event)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=topic,
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return decode_event(stored_event.topic, stored_event.state)


class OrreryPostgresRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder with a cheaper batch insert.

    Same table, same ``LOCK TABLE ... IN EXCLUSIVE MODE`` (insert order = commit
    order), same ``NOTIFY``, same lock timeout, one transaction per call. What differs
    is the wire: the whole transaction -- BEGIN, lock, notify, one multi-row INSERT
    ... RETURNING, COMMIT -- goes as ONE simple-protocol message with the rows as
    literals, so a batch costs one round trip and one wait (the library's pipeline
    takes two round trips and a dozen waits, each a GIL hand-off under load, plus
    ~80 us an event of composite-type text dumping).
    """

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{0}.{1}").format(
            Identifier(datastore.schema), Identifier(self.events_table_name)
        )
        self._head = SQL(
            "BEGIN; SET LOCAL lock_timeout = '{timeout}s'; "
            "LOCK TABLE {table} IN EXCLUSIVE MODE; NOTIFY {channel}; "
            "INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES "
        ).format(
            timeout=SQL(str(int(datastore.lock_timeout))),
            table=table,
            channel=Identifier(self.channel_name),
        )
        self._head_text: str | None = None
        self._writer_lock = threading.Lock()
        self._writer_conn: Any = None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        if not stored_events:
            return []
        # The writer keeps one connection of the pool for itself (no check-out per
        # batch); a concurrent caller, rare, takes another from the pool.
        if not self._writer_lock.acquire(blocking=False):
            with self.datastore.get_connection() as conn:
                return self._insert(conn, stored_events)
        try:
            conn = self._writer_connection()
            try:
                return self._insert(conn, stored_events)
            except psycopg.Error as e:
                if conn.closed or conn.broken or isinstance(e, psycopg.OperationalError):
                    self._release_writer_conn()
                raise _library_error(e) from e
        finally:
            self._writer_lock.release()

    def _writer_connection(self) -> Any:
        """The writer's own connection (opened again once broken); hold _writer_lock."""
        conn = self._writer_conn
        if conn is None or conn.closed or conn.broken:
            self._release_writer_conn()
            self.datastore.pool.open(True, 30.0)
            conn = self._writer_conn = self.datastore.pool.getconn()
        return conn

    def _release_writer_conn(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                self.datastore.pool.putconn(conn)

    def transaction_text(self, stored_events: Sequence[StoredEvent]) -> str:
        """The batch's whole transaction as one simple-protocol query."""
        head = self._head_text
        if head is None:
            head = self._head_text = self._head.as_string(None)
        rows = ",".join(
            f"('{_uuid_hex(e.originator_id)}',{int(e.originator_version)},"
            f"{_text_literal(e.topic)},E'\\\\x{e.state.hex()}')"
            for e in stored_events
        )
        return f"{head}{rows} RETURNING notification_id; COMMIT"

    def send_events(
        self, stored_events: Sequence[StoredEvent], text: str | None = None
    ) -> PendingInsert:
        """Sends the batch's transaction and returns without waiting for PostgreSQL, so
        the caller can work while the database commits; ``result()`` collects the ids.

        The writer's connection stays reserved until then. When it is busy (another
        caller) or the send fails, the batch goes through ``insert_events`` instead."""
        if not stored_events:
            return PendingInsert.done([])
        if not self._writer_lock.acquire(blocking=False):
            return PendingInsert.now(lambda: self.insert_events(stored_events))
        try:
            conn = self._writer_connection()
            pg = conn.pgconn
            pg.send_query((text or self.transaction_text(stored_events)).encode())
            while pg.flush():  # a nonblocking connection: push the rest of the query
                select.select([], [pg.socket], [], 1.0)
        except BaseException:
            self._release_writer_conn()
            self._writer_lock.release()
            return PendingInsert.now(lambda: self.insert_events(stored_events))
        return _PgPending(self, conn, stored_events)

    def _insert(self, conn: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        cur = ClientCursor(conn, row_factory=tuple_row)
        try:
            cur.execute(self.transaction_text(stored_events), prepare=False)
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")
            raise
        while cur.pgresult is None or cur.pgresult.status != ExecStatus.TUPLES_OK:
            if not cur.nextset():  # pragma: no cover - the INSERT always returns rows
                raise ProgrammingError("no notification ids returned")
        return [row[0] for row in cur.fetchall()]

    def close(self) -> None:
        self._release_writer_conn()


class PendingInsert:
    """An append on its way: ``wait(timeout)`` says whether it has finished,
    ``result()`` waits and returns the notification ids (or raises the library's error)."""

    def __init__(self, ids: list[int] | None = None, error: BaseException | None = None):
        self._ids = ids
        self._error = error

    @classmethod
    def done(cls, ids: list[int]) -> PendingInsert:
        return cls(ids)

    @classmethod
    def now(cls, insert: Any) -> PendingInsert:
        """Runs a blocking insert at once and holds its outcome."""
        try:
            return cls(list(insert() or []))
        except Exception as e:
            return cls(None, e)

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def result(self) -> list[int]:
        if self._error is not None:
            raise self._error
        assert self._ids is not None
        return self._ids


class _PgPending(PendingInsert):
    """The results of one transaction sent with ``send_events``, read as they arrive."""

    def __init__(
        self, recorder: OrreryPostgresRecorder, conn: Any, stored: Sequence[StoredEvent]
    ) -> None:
        super().__init__()
        self._rec = recorder
        self._conn = conn
        self._stored = stored
        self._results: list[Any] = []
        self._finished = False
        self._settled = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._finished:
            return True
        pg = self._conn.pgconn
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                pg.consume_input()
                while not pg.is_busy():
                    res = pg.get_result()
                    if res is None:
                        self._finished = True
                        return True
                    self._results.append(res)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if not select.select([pg.socket], [], [], left)[0] and left is not None:
                    return False
        except Exception as e:  # the connection broke: result() retries the plain way
            self._error = e
            self._finished = True
            return True

    def result(self) -> list[int]:
        if self._settled:
            return super().result()
        self.wait(None)
        self._settled = True
        rec, conn = self._rec, self._conn
        try:
            ids, failure = self._read()
        finally:
            if failure is not None or self._error is not None:
                if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(Exception):
                        conn.execute("ROLLBACK")
                if self._error is not None or conn.closed or conn.broken:
                    rec._release_writer_conn()
            rec._writer_lock.release()
        if self._error is not None or isinstance(failure, psycopg.OperationalError):
            # Lost connection or lock timeout: the way insert_events would have retried.
            self._ids = list(rec.insert_events(self._stored) or [])
            return self._ids
        if failure is not None:
            self._error = _library_error(failure)
            raise self._error
        self._ids = ids
        return ids

    def _read(self) -> tuple[list[int], psycopg.Error | None]:
        ids: list[int] | None = None
        for res in self._results:
            if res.status == ExecStatus.FATAL_ERROR:
                return [], psycopg.errors.error_from_result(res, self._conn.info.encoding)
            if res.status == ExecStatus.TUPLES_OK:
                ids = [int(res.get_value(i, 0)) for i in range(res.ntuples)]
        if ids is None:
            if self._error is not None:
                return [], None
            raise ProgrammingError("no notification ids returned")
        return ids, None


def _library_error(e: psycopg.Error) -> Exception:
    """The library's exception for a psycopg one (what its get_connection raises)."""
    for theirs, ours in (
        (psycopg.IntegrityError, IntegrityError),
        (psycopg.InterfaceError, InterfaceError),
        (psycopg.OperationalError, OperationalError),
        (psycopg.ProgrammingError, ProgrammingError),
        (psycopg.DataError, DataError),
        (psycopg.InternalError, InternalError),
        (psycopg.NotSupportedError, NotSupportedError),
        (psycopg.DatabaseError, DatabaseError),
    ):
        if isinstance(e, theirs):
            return ours(str(e))
    return PersistenceError(str(e))


_PLAIN = re.compile(r"[A-Za-z0-9_./-]*")


def _uuid_hex(value: Any) -> str:
    return (value if type(value) is UUID else UUID(str(value))).hex


_LITERALS: dict[str, str] = {}


def _text_literal(text: str) -> str:
    lit = _LITERALS.get(text)
    if lit is None:
        lit = f"'{text}'" if _PLAIN.fullmatch(text) else Literal(text).as_string(None)
        if len(_LITERALS) < 4096:  # topics: a few hundred
            _LITERALS[text] = lit
    return lit


def persistence_env(database_url: str | None, data_dir: Path | str | None) -> dict[str, str]:
    """The library's environment for a PostgreSQL URL, else a SQLite file in data_dir."""
    if database_url:
        u = urlparse(database_url)
        if u.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"unsupported database URL scheme {u.scheme!r}")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": (u.path or "/orrery").lstrip("/") or "orrery",
            "POSTGRES_HOST": u.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(u.port or 5432),
            "POSTGRES_USER": unquote(u.username or "orrery"),
            "POSTGRES_PASSWORD": unquote(u.password or ""),
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_LOCK_TIMEOUT": "5",
            "POSTGRES_SCHEMA": parse_qs(u.query).get("schema", ["public"])[0],
            "APPLICATION_RECORDER_TOPIC": "commands.store:OrreryPostgresRecorder",
        }
    base = Path(data_dir or "./data")
    base.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(base / "orrery-log.sqlite"),
        "SQLITE_LOCK_TIMEOUT": "10",
    }


class EventLog(Application[UUID]):
    """The append-only log. Table names come from ``name``: ``orrery_events`` on PostgreSQL."""

    name = "Orrery"
    is_snapshotting_enabled = True

    def __init__(self, database_url: str | None = None, data_dir: Path | str | None = None):
        # The library merges os.environ into its settings; keep only our own keys.
        env = persistence_env(database_url, data_dir)
        env["IS_SNAPSHOTTING_ENABLED"] = "y"
        env["CREATE_TABLE"] = "y"
        self._blocked = {k: "" for k in os.environ if _foreign_setting(k)}
        super().__init__(env={**self._blocked, **env})
        self.database_url = database_url

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    @property
    def is_postgres(self) -> bool:
        return self.database_url is not None

    @property
    def app_recorder(self) -> ApplicationRecorder:
        return self.recorder

    # -- the operations the rest of Orrery uses --------------------------------
    def append(self, events: Sequence[Event]) -> list[int]:
        """Appends events in one transaction; returns their notification ids."""
        stored = [self.mapper.to_stored_event(e) for e in events]
        ids = self.recorder.insert_events(stored)
        return list(ids or [])

    def append_stored(self, stored: Sequence[StoredEvent]) -> list[int]:
        return list(self.recorder.insert_events(stored) or [])

    def prepare_append(self, stored: Sequence[StoredEvent]) -> str | None:
        """What ``send_append`` will send (built ahead, off the commit's critical path)."""
        rec = self.recorder
        return rec.transaction_text(stored) if isinstance(rec, OrreryPostgresRecorder) else None

    def send_append(
        self, stored: Sequence[StoredEvent], prepared: str | None = None
    ) -> PendingInsert:
        """Starts appending; on PostgreSQL returns before the commit, elsewhere after."""
        rec = self.recorder
        if isinstance(rec, OrreryPostgresRecorder):
            return rec.send_events(stored, prepared)
        return PendingInsert.now(lambda: rec.insert_events(stored))

    def read(
        self, after: int = 0, limit: int = 1000, stop: int | None = None
    ) -> list[tuple[int, Event]]:
        """Events with notification id > after, in log order."""
        notes = self.recorder.select_notifications(
            start=after, limit=limit, stop=stop, inclusive_of_start=False
        )
        return [(n.id, decode_event(n.topic, n.state)) for n in notes]

    def read_raw(self, after: int = 0, limit: int = 1000) -> Sequence[Notification]:
        return self.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )

    def iter_all(self, after: int = 0, batch: int = 5000) -> Iterator[tuple[int, Event]]:
        while True:
            chunk = self.read(after, batch)
            if not chunk:
                return
            yield from chunk
            after = chunk[-1][0]

    def events_of(
        self, originator_id: UUID, upto_version: int | None = None, after_version: int = 0
    ) -> list[Event]:
        stored = self.recorder.select_events(
            originator_id, gt=after_version or None, lte=upto_version
        )
        return [decode_event(s.topic, s.state) for s in stored]

    # -- snapshots of long-lived aggregates ---------------------------------------------
    # A snapshot is the aggregate's own msgspec JSON at one version, in the library's
    # snapshots table under the topic ``snapshot:<AggregateClass>``. They are a cache:
    # the log alone rebuilds everything, and a missing snapshot costs only time.
    def store_snapshot(self, aggregate: Aggregate) -> bool:
        """Stores the aggregate as it is (its ``version``); False if that one exists."""
        return self.store_snapshots([aggregate]) == 1

    def store_snapshots(self, aggregates: Sequence[Aggregate]) -> int:
        """Stores aggregates in one transaction; returns how many were new. If one
        already exists (a rebuild after restart), each is tried alone."""
        assert self.snapshots is not None
        stored = [
            StoredEvent(
                originator_id=a.id,
                originator_version=a.version,
                topic=f"{SNAPSHOT_TOPIC}{type(a).__name__}",
                state=_encode(a),
            )
            for a in aggregates
        ]
        if not stored:
            return 0
        insert = self.snapshots.recorder.insert_events
        try:
            insert(stored)
            return len(stored)
        except IntegrityError:
            if len(stored) == 1:
                return 0
        written = 0
        for s in stored:
            try:
                insert([s])
                written += 1
            except IntegrityError:
                pass
        return written

    def latest_snapshot(self, oid: UUID, upto_version: int | None = None) -> Aggregate | None:
        assert self.snapshots is not None
        found = self.snapshots.recorder.select_events(oid, lte=upto_version, desc=True, limit=1)
        if not found:
            return None
        s = found[0]
        cls = AGGREGATE_TYPES[s.topic.removeprefix(SNAPSHOT_TOPIC)]
        return msgspec.json.decode(s.state, type=cls)

    def aggregate_at(self, oid: UUID, version: int | None = None) -> Aggregate | None:
        """The aggregate at ``version`` (default: its latest), from its newest snapshot at
        or below that version plus the events after it; None if absent or deleted."""
        agg = self.latest_snapshot(oid, version)
        for ev in self.events_of(
            oid, upto_version=version, after_version=agg.version if agg else 0
        ):
            agg = ev.evolve(agg)
        return agg

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        if isinstance(self.recorder, OrreryPostgresRecorder):
            self.recorder.close()
        super().close()


def _foreign_setting(key: str) -> bool:
    prefixes = (
        "POSTGRES_",
        "SQLITE_",
        "PERSISTENCE_MODULE",
        "ORRERY_POSTGRES",
        "MAPPER_TOPIC",
        "APPLICATION_RECORDER_TOPIC",
    )
    return key.startswith(prefixes) or key in ("CIPHER_KEY", "CIPHER_TOPIC", "COMPRESSOR_TOPIC")
