"""What the Manager runs: one object that keeps the warehouse fed.

    runner = HistoryRunner(Warehouse(path_in(data_dir)), log.read)
    runner.start()                       # background thread; or call tick(now) yourself
    runner.observe(VmSample(...))        # from the host channel, any rate, any thread
    ...
    runner.stop()

Every ``poll`` seconds ``tick`` catches the configuration history up with the log,
emits the sampler's samples when a sampling interval (60 s) has passed and ingests
them, and once the clock passes an hour runs the rollups and retention.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from history.samples import Sample, Sampler
from history.warehouse import ReadFn, Warehouse

log = logging.getLogger(__name__)


class HistoryRunner:
    def __init__(
        self,
        warehouse: Warehouse,
        read: ReadFn | None,
        *,
        interval: float = 60.0,
        poll: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.warehouse = warehouse
        self.read = read
        self.sampler = Sampler(interval)
        self.poll = poll
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_maintained_hour: datetime | None = None
        self.errors = 0

    def observe(self, sample: Sample) -> None:
        with self._lock:
            self.sampler.observe(sample)

    def forget(self, obj_id: Any) -> None:
        with self._lock:
            self.sampler.forget(obj_id)

    def tick(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or self.clock()
        out: dict[str, Any] = {}
        if self.read is not None:
            out["position"] = self.warehouse.catch_up(self.read)
        with self._lock:
            samples = self.sampler.collect(now)
        if samples:
            out["samples"] = self.warehouse.ingest_samples(samples)
        hour = now.replace(minute=0, second=0, microsecond=0)
        if self._last_maintained_hour != hour and now.minute >= 3:
            out["maintenance"] = self.warehouse.maintain(now)
            self._last_maintained_hour = hour
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception:  # keep sampling; the next tick retries from the stored position
                self.errors += 1
                log.exception("history tick failed")

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="history", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
