"""The one door through which the API reads state.

Today it reads the write side's in-memory Engine (``bus.engine`` under ``bus.lock``);
when the projections' engine view lands, a second implementation of the same small
interface (get / list / by_name / position) replaces it without touching the
resources. ``AsOf`` answers ``as_of=`` reads from a log replay up to a past position or
time: a moment at or past the log's end is the current state (no replay); a replay runs
in a small pool of its own, one at a time per user, and gives up after a time limit.

Every reads object has a ``decider``: the reads whose Engine decides permissions. For a
past state it is the live one, so what a user may see and do is always decided on the
permissions of now (``api.authz``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import domain.model  # noqa: F401  (fills the registry)
from api.faults import ApiError, bad_request
from domain.base import AGGREGATE_TYPES
from domain.engine import Engine
from projections.read import open_read_side
from projections.timetravel import engine_at

AS_OF_TIMEOUT = 5.0  # seconds an as-of read may take (waiting for the user's previous one too)


def aggregate_class(name: str) -> type | None:
    """An aggregate class by class name, or None while its area has not landed."""

    return AGGREGATE_TYPES.get(name)


class EngineReads:
    """Reads of the live Engine the command bus keeps (or of a past one: ``decider``
    then names the live reads that decide permissions)."""

    def __init__(
        self, bus: Any, engine: Engine | None = None, lock: Any = None, decider: Any = None
    ) -> None:
        self.bus = bus
        self.engine = engine if engine is not None else bus.engine
        self.lock = lock if lock is not None else bus.lock
        self.decider = decider if decider is not None else self

    @property
    def position(self) -> int:
        return self.engine.position

    def get(self, cls_name: str, obj_id: UUID) -> Any:
        cls = aggregate_class(cls_name)
        if cls is None:
            return None
        obj = self.engine.objects.get(obj_id)
        return obj if isinstance(obj, cls) else None

    def any(self, obj_id: UUID) -> Any:
        return self.engine.objects.get(obj_id)

    def list(self, cls_name: str) -> list[Any]:
        cls = aggregate_class(cls_name)
        if cls is None:
            return []
        with self.lock:
            return list(self.engine.all(cls))

    def by_name(self, cls_name: str, name: str) -> Any:
        for obj in self.list(cls_name):
            if getattr(obj, "name", None) == name:
                return obj
        return None


def parse_moment(spec: str) -> int | datetime:
    """``as_of``: a log position (an integer) or an ISO-8601 time (naive means UTC)."""
    text = spec.strip()
    if text.isascii() and text.isdigit():  # "¹".isdigit() is true, int("¹") fails
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("as_of must be a log position or an ISO-8601 time.", "as_of") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class _TooLong(Exception):
    pass


def too_long(limit: float) -> ApiError:
    return ApiError(
        503,
        "Service Unavailable",
        f"The as_of read did not finish within {limit:g} s; try again later or ask for a "
        "later moment.",
        field="as_of",
    )


class AsOf:
    """``as_of`` reads for one API: the state after log position N or at a time.

    A moment at or past the log's end (a position >= the last one, a time >= the last
    event's) is the current state: no replay. Otherwise the log is replayed into a fresh
    Engine in this object's own small pool (never the bus's lock, never the loop's
    default executor); a user's as-of reads run one at a time, and one that has not
    finished within ``limit`` seconds (including the wait for the user's previous one)
    is answered with a 503 fault while its replay stops at its next check. The last few
    past states are kept for repeated reads.
    """

    def __init__(self, bus: Any, limit: float = AS_OF_TIMEOUT, workers: int = 2) -> None:
        if not limit > 0:
            raise ValueError("the as_of time limit must be a positive number of seconds")
        self.bus = bus
        self.limit = limit
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="orrery-as-of")
        self._lock = threading.Lock()  # the cache and the log's end; never held over I/O
        self._cache: dict[str, Engine] = {}
        self._running: dict[Any, asyncio.Future[Any]] = {}
        self._end: tuple[int, datetime] | None = None  # (last position, its event's time)
        bus.subscribe(self._on_batch)

    def _on_batch(self, pairs: list[tuple[int, Any]]) -> None:
        if pairs:
            nid, ev = pairs[-1]
            with self._lock:
                if self._end is None or nid > self._end[0]:
                    self._end = (nid, _aware(ev.timestamp))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def reads(self, live: Any, spec: str, who: Any) -> Any:
        """The reads of the moment ``spec`` for the user ``who`` (``live`` when the
        moment is the current state)."""
        moment = parse_moment(spec)
        if isinstance(moment, int) and moment >= self.bus.engine.position:
            return live
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.limit
        while (prev := self._running.get(who)) is not None and not prev.done():
            try:
                await asyncio.wait_for(asyncio.shield(prev), deadline - time.monotonic())
            except TimeoutError:
                raise ApiError(
                    503,
                    "Service Unavailable",
                    f"Another as_of read of this user is still running (limit "
                    f"{self.limit:g} s); try again later.",
                    field="as_of",
                ) from None
            except Exception:  # the previous read's failure was answered to it
                continue
        job = loop.run_in_executor(self._pool, self._past, moment, deadline)
        job.add_done_callback(_retrieve)
        self._running[who] = job
        try:
            eng = await asyncio.wait_for(asyncio.shield(job), deadline - time.monotonic())
        except (TimeoutError, _TooLong):
            raise too_long(self.limit) from None
        finally:
            if self._running.get(who) is job and job.done():
                del self._running[who]
        if eng is None:
            return live
        return EngineReads(self.bus, eng, threading.RLock(), decider=live)

    # -- in the pool -------------------------------------------------------------------
    def _log_end(self) -> tuple[int, datetime] | None:
        with self._lock:
            end = self._end
        if end is None or end[0] < self.bus.engine.position:  # another writer moved on
            head = self.bus.log.head()
            last = self.bus.log.read(head - 1, 1) if head else []
            end = (last[0][0], _aware(last[0][1].timestamp)) if last else None
            with self._lock:
                if end is not None and (self._end is None or end[0] > self._end[0]):
                    self._end = end
        return end

    def _past(self, moment: int | datetime, deadline: float) -> Engine | None:
        """The Engine at the moment, or None when the moment is the current state."""
        end = self._log_end()
        if end is None:
            return None
        if isinstance(moment, int) and moment >= end[0]:
            return None
        if isinstance(moment, datetime) and moment >= end[1]:
            return None
        key = moment.isoformat() if isinstance(moment, datetime) else str(moment)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        if isinstance(moment, int):
            # From the nearest checkpoint at or before it plus a bounded tail.
            eng = engine_at(self.bus.log, moment)
            if time.monotonic() > deadline:
                raise _TooLong()
            return self._keep(key, eng)
        eng = Engine()
        for n, (nid, ev) in enumerate(self.bus.log.iter_all(0, batch=2000), 1):
            if isinstance(moment, int) and nid > moment:
                break
            if isinstance(moment, datetime) and _aware(ev.timestamp) > moment:
                break
            eng.apply(ev)
            eng.position = nid
            if n % 500 == 0 and time.monotonic() > deadline:
                raise _TooLong()
        if time.monotonic() > deadline:
            raise _TooLong()
        return self._keep(key, eng)

    def _keep(self, key: str, eng: Engine) -> Engine:
        with self._lock:  # a moment before the end: its state can no longer change
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = eng
        return eng


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Takes a finished replay's outcome, also when nobody waits for it any more."""
    if not fut.cancelled():
        fut.exception()


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class ProjectionReads:
    """The same door over the read side's engine view (``projections.read.ReadSide``).

    Objects come back as the domain's own aggregates (``list_aggregates``), so rendering
    does not change. Permission checks keep reading the write side's Engine (``engine``,
    ``lock``), which decides them; after a command the API waits for the view to reach
    the command's position (read-your-writes).
    """

    def __init__(self, bus: Any, read_side: Any) -> None:
        self.bus = bus
        self.read = read_side
        self.engine = bus.engine
        self.lock = bus.lock
        self.decider = self

    @property
    def position(self) -> int:
        return self.read.position

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        return bool(self.read.wait_for(position, timeout))

    def get(self, cls_name: str, obj_id: UUID) -> Any:
        cls = aggregate_class(cls_name)
        if cls is None:
            return None
        obj = self.read.get_aggregate(cls_name, obj_id)
        return obj if isinstance(obj, cls) else None

    def any(self, obj_id: UUID) -> Any:
        return self.read.get_aggregate(None, obj_id)

    def list(self, cls_name: str) -> list[Any]:
        cls = aggregate_class(cls_name)
        if cls is None:
            return []
        return [o for o in self.read.list_aggregates(cls_name) if isinstance(o, cls)]

    def by_name(self, cls_name: str, name: str) -> Any:
        for obj in self.list(cls_name):
            if getattr(obj, "name", None) == name:
                return obj
        return None


def open_reads(bus: Any, kind: str = "engine", data_dir: Any = None) -> Any:
    """``engine``: the write side's Engine in memory (default); ``projections``: the read
    side's engine view, started here and following the bus."""
    if kind == "projections":
        return ProjectionReads(bus, open_read_side(bus=bus, data_dir=data_dir))
    return EngineReads(bus)
