"""Runs commands against an in-memory Engine, the way the bus does, without a log."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import commands.all  # noqa: F401
from commands.messages import Command
from commands.registry import HANDLERS
from domain.base import Ctx, Event, Meta, Tx
from domain.engine import Engine


class World:
    """An Engine plus a deterministic clock and id source: ``world.run(cmd)``."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self._ids = itertools.count(1)
        self.log: list[Event] = []

    def next_id(self) -> UUID:
        return UUID(int=next(self._ids) + (1 << 64))

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)

    def run(self, cmd: Command) -> Any:
        """Decides and applies; raises the DomainError a rule raises (nothing applied)."""
        tx = Tx(self.engine, Ctx(now=self.now, meta=Meta(actor=cmd.actor)), self.next_id)
        value = HANDLERS[type(cmd)](tx, cmd)
        for e in tx.events:
            self.engine.apply(e)
        self.log.extend(tx.events)
        self.engine.position += len(tx.events)
        return value

    def replayed(self) -> Engine:
        fresh = Engine()
        fresh.apply_all(self.log)
        return fresh
