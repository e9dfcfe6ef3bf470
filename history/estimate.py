"""Predicts the warehouse's size from bytes per row measured on a scratch DuckDB file.

``measure_bytes_per_row()`` writes realistic VM and host samples (and their hourly and
daily rollups) into a temporary warehouse, checkpoints it and divides the file's growth
by the rows written. ``estimate(vms, hosts, days)`` multiplies by the rows the retention
keeps at steady state after ``days`` of operation.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from history.samples import GiB, HostSample, VmSample
from history.warehouse import Retention, Warehouse

T0 = datetime(2026, 1, 1)


def _file_size(w: Warehouse) -> int:
    w.con.execute("CHECKPOINT")
    return w.path.stat().st_size


def measure_bytes_per_row(
    vms: int = 200, hosts: int = 10, minutes: int = 12 * 60, seed: int = 1
) -> dict[str, Any]:
    """Bytes per stored row, from the file's growth: sample rows written through
    ``ingest_samples`` (``vms`` x ``minutes``), rollup rows written by SQL with random values."""
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        w = Warehouse(Path(d) / "probe.duckdb", retention=Retention(None, None, None))
        try:
            empty = _file_size(w)
            vm_ids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(vms)]
            host_ids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(hosts)]
            batch: list[Any] = []
            for minute in range(minutes):
                t = T0 + timedelta(minutes=minute)
                batch += [
                    VmSample(
                        time=t,
                        vm_id=v,
                        status="up" if rnd.random() > 0.05 else "down",
                        cpu_usage_percent=round(rnd.uniform(0, 100), 1),
                        user_cpu_usage_percent=round(rnd.uniform(0, 60), 1),
                        system_cpu_usage_percent=round(rnd.uniform(0, 20), 1),
                        memory_used=rnd.randrange(1, 4) * GiB,
                        memory_total=4 * GiB,
                        host_id=host_ids[i % hosts],
                        ip=f"10.0.{i // 250}.{i % 250}",
                        memory_cached=rnd.randrange(0, 1 << 30),
                    )
                    for i, v in enumerate(vm_ids)
                ]
                batch += [
                    HostSample(
                        time=t,
                        host_id=h,
                        cpu_usage_percent=round(rnd.uniform(0, 100), 1),
                        memory_used=rnd.randrange(8, 256) * GiB,
                        memory_total=256 * GiB,
                        active_vms=vms // hosts,
                        total_vms=vms // hosts,
                        cpu_load=rnd.uniform(0, 8),
                    )
                    for h in host_ids
                ]
                if len(batch) >= 50_000 or minute == minutes - 1:
                    w.ingest_samples(batch)
                    batch = []
            after_samples = _file_size(w)
            sample_rows = minutes * (vms + hosts)
            # rollup rows: one per VM and hour, with random measures (they do not compress)
            n_roll = 200_000
            w.con.execute(
                "INSERT INTO vm_hourly_history (history_id, history_datetime, vm_id, vm_status, "
                "minutes_in_status, sample_count, cpu_usage_percent, max_cpu_usage, "
                "memory_usage_percent, max_memory_usage, user_cpu_usage_percent, "
                "max_user_cpu_usage_percent, system_cpu_usage_percent, "
                "max_system_cpu_usage_percent, memory_used_mb, max_memory_used_mb, "
                "memory_cached_kb, max_memory_cached_kb, memory_size_mb, vm_ip, "
                "currently_running_on_host, vm_configuration_version) "
                "SELECT i, TIMESTAMP '2026-01-01' + INTERVAL 1 HOUR * (i // ?), "
                "uuid(), 1, 60, 60, random() * 100, random() * 100, random() * 100, "
                "random() * 100, random() * 60, random() * 60, random() * 20, random() * 20, "
                "random() * 4096, 4096, random() * 1048576, 1048576, 4096, '10.0.0.1', "
                "uuid(), i % 1000 FROM range(?) t(i)",
                [vms, n_roll],
            )
            after_rollups = _file_size(w)
            per_sample = (after_samples - empty) / sample_rows
            per_rollup = (after_rollups - after_samples) / n_roll
            return {
                "empty_file_bytes": empty,
                "sample_rows_measured": sample_rows,
                "rollup_rows_measured": n_roll,
                "vm_samples_history": round(per_sample, 2),
                "host_samples_history": round(per_sample, 2),
                "vm_hourly_history": round(per_rollup, 2),
                "vm_daily_history": round(per_rollup, 2),
                "host_hourly_history": round(per_rollup, 2),
                "host_daily_history": round(per_rollup, 2),
            }
        finally:
            w.close()


def estimate(
    vms: int,
    hosts: int,
    days: float,
    *,
    retention: Retention | None = None,
    bytes_per_row: dict[str, Any] | None = None,
    interval_s: int = 60,
) -> dict[str, Any]:
    """Predicted bytes after ``days`` of operation with the given retention."""
    r = retention or Retention()
    bpr = bytes_per_row or measure_bytes_per_row()
    horizon = timedelta(days=days)

    def kept(keep: timedelta | None) -> float:
        return (min(horizon, keep) if keep is not None else horizon).total_seconds()

    per = {
        "samples": kept(r.samples) / interval_s,
        "hourly": kept(r.hourly) / 3600,
        "daily": kept(r.daily) / 86400,
    }
    # a VM that changes status inside an hour gets one rollup row per status; allow 10 %.
    rows = {
        "vm_samples_history": vms * per["samples"],
        "vm_hourly_history": vms * per["hourly"] * 1.1,
        "vm_daily_history": vms * per["daily"] * 1.1,
        "host_samples_history": hosts * per["samples"],
        "host_hourly_history": hosts * per["hourly"] * 1.1,
        "host_daily_history": hosts * per["daily"] * 1.1,
    }
    sizes = {t: int(n * (bpr.get(t) or 0)) for t, n in rows.items()}
    total = sum(sizes.values()) + int(bpr.get("empty_file_bytes", 0))
    return {
        "vms": vms,
        "hosts": hosts,
        "days": days,
        "rows": {t: int(n) for t, n in rows.items()},
        "bytes_per_row": {t: bpr.get(t) for t in rows},
        "bytes": sizes,
        "total_bytes": total,
        "total_mib": round(total / (1 << 20), 1),
    }
