"""Manager start time at several log lengths, and time travel, on PostgreSQL.

For each size in ``--sizes`` (events): a fresh schema gets an initialized installation
and then a log of that many events (``--objects`` data centers, then updates spread
over them, each event its own command with a command id, so the idempotency window is
full), appended in big batches straight through the recorder. The write side's
checkpoint rows are written as a running Manager writes them (a full row every
``--every`` events, deltas between), from an Engine that follows the log as it grows,
and the last ``--tail`` events are left after the newest row (a Manager that stopped
without its final checkpoint).

- ``start_<size>_s``: ``orrery serve`` in its own process, from process start to the
  first successful GET (``/ovirt-engine/api/datacenters?max=1`` as admin, 200);
  ``start_1m_s`` and ``ratio_5m_to_100k`` (else the largest size's to the smallest's);
- ``start_replay_<size>_s`` (sizes in ``--replay-sizes``): the same with no checkpoint
  (the table emptied): a full replay, as before checkpoints;
- ``as_of_p50_ms`` / ``as_of_p99_ms``: ``projections.timetravel.engine_at`` at
  ``--points`` random positions of the 1M log (else the largest), from the nearest row
  plus the log after it (``as_of_<size>_p50_ms`` etc. for every size).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PASSWORD = "bench-password"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        default="100000,1000000,5000000",
        help="comma-separated log lengths in events (default 100000,1000000,5000000)",
    )
    p.add_argument("--objects", type=int, default=10_000, help="data centers in the log")
    p.add_argument("--every", type=int, default=50_000, help="events between full rows")
    p.add_argument("--tail", type=int, default=2_500, help="events after the newest row")
    p.add_argument("--points", type=int, default=40, help="random as_of positions per size")
    p.add_argument(
        "--replay-sizes",
        default="100000",
        help="sizes also started with no checkpoint (comma-separated; '' for none)",
    )
    p.add_argument("--starts", type=int, default=2, help="starts per size (the median is kept)")


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def _generate(url: str, n_events: int, n_objects: int, every: int, tail: int) -> dict[str, Any]:
    """The installation, then ``n_events`` events with checkpoint rows as they go."""
    from bench.common import datacenter_event
    from commands.bootstrap import open_bus
    from commands.bus import CommandBus
    from commands.checkpoints import CheckpointWriter
    from commands.store import EventLog
    from commands.system import ensure_initialized
    from domain.base import Meta

    init = open_bus(url, checkpoint_every=0)
    try:
        ensure_initialized(init, admin_password=PASSWORD)
    finally:
        init.stop()
        init.log.close()
    bus = CommandBus(EventLog(url))
    writer = CheckpointWriter(bus, every=every)
    log = bus.log
    mapper = log.mapper
    ids = [uuid.uuid4() for _ in range(min(n_objects, n_events))]
    versions = dict.fromkeys(ids, 0)
    now = datetime.now(UTC)
    step = writer.step
    t0 = time.perf_counter()
    made = 0
    follow_s = 0.0
    while made < n_events:
        buf = []
        last = made >= n_events - tail  # the tail: no row after it
        upto = n_events if last else min(made + step, n_events - tail)
        for _ in range(upto - made):
            oid = ids[made % len(ids)]
            v = versions[oid] + 1
            versions[oid] = v
            meta = Meta(
                actor="bench@internal",
                command="UpdateDataCenter" if v > 1 else "AddDataCenter",
                command_id=f"gen-{made}",
            )
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
        log.append_stored(buf)
        t1 = time.perf_counter()
        bus.catch_up()  # the Engine and window follow the log, as the Manager's do
        if not last:
            writer.write_now()
        follow_s += time.perf_counter() - t1
    head = log.head()
    rows = writer.store.positions()
    size = writer.store.execute(
        "SELECT pg_total_relation_size(?::regclass)", (f"{writer.store.table}",), commit=False
    )
    log.close()
    return {
        "generate_s": round(time.perf_counter() - t0, 1),
        "follow_s": round(follow_s, 1),
        "head": head,
        "rows": len(rows),
        "full_rows": sum(1 for _, full in rows if full),
        "tail": head - rows[-1][0] if rows else head,
        "table_mb": round(int(size[0][0]) / 2**20, 1) if size else None,
    }


def _as_of(url: str, head: int, points: int) -> list[float]:
    from commands.store import EventLog
    from projections.timetravel import engine_at

    log = EventLog(url)
    try:
        rnd = random.Random(head)
        out = []
        for _ in range(points):
            p = rnd.randint(1, head)
            t0 = time.perf_counter()
            engine = engine_at(log, p)
            out.append((time.perf_counter() - t0) * 1000)
            assert engine.position <= p
        return out
    finally:
        log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(url: str, data_dir: Path, timeout: float = 900) -> tuple[float, float, int]:
    """Seconds from ``orrery serve``'s process start to its first 200 for a GET; the
    seconds its write side took to load (from its log) and the events it replayed."""
    root = Path(__file__).resolve().parent.parent
    port = _free_port()
    env = {**os.environ, "ORRERY_ADMIN_PASSWORD": PASSWORD, "PYTHONPATH": str(root)}
    cmd = [
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        "--http",
        "--database-url",
        url,
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--log-level",
        "INFO",
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    err_path = data_dir / "serve.log"
    auth = base64.b64encode(f"admin@internal:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/ovirt-engine/api/datacenters?max=1",
        headers={"Authorization": f"Basic {auth}", "Accept": "application/json"},
    )
    t0 = time.perf_counter()
    err = err_path.open("w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"orrery serve exited with {proc.returncode}")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("orrery serve did not answer")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        took = time.perf_counter() - t0
                        break
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"orrery serve answered {e.code}") from e
            except OSError:
                pass
            time.sleep(0.02)
    finally:
        err.close()
        proc.send_signal(signal.SIGTERM)  # a clean stop (it writes its final row)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    found = re.search(
        r"write side at position \d+ in ([\d.]+) s: checkpoint at \d+, then (\d+) events",
        err_path.read_text(errors="replace"),
    )
    if found is None:
        return took, -1.0, -1
    return took, float(found.group(1)), int(found.group(2))


def _clear_checkpoints(url: str) -> None:
    from commands.checkpoints import CheckpointStore
    from commands.store import EventLog

    log = EventLog(url)
    try:
        CheckpointStore(log).delete_all()
    finally:
        log.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import database_url, fresh_schema

    base = database_url(getattr(args, "database_url", None))
    sizes = _sizes(args.sizes)
    replay_sizes = set(_sizes(args.replay_sizes))
    out: dict[str, Any] = {"sizes": sizes, "objects": args.objects, "every": args.every}
    as_of: dict[int, list[float]] = {}
    for n in sizes:
        label = _label(n)
        with fresh_schema(base, "bench_restart") as url, tempfile.TemporaryDirectory() as tmp:
            gen = _generate(url, n, args.objects, args.every, args.tail)
            _say(f"{label}: generated {gen}")
            for k, v in gen.items():
                out[f"{k}_{label}"] = v
            ms = _as_of(url, gen["head"], args.points)
            as_of[n] = ms
            out[f"as_of_{label}_p50_ms"] = round(_pct(ms, 50), 1)
            out[f"as_of_{label}_p99_ms"] = round(_pct(ms, 99), 1)
            _say(f"{label}: as_of p50 {_pct(ms, 50):.0f} ms")
            starts, loads = [], []
            for _ in range(args.starts):
                took, load_s, replayed = _start(url, Path(tmp) / "data")
                starts.append(took)
                loads.append(load_s)
                _say(
                    f"{label}: start {took:.2f} s (write side {load_s:.2f} s, {replayed} replayed)"
                )
            out[f"start_{label}_s"] = round(statistics.median(starts), 2)
            out[f"starts_{label}_s"] = [round(s, 2) for s in starts]
            out[f"write_side_{label}_s"] = round(statistics.median(loads), 2)
            if n in replay_sizes:
                _clear_checkpoints(url)
                took, load_s, replayed = _start(url, Path(tmp) / "data")
                out[f"start_replay_{label}_s"] = round(took, 2)
                out[f"write_side_replay_{label}_s"] = round(load_s, 2)
                _say(f"{label}: no checkpoint: start {took:.2f} s (write side {load_s:.2f} s)")
    first, last = _label(min(sizes)), _label(max(sizes))
    if 100_000 in sizes and 5_000_000 in sizes:
        out["ratio_5m_to_100k"] = round(out["start_5m_s"] / out["start_100k_s"], 2)
    elif len(sizes) > 1:
        out[f"ratio_{last}_to_{first}"] = round(out[f"start_{last}_s"] / out[f"start_{first}_s"], 2)
    pick = 1_000_000 if 1_000_000 in as_of else max(as_of)
    out["as_of_log_events"] = pick
    out["as_of_p50_ms"] = round(_pct(as_of[pick], 50), 1)
    out["as_of_p99_ms"] = round(_pct(as_of[pick], 99), 1)
    return out


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]
