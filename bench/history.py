"""History warehouse: sample ingest rate and hourly-per-cluster query vs PostgreSQL.

Writes ``--days`` of 1-minute samples for ``--vms`` VMs (3 days x 1,000 VMs = 4.32 M rows)
through ``Warehouse.ingest_samples``, rolls them up, times "hourly CPU per cluster over
the window" on the warehouse, and the same query over the same raw samples loaded (COPY)
into a private schema of PostgreSQL, in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

OURS_SQL = (
    "SELECT h.history_datetime AS hour, c.cluster_id, "
    "sum(h.cpu_usage_percent * h.sample_count) / sum(h.sample_count) AS cpu "
    "FROM vm_hourly_history h JOIN config_history c ON c.history_id = h.vm_configuration_version "
    "WHERE h.history_datetime >= $1 AND h.history_datetime < $2 GROUP BY ALL ORDER BY 1, 2"
)
OURS_RAW_SQL = (
    "SELECT date_trunc('hour', s.history_datetime) AS hour, c.cluster_id, "
    "avg(s.cpu_usage_percent) AS cpu FROM vm_samples_history s "
    "JOIN config_history c ON c.history_id = s.vm_configuration_version "
    "WHERE s.history_datetime >= $1 AND s.history_datetime < $2 GROUP BY ALL ORDER BY 1, 2"
)
PG_SQL = (
    "SELECT date_trunc('hour', s.history_datetime) AS hour, c.cluster_id, "
    "avg(s.cpu_usage_percent) AS cpu FROM vm_samples_history s "
    "JOIN vm_configuration c ON c.history_id = s.vm_configuration_version "
    "WHERE s.history_datetime >= %s AND s.history_datetime < %s GROUP BY 1, 2 ORDER BY 1, 2"
)


EXPORTS = ("samples.csv", "vms.csv")  # the baseline's CSV files, in the warehouse's folder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--days", type=float, default=3.0)
    p.add_argument("--clusters", type=int, default=4)
    p.add_argument("--batch-minutes", type=int, default=30, help="minutes per ingest call")
    p.add_argument("--no-baseline", action="store_true", help="skip PostgreSQL")
    p.add_argument("--repeat", type=int, default=5, help="query repetitions (median)")


def _median_ms(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2), out


def _seed_vms(w: Any, vms: list[uuid.UUID], clusters: list[uuid.UUID], t0: datetime) -> None:
    """VM configuration rows (one per VM) so samples carry a configuration version."""
    cfg = [
        [i + 1 for i in range(len(vms))],
        vms,
        [clusters[i % len(clusters)] for i in range(len(vms))],
    ]
    w.con.execute(
        "INSERT INTO config_history (history_id, kind, object_id, create_date, valid_from, "
        "deleted, cluster_id, name, memory_mb, config) "
        "SELECT unnest($1::BIGINT[]), 'vm', unnest($2::UUID[]), $4, $4, FALSE, "
        "unnest($3::UUID[]), 'vm-' || unnest($1::BIGINT[]), 4096, '{}'",
        [*cfg, t0],
    )
    w.refresh_versions()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from history.samples import GiB, VmSample
    from history.warehouse import Retention, Warehouse

    rnd = random.Random(7)
    minutes = int(args.days * 24 * 60)
    t0 = datetime(2026, 1, 1)
    end = t0 + timedelta(minutes=minutes)
    vms = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(args.vms)]
    hosts = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(max(1, args.vms // 25))]
    clusters = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(args.clusters)]
    result: dict[str, Any] = {"vms": args.vms, "days": args.days, "sample_rows": minutes * args.vms}
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "orrery-history.duckdb"
    # the PostgreSQL baseline exports the samples to CSV files beside the warehouse
    exports = [str(Path(tmp.name) / n) for n in EXPORTS]
    w = Warehouse(path, retention=Retention(None, None, None), allowed_paths=exports)
    try:
        _seed_vms(w, vms, clusters, t0)
        base_cpu = [rnd.uniform(2, 80) for _ in vms]
        ingest_s = gen_s = 0.0
        batch: list[VmSample] = []
        for m in range(minutes):
            g = time.perf_counter()
            t = t0 + timedelta(minutes=m)
            batch += [
                VmSample(
                    time=t,
                    vm_id=v,
                    status="up" if (m + i) % 997 else "paused",
                    cpu_usage_percent=min(100.0, base_cpu[i] + ((m * 7 + i) % 20)),
                    user_cpu_usage_percent=base_cpu[i] * 0.7,
                    system_cpu_usage_percent=base_cpu[i] * 0.2,
                    memory_used=(1 + (m + i) % 3) * GiB,
                    memory_total=4 * GiB,
                    host_id=hosts[i % len(hosts)],
                )
                for i, v in enumerate(vms)
            ]
            gen_s += time.perf_counter() - g
            if (m + 1) % args.batch_minutes == 0 or m == minutes - 1:
                s = time.perf_counter()
                w.ingest_samples(batch)
                ingest_s += time.perf_counter() - s
                batch = []
        result["ingest_s"] = round(ingest_s, 2)
        result["generate_s"] = round(gen_s, 2)
        result["ingest_samples_per_s"] = round(minutes * args.vms / ingest_s)

        # one minute of 10,000 VMs in one call (the target: <= 1 s)
        big = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(10_000)]
        minute = [
            VmSample(
                time=end, vm_id=v, cpu_usage_percent=10.0, memory_used=GiB, memory_total=2 * GiB
            )
            for v in big
        ]
        s = time.perf_counter()
        w.ingest_samples(minute)
        result["minute_of_10k_vms_ingest_s"] = round(time.perf_counter() - s, 3)
        w.con.execute("DELETE FROM vm_samples_history WHERE history_datetime >= ?", [end])

        s = time.perf_counter()
        rolled = w.rollup(end + timedelta(minutes=5))
        result["rollup_s"] = round(time.perf_counter() - s, 2)
        result["hourly_rows"] = rolled.get("hourly:vm", 0)
        w.con.execute("CHECKPOINT")
        result["file_mib"] = round(path.stat().st_size / (1 << 20), 1)
        result["bytes_per_sample_row"] = round(path.stat().st_size / (minutes * args.vms), 1)

        # the window: every closed hour (a partial last hour is not rolled up yet)
        win = end.replace(minute=0, second=0, microsecond=0)
        q_ms, ours = _median_ms(lambda: w.query(OURS_SQL, [t0, win])[1], args.repeat)
        raw_ms, ours_raw = _median_ms(lambda: w.query(OURS_RAW_SQL, [t0, win])[1], args.repeat)
        result["query_ms"] = q_ms
        result["query_raw_samples_ms"] = raw_ms
        result["result_rows"] = len(ours)
        result["ours_hourly_equals_raw"] = _same(ours, ours_raw)

        if not args.no_baseline:
            base_ms, pg_rows, load_s = _baseline(args, w, t0, win)
            result["baseline_load_s"] = load_s
            result["baseline_query_ms"] = base_ms
            result["ratio"] = round(base_ms / q_ms, 1)
            result["ratio_raw"] = round(base_ms / raw_ms, 1)
            result["baseline_equals_ours"] = _same(ours, pg_rows)
    finally:
        w.close()
        tmp.cleanup()
    return result


def _same(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[0] != y[0] or str(x[1]) != str(y[1]) or abs(float(x[2]) - float(y[2])) > 1e-3:
            return False
    return True


def _baseline(
    args: argparse.Namespace, w: Any, t0: datetime, end: datetime
) -> tuple[float, list[tuple], float]:
    """The same raw samples in PostgreSQL (COPY), and the same query there."""
    import psycopg

    from bench.common import database_url, fresh_schema
    from history.schema import VM

    url = database_url(getattr(args, "database_url", None))
    cols = VM.sample_columns()
    pg_types = {
        "UUID": "uuid",
        "TIMESTAMP": "timestamp",
        "SMALLINT": "smallint",
        "INTEGER": "integer",
        "REAL": "real",
        "BIGINT": "bigint",
        "VARCHAR": "text",
    }
    from commands.store import libpq_url

    with fresh_schema(url, "hist") as surl:
        base, schema = libpq_url(surl), surl.split("schema=", 1)[1]
        csv_path = w.path.parent / EXPORTS[0]
        w.con.execute(f"COPY vm_samples_history TO '{csv_path}' (FORMAT CSV, HEADER FALSE)")
        vm_csv = w.path.parent / EXPORTS[1]
        w.con.execute(
            f"COPY (SELECT history_id, object_id, cluster_id FROM config_history "
            f"WHERE kind = 'vm') TO '{vm_csv}' (FORMAT CSV, HEADER FALSE)"
        )
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            ddl = ", ".join(f"{c} {pg_types[t]}" for c, t in cols)
            conn.execute(f"CREATE TABLE vm_samples_history ({ddl})")
            conn.execute(
                "CREATE TABLE vm_configuration (history_id bigint primary key, vm_id uuid, "
                "cluster_id uuid)"
            )
            s = time.perf_counter()
            for table, src in (("vm_samples_history", csv_path), ("vm_configuration", vm_csv)):
                with (
                    conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv)") as cp,
                    open(src, "rb") as fh,
                ):
                    while chunk := fh.read(1 << 20):
                        cp.write(chunk)
            conn.execute("ANALYZE")
            load_s = round(time.perf_counter() - s, 2)
            ms, rows = _median_ms(
                lambda: conn.execute(PG_SQL, [t0, end]).fetchall(), max(1, args.repeat // 2)
            )
    return ms, rows, load_s
