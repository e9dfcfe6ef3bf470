"""Coalesced batches (``ProjectionRunner._absorb_coalesced``): a projection that keeps
only each object's last change of a batch gets the same rows, and the runner's engine the
same state, as event by event -- over random command sequences of every area (custom
``evolve``s, creations, deletions, renames, runs of updates of several classes)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from commands.store import EventLog
from domain.base import Event, Meta
from domain.datacenter import DataCenterAdded, DataCenterStatusChanged, DataCenterUpdated
from domain.engine import VersionMismatch
from domain.statuses import DataCenterStatus
from projections.db import ViewDB
from projections.engine_view import EngineView
from projections.runner import Change, ProjectionRunner, _payload_decoder, _topic_info
from tests.unit.test_model_statemachine import Model

pytestmark = pytest.mark.unit


class _EventByEvent(EngineView):
    coalesces = False


def _state(runner: ProjectionRunner) -> tuple[Any, ...]:
    e = runner.engine
    tombs = {oid: e.tombstone_of(oid) for oid in e._tombstones}
    names = dict(e._names)
    return runner.digest()["engine_view"], e.digest(), tombs, names, e.position


def _compare(events: list[Event], batches: tuple[int, ...], url: str | None = None) -> None:
    """The event-by-event view and engine against coalesced catch-ups in ``batches``,
    on SQLite or, with ``url``, on PostgreSQL (an empty schema)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        log = EventLog(url, d)
        log.append(events)
        ref_db = ViewDB(url, d, prefix="by_event")
        ref = ProjectionRunner(log, ref_db, [_EventByEvent()], batch=10_000)
        ref.catch_up()
        expected = _state(ref)
        ref.close()
        ref_db.close()
        for batch in batches:
            db = ViewDB(url, d, prefix=f"coalesced_{batch}")
            runner = ProjectionRunner(log, db, [EngineView()], batch=batch)
            assert runner.catch_up() == len(events)
            assert _state(runner) == expected, batch
            runner.close()
            db.close()
        log.close()


def test_random_model_logs_coalesce_to_the_event_by_event_view() -> None:
    logs: list[list[Event]] = []

    class Collect(Model):
        def teardown(self) -> None:
            logs.append(list(self.w.log))

    run_state_machine_as_test(
        Collect,
        settings=settings(
            max_examples=6,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert sum(len(x) for x in logs) > 200
    for events in logs:
        _compare(events, (1, 3, 17, 100_000))


def _dc_log() -> list[Event]:
    """Runs of updates of two classes on a few objects, a default (omitted) Meta after a
    set one."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [UUID(int=(1 << 64) + k) for k in range(3)]
    out: list[Event] = []
    v = dict.fromkeys(ids, 0)

    def ev(cls: type[Event], oid: UUID, **kw: Any) -> None:
        v[oid] += 1
        out.append(cls(originator_id=oid, originator_version=v[oid], timestamp=now, **kw))

    for k, oid in enumerate(ids):
        ev(DataCenterAdded, oid, name=f"dc{k}", meta=Meta(actor="a"))
    for r in range(5):
        for k, oid in enumerate(ids):
            status = DataCenterStatus.UP if r % 2 else DataCenterStatus.MAINTENANCE
            ev(DataCenterStatusChanged, oid, status=status)
            ev(DataCenterUpdated, oid, description=f"r{r}", meta=Meta(actor=f"u{r}"))
            ev(DataCenterUpdated, oid, name=f"dc{k}-{r}")  # default Meta: left out
            ev(DataCenterUpdated, oid, local=bool(r % 2), compatibility_version="4.7")
    return out


def test_msgspec_keeps_the_last_value_of_a_repeated_key() -> None:
    """What ``projections.runner._merge`` builds on: a run's JSON objects concatenated
    into one decode with each field from the last object that has it."""
    doc = b'{"name":"a","description":"x","local":true,"name":"b","description":"y"}'
    merged = _payload_decoder(DataCenterUpdated).decode(doc)
    assert (merged.name, merged.description, merged.local) == ("b", "y", True)
    assert merged.quota_mode is msgspec.UNSET


def test_merged_runs_keep_the_last_envelope_and_every_field() -> None:
    assert _topic_info("DataCenterUpdated")[1] and not _topic_info("DataCenterAdded")[1]
    events = _dc_log()
    _compare(events, (1, 2, 5, 7, 100_000))

    seen: list[Change] = []

    class Spy(EngineView):
        name = "spy"

        def observe(self, change: Change, engine: Any) -> None:
            seen.append(change)
            super().observe(change, engine)

    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(None, Path(tmp))
        log.append(events)
        db = ViewDB(None, Path(tmp))
        runner = ProjectionRunner(log, db, [Spy()], batch=100_000)
        runner.catch_up()
        runner.close()
        db.close()
        log.close()
    last = {e.originator_id: e for e in events}
    assert len(seen) == len(last)
    for ch in seen:
        end = last[ch.event.originator_id]
        assert ch.position == len(events) - events[::-1].index(end)
        assert ch.event.originator_version == end.originator_version
        assert ch.event.timestamp == end.timestamp and ch.event.meta == end.meta == Meta()
        assert ch.after is not None and ch.after.version == end.originator_version


def test_a_gap_in_versions_is_refused_like_engine_apply(tmp_path: Path) -> None:
    events = _dc_log()
    bad = events[:3] + events[4:]  # the 4th event (v2 of the first object) is missing
    log = EventLog(None, tmp_path)
    log.append(bad)
    db = ViewDB(None, tmp_path)
    runner = ProjectionRunner(log, db, [EngineView()], batch=100)
    with pytest.raises(VersionMismatch):
        runner.catch_up()
    assert runner.position == 0  # nothing half-absorbed survives
    runner.close()
    db.close()
    log.close()
