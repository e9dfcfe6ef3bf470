"""The event store: the eventsourcing library on PostgreSQL (production) or SQLite.

Events are msgspec Structs stored as JSON under a stable topic; a topic carries the
event's shape version (``VmCreated`` is v1, ``VmCreated/v2`` the next), and older
shapes are upcast on read by the domain's registered upcasters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import msgspec
from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    Mapper,
    Notification,
    StoredEvent,
    Transcoder,
)

import domain.model  # noqa: F401  (fills the event registry)
from domain.base import EVENT_TYPES, UPCASTERS, Event

_encode = msgspec.json.Encoder().encode
_decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {}


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

    def events_of(self, originator_id: UUID, upto_version: int | None = None) -> list[Event]:
        stored = self.recorder.select_events(originator_id, lte=upto_version)
        return [decode_event(s.topic, s.state) for s in stored]

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0


def _foreign_setting(key: str) -> bool:
    prefixes = ("POSTGRES_", "SQLITE_", "PERSISTENCE_MODULE", "ORRERY_POSTGRES", "MAPPER_TOPIC")
    return key.startswith(prefixes) or key in ("CIPHER_KEY", "CIPHER_TOPIC", "COMPRESSOR_TOPIC")
