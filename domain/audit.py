"""External events: audit entries that clients inject (oVirt's POST /events)."""

from __future__ import annotations

from domain.base import Aggregate, DomainError, Event, Tx

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
