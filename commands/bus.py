"""The command bus: one writer thread that decides and group-commits.

Callers (API handlers, policies, tests) submit commands from any thread or event
loop. The writer drains whatever has queued up, decides each command against the
in-memory Engine, and appends the whole batch's events in ONE transaction. A command
that breaks a rule fails alone; the rest of its batch still commits. On a version
conflict (another writer got there first) the batch is undone in memory, the Engine
catches up from the log, and each command is retried on the fresh state.

Pipelining: while one batch is being committed (its transaction is sent and the
writer reads the reply later, from the same thread), the writer already decides the
next one on top of it. A command's result is only reported once its own batch has
committed; if the batch before it fails, the speculative batch is undone and decided
again. So the Engine can hold the events of at most two uncommitted batches for the few
milliseconds of a commit: readers of ``bus.engine`` may see them, command results never
depend on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError

from commands import checkpoints
from commands.messages import Command
from commands.registry import HANDLERS
from commands.store import EventLog, PendingInsert, to_stored
from domain.base import Conflict, Ctx, DomainError, Event, Meta, Tx
from domain.engine import Engine

log = logging.getLogger("orrery.bus")

MAX_BATCH = 1000
MAX_RETRIES = 20
IDEMPOTENCY_WINDOW = 200_000  # remembered command ids
_MIN_HALF = 4  # a drained batch is split in two for pipelining from 2 x this many


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a committed command produced: the created ids, its value and log position."""

    command: str
    value: Any = None
    created: list[UUID] = []
    position: int = 0
    events: int = 0


class _LoopMail:
    """Outcomes bound for one event loop, handed over in bursts.

    ``call_soon_threadsafe`` writes to the loop's self-pipe and hands the GIL over: per
    command, that was most of a small command's cost. Here the writer appends to a deque
    and wakes the loop only when no delivery is pending, so a batch costs one wake-up."""

    __slots__ = ("__weakref__", "box", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.box: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self.scheduled = False

    def post(self, fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
        self.box.append((fut, ok, value))
        if not self.scheduled:
            self.scheduled = True
            held = _tls.held
            if held is not None:
                held.append(self)
            else:
                self.wake()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            self.box.clear()
            self.scheduled = False

    def _deliver(self) -> None:
        # Cleared before popping: whatever is posted from here on schedules anew.
        self.scheduled = False
        box = self.box
        while box:
            fut, ok, value = box.popleft()
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)


class _Held(threading.local):
    held: list[_LoopMail] | None = None


_tls = _Held()


class _OneWakeup:
    """Loops posted to inside are woken once, at the end. Waking one mid-way hands the
    GIL to its thread, which takes the first result and sleeps again: a batch's worth
    of results became a batch's worth of thread switches. (A class, not a generator
    context manager: it runs twice per batch.)"""

    __slots__ = ("outer",)

    def __enter__(self) -> None:
        self.outer = _tls.held is not None
        if not self.outer:
            _tls.held = []

    def __exit__(self, *exc: object) -> None:
        if self.outer:
            return
        held, _tls.held = _tls.held, None
        for mail in held or ():
            mail.wake()


class _LoopWaiter:
    """The part of concurrent.futures.Future the bus uses, for a caller on a loop."""

    __slots__ = ("_callbacks", "_exc", "_fut", "_mail", "_result", "_state")

    def __init__(self, mail: _LoopMail, fut: asyncio.Future[CommandResult]) -> None:
        self._mail = mail
        self._fut = fut
        self._state = 0  # 0 pending, 1 result, 2 exception
        self._result: CommandResult | None = None
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[Any], None]] | None = None  # rare: made when asked

    def done(self) -> bool:
        return self._state != 0

    def set_result(self, result: CommandResult) -> None:
        self._state, self._result = 1, result
        self._mail.post(self._fut, True, result)
        self._call_back()

    def set_exception(self, exc: BaseException) -> None:
        self._state, self._exc = 2, exc
        self._mail.post(self._fut, False, exc)
        self._call_back()

    def result(self) -> CommandResult:
        if self._exc is not None:
            raise self._exc
        assert self._result is not None
        return self._result

    def exception(self) -> BaseException | None:
        return self._exc

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        if self._state:
            fn(self)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    def _call_back(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            fn(self)


_Waiter = Future[CommandResult] | _LoopWaiter


class _Item:
    __slots__ = ("attempts", "cmd", "future")

    def __init__(self, cmd: Command, future: _Waiter) -> None:
        self.cmd = cmd
        self.future = future
        self.attempts = 0


class _Stop:
    pass


class _CatchUp:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[int] = Future()


_Control = _Stop | _CatchUp
_Undo = dict[UUID, tuple[Any, int | None]]


class _Batch:
    """One transaction's worth of decided commands."""

    __slots__ = (
        "cids",
        "decided",
        "error",
        "finished",
        "ids",
        "order",
        "pending",
        "prepared",
        "rejected",
        "sent_at",
        "started",
        "stored",
        "undo",
    )

    def __init__(self) -> None:
        self.order: list[_Item] = []  # decided and rejected, in decision order
        self.decided: list[tuple[_Item, list[Event], Any, list[UUID]]] = []
        self.rejected: list[tuple[_Item, BaseException]] = []
        self.undo: _Undo = {}
        self.cids: list[str] = []
        self.stored: list[Any] = []
        self.ids: list[int] = []
        self.prepared: list[bytes] | None = None  # the INSERT's parameters, built while deciding
        self.error: BaseException | None = None
        self.pending: PendingInsert | None = None
        self.sent_at = 0.0
        self.started = False  # sent to the database
        self.finished = False  # its outcome (ids or error) is known


CHECK_LOCK_ENV = "ORRERY_CHECK_ENGINE_LOCK"


class OwnedRLock:
    """A re-entrant lock that can tell whether the calling thread holds it (the test
    mode's check of Engine readers; production uses a plain ``threading.RLock``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            self._owner = threading.get_ident()
            self._depth += 1
        return ok

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def held(self) -> bool:
        return self._owner == threading.get_ident()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class CommandBus:
    def __init__(
        self,
        log_: EventLog,
        engine: Engine | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        id_factory: Callable[[], UUID] = uuid.uuid4,
        max_batch: int = MAX_BATCH,
        pipeline: bool = True,
        checkpoints: bool = True,
    ) -> None:
        self.log = log_
        self.engine = engine or Engine()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.id_factory = id_factory
        self.max_batch = max_batch
        self.pipeline = pipeline
        self._queue: queue.SimpleQueue[_Item | _Control] = queue.SimpleQueue()
        self._done = _Window()
        self._in_progress: dict[str, _Item] = {}  # command ids decided, not yet committed
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[list[tuple[int, Event]]], None]] = []
        self._on_stop: list[Callable[[], None]] = []
        self._mail: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopMail] = (
            weakref.WeakKeyDictionary()
        )
        self._last_mail: _LoopMail | None = None
        self.lock: Any = threading.RLock()  # held while the Engine changes
        self._catching_up = threading.Lock()
        if os.environ.get(CHECK_LOCK_ENV) == "1":
            # Test mode: every iteration of the Engine outside the writer must hold the
            # lock (``make test`` sets it, so the whole suite checks every reader).
            self.lock = OwnedRLock()
            self.engine.iteration_guard = self._assert_may_read
        self.batches = 0
        self._commit_s = 0.001  # recent commit duration (moving average)
        # While a commit is in flight the writer sleeps on the database's socket and
        # this pipe; a caller wakes it once `_want` commands are queued.
        self._want = 0
        self._wake_r = self._wake_w = -1  # opened by start()
        self._last_settled = 0  # commands answered by the last commit
        # Batches whose events are in the Engine but not yet settled or undone, oldest
        # first (at most the one committing and the one decided on top of it).
        self._open: list[_Batch] = []
        self.checkpoint_position = 0  # where the start's checkpoint left the Engine
        if engine is None and checkpoints:
            self._load_checkpoint()
        self.replayed_at_start = self.catch_up()  # events applied after the checkpoint

    def _assert_may_read(self) -> None:
        # The writer may read its own Engine; so may the process's main thread, which in
        # the tests is the test itself reading a quiescent state between commands. Every
        # other thread (the API's loop, the HostLink's, policies, servers in threads) must
        # hold the lock.
        me = threading.current_thread()
        if me is self._thread or me is threading.main_thread():
            return
        if not self.lock.held():
            raise AssertionError(
                f"the Engine was iterated on thread {me.name!r} without holding bus.lock "
                "(the writer thread changes it concurrently): read it under `with bus.lock:`"
            )

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> CommandBus:
        if self._thread is None:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._thread = threading.Thread(target=self._run, name="orrery-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_Stop())
            self._thread.join(timeout=30)
            if not self._thread.is_alive():  # else it may still sleep on the pipe
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1
            self._thread = None
        while self._on_stop:
            self._on_stop.pop()()

    def on_stop(self, fn: Callable[[], None]) -> None:
        """Calls fn once the writer has stopped (helpers started alongside the bus)."""
        self._on_stop.append(fn)

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
            self._enqueue(_Item(cmd, fut))
        return fut

    def execute(self, cmd: Command, timeout: float | None = 60) -> CommandResult:
        """Runs a command and waits; raises DomainError when a rule says no."""
        return self.submit(cmd).result(timeout)

    async def execute_async(self, cmd: Command) -> CommandResult:
        """Runs a command from an event loop. The result comes back through the loop's
        mailbox: one wake-up of the loop per committed batch, not one per command."""
        loop = asyncio.get_running_loop()
        mail = self._last_mail
        if mail is None or mail.loop is not loop:
            mail = self._mail.get(loop)
            if mail is None:
                mail = self._mail[loop] = _LoopMail(loop)
            self._last_mail = mail
        fut: asyncio.Future[CommandResult] = loop.create_future()
        waiter = _LoopWaiter(mail, fut)
        if self._thread is None:
            self._run_batch([_Item(cmd, waiter)])
        else:
            self._enqueue(_Item(cmd, waiter))
        return await fut

    def _enqueue(self, item: _Item) -> None:
        q = self._queue
        q.put(item)
        want = self._want
        if want and q.qsize() >= want:  # the writer waits for this many: wake it
            self._want = 0
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"\0")

    # -- the writer -----------------------------------------------------------------
    def _run(self) -> None:
        pending: list[_Item] = []  # undone by a failure before them: decide again
        control: _Control | None = None
        inflight: _Batch | None = None  # being committed by the committer thread
        while True:
            items: list[_Item] = []
            batch: _Batch | None = None
            prev: _Batch | None = None
            try:
                if control is not None and not pending and inflight is None:
                    if isinstance(control, _Stop):
                        return
                    self._do_catch_up(control)
                    control = None
                    continue
                items, pending = pending, []
                if control is None:
                    if not items and inflight is None:
                        first = self._queue.get()
                        if isinstance(first, _Item):
                            items.append(first)
                        else:
                            control = first
                    elif not items and inflight is not None:
                        self._fill_while_committing(inflight)
                    if control is None:
                        control = self._drain(items)
                if items:
                    if inflight is None and self.pipeline and len(items) >= 2 * _MIN_HALF:
                        # Nothing is being committed: send half now and decide the rest
                        # while it commits, so the callers split into two groups whose
                        # turns overlap instead of all waiting for one commit at a time.
                        half = len(items) // 2
                        items, pending = items[:half], items[half:]
                    with self.lock:
                        batch = self._decide(items)
                if inflight is not None:
                    prev, inflight = inflight, None
                    redo = self._finish(prev, batch)
                    prev = None
                    if redo is not None:
                        pending, batch = redo, None
                if batch is not None:
                    self._deliver_rejections(batch)
                    if batch.decided:
                        if self.pipeline:
                            if not batch.started:
                                self._start(batch)
                            inflight, batch = batch, None
                        else:
                            self._commit(batch)
                            b, batch = batch, None
                            pending = self._finish(b, None) or []
            except Exception as e:  # never let the writer die; fail what was in hand
                log.exception("writer failed")
                started = [b for b in (inflight, prev) if b is not None]
                try:
                    self._abandon(batch, started, items, e)
                except Exception:
                    log.exception("cleaning up after a writer failure")
                inflight = None
                pending = []

    def _abandon(
        self, unstarted: _Batch | None, started: list[_Batch], items: list[_Item], err: Exception
    ) -> None:
        """After a bug in the writer: undo what was not saved, settle what was."""
        if unstarted is not None and unstarted.started:
            started, unstarted = [unstarted, *started], None
        for b in started:
            self._wait(b)
        batches = ([unstarted] if unstarted is not None else []) + started  # newest first
        with self.lock:
            for b in batches:
                if b is unstarted or b.error is not None or not b.ids:
                    self._drop(b)
            for b in reversed(started):
                if b.error is None and b.ids:
                    try:
                        self._settle(b, [])
                    except Exception:
                        log.exception("settling after a writer failure")
            futures = [it.future for it in items]
            futures += [it.future for b in batches for it in b.order]
            for fut in futures:
                if not fut.done():
                    fut.set_exception(err)

    def _fill_while_committing(self, inflight: _Batch) -> None:
        """Waits, while ``inflight`` commits, until the callers just answered have sent
        their next commands (or the commit ends), so the next batch goes out full."""
        want = max(1, self._last_settled)
        deadline = time.perf_counter() + self._commit_s
        qsize = self._queue.qsize
        self._want = want
        try:
            while qsize() < want:
                left = deadline - time.perf_counter()
                if left <= 0 or self._wait(inflight, left, self._wake_r):
                    return
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 64)
        finally:
            self._want = 0

    def _drain(self, items: list[_Item]) -> _Control | None:
        get = self._queue.get_nowait
        while len(items) < self.max_batch:
            try:
                nxt = get()
            except queue.Empty:
                return None
            if not isinstance(nxt, _Item):
                return nxt
            items.append(nxt)
        return None

    def _start(self, batch: _Batch) -> None:
        """Sends the batch's transaction; on PostgreSQL this returns before the commit."""
        batch.started = True
        batch.sent_at = time.perf_counter()
        try:
            batch.pending = self.log.send_append(batch.stored, batch.prepared)
        except BaseException as e:
            batch.pending = PendingInsert(None, e)

    def _wait(self, batch: _Batch, timeout: float | None = None, wake: int | None = None) -> bool:
        """Waits up to timeout for the batch's commit (or until ``wake``, a file
        descriptor, is readable); True once its outcome is known."""
        if batch.finished:
            return True
        pending = batch.pending
        if pending is None:  # never sent (a writer failure before _start)
            batch.error = batch.error or RuntimeError("batch was not sent")
            batch.finished = True
            return True
        if not pending.wait(timeout, wake):
            return False
        try:
            batch.ids = pending.result()
        except BaseException as e:
            batch.error = e
        batch.finished = True
        took = time.perf_counter() - batch.sent_at
        self._commit_s = 0.8 * self._commit_s + 0.2 * took
        return True

    def _commit(self, batch: _Batch) -> None:
        self._start(batch)
        self._wait(batch)

    def _run_batch(self, items: list[_Item]) -> None:
        """Decides and commits items in the calling thread (not started, or a retry)."""
        while items:
            with self.lock:
                batch = self._decide(items)
            self._deliver_rejections(batch)
            if not batch.decided:
                return
            self._commit(batch)
            items = self._finish(batch, None) or []

    def _decide(self, items: list[_Item]) -> _Batch:
        """Decides each command on the Engine and applies its events (not yet saved)."""
        batch = _Batch()
        engine = self.engine
        undo = batch.undo
        objects = engine.objects
        done = self._done
        in_progress = self._in_progress
        now = self.clock()
        for item in items:
            cmd = item.cmd
            cid = cmd.command_id
            if cid is not None:
                prior = done.get(cid)
                if prior is not None:
                    _resolve(item, prior)
                    continue
                twin = in_progress.get(cid)
                if twin is not None:  # the same command again, still being decided/saved
                    twin.future.add_done_callback(_copy_to(item.future))
                    continue
                in_progress[cid] = item
                batch.cids.append(cid)
            batch.order.append(item)
            handler = HANDLERS.get(type(cmd))
            if handler is None:
                batch.rejected.append((item, TypeError(f"no handler for {type(cmd).__name__}")))
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
                batch.rejected.append((item, e))
                continue
            except Exception as e:
                log.exception("handler %s failed", cmd.NAME)
                batch.rejected.append((item, e))
                continue
            events = tx.events
            try:
                if len(events) == 1:  # the common case: Engine.apply changes nothing if it raises
                    oid = events[0].originator_id
                    obj = objects.get(oid)  # a live object has no tombstone
                    old = (obj, None if obj is not None else engine.tombstone_of(oid))
                    engine.apply(events[0])
                    if oid not in undo:
                        undo[oid] = old
                else:
                    self._apply_all(events, undo)
            except Exception as e:  # a decision emitted something the Engine refuses
                log.exception("applying %s failed", cmd.NAME)
                batch.rejected.append((item, e))
                continue
            batch.decided.append((item, events, value, tx.created))
        batch.stored = stored = [to_stored(e) for _, evs, _, _ in batch.decided for e in evs]
        if undo:
            self._open.append(batch)
        if stored:
            batch.prepared = self.log.prepare_append(stored)
        return batch

    def _apply_all(self, events: list[Event], undo: _Undo) -> None:
        """Applies one command's events; if one fails, puts back what the others did."""
        engine = self.engine
        before: _Undo = {}
        try:
            for ev in events:
                oid = ev.originator_id
                if oid not in before:
                    before[oid] = (engine.objects.get(oid), engine.tombstone_of(oid))
                engine.apply(ev)
        except Exception:
            self._undo(before)
            raise
        for oid, old in before.items():
            if oid not in undo:
                undo[oid] = old

    def _deliver_rejections(self, batch: _Batch) -> None:
        """Reports the batch's refusals: the state they saw is committed (but their own
        batch), so they stand."""
        with _OneWakeup():
            for item, exc in batch.rejected:
                cid = item.cmd.command_id
                if cid is not None:
                    self._in_progress.pop(cid, None)
                    if isinstance(exc, DomainError):
                        self._remember(cid, exc)
                item.future.set_exception(exc)
        batch.rejected = []

    def _forget(self, batch: _Batch) -> None:
        for cid in batch.cids:
            self._in_progress.pop(cid, None)

    def _finish(self, batch: _Batch, after: _Batch | None) -> list[_Item] | None:
        """Waits for batch's commit and settles it. ``after`` is the batch decided on top
        of it; when it has to be decided again, its items are returned."""
        self._wait(batch)
        redo: list[_Item] | None = None
        err = batch.error
        with self.lock:
            if err is None:
                foreign = self._foreign_before(batch.ids)
                if foreign and after is not None:
                    self._drop(after)
                    redo = after.order
                elif after is not None and after.decided and self.pipeline:
                    # Its base is saved: start saving it now, report this one meanwhile.
                    self._start(after)
                self._settle(batch, foreign)
                return redo
            if after is not None:
                self._drop(after)
                redo = after.order
            self._drop(batch)
        if isinstance(err, IntegrityError):
            self._retry_alone([item for item, *_ in batch.decided])
        else:
            for item, *_ in batch.decided:
                item.future.set_exception(err)
            if not isinstance(err, Exception):
                raise err
        return redo

    def _retry_alone(self, items: list[_Item]) -> None:
        """After a version conflict: catch up, then each command alone on fresh state,
        so one conflict cannot keep failing the others; a random pause breaks
        lock-step with the other writer."""
        self._catch_up_now()
        for item in items:
            item.attempts += 1
            if item.attempts > MAX_RETRIES:
                err = Conflict("Cannot apply the change: the object was changed concurrently.")
                item.future.set_exception(err)
                continue
            time.sleep(random.uniform(0, 0.002 * item.attempts))
            self._catch_up_now()
            self._run_batch([item])

    def _settle(self, batch: _Batch, foreign: list[tuple[int, Event]]) -> None:
        """A committed batch: move the Engine's position, report results, tell listeners."""
        engine = self.engine
        ids = batch.ids
        self.batches += 1
        self._close(batch)
        for nid, ev in foreign:  # another writer slipped these in before our append
            engine.apply(ev)
            self._note_command(ev, nid)
        if ids:
            engine.position = max(engine.position, max(ids))
        pairs: list[tuple[int, Event]] = []
        k = 0
        in_progress = self._in_progress
        results = []
        self._last_settled = len(batch.decided)
        for item, evs, value, created in batch.decided:
            n = len(evs)
            if n == 1:
                position = ids[k]
                pairs.append((position, evs[0]))
            else:
                my_ids = ids[k : k + n]
                pairs.extend(zip(my_ids, evs, strict=True))
                position = max(my_ids) if my_ids else engine.position
            k += n
            result = CommandResult(
                command=item.cmd.NAME,
                value=value,
                created=created,
                position=position,
                events=n,
            )
            cid = item.cmd.command_id
            if cid is not None:
                in_progress.pop(cid, None)
                self._remember(cid, result)
            results.append((item.future, result))
        with _OneWakeup():
            for fut, result in results:
                fut.set_result(result)
        for fn in self._listeners:
            try:
                fn(pairs)
            except Exception:
                log.exception("listener failed")

    def _foreign_before(self, ids: list[int]) -> list[tuple[int, Event]]:
        """Events another writer appended between the Engine's position and our ids."""
        if not ids:
            return []
        lo = ids[0]
        pos = self.engine.position
        if lo <= pos + 1:
            return []
        return [
            (nid, ev) for nid, ev in self.log.read(pos, stop=lo - 1, limit=lo - pos) if nid < lo
        ]

    def _close(self, batch: _Batch) -> None:
        """The batch's events are settled or undone: no longer open."""
        opened = self._open
        for i, b in enumerate(opened):
            if b is batch:
                del opened[i]
                return

    def _drop(self, batch: _Batch) -> None:
        """Undoes an unsaved batch in memory and forgets its command ids."""
        self._undo(batch.undo)
        self._forget(batch)
        self._close(batch)

    def _undo(self, undo: _Undo) -> None:
        for oid, (obj, tomb) in undo.items():
            self.engine.restore(oid, obj, tomb)

    def _remember(self, cid: str | None, outcome: CommandResult | DomainError) -> None:
        if cid is not None:
            self._done.put(cid, outcome)

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

    # -- checkpoints ------------------------------------------------------------------
    def _load_checkpoint(self) -> None:
        """Starts from the newest valid checkpoint (commands.checkpoints), if any."""
        try:
            loaded = checkpoints.load(checkpoints.CheckpointStore(self.log))
            if loaded is None:
                return
            if loaded.engine.position > self.log.head():
                log.warning("the newest checkpoint is ahead of the log: replaying it all")
                return
        except Exception:
            log.warning("loading a checkpoint failed: replaying the log", exc_info=True)
            return
        loaded.engine.iteration_guard = self.engine.iteration_guard
        self.engine = loaded.engine
        self._done.load(loaded.window)
        self.checkpoint_position = loaded.engine.position

    def committed_state(self) -> Engine:
        """A copy of the Engine as of its position: the events of batches not yet
        settled are undone in the copy (aggregates are immutable: dict copies)."""
        with self.lock:
            engine = self.engine.copy()
            for b in reversed(self._open):  # newest first: the oldest pre-state wins
                for oid, (obj, tomb) in b.undo.items():
                    engine.restore(oid, obj, tomb)
        return engine

    def window_entries(self, since: int | None = None) -> tuple[dict[str, Any], int]:
        """The idempotency window in a checkpoint's form (all of it, or the ids
        remembered after the ``since``-th), and how many ids it has remembered. Taken
        after ``committed_state``, it may hold a few newer ids too: the tail replayed
        after the checkpoint notes them again."""
        return self._done.entries(since)

    def remembered(self, command_id: str) -> CommandResult | DomainError | None:
        """The outcome the idempotency window holds for a command id, if any."""
        return self._done.get(command_id)

    def remembered_ids(self) -> list[str]:
        """The command ids in the idempotency window, oldest first."""
        return list(self._done.entries()[0])

    def window_added(self) -> int:
        """How many command ids the idempotency window has remembered so far."""
        return self._done.added

    # -- keeping up with the log -------------------------------------------------------
    def catch_up(self, batch: int = 5000, progress: Callable[[int], None] | None = None) -> int:
        """Applies every event after the Engine's position; returns how many.

        While the writer runs, it does this itself between batches (so no uncommitted
        state of its own is in the Engine then)."""
        writer = self._thread
        if writer is not None and writer is not threading.current_thread():
            req = _CatchUp()
            self._queue.put(req)
            return req.future.result(120)
        return self._catch_up_now(batch, progress)

    def _do_catch_up(self, req: _CatchUp) -> None:
        try:
            req.future.set_result(self._catch_up_now())
        except BaseException as e:
            req.future.set_exception(e)

    def _catch_up_now(
        self, batch: int = 5000, progress: Callable[[int], None] | None = None
    ) -> int:
        # Only this thread changes the Engine (the writer, or the caller before the writer
        # starts), so the log is read without the lock: a slow read (a locked table, a busy
        # database) never holds the readers waiting; applying a chunk holds it.
        n = 0
        with self._catching_up:  # two callers without a writer: one after the other
            while True:
                chunk = self.log.read(self.engine.position, batch)
                if not chunk:
                    return n
                with self.lock:
                    for nid, ev in chunk:
                        self.engine.apply(ev)
                        self._note_command(ev, nid)
                    self.engine.position = chunk[-1][0]
                n += len(chunk)
                if progress:
                    progress(n)


class _Window:
    """The outcomes of the last IDEMPOTENCY_WINDOW command ids, oldest dropped first.

    Results are kept as flat tuples of strings and ints, which the garbage collector
    stops tracking: a full window of 200k CommandResult objects (each with its list)
    made every full collection walk ~400k objects, a ~0.3 s pause of the writer."""

    __slots__ = ("_d", "_order", "added")

    def __init__(self) -> None:
        # A plain dict and a queue of its keys by age: cheaper than an OrderedDict's
        # linked list, and the dict stays compact under steady insert-and-evict.
        self._d: dict[str, tuple[Any, ...] | DomainError] = {}
        self._order: deque[str] = deque()
        self.added = 0  # ids ever remembered (a checkpoint delta takes those since)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, cid: object) -> bool:
        return cid in self._d

    def get(self, cid: str) -> CommandResult | DomainError | None:
        kept = self._d.get(cid)
        if kept is None or isinstance(kept, DomainError):
            return kept
        command, is_id, value, position, events, *created = kept
        return CommandResult(
            command=command,
            value=UUID(int=value) if is_id else value,
            created=[UUID(int=c) for c in created],
            position=position,
            events=events,
        )

    def put(self, cid: str, outcome: CommandResult | DomainError) -> None:
        d = self._d
        if cid not in d:  # a known id keeps its age, as it did in an OrderedDict
            self._order.append(cid)
            self.added += 1
        if isinstance(outcome, DomainError):
            d[cid] = outcome
        else:
            value = outcome.value
            is_id = type(value) is UUID
            kept = (
                outcome.command,
                is_id,
                value.int if is_id else value,
                outcome.position,
                outcome.events,
            )
            created = outcome.created
            d[cid] = (*kept, *(c.int for c in created)) if created else kept
        if len(d) > IDEMPOTENCY_WINDOW:
            del d[self._order.popleft()]

    # -- in checkpoints (commands.checkpoints) ------------------------------------------
    def entries(self, since: int | None = None) -> tuple[dict[str, Any], int]:
        """The content, oldest first (all, or what was remembered after the
        ``since``-th id), as plain data: a result as its kept tuple (see ``put``), a
        refusal as (None, error class, message, field). A result's value other than an
        id is left out (the first created id instead, as a replay gives back; a value
        may be a secret). The copy is one C call: safe beside the writer."""
        d = self._d
        while True:  # a copy during which nothing was remembered (puts run unlocked)
            added = self.added
            if since is None:
                out = dict(d)
            else:
                new = min(len(d), max(0, added - since))
                out = dict(reversed(list(itertools.islice(reversed(d.items()), new))))
            if self.added == added:
                break
        special = [
            cid
            for cid, kept in out.items()
            if type(kept) is not tuple or (not kept[1] and kept[2] is not None)
        ]
        for cid in special:
            kept = out[cid]
            if isinstance(kept, DomainError):
                out[cid] = (None, type(kept).__name__, kept.message, kept.field)
            else:
                command, _, _, position, events, *created = kept
                value = (True, created[0]) if created else (False, None)
                out[cid] = (command, *value, position, events, *created)
        return out, added

    def load(self, entries: dict[str, Any]) -> None:
        """Puts back what ``entries`` gave (checkpoints' windows merged oldest first)."""
        d = self._d
        for cid, kept in entries.items():
            if cid not in d:
                self._order.append(cid)
                self.added += 1
            if kept[0] is None:
                d[cid] = checkpoints.error_of(kept[1], kept[2], kept[3])
            else:
                d[cid] = tuple(kept)
        while len(d) > IDEMPOTENCY_WINDOW:
            del d[self._order.popleft()]


def _resolve(item: _Item, outcome: CommandResult | DomainError) -> None:
    if isinstance(outcome, DomainError):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)


def _copy_to(target: _Waiter) -> Callable[[_Waiter], None]:
    def copy(src: _Waiter) -> None:
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
