"""Checkpoints of the write side (``commands.checkpoints``), on SQLite and PostgreSQL.

Random command sequences of every area (the model state machine) and then bursts of
concurrent commands (so checkpoints are taken while batches are still being committed)
go through a running bus that writes a checkpoint row every few events. Then:

- every row, loaded (its full row and the deltas up to it), is the Engine a full replay
  of the log up to its position gives: every object (digest), the deleted ids, the names;
- a restart loads the newest row and applies the tail: the same Engine as a full replay;
- ``projections.timetravel.engine_at`` at random positions equals a replay to there;
- a row of another schema, or a corrupt one, is never read; a command id committed or
  refused before the checkpoint is still recognised after a restart from it.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from commands import checkpoints
from commands.bootstrap import open_bus
from commands.bus import CommandBus, CommandResult
from commands.datacenter import AddDataCenter, UpdateDataCenter
from commands.store import EventLog
from commands.tag import AddTag, UpdateTag
from domain.base import DomainError
from domain.engine import Engine
from projections.timetravel import engine_at
from tests.integration.test_model_replay import BusWorld
from tests.unit.test_model_statemachine import Model

pytestmark = pytest.mark.integration


def replayed(log: EventLog, upto: int | None = None) -> Engine:
    """The Engine of the log up to ``upto``, event by event from position 0."""
    engine = Engine()
    for nid, ev in log.iter_all(0):
        if upto is not None and nid > upto:
            break
        engine.apply(ev)
        engine.position = nid
    return engine


def same(a: Engine, b: Engine) -> None:
    assert a.position == b.position
    assert a.digest() == b.digest()
    assert a.tombstones() == b.tombstones()
    assert a.names() == b.names()
    assert {t: list(o) for t, o in a.groups() if o} == {t: list(o) for t, o in b.groups() if o}


def _noise(bus: CommandBus, seed: int, n: int) -> None:
    """Concurrent callers: batches of several commands, pipelined."""
    rnd = random.Random(seed)
    tags: list[UUID] = []
    futures = []
    for i in range(n):
        if not tags or rnd.random() < 0.3:
            futures.append(bus.submit(AddTag(name=f"t{seed}-{i}", command_id=f"n{seed}-{i}")))
        else:
            tag = rnd.choice(tags)
            futures.append(
                bus.submit(UpdateTag(tag_id=tag, description=f"d{i}", command_id=f"n{seed}-{i}"))
            )
        if len(futures) >= 8:
            for f in futures:
                try:
                    r = f.result(60)
                    if r.command == "AddTag":
                        tags.append(r.created[0])
                except DomainError:
                    pass
            futures = []
    for f in futures:
        with contextlib.suppress(DomainError):
            f.result(60)


def test_checkpoint_plus_tail_equals_full_replay(store_location) -> None:
    bus = open_bus(**store_location, checkpoint_every=30)  # a row every 3 events
    writer = bus.checkpoint_writer  # type: ignore[attr-defined]
    done: Counter[str] = Counter()

    class BusModel(Model):
        def make_world(self) -> Any:
            return BusWorld(bus)

        def replay_gives_the_same_state(self) -> None:
            pass  # checked at the end, from the checkpoints and the log

        def teardown(self) -> None:
            done.update(self.done)

    try:
        run_state_machine_as_test(
            BusModel,
            settings=settings(
                max_examples=3,
                stateful_step_count=40,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
        threads = [threading.Thread(target=_noise, args=(bus, s, 150)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not writer.failures
        live_digest = bus.engine.digest()
        head = bus.log.head()
    finally:
        bus.stop()  # writes a full row of the final state
        bus.log.close()
    assert sum(done.values()) > 30, done

    log = EventLog(**store_location)
    try:
        store = checkpoints.CheckpointStore(log)
        rows = store.positions()
        assert len(rows) > 20 and sum(full for _, full in rows) > 3, rows
        assert rows[-1] == (head, True)  # the clean stop's row
        full_replay = replayed(log)
        assert full_replay.digest() == live_digest
        for position, _full in rows:
            loaded = checkpoints.load(store, position, window=False)
            assert loaded is not None
            same(loaded.engine, replayed(log, position))

        # Time travel: random points, each from the nearest row plus the log after it.
        rnd = random.Random(7)
        for p in [0, 1, head, *rnd.sample(range(1, head), 25)]:
            same(engine_at(log, p), replayed(log, p))
    finally:
        log.close()

    # A restart after more was written past the last row: the row, then the tail.
    more = open_bus(**store_location, checkpoint_every=0)
    try:
        more.execute(AddDataCenter(name="after-the-checkpoint"))
    finally:
        more.stop()
        more.log.close()
    restarted = open_bus(**store_location, start=False)
    replay = open_bus(**store_location, start=False, checkpoints=False)
    try:
        assert restarted.checkpoint_position == head
        assert restarted.engine.position > head
        same(restarted.engine, replayed(restarted.log))
        # Every command id a replay remembers, the checkpoint did too, with its outcome.
        ids = replay.remembered_ids()
        assert len(ids) > 500
        for cid in ids:
            mine, theirs = restarted.remembered(cid), replay.remembered(cid)
            assert isinstance(mine, CommandResult) and isinstance(theirs, CommandResult)
            assert (mine.position, mine.created, mine.events) == (
                theirs.position,
                theirs.created,
                theirs.events,
            )
    finally:
        restarted.log.close()
        replay.log.close()


def _rows(log: EventLog) -> list[tuple[Any, ...]]:
    store = checkpoints.CheckpointStore(log)
    return store.execute(f"SELECT position, schema FROM {store.table}", (), commit=False)


def test_other_schema_or_corrupt_rows_are_never_read(store_location, monkeypatch) -> None:
    bus = open_bus(**store_location, checkpoint_every=0)
    try:
        for i in range(5):
            bus.execute(AddDataCenter(name=f"dc{i}"))
        good = checkpoints.CheckpointWriter(bus).write_now(full=True)
        dc = bus.execute(AddDataCenter(name="later")).created[0]
        bus.execute(UpdateDataCenter(data_center_id=dc, description="changed"))
        head = bus.log.head()
        store = checkpoints.CheckpointStore(bus.log)
        # At the head, an empty Engine's row: loading it would lose every object.
        empty = Engine()
        empty.position = head
        window = checkpoints.encode_window({})
        # 1. written by another schema (its column and its blob say so)
        with monkeypatch.context() as m:
            m.setattr(checkpoints, "SCHEMA", "0:an-older-model")
            store.save(head, True, -1, checkpoints.encode_state(empty, None, -1), window)
        # 2. the column says ours, the blob says another
        with monkeypatch.context() as m:
            m.setattr(checkpoints, "SCHEMA", "0:an-older-model")
            other_blob = checkpoints.encode_state(empty, None, -1)
        store.save(head - 1, True, -1, other_blob, window)
        # 3. ours, truncated
        ours = checkpoints.encode_state(empty, None, -1)
        store.save(head - 2, True, -1, ours[: len(ours) // 2], window)
        # 4. ours, one byte changed
        flipped = bytearray(ours)
        flipped[-3] ^= 0x55
        store.save(head - 3, True, -1, bytes(flipped), window)
        assert good is not None and good < head - 3
        assert len(_rows(bus.log)) == 5
        digest = bus.engine.digest()
    finally:
        bus.stop()
        bus.log.close()

    restarted = open_bus(**store_location, start=False)
    try:
        assert restarted.checkpoint_position == good  # the one readable row
        assert restarted.engine.digest() == digest
        same(restarted.engine, replayed(restarted.log))
        assert engine_at(restarted.log, head).digest() == digest
    finally:
        restarted.log.close()

    # With only the unreadable rows left: a full replay.
    log = EventLog(**store_location)
    try:
        store = checkpoints.CheckpointStore(log)
        store.execute(f"DELETE FROM {store.table} WHERE position = ?", (good,), commit=True)
    finally:
        log.close()
    replay = open_bus(**store_location, start=False)
    try:
        assert replay.checkpoint_position == 0
        assert replay.engine.digest() == digest
    finally:
        replay.log.close()


def test_command_ids_before_the_checkpoint_are_recognised_after_a_restart(
    store_location,
) -> None:
    bus = open_bus(**store_location, checkpoint_every=0)
    try:
        first = bus.execute(AddDataCenter(name="first", command_id="cmd-first"))
        with pytest.raises(DomainError) as refused:
            bus.execute(AddDataCenter(name="first", command_id="cmd-refused"))
        # The refusal's reason goes away: decided again, the command would succeed.
        bus.execute(UpdateDataCenter(data_center_id=first.created[0], name="renamed"))
        checkpoints.CheckpointWriter(bus).write_now(full=True)
        bus.execute(AddDataCenter(name="tail"))  # after the checkpoint: replayed
        head = bus.log.head()
    finally:
        bus.stop()
        bus.log.close()

    restarted = open_bus(**store_location)
    try:
        assert restarted.checkpoint_position >= first.position  # not replayed
        again = restarted.execute(AddDataCenter(name="first", command_id="cmd-first"))
        assert again.created == first.created and again.position == first.position
        with pytest.raises(DomainError) as again_refused:
            restarted.execute(AddDataCenter(name="first", command_id="cmd-refused"))
        assert type(again_refused.value) is type(refused.value)
        assert again_refused.value.message == refused.value.message
        assert again_refused.value.field == refused.value.field
        assert restarted.log.head() == head  # neither was decided again
    finally:
        restarted.stop()
        restarted.log.close()
