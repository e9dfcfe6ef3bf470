"""Removing an entry from the event list (DELETE /events/N): the decision and its record."""

from __future__ import annotations

import pytest

from commands.audit import AddExternalEvent, HideEvent
from domain.audit import EventHidden, HiddenEvent, hidden_event_id
from domain.base import NotFound
from tests.unit.helpers import World

pytestmark = pytest.mark.unit


def test_an_entry_is_hidden_once_and_only_if_the_log_has_it() -> None:
    w = World()
    w.run(AddExternalEvent(description="one", actor="admin@internal"))
    w.run(AddExternalEvent(description="two", actor="admin@internal"))
    assert w.engine.position == 2
    oid = w.run(HideEvent(position=2, actor="admin@internal"))
    assert oid == hidden_event_id(2) != hidden_event_id(1)
    hiding = w.log[-1]
    assert isinstance(hiding, EventHidden) and hiding.position == 2
    assert hiding.meta.actor == "admin@internal"
    assert w.engine.get(HiddenEvent, oid).position == 2
    for position in (2, 0, 4, 99):  # already hidden; none; not yet in the log
        with pytest.raises(NotFound):
            w.run(HideEvent(position=position))
    assert len(w.log) == 3
    assert w.replayed().get(HiddenEvent, oid).position == 2
