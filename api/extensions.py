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
- /orrery/warehouse/...: SQL on the history warehouse (superusers) and canned reports
  (every user, on what it may see): ``api.warehouse_routes``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from api import authz, warehouse_routes
from api.faults import bad_request, not_found
from api.feed import render_event
from api.http import Env, not_allowed, request_query
from api.openapi import document
from api.reads import aggregate_class
from api.resources import RESOURCES
from domain.base import redacted


async def handle(api: Any, request: web.Request, rest: str) -> web.StreamResponse:
    segs = [s for s in rest.split("/") if s]
    if segs == ["openapi.json"]:
        return web.json_response(document())
    env = Env(api.reads, "json", request_query(request))
    await api.authenticate(request, env)
    if request.method not in ("GET", "HEAD"):
        raise not_allowed(request.method, "GET")
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
        return await warehouse_routes.handle(api, request, env, segs[1:])
    raise not_found(f"No resource at /orrery/{rest[:80]}.")


async def stream(api: Any, request: web.Request, env: Any) -> web.StreamResponse:
    """Each entry is checked as it is sent (``authz.event_visible``), so a permission
    given or taken away while the stream runs applies from the next entry on."""
    start = request.headers.get("Last-Event-ID") or env.query.get("from")
    after: int | None = None
    if start:
        try:
            after = int(start)
        except ValueError:
            raise bad_request("Invalid value of 'from': expected an integer.", "from") from None
    await api.feed.until_ready()  # a stream from its start, or a 503
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
    if res is None:
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
