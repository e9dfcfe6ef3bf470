"""Events round-trip through the log's codec; an older event shape is upcast on read; the
log's database URLs (TCP or Unix socket) are read as libpq reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import msgspec
import pytest

from commands.store import decode_event, encode_event, parse_topic
from domain.base import EVENT_TYPES, UPCASTERS, Event, Meta

pytestmark = pytest.mark.unit


class _ProbeRenamed(Event, frozen=True, kw_only=True):
    """Test-only event at version 2: v1 had ``title``, v2 calls it ``name`` and adds ``size``."""

    TOPIC = "TestProbeRenamed"
    VERSION = 2
    name: str
    size: int


def _v1_to_v2(data: dict) -> dict:
    data = dict(data)
    data["name"] = data.pop("title")
    data.setdefault("size", 0)
    return data


UPCASTERS[("TestProbeRenamed", 1)] = _v1_to_v2


def test_roundtrip_keeps_types() -> None:
    ev = _ProbeRenamed(
        originator_id=uuid4(),
        originator_version=3,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        meta=Meta(actor="admin@internal", correlation_id="c-1"),
        name="x",
        size=7,
    )
    topic, state = encode_event(ev)
    assert topic == "TestProbeRenamed/v2"
    assert decode_event(topic, state) == ev


def test_old_shape_is_upcast_on_read() -> None:
    oid = uuid4()
    old_state = msgspec.json.encode(
        {
            "originator_id": str(oid),
            "originator_version": 1,
            "timestamp": "2026-01-02T03:04:05Z",
            "title": "legacy",
        }
    )
    ev = decode_event("TestProbeRenamed", old_state)  # a v1 topic has no suffix
    assert isinstance(ev, _ProbeRenamed)
    assert (ev.name, ev.size, ev.originator_id) == ("legacy", 0, oid)


def test_topics_parse_and_registry_is_unique() -> None:
    assert parse_topic("VmCreated") == ("VmCreated", 1)
    assert parse_topic("VmCreated/v3") == ("VmCreated", 3)
    assert EVENT_TYPES["TestProbeRenamed"] is _ProbeRenamed
    with pytest.raises(TypeError):

        class _Dup(Event, frozen=True, kw_only=True):
            TOPIC = "TestProbeRenamed"


def test_database_urls_for_tcp_and_unix_sockets() -> None:
    from commands.store import libpq_url, persistence_env, with_schema

    tcp = "postgresql://orrery:pw@db.example:6432/orrery?schema=s1"
    assert libpq_url(tcp) == "postgresql://orrery:pw@db.example:6432/orrery"
    assert with_schema(tcp, "s2") == "postgresql://orrery:pw@db.example:6432/orrery?schema=s2"
    env = persistence_env(tcp, None)
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_SCHEMA"]) == (
        "db.example",
        "6432",
        "s1",
    )
    # libpq's socket forms: ?host=/dir, or the directory percent-encoded as the host
    sock = "postgresql://orrery:pw@/orrery?host=/run/postgresql&schema=s1"
    assert libpq_url(sock) == "postgresql://orrery:pw@/orrery?host=/run/postgresql"
    assert persistence_env(sock, None)["POSTGRES_HOST"] == "/run/postgresql"
    encoded = "postgresql://orrery:pw@%2Frun%2Fpostgresql:5432/orrery"
    assert persistence_env(encoded, None)["POSTGRES_HOST"] == "/run/postgresql"
