"""The event feed the API serves at /events and streams as server-sent events.

Each committed domain event becomes an oVirt-style event (id = log position, code,
severity, description, time, and links to the objects it concerns). The feed keeps the
most recent entries in memory, filled from the log tail and from the bus as batches
commit; subscribers (the SSE stream) get each new entry. An ``EventHidden``
(DELETE /events/N) takes entry N out of the list for good.

Describing the last ``keep`` entries takes seconds, so it is not done on the Manager's
way to serving: a thread fills the feed after the API is up, and the batches that commit
meanwhile are queued and described after it, in log order. Until the feed is filled, a
reader of it waits (``until_ready``, bounded by ``READY_WAIT``) and then gets the
complete answer, or a 503 naming what it waited for: never a partial list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import zlib
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.faults import ApiError
from api.resources import BASE
from domain.engine import Engine
from projections import feed as read_feed  # the read side's oVirt-style descriptions
from projections.runner import Change
from projections.timetravel import engine_at

log = logging.getLogger("orrery.api.feed")

KEEP = 50_000
# How long a reader of the feed waits for its fill at start before a 503.
READY_WAIT = 15.0

# oVirt audit codes for the facts whose codes clients know.
CODES = {
    "DataCenterAdded": 950,
    "DataCenterRemoved": 954,
    "DataCenterUpdated": 952,
    "ClusterAdded": 809,
    "ClusterRemoved": 813,
    "ClusterUpdated": 811,
    "VmCreated": 34,
    "VmAdded": 34,
    "VmRemoved": 113,
    "VmUpdated": 35,
    "HostAdded": 42,
    "HostRemoved": 44,
    "UserLoginFailed": 114,
    "LoginFailed": 114,
    "PermissionDenied": 8007,
}

_KIND_TAG = {
    "vm": "vm",
    "host": "host",
    "cluster": "cluster",
    "data_center": "data_center",
    "storage_domain": "storage_domain",
    "template": "template",
    "user": "user",
    "vm_pool": "vm_pool",
}


# oVirt's EXTERNAL_EVENT_NORMAL / _WARNING / _ERROR and EXTERNAL_ALERT.
EXTERNAL_CODES = {"normal": 12031, "warning": 12032, "error": 12033, "alert": 12034}


def code_of(topic: str) -> int:
    c = CODES.get(topic)
    if c is not None:
        return c
    return 100_000 + zlib.crc32(topic.encode()) % 100_000


class Feed:
    def __init__(self, bus: Any = None, keep: int = KEEP, *, fill: bool = True) -> None:
        """``fill``: start filling from the log now (else ``start_fill`` does)."""
        self.bus = bus
        self.keep = keep
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self.lock = threading.Lock()
        self._subs: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = []
        self._external = 0
        self.hidden: set[int] = set()  # entries removed from the list (EventHidden)
        # A private engine following the log, so each entry sees the object before and
        # after its event (the read side's describe() needs both). It starts from the
        # nearest checkpoint before the entries kept (bounded, whatever the log's length).
        self.shadow = Engine()
        self.ready = threading.Event()  # set when the fill from the log is done
        self.failed: str | None = None  # why the fill failed, if it did
        self._pending: list[list[tuple[int, Any]]] = []  # batches committed during the fill
        self._queue_lock = threading.Lock()
        self._target = 0  # the log's head when the fill began
        self._thread: threading.Thread | None = None
        if bus is None:
            self.ready.set()
            return
        bus.subscribe(self._on_batch)  # before reading the head: no batch falls between
        self._target = bus.log.head()
        if fill:
            self.start_fill()

    def start_fill(self) -> None:
        """Fills the feed from the log in a thread (once)."""
        if self._thread is None and not self.ready.is_set():
            self._thread = threading.Thread(target=self._fill, name="feed-fill", daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        """The last ``keep`` entries up to the log's head, then the batches that committed
        meanwhile (those already read are skipped); then the bus's batches go straight
        to ``_apply_batch``."""
        try:
            first = max(0, self._target - self.keep)
            self.shadow = engine_at(self.bus.log, first)
            for nid, ev in self.bus.log.iter_all(self.shadow.position):
                e = self._step(nid, ev, describe=nid > first)
                if e is not None:
                    self.entries.append(e)
            while True:
                with self._queue_lock:
                    if not self._pending:
                        self.ready.set()
                        break
                    pairs = self._pending.pop(0)
                self._apply_batch(pairs)
        except Exception as e:  # the readers are told, not left waiting or misled
            log.exception("feed: could not fill from the log")
            self.failed = f"{type(e).__name__}: {e}"
            self.ready.set()

    async def until_ready(self, timeout: float | None = None) -> None:
        """Returns once the feed is filled; a 503 after ``timeout`` (``READY_WAIT``)."""
        if not self.ready.is_set():
            wait = READY_WAIT if timeout is None else timeout
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.ready.wait, wait)
        self._check_ready()

    def _check_ready(self) -> None:
        if self.failed is not None:
            raise ApiError(503, "Service Unavailable", f"The event feed failed: {self.failed}.")
        if not self.ready.is_set():
            raise ApiError(
                503,
                "Service Unavailable",
                f"The event feed is still reading the last {self.keep} entries of the log "
                f"(at position {self.shadow.position} of {self._target}); retry shortly.",
            )

    # -- filling -------------------------------------------------------------------
    def entry(self, nid: int, ev: Any, engine: Any) -> dict[str, Any]:
        topic = ev.TOPIC
        payload = ev.payload()
        obj = engine.objects.get(ev.originator_id) if engine is not None else None
        kind = getattr(type(obj), "KIND", None) if obj is not None else None
        name = getattr(obj, "name", None) or payload.get("name")
        who = ev.meta.actor or "system"
        parts = [topic]
        if name:
            parts.append(f"'{name}'")
        desc = " ".join(parts) + f" by {who}."
        e: dict[str, Any] = {
            "id": nid,
            "code": code_of(topic),
            "severity": payload.get("severity", "normal")
            if isinstance(payload.get("severity"), str)
            else "normal",
            "description": desc,
            "time": _iso(ev.timestamp),
            "origin": "orrery",
            "custom_id": -1,
            "flood_rate": 30,
            "correlation_id": ev.meta.correlation_id,
            "topic": topic,
            "object_id": str(ev.originator_id),
        }
        if kind in _KIND_TAG:
            e[_KIND_TAG[kind]] = str(ev.originator_id)
        for k, v in payload.items():
            if k.endswith("_id") and isinstance(v, UUID):
                tag = k[:-3]
                if tag in _KIND_TAG.values() and tag not in e:
                    e[tag] = str(v)
        if ev.meta.actor_id is not None:
            e["user"] = str(ev.meta.actor_id)
        return e

    def _step(self, nid: int, ev: Any, describe: bool = True) -> dict[str, Any] | None:
        if ev.TOPIC == "EventHidden":  # DELETE /events/N: the entry leaves the list
            self._hide(int(ev.position))
        before = self.shadow.objects.get(ev.originator_id)
        try:
            self.shadow.apply(ev)
            self.shadow.position = nid
        except Exception:
            log.warning("feed: could not apply %s at %s", ev.TOPIC, nid)
        if not describe:
            return None
        if ev.TOPIC == "ExternalEventAdded":
            sev = str(getattr(ev, "severity", "normal"))
            return {
                "id": nid,
                "code": EXTERNAL_CODES.get(sev, 12031),
                "severity": sev,
                "description": ev.description,
                "time": _iso(ev.timestamp),
                "origin": getattr(ev, "origin", "external"),
                "custom_id": getattr(ev, "custom_id", -1),
                "flood_rate": 30,
                "correlation_id": ev.meta.correlation_id,
                "topic": ev.TOPIC,
                "object_id": str(ev.originator_id),
                **({"user": str(ev.meta.actor_id)} if ev.meta.actor_id else {}),
            }
        after = self.shadow.objects.get(ev.originator_id)
        d = None
        try:
            d = read_feed.describe(Change(nid, ev, before, after), self.shadow)
        except Exception:
            log.warning("feed: could not describe %s", ev.TOPIC, exc_info=True)
        if d is None:
            return self.entry(nid, ev, self.shadow)
        e: dict[str, Any] = {
            "id": nid,
            "code": d["code"],
            "severity": d["severity"],
            "description": d["description"],
            "time": _iso(ev.timestamp),
            "origin": "orrery",
            "custom_id": -1,
            "flood_rate": 30,
            "correlation_id": d.get("correlation_id"),
            "topic": ev.TOPIC,
            "object_id": str(ev.originator_id),
        }
        for tag in ("vm", "host", "cluster", "data_center", "storage_domain", "template"):
            if d.get(f"{tag}_id"):
                e[tag] = d[f"{tag}_id"]
        if d.get("user_id"):
            e["user"] = d["user_id"]
        return e

    def _hide(self, event_id: int) -> None:
        with self.lock:
            self.hidden.add(event_id)
            for i in range(len(self.entries) - 1, -1, -1):
                if self.entries[i]["id"] == event_id:
                    del self.entries[i]
                    break

    def _on_batch(self, pairs: list[tuple[int, Any]]) -> None:
        with self._queue_lock:
            if not self.ready.is_set():  # the fill describes it after the log's entries
                self._pending.append(list(pairs))
                return
        self._apply_batch(pairs)

    def _apply_batch(self, pairs: list[tuple[int, Any]]) -> None:
        new = []
        for nid, ev in pairs:
            if nid <= self.shadow.position:
                continue
            if nid > self.shadow.position + 1:
                self._catch_up(nid - 1)
            e = self._step(nid, ev)
            if e is not None:
                new.append(e)
        self._publish(new)

    def _catch_up(self, upto: int) -> None:
        """Applies what another writer appended (the bus absorbed it without listeners)."""
        for nid, ev in self.bus.log.read(self.shadow.position, limit=1_000_000, stop=upto):
            e = self._step(nid, ev)
            if e is not None:
                self._publish([e])

    def _publish(self, new: list[dict[str, Any]]) -> None:
        with self.lock:
            self.entries.extend(new)
            subs = list(self._subs)
        for loop, q in subs:
            for e in new:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_offer, q, e)

    @property
    def position(self) -> int:
        return self.shadow.position

    async def wait_for(self, position: int, timeout: float = 2.0) -> None:
        """Until the feed has seen the log up to ``position`` (the bus resolves a command
        just before it tells its listeners). While the feed fills, at once: its readers
        wait for the fill, which describes the position before they read."""
        import time as _time

        if not self.ready.is_set():
            return

        deadline = _time.monotonic() + timeout
        while self.shadow.position < position and _time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    def add_external(self, description: str, severity: str, origin: str, custom_id: int) -> dict:
        """An external event kept in memory (until an audit command exists for it)."""
        with self.lock:
            last = self.entries[-1]["id"] if self.entries else 0
            self._external += 1
        e = {
            "id": last + 1,
            "code": 9000,
            "severity": severity,
            "description": description,
            "time": _iso(datetime.now(UTC)),
            "origin": origin,
            "custom_id": custom_id,
            "flood_rate": 30,
        }
        self._publish([e])
        return e

    # -- reading -------------------------------------------------------------------
    def list(self, after: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first, as oVirt lists them; ``after`` keeps ids greater than it. Waits
        for the fill (a 503 after ``READY_WAIT``): callers on the event loop await
        ``until_ready`` first."""
        self.ready.wait(READY_WAIT)
        self._check_ready()
        with self.lock:
            items: Iterable[dict[str, Any]] = reversed(self.entries)
            out = []
            for e in items:
                if after is not None and e["id"] <= after:
                    break
                out.append(e)
                if limit is not None and len(out) >= limit and after is None:
                    break
        if not out and after is None:
            out = [self.started]
        return out if limit is None else out[:limit]

    def get(self, event_id: int) -> dict[str, Any] | None:
        self.ready.wait(READY_WAIT)
        self._check_ready()
        with self.lock:
            if event_id in self.hidden:
                return None
            for e in reversed(self.entries):
                if e["id"] == event_id:
                    return e
        if event_id == 0:
            return self.started
        return None

    started = {
        "id": 0,
        "code": 9700,
        "severity": "normal",
        "description": "Orrery engine started.",
        "time": "1970-01-01T00:00:00.000+00:00",
        "origin": "orrery",
        "custom_id": -1,
        "flood_rate": 30,
    }

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        with self.lock:
            self._subs.append((loop, q))
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        with self.lock:
            self._subs = [(lp, s) for lp, s in self._subs if s is not q]


def _offer(q: asyncio.Queue[dict[str, Any]], e: dict[str, Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a stalled reader loses entries
        q.put_nowait(e)


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.isoformat(timespec="milliseconds")


def render_event(e: dict[str, Any]) -> dict[str, Any]:
    """The API form of a feed entry."""

    d: dict[str, Any] = {
        "href": f"{BASE}/events/{e['id']}",
        "id": str(e["id"]),
        "description": e["description"],
        "code": e["code"],
        "correlation_id": e.get("correlation_id"),
        "custom_id": e.get("custom_id", -1),
        "flood_rate": e.get("flood_rate", 30),
        "origin": e.get("origin", "orrery"),
        "severity": e["severity"],
        "time": e["time"],
    }
    for tag, path in (
        ("vm", "vms"),
        ("host", "hosts"),
        ("cluster", "clusters"),
        ("data_center", "datacenters"),
        ("storage_domain", "storagedomains"),
        ("template", "templates"),
        ("user", "users"),
    ):
        if e.get(tag):
            d[tag] = {"href": f"{BASE}/{path}/{e[tag]}", "id": e[tag]}
    return d
