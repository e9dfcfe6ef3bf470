"""Test mode's check of Engine readers: iterating the write side's Engine on a thread
other than the writer (or the test's own) without ``bus.lock`` raises, so every reader the
suite exercises (API handlers, HostLink, policies) is checked, not one racy test."""

from __future__ import annotations

import threading

import pytest

from commands.bootstrap import open_bus
from commands.bus import CHECK_LOCK_ENV
from commands.datacenter import AddDataCenter
from domain.datacenter import DataCenter

pytestmark = pytest.mark.integration


def _on_thread(fn):
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(_try(fn)), name="reader")
    t.start()
    t.join(10)
    return out[0]


def _try(fn):
    try:
        return fn()
    except AssertionError as e:
        return e


def test_a_reader_thread_without_the_lock_is_caught(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(CHECK_LOCK_ENV, "1")
    bus = open_bus(None, tmp_path)
    try:
        bus.execute(AddDataCenter(name="dc1"))
        unlocked = _on_thread(lambda: [d.name for d in bus.engine.all(DataCenter)])
        assert isinstance(unlocked, AssertionError)
        assert "reader" in str(unlocked) and "bus.lock" in str(unlocked)

        def locked() -> list[str]:
            with bus.lock:
                return [d.name for d in bus.engine.all(DataCenter)]

        assert "dc1" in _on_thread(locked)
    finally:
        bus.stop()


def test_without_test_mode_nothing_is_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(CHECK_LOCK_ENV, raising=False)
    bus = open_bus(None, tmp_path)
    try:
        bus.execute(AddDataCenter(name="dc1"))
        assert "dc1" in _on_thread(lambda: [d.name for d in bus.engine.all(DataCenter)])
    finally:
        bus.stop()
