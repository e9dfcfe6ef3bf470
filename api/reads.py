"""The one door through which the API reads state.

Today it reads the write side's in-memory Engine (``bus.engine`` under ``bus.lock``);
when the projections' engine view lands, a second implementation of the same small
interface (get / list / by_name / position / as_of) replaces it without touching the
resources. ``as_of`` answers from a log replay up to a past position or time.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.base import AGGREGATE_TYPES
from domain.engine import Engine


def aggregate_class(name: str) -> type | None:
    """An aggregate class by class name, or None while its area has not landed."""
    import domain.model  # noqa: F401  (fills the registry)

    return AGGREGATE_TYPES.get(name)


class EngineReads:
    """Reads of the live Engine the command bus keeps."""

    def __init__(self, bus: Any, engine: Engine | None = None, lock: Any = None) -> None:
        self.bus = bus
        self.engine = engine if engine is not None else bus.engine
        self.lock = lock if lock is not None else bus.lock

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

    def as_of(self, spec: str) -> EngineReads:
        """The state after log position N (an integer) or at an ISO time."""
        return _AS_OF.reads(self.bus, spec)


class _AsOfCache:
    """Replays the log into a fresh Engine; keeps the last few for repeated reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, str], Engine] = {}

    def reads(self, bus: Any, spec: str) -> EngineReads:
        from api.faults import bad_request

        position: int | None = None
        when: datetime | None = None
        spec = spec.strip()
        if spec.isdigit():
            position = int(spec)
        else:
            try:
                when = datetime.fromisoformat(spec.replace("Z", "+00:00"))
            except ValueError:
                raise bad_request(
                    "as_of must be a log position or an ISO-8601 time.", "as_of"
                ) from None
            if when.tzinfo is None:
                from datetime import UTC

                when = when.replace(tzinfo=UTC)
        key = (id(bus), spec)
        with self._lock:
            eng = self._cache.get(key)
            if eng is None:
                eng = Engine()
                past_end = False
                for nid, ev in bus.log.iter_all(0):
                    if position is not None and nid > position:
                        past_end = True
                        break
                    if when is not None and ev.timestamp > when:
                        past_end = True
                        break
                    eng.apply(ev)
                    eng.position = nid
                if past_end:  # a moment still in the future may change: no caching
                    if len(self._cache) > 8:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[key] = eng
        return EngineReads(bus, eng, threading.RLock())


_AS_OF = _AsOfCache()


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

    def as_of(self, spec: str) -> EngineReads:
        return _AS_OF.reads(self.bus, spec)


def open_reads(bus: Any, kind: str = "engine", data_dir: Any = None) -> Any:
    """``engine``: the write side's Engine in memory (default); ``projections``: the read
    side's engine view, started here and following the bus."""
    if kind == "projections":
        from projections.read import open_read_side

        return ProjectionReads(bus, open_read_side(bus=bus, data_dir=data_dir))
    return EngineReads(bus)
