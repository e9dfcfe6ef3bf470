"""External events (oVirt's POST /events) and removing entries from the event list
(oVirt's DELETE /events/{id})."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from commands.messages import Command, ShortText
from commands.registry import handles
from domain import audit
from domain.base import Tx


class AddExternalEvent(Command, frozen=True, kw_only=True):
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    severity: ShortText = "normal"
    origin: Annotated[str, msgspec.Meta(max_length=255)] = "external"
    custom_id: int = -1


@handles(AddExternalEvent)
def _add(tx: Tx, c: AddExternalEvent) -> UUID:
    return audit.add_external_event(  # type: ignore[return-value]
        tx,
        description=c.description,
        severity=c.severity,
        origin=c.origin,
        custom_id=c.custom_id,
    )


class HideEvent(Command, frozen=True, kw_only=True):
    position: Annotated[int, msgspec.Meta(ge=1)]


@handles(HideEvent)
def _hide(tx: Tx, c: HideEvent) -> UUID:
    return audit.hide_event(tx, position=c.position)
