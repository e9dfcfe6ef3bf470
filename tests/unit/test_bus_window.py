"""The bus's idempotency window: bounded, lossless, and invisible to the garbage collector."""

from __future__ import annotations

import gc
from uuid import UUID, uuid4

import pytest

import commands.bus as bus_module
from commands import checkpoints
from commands.bus import CommandResult, _Window
from domain.base import DomainError

pytestmark = pytest.mark.unit


def test_round_trip_keeps_every_field() -> None:
    w = _Window()
    ids = [uuid4(), uuid4()]
    made = CommandResult(command="AddVm", value=ids[0], created=ids, position=42, events=3)
    plain = CommandResult(command="UpdateVm", value={"k": 1}, position=43, events=1)
    refused = DomainError("Cannot run VM. VM is running.")
    w.put("a", made)
    w.put("b", plain)
    w.put("c", refused)
    assert w.get("a") == made
    assert w.get("b") == plain
    assert w.get("c") is refused
    assert w.get("missing") is None
    assert "a" in w and "missing" not in w


def test_oldest_ids_are_dropped(monkeypatch) -> None:
    monkeypatch.setattr(bus_module, "IDEMPOTENCY_WINDOW", 5)
    w = _Window()
    for n in range(12):
        w.put(f"c{n}", CommandResult(command="X", position=n, events=1))
    assert len(w) == 5
    assert "c6" not in w and "c7" in w and "c11" in w


def test_kept_results_are_not_tracked_by_the_gc() -> None:
    w = _Window()
    for n in range(1000):
        w.put(f"c{n}", CommandResult(command="X", value=uuid4(), created=[uuid4()], position=n))
    gc.collect()  # tuples of untracked items are untracked at the first collection
    assert not any(gc.is_tracked(v) for v in w._d.values())


def test_window_entries_keep_no_returned_values_but_ids() -> None:
    """A result's value other than an id (it may be a ticket) stays out of the row."""
    w = _Window()
    oid = UUID(int=7)
    w.put("a", CommandResult(command="X", value={"ticket": "s3cret"}, created=[oid]))
    w.put("b", CommandResult(command="Y", value=oid, created=[], position=3, events=1))
    blob = checkpoints.encode_window(w.entries()[0])
    assert "s3cret" not in repr(checkpoints.decode_window(blob))
    back = _Window()
    back.load(checkpoints.decode_window(blob) or {})
    assert back.get("a") == CommandResult(command="X", value=oid, created=[oid])
    assert back.get("b") == CommandResult(command="Y", value=oid, position=3, events=1)


def test_serve_default_checkpoint_interval_is_the_writers() -> None:
    from api import cli_serve

    assert cli_serve.CHECKPOINT_EVERY == checkpoints.CHECKPOINT_EVERY
