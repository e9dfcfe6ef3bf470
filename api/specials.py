"""The API's root document and the collections that are not aggregates: events (the
feed), cluster levels, operating systems, jobs. Each collection is one handler
``(api, request, env, rest) -> Response``."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api import authz
from api.collections import RESOURCES
from api.collections.common import BLANK_TEMPLATE_ID
from api.faults import bad_request, not_found
from api.feed import render_event
from api.http import BASE, collection, max_param, not_allowed, respond
from api.search import compile_search
from commands.audit import AddExternalEvent, HideEvent
from domain.datacenter import SUPPORTED_VERSIONS
from domain.host import Host
from domain.storage import StorageDomain
from domain.user import User
from domain.vm import Vm

VERSION = (4, 5, 0)
PRODUCT = "Orrery"
_SEVERITY_RANK = {"normal": 0, "warning": 1, "error": 2, "alert": 10}


def _collection(env: Any, tags: str, tag: str, items: list[Any]) -> web.Response:
    return collection(env.fmt, tags, tag, items)


def _one(
    env: Any, tag: str, item: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return respond(env.fmt, status, tag, item, headers)


def _rank(value: str) -> str:
    """A severity as the rank the event feed's searches compare (other values unchanged)."""
    rank = _SEVERITY_RANK.get(value.lower())
    return value if rank is None else str(rank)


def _event_values(e: dict[str, Any], key: str) -> list[str]:
    if key == "severity":
        return [str(_SEVERITY_RANK.get(e["severity"], 0))]
    if key in ("type", "code"):
        return [str(e["code"])]
    if key in e:
        return [str(e[key])]
    if "." in key:
        head = key.split(".", 1)[0]
        return [str(e.get(head, ""))]
    if key in ("vm", "host", "cluster", "datacenter", "user", "template", "storage"):
        return [str(e.get(key, ""))]
    raise bad_request(f"Invalid search key '{key}' for events.", "search")


async def events(api: Any, request: web.Request, env: Any, rest: list[str]) -> web.Response:
    method = request.method
    q = env.query
    await api.feed.until_ready()  # the whole answer or a 503, never a part of it
    if not rest:
        if method in ("GET", "HEAD"):
            after = None
            if q.get("from"):
                try:
                    after = int(q["from"])
                except ValueError:
                    raise bad_request(
                        "Invalid value of 'from': expected an integer.", "from"
                    ) from None
            limit = max_param(q)
            # The limit counts what the user may read: a filtered list is cut after.
            upto = _as_of_position(env)
            whole = q.get("search") or upto is not None or not authz.sees_everything(env)
            entries = api.feed.list(after, None if whole else limit)
            if upto is not None:  # as_of: the entries that were there then
                entries = [e for e in entries if e["id"] <= upto]
            entries = authz.visible_events(env, entries)
            if q.get("search"):
                # severity compares by rank: severity>normal
                query = compile_search(q["search"], False, {"severity": _rank})
                entries = [e for e in entries if query.matches(functools.partial(_event_values, e))]
            if limit is not None:
                entries = entries[:limit]
            return _collection(env, "events", "event", [render_event(e) for e in entries])
        if method == "POST":
            authz.check(env, "inject_external_events", "system", None, "add event")
            body = await api.read_body(request, env, "event")
            desc = body.get("description") if isinstance(body, dict) else None
            if not isinstance(desc, str) or not desc:
                raise bad_request("Element 'description' is required.", "description")
            severity = body.get("severity", "normal")
            if severity not in _SEVERITY_RANK:
                raise bad_request(f"Invalid value '{severity}' of 'severity'.", "severity")
            origin = body.get("origin", "external")
            try:
                custom_id = int(body.get("custom_id", -1))
            except (TypeError, ValueError):
                raise bad_request("Invalid value of 'custom_id'.", "custom_id") from None
            result = await api.run(
                AddExternalEvent(
                    description=desc[:4000],
                    severity=severity,
                    origin=str(origin)[:255],
                    custom_id=custom_id,
                    actor=env.user_name,
                    actor_id=env.user_id,
                    correlation_id=env.correlation_id,
                )
            )
            await api.feed.wait_for(result.position)
            e = api.feed.get(result.position)
            if e is None:  # the feed does not describe this event: kept in memory only
                e = api.feed.add_external(desc[:4000], severity, str(origin)[:255], custom_id)
            tree = render_event(e)
            return _one(env, "event", tree, 201, {"Location": tree["href"]})
        raise not_allowed(method, "GET, POST")
    if len(rest) == 1:
        try:
            eid = int(rest[0])
        except ValueError:
            raise not_found(f"No event {rest[0][:40]}.") from None
        e = api.feed.get(eid)
        upto = _as_of_position(env)
        if e is None or (upto is not None and eid > upto) or not authz.event_visible(env, e):
            raise not_found(f"No event {eid}.")  # what the user may not read is not there
        if method in ("GET", "HEAD"):
            return _one(env, "event", render_event(e))
        if method == "DELETE":
            # As oVirt: removing an audit entry needs audit_log_management on the system;
            # the entry leaves the list and the removal is itself in the log.
            authz.check(env, "audit_log_management", "system", None, f"remove event {eid}")
            hide = HideEvent(
                position=eid,
                actor=env.user_name,
                actor_id=env.user_id,
                correlation_id=env.correlation_id,
            )
            await api.run(hide)
            return _one(env, "action", {"status": "complete"})
        raise not_allowed(method, "GET, DELETE")
    raise not_found("No such event resource.")


def _as_of_position(env: Any) -> int | None:
    """With ``as_of``: the log position of the state read (the current one past the end)."""
    if "as_of" not in env.query:
        return None
    return int(env.reads.engine.position)


def _levels() -> list[str]:
    return list(SUPPORTED_VERSIONS)


CPU_TYPES = [
    ("Intel Nehalem Family", 3),
    ("Intel Westmere Family", 4),
    ("Intel SandyBridge Family", 5),
    ("Intel Haswell Family", 7),
    ("Intel Skylake Client Family", 9),
    ("Intel Skylake Server Family", 10),
    ("Intel Cascadelake Server Family", 11),
    ("Intel Icelake Server Family", 12),
    ("AMD Opteron G4", 2),
    ("AMD Opteron G5", 3),
    ("AMD EPYC", 4),
    ("Secure AMD EPYC", 5),
]


def _level(v: str) -> dict[str, Any]:
    return {
        "href": f"{BASE}/clusterlevels/{v}",
        "id": v,
        "cpu_types": {
            "cpu_type": [
                {"name": n, "level": lvl, "architecture": "x86_64"} for n, lvl in CPU_TYPES
            ]
        },
        "permits": {"permit": []},
    }


async def clusterlevels(api: Any, request: web.Request, env: Any, rest: list[str]) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        raise not_allowed(request.method, "GET")
    if not rest:
        return _collection(env, "cluster_levels", "cluster_level", [_level(v) for v in _levels()])
    if len(rest) == 1 and rest[0] in _levels():
        return _one(env, "cluster_level", _level(rest[0]))
    raise not_found(f"No cluster level {rest[0][:20]}.")


OPERATING_SYSTEMS = [
    ("0", "other", "Other OS"),
    ("5", "other_linux", "Linux"),
    ("24", "rhel_8x64", "Red Hat Enterprise Linux 8.x x64"),
    ("33", "rhel_9x64", "Red Hat Enterprise Linux 9.x x64"),
    ("1193", "debian_12", "Debian 12"),
    ("1256", "ubuntu_22_04", "Ubuntu 22.04 LTS"),
    ("27", "windows_2019x64", "Windows 2019 x64"),
    ("31", "windows_2022", "Windows 2022"),
]


def _os(i: str, name: str, desc: str) -> dict[str, Any]:
    return {
        "href": f"{BASE}/operatingsystems/{i}",
        "id": i,
        "name": name,
        "description": desc,
        "architecture": "x86_64",
    }


async def operatingsystems(
    api: Any, request: web.Request, env: Any, rest: list[str]
) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        raise not_allowed(request.method, "GET")
    items = [_os(*t) for t in OPERATING_SYSTEMS]
    if not rest:
        return _collection(env, "operation_systems", "operating_system", items)
    for it in items:
        if it["id"] == rest[0] and len(rest) == 1:
            return _one(env, "operating_system", it)
    raise not_found(f"No operating system {rest[0][:20]}.")


async def jobs(api: Any, request: web.Request, env: Any, rest: list[str]) -> web.Response:
    """Commands finish before the API answers, so there are never running jobs."""
    if request.method not in ("GET", "HEAD"):
        raise not_allowed(request.method, "GET")
    if not rest:
        return _collection(env, "jobs", "job", [])
    raise not_found(f"No job {rest[0][:40]}.")


def root(env: Any) -> dict[str, Any]:
    """The API's entry point: a link per collection (and its search), the product's
    version, the special objects, a summary and who is asking."""
    links = []
    for path in sorted(RESOURCES):
        r = RESOURCES[path]
        links.append({"href": f"{BASE}/{path}", "rel": path})
        if r.searchable:
            links.append({"href": f"{BASE}/{path}?search={{query}}", "rel": f"{path}/search"})
    for path in sorted(SPECIAL):
        links.append({"href": f"{BASE}/{path}", "rel": path})
    links.append(
        {"href": f"{BASE}/events?search={{query}}&from={{event_id}}", "rel": "events/search"}
    )
    reads = env.reads

    def count(cls: Any, status: str | None = None, field: str = "status") -> dict[str, Any]:
        objs = authz.visible(env, cls.KIND, reads.list(cls.__name__))
        out: dict[str, Any] = {"total": len(objs)}
        if status is not None:
            out["active"] = sum(1 for o in objs if str(getattr(o, field, "")) == status)
        return out

    major, minor, rev = VERSION
    users = count(User, None)  # active: the users the caller may see, never all of them
    return {
        "link": links,
        "product_info": {
            "instance_id": None,
            "name": PRODUCT,
            "vendor": "Orrery",
            "version": {
                "build": "0",
                "full_version": f"{major}.{minor}.{rev}-orrery",
                "major": major,
                "minor": minor,
                "revision": rev,
            },
        },
        "special_objects": {
            "blank_template": {
                "href": f"{BASE}/templates/{BLANK_TEMPLATE_ID}",
                "id": BLANK_TEMPLATE_ID,
            },
            "root_tag": {
                "href": f"{BASE}/tags/{BLANK_TEMPLATE_ID}",
                "id": BLANK_TEMPLATE_ID,
            },
        },
        "summary": {
            "hosts": count(Host, "up"),
            "storage_domains": count(StorageDomain, "active"),
            "users": users | {"active": users["total"]},
            "vms": count(Vm, "up"),
        },
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "authenticated_user": {
            "href": f"{BASE}/users/{env.user_id}",
            "id": str(env.user_id),
        }
        if env.user_id
        else None,
        "effective_user": {"href": f"{BASE}/users/{env.user_id}", "id": str(env.user_id)}
        if env.user_id
        else None,
    }


SPECIAL = {
    "events": events,
    "clusterlevels": clusterlevels,
    "operatingsystems": operatingsystems,
    "jobs": jobs,
}
