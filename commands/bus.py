"""The command bus: one writer thread that decides and group-commits.

Callers (API handlers, policies, tests) submit commands from any thread or event
loop. The writer drains whatever has queued up, decides each command against the
in-memory Engine, and appends the whole batch's events in ONE transaction. A command
that breaks a rule fails alone; the rest of its batch still commits. On a version
conflict (another writer got there first) the batch is undone in memory, the Engine
catches up from the log, and each command is retried on the fresh state.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError

from commands.messages import Command
from commands.registry import HANDLERS
from commands.store import EventLog
from domain.base import Conflict, Ctx, DomainError, Event, Meta, Tx
from domain.engine import Engine

log = logging.getLogger("orrery.bus")

MAX_BATCH = 1000
MAX_RETRIES = 20
IDEMPOTENCY_WINDOW = 200_000  # remembered command ids


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a committed command produced: the created ids, its value and log position."""

    command: str
    value: Any = None
    created: list[UUID] = []
    position: int = 0
    events: int = 0


class _Item:
    __slots__ = ("attempts", "cmd", "future")

    def __init__(self, cmd: Command, future: Future[CommandResult]) -> None:
        self.cmd = cmd
        self.future = future
        self.attempts = 0


class _Stop:
    pass


class CommandBus:
    def __init__(
        self,
        log_: EventLog,
        engine: Engine | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        id_factory: Callable[[], UUID] = uuid.uuid4,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.log = log_
        self.engine = engine or Engine()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.id_factory = id_factory
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | _Stop] = queue.SimpleQueue()
        self._done: OrderedDict[str, CommandResult | DomainError] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[list[tuple[int, Event]]], None]] = []
        self.lock = threading.RLock()  # held while the Engine changes
        self.batches = 0
        self.catch_up()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> CommandBus:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="orrery-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_Stop())
            self._thread.join(timeout=10)
            self._thread = None

    def subscribe(self, fn: Callable[[list[tuple[int, Event]]], None]) -> None:
        """Calls fn with each committed batch's (notification id, event) pairs."""
        self._listeners.append(fn)

    # -- submitting -----------------------------------------------------------------
    def submit(self, cmd: Command) -> Future[CommandResult]:
        fut: Future[CommandResult] = Future()
        if self._thread is None:
            # Not started: run inline (tests, CLI one-shots).
            self._run_batch([_Item(cmd, fut)])
        else:
            self._queue.put(_Item(cmd, fut))
        return fut

    def execute(self, cmd: Command, timeout: float | None = 60) -> CommandResult:
        """Runs a command and waits; raises DomainError when a rule says no."""
        return self.submit(cmd).result(timeout)

    async def execute_async(self, cmd: Command) -> CommandResult:
        return await asyncio.wrap_future(self.submit(cmd))

    # -- the writer -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if isinstance(first, _Stop):
                return
            items = [first]
            stop = False
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(nxt, _Stop):
                    stop = True
                    break
                items.append(nxt)
            try:
                self._run_batch(items)
            except Exception as e:  # never let the writer die
                log.exception("batch failed")
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(e)
            if stop:
                return

    def _run_batch(self, items: list[_Item]) -> None:
        with self.lock:
            self._decide_and_commit(items)

    def _decide_and_commit(self, items: list[_Item]) -> None:
        engine = self.engine
        undo: dict[UUID, tuple[Any, int | None]] = {}
        decided: list[tuple[_Item, list[Event], Any, list[UUID]]] = []
        in_batch: dict[str, _Item] = {}
        now = self.clock()
        for item in items:
            cmd = item.cmd
            cid = cmd.command_id
            if cid is not None:
                prior = self._done.get(cid)
                if prior is not None:
                    _resolve(item, prior)
                    continue
                if cid in in_batch:  # the same command twice in one batch
                    in_batch[cid].future.add_done_callback(_copy_to(item.future))
                    continue
                in_batch[cid] = item
            handler = HANDLERS.get(type(cmd))
            if handler is None:
                item.future.set_exception(TypeError(f"no handler for {type(cmd).__name__}"))
                continue
            meta = Meta(
                actor_id=cmd.actor_id,
                actor=cmd.actor,
                correlation_id=cmd.correlation_id,
                command_id=cid,
                command=cmd.NAME,
            )
            tx = Tx(engine, Ctx(now=now, meta=meta), self.id_factory)
            try:
                value = handler(tx, cmd)
            except DomainError as e:
                self._remember(cid, e)
                item.future.set_exception(e)
                continue
            except Exception as e:
                log.exception("handler %s failed", cmd.NAME)
                item.future.set_exception(e)
                continue
            for ev in tx.events:
                oid = ev.originator_id
                if oid not in undo:
                    undo[oid] = (engine.objects.get(oid), engine.tombstone_of(oid))
                engine.apply(ev)
            decided.append((item, tx.events, value, tx.created))

        if not decided:
            return
        stored = [self.log.mapper.to_stored_event(e) for _, evs, _, _ in decided for e in evs]
        try:
            ids = self.log.append_stored(stored) if stored else []
        except IntegrityError:
            self._undo(undo)
            self.catch_up()
            retry = []
            for item, *_ in decided:
                item.attempts += 1
                if item.attempts > MAX_RETRIES:
                    err = Conflict("Cannot apply the change: the object was changed concurrently.")
                    item.future.set_exception(err)
                else:
                    retry.append(item)
            # Retry one at a time so one conflict cannot keep failing the others; a
            # random pause breaks lock-step with the other writer.
            for item in retry:
                time.sleep(random.uniform(0, 0.002 * item.attempts))
                self.catch_up()
                self._decide_and_commit([item])
            return
        except BaseException as e:
            self._undo(undo)
            for item, *_ in decided:
                item.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return

        self.batches += 1
        self._absorb_foreign(ids)
        pairs: list[tuple[int, Event]] = []
        k = 0
        for item, evs, value, created in decided:
            n = len(evs)
            my_ids = ids[k : k + n]
            pairs.extend(zip(my_ids, evs, strict=True))
            k += n
            result = CommandResult(
                command=item.cmd.NAME,
                value=value,
                created=created,
                position=max(my_ids) if my_ids else engine.position,
                events=n,
            )
            self._remember(item.cmd.command_id, result)
            item.future.set_result(result)
        for fn in self._listeners:
            try:
                fn(pairs)
            except Exception:
                log.exception("listener failed")

    def _absorb_foreign(self, ids: list[int]) -> None:
        """Moves the Engine's position past our own append, applying anything another
        writer slipped in before it (ids below ours we have not seen)."""
        if not ids:
            return
        lo, hi = min(ids), max(ids)
        if lo > self.engine.position + 1:
            mine = set(ids)
            for nid, ev in self.log.read(self.engine.position, stop=lo - 1, limit=lo):
                if nid not in mine:
                    self.engine.apply(ev)
                    self._note_command(ev, nid)
        self.engine.position = max(self.engine.position, hi)

    def _undo(self, undo: dict[UUID, tuple[Any, int | None]]) -> None:
        for oid, (obj, tomb) in undo.items():
            self.engine.restore(oid, obj, tomb)

    def _remember(self, cid: str | None, outcome: CommandResult | DomainError) -> None:
        if cid is None:
            return
        self._done[cid] = outcome
        if len(self._done) > IDEMPOTENCY_WINDOW:
            self._done.popitem(last=False)

    def _note_command(self, ev: Event, nid: int) -> None:
        cid = ev.meta.command_id
        if cid is None:
            return
        prior = self._done.get(cid)
        created = [ev.originator_id] if ev.CREATES else []
        if isinstance(prior, CommandResult):
            created = prior.created + created
            n = prior.events + 1
        else:
            n = 1
        self._remember(
            cid,
            CommandResult(
                command=ev.meta.command or "",
                value=created[0] if created else None,
                created=created,
                position=nid,
                events=n,
            ),
        )

    # -- keeping up with the log -------------------------------------------------------
    def catch_up(self, batch: int = 5000, progress: Callable[[int], None] | None = None) -> int:
        """Applies every event after the Engine's position; returns how many."""
        n = 0
        with self.lock:
            while True:
                chunk = self.log.read(self.engine.position, batch)
                if not chunk:
                    return n
                for nid, ev in chunk:
                    self.engine.apply(ev)
                    self._note_command(ev, nid)
                self.engine.position = chunk[-1][0]
                n += len(chunk)
                if progress:
                    progress(n)


def _resolve(item: _Item, outcome: CommandResult | DomainError) -> None:
    if isinstance(outcome, DomainError):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)


def _copy_to(target: Future[CommandResult]) -> Callable[[Future[CommandResult]], None]:
    def copy(src: Future[CommandResult]) -> None:
        exc = src.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(src.result())

    return copy


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
