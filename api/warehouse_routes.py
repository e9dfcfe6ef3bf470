"""The history warehouse under /orrery/warehouse: SQL for superusers, canned reports for
every user on the objects it may see.

- GET /orrery/warehouse/sql?query=SELECT...: one read-only statement (SELECT, WITH,
  VALUES, DESCRIBE, SHOW, EXPLAIN [ANALYZE] SELECT) on oVirt's DWH view names, run by
  ``Warehouse.run_sql`` (DuckDB locked down, read-only transaction, time and row limits;
  see ``history.readonly``). The answer states the limits: ``row_limit``, ``truncated``,
  ``time_limit_seconds``. Anything refused or failing is a 400 fault naming ``query``;
  a 503 fault while ``Warehouse.sql_concurrency`` queries run already (each holds a
  thread of the loop's executor for up to the time limit).
  Superusers only (``configure_engine`` on the system): others get a 403 fault, recorded
  as a permission denial.
- GET /orrery/warehouse/reports/{top-vms|host-utilisation|vm-availability|storage-growth}
  ?hours=24|from=&to=[&metric=cpu|memory][&limit=N][&format=json|png]: canned reports,
  as JSON or as a PNG chart, on the VMs, hosts or storage domains the user may see
  (``report_scope``).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
from aiohttp import web

from api import authz
from api.faults import ApiError, bad_request, not_found
from api.resources import RESOURCES
from history import reports
from history.readonly import QueryBusy, QueryTimeout, ReadOnlyError

# The permit only SuperUser holds on the system object.
SQL_PERMIT = "configure_engine"
# Which collection each report is about (its rows are kept to the user's objects of it).
REPORT_SUBJECTS = {
    "top-vms": "vms",
    "host-utilisation": "hosts",
    "vm-availability": "vms",
    "storage-growth": "storagedomains",
}
REPORT_NAMES = tuple(REPORT_SUBJECTS)
MAX_REPORT_LIMIT = 1000


async def handle(api: Any, request: web.Request, env: Any, segs: list[str]) -> web.Response:
    """/orrery/warehouse/...; ``env`` is authenticated."""
    wh = getattr(api, "warehouse", None)
    if wh is None:
        raise not_found("The history warehouse is not running in this Manager.")
    if segs == ["sql"]:
        try:
            authz.check(env, SQL_PERMIT, "system", None, "GET /orrery/warehouse/sql")
        except authz.Denied as d:
            raise await authz.deny(api, env, d) from None
        return await _sql(wh, request.query.get("query", ""))
    if len(segs) == 2 and segs[0] == "reports" and segs[1] in REPORT_SUBJECTS:
        return await _report(wh, env, segs[1], request.query)
    raise not_found(f"No warehouse resource at {'/'.join(segs)[:80]}.")


async def _sql(wh: Any, sql: str) -> web.Response:
    if not sql.strip():
        raise bad_request("Give the SQL in the 'query' parameter.", "query")
    loop = asyncio.get_running_loop()
    try:
        res = await loop.run_in_executor(None, wh.run_sql, sql)
    except (ReadOnlyError, QueryTimeout) as e:
        raise bad_request(f"Query refused: {e}.", "query") from None
    except QueryBusy as e:
        raise ApiError(503, "Service Unavailable", f"{e}; try again later.") from None
    except duckdb.PermissionException as e:
        raise bad_request(f"Query not allowed: {str(e)[:500]}", "query") from None
    except duckdb.Error as e:
        raise bad_request(f"SQL error: {str(e)[:500]}", "query") from None
    limits = wh.sql_limits
    return web.json_response(
        {
            "columns": res.columns,
            "rows": [list(r) for r in res.rows],
            "row_limit": limits.rows,
            "truncated": res.truncated,
            "time_limit_seconds": limits.seconds,
        },
        dumps=_dumps,
    )


def report_scope(env: Any, collection: str) -> set[UUID] | None:
    """The ids of the objects of ``collection`` the user may see in a report; None: no
    limit (a superuser that did not ask ``filter=true``: also objects since removed).
    The one place that decides it, on authz's visibility rules."""
    wants_filter = env.query.get("filter", "").lower() in ("true", "1")
    if not wants_filter:
        try:
            authz.check(env, SQL_PERMIT, "system", None, "warehouse report")
            return None
        except authz.Denied:
            pass
    res = RESOURCES[collection]
    objs = env.reads.list(res.cls)
    return {o.id for o in authz.visible(env, res, objs)}


def _when(q: Any, key: str) -> datetime | None:
    text = q.get(key)
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"'{key}' is not an ISO time: {text[:40]}", key) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _number(q: Any, key: str, default: str, cast: Any, low: float, high: float) -> Any:
    try:
        v = cast(q.get(key, default))
    except ValueError:
        raise bad_request(f"'{key}' must be a number.", key) from None
    if not low <= v <= high:
        raise bad_request(f"'{key}' must be between {low:g} and {high:g}.", key)
    return v


async def _report(wh: Any, env: Any, name: str, q: Any) -> web.Response:
    for key in ("metric", "limit"):
        if key in q and name != "top-vms":
            raise bad_request(f"'{key}' applies to the top-vms report only.", key)
    hours = _number(q, "hours", "24", float, 1 / 60, 24 * 366 * 10)
    limit = _number(q, "limit", "10", int, 1, MAX_REPORT_LIMIT)
    metric = q.get("metric", "cpu")
    if metric not in ("cpu", "memory"):
        raise bad_request("'metric' must be cpu or memory.", "metric")
    fmt = q.get("format", "json")
    if fmt not in ("json", "png"):
        raise bad_request("'format' must be json or png.", "format")
    end = _when(q, "to") or datetime.now(UTC)
    start = _when(q, "from") or end - timedelta(hours=hours)
    objects = report_scope(env, REPORT_SUBJECTS[name])
    fn = reports.REPORTS[name]
    extra: dict[str, Any] = {"metric": metric, "limit": limit} if name == "top-vms" else {}
    loop = asyncio.get_running_loop()
    report = await loop.run_in_executor(None, lambda: fn(wh, start, end, objects=objects, **extra))
    if fmt == "png":
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "chart.png"
            await loop.run_in_executor(None, reports.save_chart, report, path)
            return web.Response(body=path.read_bytes(), content_type="image/png")
    return web.json_response(
        {"title": report.title, "columns": report.columns, "rows": [list(r) for r in report.rows]},
        dumps=_dumps,
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
