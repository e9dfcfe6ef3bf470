"""The event feed filled after start (api.feed): the same entries as a description of the
whole log from position 0, no describing on the starting thread, and a reader that
comes before the fill gets the whole answer or a 503, never a part."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

import api.feed as api_feed
from api.faults import ApiError
from api.feed import Feed
from commands.audit import AddExternalEvent, HideEvent
from commands.bootstrap import open_bus
from commands.cluster import AddCluster
from commands.datacenter import AddDataCenter, UpdateDataCenter
from domain.engine import Engine
from projections import feed as read_feed
from projections.runner import Change

pytestmark = pytest.mark.unit


@pytest.fixture
def bus(pg_schema_url: str, tmp_path: Any) -> Any:
    b = open_bus(pg_schema_url, tmp_path, checkpoint_every=20)  # checkpoints inside the log
    yield b
    b.stop()


def _load(bus: Any, n: int, tag: str) -> None:
    for i in range(n):
        dc = bus.execute(AddDataCenter(name=f"{tag}-dc-{i}", actor="admin@internal")).created[0]
        bus.execute(UpdateDataCenter(data_center_id=dc, description=f"r{i}", actor="a@internal"))
        if i % 3 == 0:
            bus.execute(AddCluster(name=f"{tag}-cl-{i}", data_center_id=dc, actor="admin@internal"))
        if i % 5 == 0:
            bus.execute(AddExternalEvent(description=f"{tag} note {i}", actor="admin@internal"))


def _whole_log(bus: Any) -> dict[int, dict[str, Any] | None]:
    """Every position's description, from an Engine replaying the log from 0."""
    engine = Engine()
    out: dict[int, dict[str, Any] | None] = {}
    for nid, ev in bus.log.iter_all(0):
        before = engine.objects.get(ev.originator_id)
        engine.apply(ev)
        engine.position = nid
        if ev.TOPIC == "ExternalEventAdded":
            out[nid] = {"description": ev.description, "severity": str(ev.severity)}
            continue
        after = engine.objects.get(ev.originator_id)
        out[nid] = read_feed.describe(Change(nid, ev, before, after), engine)
    return out


def _ready(feed: Feed) -> None:
    assert feed.ready.wait(60), "the feed's fill did not end"
    assert feed.failed is None


def test_the_filled_feed_equals_the_whole_log_described_from_position_0(bus) -> None:
    _load(bus, 25, "before")
    feed = Feed(bus, keep=40, fill=False)  # the fill held: what commits now is queued
    _load(bus, 6, "during")
    feed.start_fill()
    _ready(feed)
    _load(bus, 3, "after")
    assert feed.position == bus.log.head()
    expected = _whole_log(bus)
    head = bus.log.head()
    entries = feed.list()
    assert [e["id"] for e in entries] == list(range(head, head - 40, -1))  # newest first
    described = 0
    for e in entries:
        d = expected[e["id"]]
        if d is None:
            continue
        described += 1
        assert (e["description"], e["severity"]) == (d["description"], d["severity"])
        if "code" in d:
            assert e["code"] == d["code"]
    assert described == len(entries)  # every entry here is one the read side describes
    # Pages by ``from`` cover the same entries in the same order.
    assert feed.list(after=head - 10) == entries[:10]
    assert feed.list(limit=7) == entries[:7]


def test_a_hidden_entry_stays_hidden_after_a_restart_of_the_feed(bus) -> None:
    _load(bus, 4, "h")
    gone = bus.log.head() - 1
    bus.execute(HideEvent(position=gone, actor="admin@internal"))
    feed = Feed(bus)
    _ready(feed)
    assert gone not in [e["id"] for e in feed.list()]
    assert feed.get(gone) is None and feed.get(gone + 1) is not None


def test_start_describes_nothing_on_the_starting_thread_and_no_more_than_it_keeps(
    bus, monkeypatch
) -> None:
    _load(bus, 30, "w")
    calls: Counter[int] = Counter()
    real = read_feed.describe

    def counted(*a: Any, **k: Any) -> Any:
        calls[threading.get_ident()] += 1
        return real(*a, **k)

    monkeypatch.setattr(read_feed, "describe", counted)
    head = bus.log.head()
    feed = Feed(bus, keep=25)
    starter = calls[threading.get_ident()]
    _ready(feed)
    assert starter == 0  # the Manager's start does not wait for descriptions
    assert head > 100 and 0 < sum(calls.values()) <= 25  # the window, not the history
    assert len(feed.list()) == 25


def test_a_reader_before_the_fill_waits_then_gets_a_503_naming_the_feed(bus, monkeypatch) -> None:
    _load(bus, 3, "r")
    feed = Feed(bus, fill=False)
    with pytest.raises(ApiError) as err:
        asyncio.run(feed.until_ready(timeout=0.05))
    assert err.value.status == 503 and "event feed is still reading" in err.value.detail
    monkeypatch.setattr(api_feed, "READY_WAIT", 0.05)
    for read in (feed.list, lambda: feed.get(1)):
        with pytest.raises(ApiError) as err:
            read()
        assert err.value.status == 503
    feed.start_fill()
    asyncio.run(feed.until_ready(timeout=60))  # then the whole answer
    assert [e["id"] for e in feed.list()] == list(range(bus.log.head(), 0, -1))
