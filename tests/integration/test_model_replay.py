"""The model state machine through the real write path, then the log read back.

``tests/unit/test_model_statemachine.Model`` runs random sequences of commands of every
area (refusals included) through a ``CommandBus`` on SQLite and on PostgreSQL; the
examples run one after another on the same log, so later ones start from what earlier
ones left. The machine's invariants hold after every step and a refused command writes
nothing. Afterwards the log is reopened: the rebuilt Engine has the live digest, and each
aggregate rebuilt from its own events (``EventLog.events_of``) equals the live object.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from commands.bootstrap import open_bus
from commands.bus import CommandBus
from commands.messages import Command
from tests.unit.test_model_statemachine import Model

pytestmark = pytest.mark.integration


class _Head:
    """``len(log)`` for the machine's no-trace check: the log's last notification id."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus

    def __len__(self) -> int:
        return self.bus.log.head()


class BusWorld:
    """What the machine needs of a World, backed by a running CommandBus."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus
        self.engine = bus.engine
        self.log = _Head(bus)

    def run(self, cmd: Command) -> Any:
        return self.bus.execute(cmd).value

    def tick(self, seconds: float = 1.0) -> None:
        pass  # the bus keeps its own (real) time


def test_random_model_sequences_survive_the_log(store_location) -> None:
    bus = open_bus(**store_location)
    done: Counter[str] = Counter()
    refused = [0]

    class BusModel(Model):
        def make_world(self) -> Any:
            return BusWorld(bus)

        def replay_gives_the_same_state(self) -> None:
            pass  # checked once at the end, from the stored log

        def teardown(self) -> None:
            done.update(self.done)
            refused[0] += self.refused

    try:
        run_state_machine_as_test(
            BusModel,
            settings=settings(
                max_examples=5,
                stateful_step_count=40,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
        live = bus.engine
        digest = live.digest()
        head = bus.log.head()
    finally:
        bus.stop()
        bus.log.close()
    print(f"{sum(done.values())} commands done, {refused[0]} refused: {dict(done)}")
    assert sum(done.values()) > 50 and refused[0] > 0, (done, refused)
    assert done["StartVm"] and done["AddTemplate"] and done["AddVm"], done

    reopened = open_bus(**store_location, start=False)
    try:
        assert reopened.log.head() == head
        assert reopened.engine.digest() == digest
        for oid, obj in sorted(live.objects.items()):
            rebuilt: Any = None
            for event in reopened.log.events_of(oid):
                rebuilt = event.evolve(rebuilt)
            assert rebuilt == obj, (type(obj).__name__, oid)
    finally:
        reopened.log.close()
