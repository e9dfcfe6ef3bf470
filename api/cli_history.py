"""Query the history warehouse (DuckDB): SQL, canned reports, size estimate, rebuild.

  orrery history sql "SELECT ..." [--format table|csv|json|parquet] [--out FILE]
  orrery history report top-vms|host-utilisation|vm-availability|storage-growth
        [--from ISO] [--to ISO] [--hours N] [--metric cpu|memory] [--chart out.png]
  orrery history estimate --vms N --hosts N --days N
  orrery history rebuild      (delete the warehouse file, replay the log into a new one)
The warehouse is DATA_DIR/orrery-history.duckdb; sql and report open it read-only and
locked down as the Manager's API does (no other file, extension or setting reachable; the
one exception is the --out file of a parquet export, which DuckDB writes itself), and sql
takes the API's statement allow-list (one SELECT, WITH, VALUES, DESCRIBE, SHOW or
EXPLAIN SELECT), run in a read-only transaction. There is no time or row limit here: it
is the operator's own process (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from api.cli import add_store_arguments

REPORT_NAMES = ("top-vms", "host-utilisation", "vm-availability", "storage-growth")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_store_arguments(p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = sub.add_parser("sql", help="run a read-only SQL query")
    q.add_argument("query")
    q.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    q.add_argument("--out", default=None, help="write to this file (required for parquet)")

    r = sub.add_parser("report", help="a canned report")
    r.add_argument("name", choices=REPORT_NAMES)
    r.add_argument("--from", dest="start", default=None, help="window start (ISO, UTC)")
    r.add_argument("--to", dest="end", default=None, help="window end (ISO, UTC; default now)")
    r.add_argument("--hours", type=float, default=24.0, help="window length without --from")
    r.add_argument("--metric", choices=("cpu", "memory"), default="cpu")
    r.add_argument("--limit", type=int, default=10)
    r.add_argument("--format", choices=("table", "csv", "json"), default="table")
    r.add_argument("--out", default=None)
    r.add_argument("--chart", default=None, help="also draw a PNG chart here")

    e = sub.add_parser("estimate", help="predict the warehouse size")
    e.add_argument("--vms", type=int, required=True)
    e.add_argument("--hosts", type=int, default=0)
    e.add_argument("--days", type=float, required=True)
    e.add_argument("--json", action="store_true")

    b = sub.add_parser("rebuild", help="delete the warehouse and replay the log into it")
    b.add_argument("--json", action="store_true")


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _emit(cols: list[str], rows: list[tuple], fmt: str, out: str | None) -> None:
    fh = open(out, "w", newline="") if out else sys.stdout  # noqa: SIM115
    try:
        if fmt == "csv":
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(rows)
        elif fmt == "json":
            json.dump([dict(zip(cols, r, strict=True)) for r in rows], fh, default=str, indent=1)
            fh.write("\n")
        else:
            cells = [[("" if v is None else str(v)) for v in r] for r in rows]
            widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
            fh.write("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + "\n")
            fh.write("  ".join("-" * w for w in widths) + "\n")
            for r in cells:
                fh.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + "\n")
            fh.write(f"({len(rows)} rows)\n")
    finally:
        if out:
            fh.close()


def run(args: argparse.Namespace) -> int:
    import duckdb

    from history import warehouse as wh
    from history.readonly import ReadOnlyError

    path = wh.path_in(args.data_dir)
    try:
        if args.action == "sql":
            return _sql(args, path)
        if args.action == "report":
            return _report(args, path)
        if args.action == "estimate":
            return _estimate(args)
        return _rebuild(args, path)
    except (ReadOnlyError, wh.WarehouseBusy, FileNotFoundError, duckdb.Error, ValueError) as e:
        print(f"orrery history: {e}", file=sys.stderr)
        return 1


def _sql(args: argparse.Namespace, path: Any) -> int:
    from history.readonly import check_read_only, run_read_only
    from history.warehouse import open_read_only

    text = check_read_only(args.query)
    if args.format != "parquet":
        con = open_read_only(path)
        try:
            res = run_read_only(con, text)
        finally:
            con.close()
        _emit(res.columns, res.rows, args.format, args.out)
        return 0
    if not args.out:
        raise ValueError("--format parquet needs --out FILE")
    target = os.path.abspath(args.out)
    con = open_read_only(path, allowed_paths=[target])
    try:
        quoted = target.replace("'", "''")
        con.execute(f"COPY ({text}\n) TO '{quoted}' (FORMAT PARQUET)")
    finally:
        con.close()
    print(f"wrote {args.out}")
    return 0


def _report(args: argparse.Namespace, path: Any) -> int:
    from history import reports
    from history.warehouse import open_read_only

    end = _ts(args.end) or datetime.now(UTC)
    start = _ts(args.start) or end - timedelta(hours=args.hours)
    con = open_read_only(path)
    try:
        if args.name == "top-vms":
            rep = reports.top_vms(con, start, end, metric=args.metric, limit=args.limit)
        else:
            rep = reports.REPORTS[args.name](con, start, end)
    finally:
        con.close()
    _emit(rep.columns, rep.rows, args.format, args.out)
    if args.chart:
        reports.save_chart(rep, args.chart)
        print(f"chart: {args.chart}", file=sys.stderr)
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from history.estimate import estimate

    out = estimate(args.vms, args.hosts, args.days)
    if args.json:
        print(json.dumps(out))
    else:
        for t, n in out["rows"].items():
            print(
                f"{t:24} {n:>14,} rows x {out['bytes_per_row'][t]:>7} B = "
                f"{out['bytes'][t] / (1 << 20):>10.1f} MiB"
            )
        print(f"{'total':24} {out['total_mib']:>45.1f} MiB")
    return 0


def _rebuild(args: argparse.Namespace, path: Any) -> int:
    import time

    import duckdb

    from commands.store import EventLog
    from history.warehouse import Warehouse, WarehouseBusy

    if path.exists():  # refuse while the Manager (or anyone) writes to it
        try:
            duckdb.connect(str(path)).close()
        except duckdb.IOException as e:
            raise WarehouseBusy(f"{path} is in use by another process; stop it first") from e
    log = EventLog(args.database_url or os.environ.get("ORRERY_DATABASE_URL"), args.data_dir)
    fresh = path.with_name(path.name + ".rebuild")
    for p in (fresh, fresh.with_name(fresh.name + ".wal")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with Warehouse(fresh) as w:
        pos = w.catch_up(log.read, batch=5000)
        rows = (w.con.execute("SELECT count(*) FROM config_history").fetchone() or (0,))[0]
        w.con.execute("CHECKPOINT")
    # the old file (and its statistics, which are not in the log) is replaced
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    os.replace(fresh, path)
    out = {"position": pos, "config_rows": rows, "seconds": round(time.perf_counter() - t0, 3)}
    print(json.dumps(out) if args.json else f"rebuilt {path}: log at {pos}, {rows} rows")
    return 0
