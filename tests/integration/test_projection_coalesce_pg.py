"""Coalesced catch-up of the engine view on PostgreSQL (the log reader's own query, JSON
bodies cut by the server): the same view and engine as event by event, and a stop in
the middle resumes exactly where the last commit left it."""

from __future__ import annotations

import pytest

from commands.store import EventLog
from projections.db import ViewDB
from projections.engine_view import EngineView
from projections.runner import ProjectionRunner
from tests.unit.test_projection_coalesce import _compare, _dc_log, _state

pytestmark = pytest.mark.integration


def test_coalesced_equals_event_by_event_on_postgres(pg_schema_url: str) -> None:
    _compare(_dc_log(), (1, 2, 5, 7, 100_000), pg_schema_url)


def test_coalesced_catch_up_resumes_after_a_partial_one(pg_schema_url: str, tmp_path) -> None:
    events = _dc_log()
    log = EventLog(pg_schema_url, tmp_path)
    log.append(events)
    whole_db = ViewDB(pg_schema_url, prefix="whole")
    whole = ProjectionRunner(log, whole_db, [EngineView()], batch=7)
    whole.catch_up()
    expected = _state(whole)
    whole.close()
    whole_db.close()

    db = ViewDB(pg_schema_url, prefix="parts")
    first = ProjectionRunner(log, db, [EngineView()], batch=7)
    assert first.catch_up(upto=25) == 25
    first.close()
    again = ProjectionRunner(log, db, [EngineView()], batch=5)  # restored from its rows
    assert again.position == 25
    assert again.catch_up() == len(events) - 25
    assert _state(again) == expected
    again.close()
    db.close()
    log.close()
