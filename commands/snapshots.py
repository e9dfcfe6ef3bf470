"""Writes aggregate snapshots as the log grows: every ``every`` versions of an aggregate.

Fed by the bus with committed events. When the Engine (read under the bus's lock, as
listeners are called) holds the aggregate at exactly the committed version, that
immutable object IS the snapshot: every event up to it is committed, so nothing
speculative can be in it. Otherwise (the writer has already decided more on top) a
background thread rebuilds it from the log (previous snapshot + the events since).
Queued snapshots are written in one transaction per drain.
"""

from __future__ import annotations

import logging
import queue
import threading
from uuid import UUID

from commands.store import EventLog
from domain.base import Aggregate, Event
from domain.engine import Engine

log = logging.getLogger("orrery.snapshots")

SNAPSHOT_EVERY = 50

_Job = tuple[UUID, int, Aggregate | None]


class SnapshotWriter:
    def __init__(
        self, event_log: EventLog, every: int = SNAPSHOT_EVERY, engine: Engine | None = None
    ) -> None:
        self.log = event_log
        self.every = every
        self.engine = engine
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.rebuilt = 0  # of those, how many had to be read back from the log

    def start(self) -> SnapshotWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="orrery-snapshots", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def on_committed(self, pairs: list[tuple[int, Event]]) -> None:
        """A bus listener: queues the aggregates whose version reached a multiple."""
        every = self.every
        objects = self.engine.objects if self.engine is not None else {}
        for _nid, ev in pairs:
            version = ev.originator_version
            if version % every == 0 and not ev.DELETES:
                obj = objects.get(ev.originator_id)
                if obj is not None and obj.version != version:
                    obj = None
                self._queue.put((ev.originator_id, version, obj))

    def drain(self) -> None:
        """Writes what is queued now, on the caller's thread (tests, shutdown)."""
        jobs = self._take()
        if jobs:
            self._write(jobs)

    def _take(self, first: _Job | None = None) -> list[_Job]:
        jobs = [first] if first is not None else []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs
            if job is None:  # a stop request: put it back for _run
                self._queue.put(None)
                return jobs
            jobs.append(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._write(self._take(job))

    def _write(self, jobs: list[_Job]) -> None:
        aggregates: list[Aggregate] = []
        for oid, version, obj in jobs:
            if obj is None:
                try:
                    obj = self.log.aggregate_at(oid, version)
                except Exception:
                    log.exception("rebuilding %s at v%s failed", oid, version)
                    continue
                if obj is None or obj.version != version:
                    continue
                self.rebuilt += 1
            aggregates.append(obj)
        try:
            self.written += self.log.store_snapshots(aggregates)
        except Exception:
            log.exception("writing %d snapshots failed", len(aggregates))
