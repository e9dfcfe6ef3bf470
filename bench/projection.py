"""Projection catch-up and live lag on PostgreSQL.

Generates a log of ``--events`` events (``--objects`` data centers, then update
events spread over them) straight through the recorder in big batches, then:

- ``baseline_events_per_s``: the same log read with the library's
  ``select_notifications`` and decoded, nothing else;
- ``events_per_s``: a fresh engine view caught up from zero (read, decode, apply to
  the Engine, upsert rows + tracking in one transaction per batch); with
  ``--all-projections`` the whole production read side (``projections.read.ReadSide``:
  engine view, audit feed, object history) instead;
- ``lag_p99_ms``: while a writer appends ``--rate`` events/s, the time from an
  append's commit to the follower's commit of the view rows containing it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

NAME = "projection"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    p.add_argument("--objects", type=int, default=2_000, help="data centers updated")
    p.add_argument("--batch", type=int, default=20_000, help="catch-up batch size")
    p.add_argument("--rate", type=int, default=2_000, help="live write rate, events/s")
    p.add_argument("--lag-seconds", type=float, default=10.0, help="live phase duration")
    p.add_argument("--keep", action="store_true", help="keep the bench schema")
    p.add_argument(
        "--all-projections",
        action="store_true",
        help="catch up the production read side (engine view, feed, history) instead of "
        "the engine view alone",
    )


def _url(explicit: str | None) -> str:
    from bench.common import database_url

    return database_url(explicit or os.environ.get("ORRERY_TEST_DATABASE_URL"))


def _generate(log: Any, n_events: int, n_objects: int, chunk: int = 10_000) -> float:
    from bench.common import datacenter_event
    from domain.base import Meta

    mapper = log.mapper
    meta = Meta(actor="bench@internal", command="UpdateDataCenter")
    ids = [uuid.uuid4() for _ in range(min(n_objects, n_events))]
    versions = dict.fromkeys(ids, 0)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    buf = []
    made = 0
    while made < n_events:
        oid = ids[made % len(ids)]
        v = versions[oid] + 1
        versions[oid] = v
        ev = datacenter_event(
            oid,
            v,
            now,
            meta,
            name=f"dc-{made}",
            description=f"revision {v} of {made}",
            created_at=now.isoformat(),
        )
        buf.append(mapper.to_stored_event(ev))
        made += 1
        if len(buf) >= chunk:
            log.append_stored(buf)
            buf = []
    if buf:
        log.append_stored(buf)
    return time.perf_counter() - t0


def _baseline(log: Any, batch: int) -> tuple[int, float]:
    from commands.store import decode_event

    rec = log.recorder
    t0 = time.perf_counter()
    after, n = 0, 0
    while True:
        notes = rec.select_notifications(start=after, limit=batch, inclusive_of_start=False)
        if not notes:
            break
        for note in notes:
            decode_event(note.topic, note.state)
        n += len(notes)
        after = notes[-1].id
    return n, time.perf_counter() - t0


def _lag(log: Any, runner: Any, rate: int, seconds: float, n_objects: int) -> list[float]:
    """Lags in ms between a write's commit and the view commit that includes it."""
    from bench.common import datacenter_event
    from domain.base import Meta

    mapper = log.mapper
    meta = Meta(actor="bench@internal", command="UpdateDataCenter")
    written: dict[int, float] = {}
    seen: dict[int, float] = {}
    lock = threading.Lock()
    pending: list[int] = []

    def on_commit(position: int) -> None:
        t = time.perf_counter()
        with lock:
            while pending and pending[0] <= position:
                seen[pending.pop(0)] = t

    runner.on_commit.append(on_commit)
    ids = [uuid.uuid4() for _ in range(max(1, min(n_objects, 200)))]
    versions = dict.fromkeys(ids, 0)
    per_tick = max(1, rate // 200)  # 200 appends per second
    interval = per_tick / rate
    deadline = time.perf_counter() + seconds
    next_at = time.perf_counter()
    k = 0
    while time.perf_counter() < deadline:
        batch = []
        for _ in range(per_tick):
            oid = ids[k % len(ids)]
            k += 1
            v = versions[oid] + 1
            versions[oid] = v
            now = datetime.now(UTC)
            ev = datacenter_event(oid, v, now, meta, name=f"live-{k}", description=f"live {k}")
            batch.append(mapper.to_stored_event(ev))
        nids = log.append_stored(batch)
        t = time.perf_counter()
        with lock:
            for nid in nids:
                written[nid] = t
            pending.extend(nids)
            pending.sort()
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    runner.wait_for(max(written), 10)
    runner.on_commit.remove(on_commit)
    return [max(0.0, (seen[n] - written[n]) * 1000) for n in written if n in seen]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from bench.common import owner_url
    from commands.bootstrap import prepare_log
    from commands.store import EventLog, libpq_url, with_schema
    from projections.db import ViewDB
    from projections.engine_view import EngineView
    from projections.read import ReadSide
    from projections.runner import ProjectionRunner

    given = _url(getattr(args, "database_url", None))
    owner = owner_url(given)
    base = libpq_url(owner)
    schema = "bench_proj_" + uuid.uuid4().hex[:8]
    url = with_schema(given, schema)
    prepare_log(owner, url)
    try:
        log = EventLog(url)
        gen_s = _generate(log, args.events, args.objects)
        n_base, base_s = _baseline(log, args.batch)
        read: Any = None
        if getattr(args, "all_projections", False):
            # The production read side: what `orrery serve` and `orrery replay` run.
            read = ReadSide(log, url, batch=args.batch, poll=1.0)
            runner: Any = read.runner
            db = read.db()
        else:
            db = ViewDB(url)
            runner = ProjectionRunner(log, db, [EngineView()], batch=args.batch, poll=1.0)
        t0 = time.perf_counter()
        n = runner.catch_up()
        catch_s = time.perf_counter() - t0
        objects = db.query("SELECT COUNT(*) FROM {objects}")[0][0]
        runner.start()
        lags = _lag(log, runner, args.rate, args.lag_seconds, args.objects)
        if read is not None:
            read.close()
        else:
            runner.close()
            db.close()
        lags.sort()
        eps = n / catch_s
        beps = n_base / base_s
        return {
            "events": n,
            "objects": int(objects),
            "generate_events_per_s": round(args.events / gen_s),
            "events_per_s": round(eps),
            "baseline_events_per_s": round(beps),
            "ratio": round(eps / beps, 3),
            "catch_up_s": round(catch_s, 2),
            "lag_samples": len(lags),
            "lag_p50_ms": round(statistics.median(lags), 2) if lags else None,
            "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1], 2) if lags else None,
            "lag_max_ms": round(lags[-1], 2) if lags else None,
            "live_rate": args.rate,
            "batch": args.batch,
            "projections": "all" if read is not None else "engine_view",
        }
    finally:
        if not args.keep:
            with psycopg.connect(base, autocommit=True) as c:
                c.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":  # pragma: no cover - the runner is bench/__main__.py
    import json

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--database-url", default=None)
    print(json.dumps(run(parser.parse_args()), indent=2))
