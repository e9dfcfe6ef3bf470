"""Writes aggregate snapshots as the log grows: every ``every`` versions of an aggregate.

Fed by the bus with committed events; a background thread rebuilds the aggregate at
exactly that version from the log (previous snapshot + the events since), so a snapshot
never contains anything that was not committed.
"""

from __future__ import annotations

import logging
import queue
import threading
from uuid import UUID

from commands.store import EventLog
from domain.base import Event

log = logging.getLogger("orrery.snapshots")

SNAPSHOT_EVERY = 50


class SnapshotWriter:
    def __init__(self, event_log: EventLog, every: int = SNAPSHOT_EVERY) -> None:
        self.log = event_log
        self.every = every
        self._queue: queue.SimpleQueue[tuple[UUID, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0

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
        for _nid, ev in pairs:
            if ev.originator_version % self.every == 0 and not ev.DELETES:
                self._queue.put((ev.originator_id, ev.originator_version))

    def drain(self) -> None:
        """Writes what is queued now, on the caller's thread (tests, shutdown)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._write(*item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._write(*item)

    def _write(self, oid: UUID, version: int) -> None:
        try:
            agg = self.log.aggregate_at(oid, version)
            if agg is not None and agg.version == version and self.log.store_snapshot(agg):
                self.written += 1
        except Exception:
            log.exception("snapshot of %s at v%s failed", oid, version)
