"""Canned reports over the warehouse, as plain functions the API and CLI call.

Each returns a ``Report`` (columns, rows, and how to chart it); ``save_chart(report,
path)`` draws a PNG with matplotlib's Agg backend. Reports read the hourly rollups for
closed hours and the raw samples for the hours not rolled up yet, so they are current.
``db`` is a ``Warehouse`` or any DuckDB connection to the file (read-only is enough).
``objects``: only these objects (VMs, hosts or storage domains: what the report is
about) are reported on; None reports on every one the warehouse holds.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from history.config import naive_utc
from history.schema import HOST, STORAGE_DOMAIN, VM, StatsSpec


@dataclass
class Report:
    title: str
    columns: list[str]
    rows: list[tuple]
    chart: dict[str, Any] = field(default_factory=dict)  # kind, x, y, series, ylabel

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def _run(db: Any, sql: str, params: list[Any]) -> tuple[list[str], list[tuple]]:
    if hasattr(db, "query") and hasattr(db, "con"):
        cols, rows = db.query(sql, params)
        return cols, rows
    cur = db.cursor()
    try:
        res = cur.execute(sql, params)
        return [d[0] for d in res.description], res.fetchall()
    finally:
        cur.close()


def _hourly_union(spec: StatsSpec, wanted: list[str]) -> str:
    """Hourly rows in [$1, $2) plus raw samples of hours not rolled up yet, as one relation
    with columns key, hour, status, minutes, n, and <m>, max_<m> per wanted measure."""
    maxes = {c: m for c, m, _ in spec.measures}
    st = spec.status or "NULL"
    h_cols = [f"{spec.key} AS obj", "history_datetime AS hour", f"{st} AS status"]
    s_cols = [
        f"{spec.key} AS obj",
        "date_trunc('hour', history_datetime) AS hour",
        f"{st} AS status",
    ]
    h_cols.append("minutes_in_status AS minutes" if spec.status else "NULL AS minutes")
    s_cols.append("seconds_in_status / 60.0 AS minutes" if spec.status else "NULL AS minutes")
    h_cols.append("sample_count AS n")
    s_cols.append("1 AS n")
    for c in wanted:
        h_cols += [f"{c} AS {c}", f"{maxes[c]} AS max_{c}"]
        s_cols += [f"{c} AS {c}", f"{c} AS max_{c}"]
    mark = (
        f"(SELECT make_timestamp(position) FROM history_tracking WHERE name = 'hourly:{spec.base}')"
    )
    return (
        f"SELECT {', '.join(h_cols)} FROM {spec.hourly} "
        "WHERE history_datetime >= $1 AND history_datetime < $2 "
        f"UNION ALL SELECT {', '.join(s_cols)} FROM {spec.samples} "
        f"WHERE history_datetime >= greatest($1, {mark}) AND history_datetime < $2"
    )


def _names(kind: str) -> str:
    return (
        "SELECT object_id, arg_max(name, history_id) AS name FROM config_history "
        f"WHERE kind = '{kind}' GROUP BY object_id"
    )


def _window(start: datetime, end: datetime) -> list[Any]:
    return [naive_utc(start), naive_utc(end)]


def _only(objects: Collection[UUID] | None, column: str) -> tuple[str, list[Any]]:
    """A WHERE clause keeping ``column`` to ``objects`` (parameter $3), and its parameter."""
    if objects is None:
        return "", []
    return f" WHERE {column} IN (SELECT unnest($3::UUID[]))", [[str(o) for o in objects]]


def top_vms(
    db: Any,
    start: datetime,
    end: datetime,
    *,
    metric: str = "cpu",
    limit: int = 10,
    objects: Collection[UUID] | None = None,
) -> Report:
    """The VMs with the highest average CPU or memory use over [start, end)."""
    col = {"cpu": "cpu_usage_percent", "memory": "memory_usage_percent"}.get(metric)
    if col is None:
        raise ValueError("metric must be cpu or memory")
    where, only = _only(objects, "u.obj")
    sql = (
        f"WITH u AS ({_hourly_union(VM, [col])}), names AS ({_names('vm')}) "
        f"SELECT u.obj AS vm_id, coalesce(names.name, CAST(u.obj AS VARCHAR)) AS vm_name, "
        f"round(sum({col} * n) / sum(n), 2) AS avg_{metric}_percent, "
        f"round(max(max_{col}), 2) AS max_{metric}_percent, sum(n) AS samples "
        f"FROM u LEFT JOIN names ON names.object_id = u.obj{where} "
        f"GROUP BY ALL ORDER BY avg_{metric}_percent DESC, vm_name LIMIT {int(limit)}"
    )
    cols, rows = _run(db, sql, _window(start, end) + only)
    return Report(
        f"Top {limit} VMs by {metric}",
        cols,
        rows,
        {"kind": "bar", "x": "vm_name", "y": f"avg_{metric}_percent", "ylabel": "%"},
    )


def host_utilisation(
    db: Any, start: datetime, end: datetime, *, objects: Collection[UUID] | None = None
) -> Report:
    """Per host and hour: average and peak CPU and memory use."""
    m = ["cpu_usage_percent", "memory_usage_percent"]
    where, only = _only(objects, "u.obj")
    sql = (
        f"WITH u AS ({_hourly_union(HOST, m)}), names AS ({_names('host')}) "
        "SELECT hour, u.obj AS host_id, coalesce(names.name, CAST(u.obj AS VARCHAR)) "
        "AS host_name, round(sum(cpu_usage_percent * n) / sum(n), 2) AS cpu_usage_percent, "
        "round(max(max_cpu_usage_percent), 2) AS max_cpu_usage, "
        "round(sum(memory_usage_percent * n) / sum(n), 2) AS memory_usage_percent, "
        "round(max(max_memory_usage_percent), 2) AS max_memory_usage "
        f"FROM u LEFT JOIN names ON names.object_id = u.obj{where} "
        "GROUP BY ALL ORDER BY hour, host_name"
    )
    cols, rows = _run(db, sql, _window(start, end) + only)
    return Report(
        "Host utilisation",
        cols,
        rows,
        {
            "kind": "line",
            "x": "hour",
            "y": "cpu_usage_percent",
            "series": "host_name",
            "ylabel": "CPU %",
        },
    )


def vm_availability(
    db: Any, start: datetime, end: datetime, *, objects: Collection[UUID] | None = None
) -> Report:
    """Per VM: minutes Up, Down, Paused, Problematic and the share of time Up."""
    where, only = _only(objects, "u.obj")
    sql = (
        f"WITH u AS ({_hourly_union(VM, [])}), names AS ({_names('vm')}) "
        "SELECT u.obj AS vm_id, coalesce(names.name, CAST(u.obj AS VARCHAR)) AS vm_name, "
        "round(sum(minutes) FILTER (WHERE status = 1), 1) AS minutes_up, "
        "round(sum(minutes) FILTER (WHERE status = 0), 1) AS minutes_down, "
        "round(sum(minutes) FILTER (WHERE status = 2), 1) AS minutes_paused, "
        "round(sum(minutes) FILTER (WHERE status = 3), 1) AS minutes_problematic, "
        "round(100.0 * coalesce(sum(minutes) FILTER (WHERE status = 1), 0) "
        "/ nullif(sum(minutes), 0), 2) AS availability_percent "
        f"FROM u LEFT JOIN names ON names.object_id = u.obj{where} "
        "GROUP BY ALL ORDER BY availability_percent, vm_name"
    )
    cols, rows = _run(db, sql, _window(start, end) + only)
    return Report(
        "VM availability",
        cols,
        rows,
        {"kind": "bar", "x": "vm_name", "y": "availability_percent", "ylabel": "% up"},
    )


def storage_growth(
    db: Any, start: datetime, end: datetime, *, objects: Collection[UUID] | None = None
) -> Report:
    """Per storage domain and day: used space (GiB) and its growth since the window began."""
    m = ["used_disk_size_gb", "available_disk_size_gb"]
    where, only = _only(objects, "obj")
    sql = (
        f"WITH u AS ({_hourly_union(STORAGE_DOMAIN, m)}), names AS "
        f"({_names('storage_domain')}), d AS (SELECT date_trunc('day', hour) AS day, obj, "
        "sum(used_disk_size_gb * n) / sum(n) AS used, "
        f"sum(available_disk_size_gb * n) / sum(n) AS avail FROM u{where} GROUP BY ALL) "
        "SELECT day, d.obj AS storage_domain_id, "
        "coalesce(names.name, CAST(d.obj AS VARCHAR)) AS storage_domain_name, "
        "round(used, 3) AS used_disk_size_gb, round(avail, 3) AS available_disk_size_gb, "
        "round(used - first_value(used) OVER (PARTITION BY d.obj ORDER BY day), 3) "
        "AS growth_gb FROM d LEFT JOIN names ON names.object_id = d.obj "
        "ORDER BY storage_domain_name, day"
    )
    cols, rows = _run(db, sql, _window(start, end) + only)
    return Report(
        "Storage growth",
        cols,
        rows,
        {
            "kind": "line",
            "x": "day",
            "y": "used_disk_size_gb",
            "series": "storage_domain_name",
            "ylabel": "used GiB",
        },
    )


REPORTS = {
    "top-vms": top_vms,
    "host-utilisation": host_utilisation,
    "vm-availability": vm_availability,
    "storage-growth": storage_growth,
}


def save_chart(report: Report, path: Path | str) -> Path:
    """Draws the report as a PNG (bar or line chart) and returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = report.chart
    idx = {c: i for i, c in enumerate(report.columns)}
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    try:
        if spec.get("kind") == "bar":
            xs = [str(r[idx[spec["x"]]]) for r in report.rows]
            ys = [r[idx[spec["y"]]] or 0 for r in report.rows]
            ax.bar(xs, ys)
            ax.tick_params(axis="x", labelrotation=45)
        else:
            series: dict[str, tuple[list, list]] = {}
            for r in report.rows:
                s = series.setdefault(str(r[idx[spec["series"]]]), ([], []))
                s[0].append(r[idx[spec["x"]]])
                s[1].append(r[idx[spec["y"]]])
            for name, (xs, ys) in series.items():
                ax.plot(xs, ys, label=name)
            if 0 < len(series) <= 12:
                ax.legend(loc="best", fontsize="small")
            fig.autofmt_xdate()
        ax.set_title(report.title)
        ax.set_ylabel(spec.get("ylabel", ""))
        if not report.rows:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, format="png")
        return out
    finally:
        plt.close(fig)
