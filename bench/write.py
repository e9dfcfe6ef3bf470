"""Write throughput: concurrent single-event commands through the real CommandBus.

``clients`` clients each update the description of their own data center, one command
at a time, and time submit -> committed. The baseline, on the same database in the same
run, is the eventsourcing library's default: each of ``clients`` threads saves one event
of a plain library Aggregate per ``Application.save()``. The bus run is cut into
``rounds`` slices with a baseline run before the first and after each one; ``ratio`` is
the median over slices of (slice rate / mean of the baselines around it), so a change in
the machine's load during the run moves both sides of each ratio alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.common import LatencyHistogram, database_url, fresh_schema, owner_url, rss_mb
from commands.store import with_schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--events", type=int, default=200_000, help="commands in the bus run")
    parser.add_argument("--baseline-events", type=int, default=3000, help="saves per baseline run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="bus slices, each between two baseline runs (the ratio is their median)",
    )
    parser.add_argument(
        "--mode",
        choices=("async", "thread"),
        default="async",
        help="clients: coroutines on one event loop (as the API server runs them) or threads",
    )
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-command-ids", action="store_true")


# -- the baseline: the library's own way, one save per command ------------------------
class Note(Aggregate):
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.text = ""

    @event("Described")
    def describe(self, text: str) -> None:
        self.text = text


class BaselineApp(Application[UUID]):
    name = "BenchBaseline"


def _baseline_env(url: str, pool: int) -> dict[str, str]:
    from commands.store import _foreign_setting, persistence_env

    env = {k: "" for k in os.environ if _foreign_setting(k)}
    env.update(persistence_env(url, None))
    env.update(
        POSTGRES_POOL_SIZE=str(pool),
        POSTGRES_MAX_OVERFLOW="0",
        POSTGRES_LOCK_TIMEOUT="0",
        CREATE_TABLE="y",
    )
    return env


def run_baseline(url: str, clients: int, total: int) -> float:
    app = BaselineApp(env=_baseline_env(url, clients))
    try:
        notes = [Note(owner=f"client{i}") for i in range(clients)]
        app.save(*notes)
        per = max(1, total // clients)
        start = threading.Barrier(clients + 1)

        def client(note: Note) -> None:
            start.wait()
            for n in range(per):
                note.describe(f"text {n}")
                app.save(note)

        threads = [threading.Thread(target=client, args=(n,)) for n in notes]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        return per * clients / (time.perf_counter() - t0)
    finally:
        app.close()


# -- the bus ---------------------------------------------------------------------------
def _clients_threads(bus: Any, dcs: list[UUID], per: int, ids: bool) -> list[LatencyHistogram]:
    from commands.datacenter import UpdateDataCenter

    hists = [LatencyHistogram() for _ in dcs]
    run = uuid.uuid4().hex[:8]
    start = threading.Barrier(len(dcs) + 1)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        dc, hist = dcs[i], hists[i]
        submit, clock = bus.submit, time.perf_counter
        start.wait()
        try:
            for n in range(per):
                cmd = UpdateDataCenter(
                    data_center_id=dc,
                    description=f"d{n}",
                    command_id=f"{run}-{i}-{n}" if ids else None,
                )
                t0 = clock()
                submit(cmd).result(60)
                hist.add(clock() - t0)
            hist.flush()
        except BaseException as e:  # pragma: no cover - reported
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(dcs))]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return hists


def _clients_async(bus: Any, dcs: list[UUID], per: int, ids: bool) -> list[LatencyHistogram]:
    from commands.datacenter import UpdateDataCenter

    hists = [LatencyHistogram() for _ in dcs]
    run = uuid.uuid4().hex[:8]

    async def client(i: int) -> None:
        dc, hist = dcs[i], hists[i]
        clock = time.perf_counter
        for n in range(per):
            cmd = UpdateDataCenter(
                data_center_id=dc,
                description=f"d{n}",
                command_id=f"{run}-{i}-{n}" if ids else None,
            )
            t0 = clock()
            await bus.execute_async(cmd)
            hist.add(clock() - t0)
        hist.flush()

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(len(dcs))))

    asyncio.run(main())
    return hists


def run_bus(
    url: str, args: argparse.Namespace, baseline: Callable[[], float] | None = None
) -> dict[str, Any]:
    """The bus run, in ``rounds`` slices; ``baseline()`` runs before the first slice and
    after each one, so every slice has a baseline measured right around it."""
    from commands import bus as bus_module
    from commands.bootstrap import open_bus, tune_gc
    from commands.datacenter import AddDataCenter

    options: dict[str, Any] = {}
    if args.max_batch:
        options["max_batch"] = args.max_batch
    bus = open_bus(url, **options)
    window = bus_module.IDEMPOTENCY_WINDOW
    rounds = max(1, args.rounds)
    baselines: list[float] = []
    slices: list[float] = []
    hist = LatencyHistogram()  # all rounds' latencies
    try:
        dcs = [bus.execute(AddDataCenter(name=f"bench-dc-{i}")).value for i in range(args.clients)]
        tune_gc()  # as `orrery serve` does once loaded
        per = max(1, args.events // args.clients // rounds)
        samples: list[tuple[int, float]] = []  # (events written, rss)
        done = threading.Event()
        progress = bus.log.head

        def sample() -> None:
            while not done.wait(1.0):
                samples.append((progress() - head0, rss_mb()))

        sampler = threading.Thread(target=sample, daemon=True)
        if baseline is not None:
            baselines.append(baseline())
        rss_start = rss_mb()
        batches0, head0 = bus.batches, bus.log.head()
        sampler.start()
        drive = _clients_async if args.mode == "async" else _clients_threads
        elapsed = cpu = 0.0
        for _ in range(rounds):
            h0 = bus.log.head()
            cpu0, t0 = time.process_time(), time.perf_counter()
            for h in drive(bus, dcs, per, not args.no_command_ids):
                hist.merge(h)
            took = time.perf_counter() - t0
            cpu += time.process_time() - cpu0
            elapsed += took
            slices.append((bus.log.head() - h0) / took)
            if baseline is not None:
                baselines.append(baseline())
        done.set()
        sampler.join()
        rss_end = rss_mb()
        events = bus.log.head() - head0
        batches = bus.batches - batches0
        remembered = len(bus._done)
        writer = getattr(bus, "checkpoint_writer", None)
        checkpoints = (writer.written, writer.cpu_s) if writer is not None else (0, 0.0)
    finally:
        bus.stop()
        bus.log.close()
    # Memory once the idempotency window is full (it grows until then, by design).
    full = next((rss for n, rss in samples if n >= window), None)
    # ...and over the run's second half, once the window's one-time growth is behind.
    half = None
    if events > 2 * window:
        half = next((rss for n, rss in samples if n >= events // 2), None)
    out: dict[str, Any] = {
        "commands": per * args.clients * rounds,
        "events": events,
        "seconds": round(elapsed, 2),
        "events_per_s": round(events / elapsed, 1),
        "p50_ms": hist.percentile_ms(50),
        "p99_ms": hist.percentile_ms(99),
        "max_ms": round(hist.max_s * 1000, 3),
        "batches": batches,
        "events_per_batch": round(events / max(1, batches), 2),
        "cpu_us_per_event": round(cpu / max(1, events) * 1e6, 1),
        "rss_mb_start": rss_start,
        "rss_mb_window_full": full,
        "rss_mb_peak": max([rss_start, rss_end, *(r for _, r in samples)]),
        "rss_mb_end": rss_end,
        "rss_growth_after_window_full_mb": round(rss_end - full, 1) if full else None,
        "rss_growth_second_half_mb": round(rss_end - half, 1) if half else None,
        "idempotency_window": window,
        "remembered_command_ids": remembered,
        "rounds_events_per_s": [round(x, 1) for x in slices],
        # Written by the checkpoint thread during the run (its CPU is in cpu_us_per_event).
        "checkpoint_rows": checkpoints[0],
        "checkpoint_cpu_us_per_event": round(checkpoints[1] / max(1, events) * 1e6, 2),
    }
    if baselines:
        # Each slice against the mean of the baselines just before and after it.
        ratios = [slices[i] / ((baselines[i] + baselines[i + 1]) / 2) for i in range(len(slices))]
        out["baseline_events_per_s"] = round(statistics.fmean(baselines), 1)
        out["baselines_events_per_s"] = [round(b, 1) for b in baselines]
        out["rounds_ratio"] = [round(r, 2) for r in ratios]
        out["ratio"] = round(statistics.median(ratios), 2)
        out["ratio_of_means"] = round(out["events_per_s"] / out["baseline_events_per_s"], 2)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = database_url(args.database_url)
    with fresh_schema(url, "bench_write") as schema_url:
        # The library's own application, as the schema's owner: its tables and its
        # insert function are the owner's (the Manager's role may only append to the log).
        owner_schema_url = with_schema(owner_url(url), schema_url.rsplit("schema=", 1)[1])

        def baseline() -> float:
            return run_baseline(owner_schema_url, args.clients, args.baseline_events)

        result = run_bus(schema_url, args, None if args.no_baseline else baseline)
    out: dict[str, Any] = {"bench": "write", "clients": args.clients, "mode": args.mode}
    out.update(result)
    return out
