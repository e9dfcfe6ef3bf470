"""Audit entries clients act on: external events they inject (oVirt's POST /events) and
entries they remove from the event list (oVirt's DELETE /events/{id}).

Removing an entry hides it; the log keeps the fact it describes and records the hiding
as an ``EventHidden`` of a ``HiddenEvent`` whose id follows from the entry's position.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from domain.base import Aggregate, DomainError, Event, NotFound, Tx

SEVERITIES = ("normal", "warning", "error", "alert")


class ExternalEvent(Aggregate, frozen=True, kw_only=True):
    KIND = "external_event"
    LABEL = "External Event"

    description: str
    severity: str = "normal"
    origin: str = "external"
    custom_id: int = -1
    created_at: str = ""


class ExternalEventAdded(Event, frozen=True, kw_only=True):
    CREATES = "ExternalEvent"
    description: str
    severity: str = "normal"
    origin: str = "external"
    custom_id: int = -1
    created_at: str = ""


def add_external_event(
    tx: Tx,
    *,
    description: str,
    severity: str = "normal",
    origin: str = "external",
    custom_id: int = -1,
) -> object:
    if not description.strip():
        raise DomainError("An external event needs a description.", field="description")
    if severity not in SEVERITIES:
        raise DomainError(
            f"Severity {severity} is not one of {', '.join(SEVERITIES)}.", field="severity"
        )
    event_id = tx.new_id()
    tx.emit(
        ExternalEventAdded,
        event_id,
        description=description,
        severity=severity,
        origin=origin,
        custom_id=custom_id,
        created_at=tx.now.isoformat(),
    )
    return event_id


_HIDDEN_NS = UUID("6f0a2f8e-3c55-4b8e-9d3e-0e7c1d2b9a41")


def hidden_event_id(position: int) -> UUID:
    """The id of the record that hides the audit entry of log position ``position``."""
    return uuid5(_HIDDEN_NS, f"event/{position}")


class HiddenEvent(Aggregate, frozen=True, kw_only=True):
    """An audit entry removed from the event list (the entry's log position)."""

    KIND = "hidden_event"
    LABEL = "Event"

    position: int


class EventHidden(Event, frozen=True, kw_only=True):
    CREATES = "HiddenEvent"
    position: int


def hide_event(tx: Tx, *, position: int) -> UUID:
    """Removes the entry of log position ``position`` from the event list."""
    oid = hidden_event_id(position)
    if position < 1 or position > tx.engine.position or tx.engine.exists(oid):
        raise NotFound(f"Event {position} not found.", field="id")
    tx.emit(EventHidden, oid, position=position)
    return oid
