"""Orrery's own endpoints under /orrery/ (described in /orrery/openapi.json):

- GET /orrery/events/stream[?from=N]: server-sent events, one ``event: orrery`` message
  per committed fact (JSON of the /events entry) the user may read, checked as it is sent,
  after replaying entries newer than ``from`` (or the ``Last-Event-ID`` header). Replaces
  polling /events.
- GET /orrery/history/{collection}/{id}: every event of one object in order, with who,
  when, the command, and the fields it changed (``diff``: {field: [before, after]}), for
  a user who may see the object (``api.authz``).
- ``as_of=<log position|ISO time>`` on any GET under /ovirt-engine/api: the state then
  (``api.reads.AsOf``), with the permissions of now.
- GET /orrery/status: log position, feed position, whether the render cache is warm.
- GET /orrery/warehouse/sql?query=SELECT...: a read-only query on the history warehouse
  (oVirt's DWH view names); a write is refused with 400. Administrators only.
- GET /orrery/warehouse/reports/{top-vms|host-utilisation|vm-availability|storage-growth}
  ?hours=24|from=&to=[&metric=cpu|memory][&limit=N][&format=json|png]: canned reports,
  as JSON or as a PNG chart. Administrators only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from api import authz
from api.faults import bad_request, not_found
from api.reads import aggregate_class
from api.resources import RESOURCES
from domain.base import redacted


async def handle(api: Any, request: web.Request, rest: str) -> web.StreamResponse:
    from api.openapi import document
    from api.server import Env, _method, request_query

    segs = [s for s in rest.split("/") if s]
    if segs == ["openapi.json"]:
        return web.json_response(document())
    env = Env(api.reads, "json", request_query(request))
    await api.authenticate(request, env)
    if request.method not in ("GET", "HEAD"):
        raise _method(request.method, "GET")
    if segs == ["status"]:
        return web.json_response(
            {
                "position": api.reads.position,
                "feed_position": api.feed.position,
                "prewarmed": api.prewarmed,
                "started": api.started.isoformat(),
            }
        )
    if (segs == ["events", "stream"] or segs[:1] == ["history"]) and "as_of" in env.query:
        raise bad_request("as_of applies to reads under /ovirt-engine/api.", "as_of")  # not ignored
    if segs == ["events", "stream"]:
        return await stream(api, request, env)
    if len(segs) == 3 and segs[0] == "history":
        return history(api, env, segs[1], segs[2])
    if segs[:1] == ["warehouse"]:
        return await warehouse(api, request, env, segs[1:])
    raise not_found(f"No resource at /orrery/{rest[:80]}.")


async def stream(api: Any, request: web.Request, env: Any) -> web.StreamResponse:
    """Each entry is checked as it is sent (``authz.event_visible``), so a permission
    given or taken away while the stream runs applies from the next entry on."""
    from api.feed import render_event

    start = request.headers.get("Last-Event-ID") or env.query.get("from")
    after: int | None = None
    if start:
        try:
            after = int(start)
        except ValueError:
            raise bad_request("Invalid value of 'from': expected an integer.", "from") from None
    q = api.feed.subscribe(asyncio.get_running_loop())
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        api.streams.add(task)  # ended when the server stops
    try:
        sent = after or 0
        if after is not None:
            for e in reversed(api.feed.list(after)):
                sent = max(sent, e["id"])
                if authz.event_visible(env, e):
                    await _send(resp, render_event(e))
        await resp.write(b": connected\n\n")
        while True:
            try:
                e = await asyncio.wait_for(q.get(), timeout=15)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if e["id"] <= sent and after is not None:
                continue
            if authz.event_visible(env, e):
                await _send(resp, render_event(e))
    except ConnectionResetError:  # the client went away
        pass
    finally:  # also when cancelled (the server stops): the cancellation goes on up
        api.feed.unsubscribe(q)
        api.streams.discard(task)
    return resp


async def _send(resp: web.StreamResponse, tree: dict[str, Any]) -> None:
    data = json.dumps({k: v for k, v in tree.items() if v is not None})
    await resp.write(f"id: {tree['id']}\nevent: orrery\ndata: {data}\n\n".encode())


def history(api: Any, env: Any, collection: str, obj_id: str) -> web.Response:
    """One object's changes, for a user who may see the object now (``authz.can_see``; a
    removed object by the containers it last named). Anything else is a 404, as if the
    object had never been."""
    res = RESOURCES.get(collection)
    if res is None or not res.available():
        raise not_found(f"No collection '{collection[:40]}'.")
    try:
        oid = UUID(obj_id)
    except ValueError:
        raise not_found(f"No object with id '{obj_id[:80]}'.") from None
    events = api.bus.log.events_of(oid)
    cls = aggregate_class(res.cls)
    last: Any = None  # the object as it last was (before a removal)
    for ev in events:
        last = ev.evolve(last) or last
    if (
        last is None
        or cls is None
        or not isinstance(last, cls)
        or not authz.can_see(env, res, last)
    ):
        raise not_found(f"{res.label} {oid} has no history.")
    out = []
    state: Any = None
    before: dict[str, Any] = {}
    for ev in events:
        state = ev.evolve(state)
        after = redacted(msgspec.to_builtins(state)) if state is not None else {}
        diff = {
            k: [before.get(k), after.get(k)]
            for k in sorted(set(before) | set(after))
            if k != "version" and before.get(k) != after.get(k)
        }
        out.append(
            {
                "version": ev.originator_version,
                "event": ev.TOPIC,
                "time": ev.timestamp.isoformat(),
                "actor": ev.meta.actor,
                "actor_id": str(ev.meta.actor_id) if ev.meta.actor_id else None,
                "command": ev.meta.command,
                "correlation_id": ev.meta.correlation_id,
                "diff": diff,
            }
        )
        before = after
    return web.json_response({"id": str(oid), "collection": collection, "history": out})


REPORT_NAMES = ("top-vms", "host-utilisation", "vm-availability", "storage-growth")


async def warehouse(api: Any, request: web.Request, env: Any, segs: list[str]) -> web.Response:
    """The history warehouse this Manager feeds: SQL and canned reports."""
    from api.faults import forbidden

    wh = getattr(api, "warehouse", None)
    if wh is None:
        raise not_found("The history warehouse is not running in this Manager.")
    if env.user_id is not None:
        from domain.permission import is_admin

        with env.reads.lock:
            admin = is_admin(env.reads.engine, env.user_id)
        if not admin:
            raise forbidden("The history warehouse is for administrators.")
    q = request.query
    loop = asyncio.get_running_loop()
    if segs == ["sql"]:
        import duckdb

        from history.warehouse import ReadOnlyError

        sql = q.get("query", "")
        if not sql.strip():
            raise bad_request("Give the SQL in the 'query' parameter.", "query")
        try:
            cols, rows = await loop.run_in_executor(None, wh.query, sql)
        except ReadOnlyError as e:
            raise bad_request(str(e), "query") from None
        except duckdb.Error as e:
            raise bad_request(f"SQL error: {str(e)[:500]}", "query") from None
        return web.json_response({"columns": cols, "rows": [list(r) for r in rows]}, dumps=_dumps)
    if len(segs) == 2 and segs[0] == "reports" and segs[1] in REPORT_NAMES:
        return await _report(wh, segs[1], q)
    raise not_found(f"No warehouse resource at {'/'.join(segs)[:80]}.")


async def _report(wh: Any, name: str, q: Any) -> web.Response:
    import tempfile
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from history import reports

    def when(key: str) -> datetime | None:
        text = q.get(key)
        if not text:
            return None
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"'{key}' is not an ISO time: {text[:40]}", key) from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    try:
        hours = float(q.get("hours", "24"))
        limit = int(q.get("limit", "10"))
    except ValueError:
        raise bad_request("'hours' and 'limit' must be numbers.", "hours") from None
    end = when("to") or datetime.now(UTC)
    start = when("from") or end - timedelta(hours=hours)
    fn = {
        "top-vms": lambda: reports.top_vms(
            wh, start, end, metric=q.get("metric", "cpu"), limit=limit
        ),
        "host-utilisation": lambda: reports.host_utilisation(wh, start, end),
        "vm-availability": lambda: reports.vm_availability(wh, start, end),
        "storage-growth": lambda: reports.storage_growth(wh, start, end),
    }[name]
    loop = asyncio.get_running_loop()
    try:
        report = await loop.run_in_executor(None, fn)
    except ValueError as e:
        raise bad_request(str(e), "metric") from None
    if q.get("format") == "png":
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
