"""What the portal pages show, read from the same read side as the REST API.

Main lists filter with the API's search language (``api.search.compile_search`` over
``Resource.search_values``, so ``?search=`` and the portal's search bar mean the same),
then keep what the user may see (``api.authz.visible``), sort by a column and cut a page.
Detail views give an object's general fields and its tabs (disks, NICs, snapshots,
permissions, events, history). Nothing here writes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from uuid import UUID

import msgspec

from api import authz, extensions
from api.faults import ApiError
from api.resources import RESOURCES, search_values
from api.search import compile_search
from domain.base import redacted

PAGE_SIZE = 100
TREE_VMS = 100  # VMs shown under one tree node; the rest are a link to the searched list

# The Admin Portal's navigation, as oVirt's: (section, [(collection, title)]).
NAV: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Compute",
        [
            ("vms", "Virtual Machines"),
            ("templates", "Templates"),
            ("vmpools", "Pools"),
            ("hosts", "Hosts"),
            ("datacenters", "Data Centers"),
            ("clusters", "Clusters"),
        ],
    ),
    ("Network", [("networks", "Networks"), ("vnicprofiles", "vNIC Profiles")]),
    ("Storage", [("storagedomains", "Domains"), ("disks", "Disks")]),
    (
        "Administration",
        [
            ("users", "Users"),
            ("groups", "Groups"),
            ("roles", "Roles"),
            ("permissions", "Permissions"),
            ("quotas", "Quotas"),
            ("tags", "Tags"),
        ],
    ),
]
TITLES = {path: title for _, items in NAV for path, title in items}

_UP = {"up", "active", "ok"}
_DOWN = {"down", "inactive", "unattached", "uninitialized", "install_failed"}
_PAUSED = {"paused", "suspended"}
_MAINTENANCE = {"maintenance"}
_PROBLEM = {
    "not_responding",
    "non_responsive",
    "unknown",
    "non_operational",
    "error",
    "not_operational",
    "illegal",
}


def status_class(status: str) -> str:
    """The status icon's CSS class (green up, red down, paused, wrench, problem, busy)."""
    if status in _UP:
        return "st-up"
    if status in _DOWN:
        return "st-down"
    if status in _PAUSED:
        return "st-paused"
    if status in _MAINTENANCE:
        return "st-maint"
    if status in _PROBLEM:
        return "st-problem"
    return "st-busy"


@dataclass
class Cell:
    text: str
    href: str | None = None
    status: str | None = None
    sort: Any = None


@dataclass
class Column:
    key: str
    title: str
    get: Callable[[Any, Any], Cell]


def _str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "Yes" if v else "No"
    return str(v.value if hasattr(v, "value") else v)


def _attr(name: str) -> Callable[[Any, Any], Cell]:
    def get(o: Any, reads: Any) -> Cell:
        v = getattr(o, name, None)
        return Cell(_str(v), sort=v if isinstance(v, int | float) else _str(v).lower())

    return get


def _name(path: str, attr: str = "name") -> Callable[[Any, Any], Cell]:
    def get(o: Any, reads: Any) -> Cell:
        text = _str(getattr(o, attr, "")) or str(o.id)
        return Cell(text, href=f"/ovirt-engine/webadmin/{path}/{o.id}", sort=text.lower())

    return get


def _ref(attr: str, path: str) -> Callable[[Any, Any], Cell]:
    def get(o: Any, reads: Any) -> Cell:
        oid = getattr(o, attr, None)
        target = reads.any(oid) if oid is not None else None
        if target is None:
            return Cell("", sort="")
        text = _str(getattr(target, "name", None) or getattr(target, "user_name", "")) or str(oid)
        return Cell(text, href=f"/ovirt-engine/webadmin/{path}/{oid}", sort=text.lower())

    return get


def _status(o: Any, reads: Any) -> Cell:
    s = _str(getattr(o, "status", "")).lower()
    return Cell(s.replace("_", " "), status=status_class(s), sort=s)


def _mib(name: str) -> Callable[[Any, Any], Cell]:
    def get(o: Any, reads: Any) -> Cell:
        v = int(getattr(o, name, 0) or 0)
        return Cell(f"{v // (1024 * 1024)} MiB", sort=v)

    return get


def _gib(name: str) -> Callable[[Any, Any], Cell]:
    def get(o: Any, reads: Any) -> Cell:
        v = int(getattr(o, name, 0) or 0)
        return Cell(f"{v / 1024**3:.1f} GiB", sort=v)

    return get


def _cpus(o: Any, reads: Any) -> Cell:
    n = o.cpu_sockets * o.cpu_cores * o.cpu_threads
    return Cell(str(n), sort=n)


def _count(name: str) -> Callable[[Any, Any], Cell]:
    def get(o: Any, reads: Any) -> Cell:
        n = len(getattr(o, name, ()) or ())
        return Cell(str(n), sort=n)

    return get


def _dc_via_cluster(o: Any, reads: Any) -> Cell:
    c = reads.any(o.cluster_id) if getattr(o, "cluster_id", None) else None
    if c is None:
        return Cell("", sort="")
    return _ref("data_center_id", "datacenters")(c, reads)


def _perm_object(o: Any, reads: Any) -> Cell:
    if o.object_id is None:
        return Cell("System", sort="system")
    target = reads.any(o.object_id)
    text = _str(getattr(target, "name", None)) if target is not None else str(o.object_id)
    return Cell(f"{o.object_kind}: {text}", sort=text.lower())


def _cols(*cols: tuple[str, str, Callable[[Any, Any], Cell]]) -> list[Column]:
    return [Column(k, t, g) for k, t, g in cols]


COLUMNS: dict[str, list[Column]] = {
    "vms": _cols(
        ("status", "Status", _status),
        ("name", "Name", _name("vms")),
        ("host", "Host", _ref("run_on_host_id", "hosts")),
        ("cluster", "Cluster", _ref("cluster_id", "clusters")),
        ("datacenter", "Data Center", _dc_via_cluster),
        ("memory", "Memory", _mib("memory")),
        ("cpus", "CPUs", _cpus),
        ("description", "Description", _attr("description")),
    ),
    "templates": _cols(
        ("name", "Name", _name("templates")),
        ("version", "Version", _attr("version_number")),
        ("status", "Status", _status),
        ("cluster", "Cluster", _ref("cluster_id", "clusters")),
        ("memory", "Memory", _mib("memory")),
        ("description", "Description", _attr("description")),
    ),
    "vmpools": _cols(
        ("name", "Name", _name("vmpools")),
        ("size", "VMs", _count("vm_ids")),
        ("assigned", "Assigned", _count("assignments")),
        ("template", "Template", _ref("template_id", "templates")),
        ("cluster", "Cluster", _ref("cluster_id", "clusters")),
        ("description", "Description", _attr("description")),
    ),
    "hosts": _cols(
        ("status", "Status", _status),
        ("name", "Name", _name("hosts")),
        ("address", "Hostname/IP", _attr("address")),
        ("cluster", "Cluster", _ref("cluster_id", "clusters")),
        ("datacenter", "Data Center", _dc_via_cluster),
        ("memory", "Memory", _mib("memory_total")),
        ("description", "Description", _attr("description")),
    ),
    "datacenters": _cols(
        ("status", "Status", _status),
        ("name", "Name", _name("datacenters")),
        ("local", "Local storage", _attr("local")),
        ("version", "Compatibility Version", _attr("compatibility_version")),
        ("description", "Description", _attr("description")),
    ),
    "clusters": _cols(
        ("name", "Name", _name("clusters")),
        ("datacenter", "Data Center", _ref("data_center_id", "datacenters")),
        ("version", "Compatibility Version", _attr("compatibility_version")),
        ("cpu", "CPU Type", _attr("cpu_type")),
        ("description", "Description", _attr("description")),
    ),
    "networks": _cols(
        ("name", "Name", _name("networks")),
        ("datacenter", "Data Center", _ref("data_center_id", "datacenters")),
        ("vlan", "VLAN", _attr("vlan_id")),
        ("mtu", "MTU", _attr("mtu")),
        ("description", "Description", _attr("description")),
    ),
    "vnicprofiles": _cols(
        ("name", "Name", _name("vnicprofiles")),
        ("network", "Network", _ref("network_id", "networks")),
        ("description", "Description", _attr("description")),
    ),
    "storagedomains": _cols(
        ("status", "Status", _status),
        ("name", "Domain Name", _name("storagedomains")),
        ("type", "Domain Type", _attr("domain_type")),
        ("storage", "Storage Type", _attr("storage_type")),
        ("datacenter", "Data Center", _ref("data_center_id", "datacenters")),
        ("free", "Free Space", _gib("available")),
        ("used", "Used Space", _gib("used")),
    ),
    "disks": _cols(
        ("status", "Status", _status),
        ("name", "Alias", _name("disks")),
        ("size", "Virtual Size", _gib("provisioned_size")),
        ("actual", "Actual Size", _gib("actual_size")),
        ("domain", "Storage Domain", _ref("storage_domain_id", "storagedomains")),
        ("format", "Format", _attr("format")),
        ("description", "Description", _attr("description")),
    ),
    "users": _cols(
        ("name", "User Name", _name("users", "user_name")),
        ("first", "First Name", _attr("name")),
        ("last", "Last Name", _attr("last_name")),
        ("email", "E-mail", _attr("email")),
    ),
    "groups": _cols(
        ("name", "Group Name", _name("groups")),
        ("domain", "Domain", _attr("domain")),
        ("description", "Description", _attr("description")),
    ),
    "roles": _cols(
        ("name", "Name", _name("roles")),
        ("administrative", "Administrative", _attr("administrative")),
        ("description", "Description", _attr("description")),
    ),
    "permissions": _cols(
        ("role", "Role", _ref("role_id", "roles")),
        ("user", "User", _ref("user_id", "users")),
        ("group", "Group", _ref("group_id", "groups")),
        ("object", "Object", _perm_object),
    ),
    "quotas": _cols(
        ("name", "Name", _name("quotas")),
        ("datacenter", "Data Center", _ref("data_center_id", "datacenters")),
        ("description", "Description", _attr("description")),
    ),
    "tags": _cols(
        ("name", "Name", _name("tags")),
        ("description", "Description", _attr("description")),
    ),
}


def resource(path: str) -> Any:
    res = RESOURCES.get(path)
    if res is None or path not in COLUMNS:
        return None
    return res


def _int(text: str | None, default: int) -> int:
    try:
        return max(1, int(text or default))
    except ValueError:
        return default


def main_list(env: Any, path: str, params: Any) -> dict[str, Any]:
    """One page of a main list: the search (the API's language), what the user may see,
    the sort column and direction, the page; ``error`` holds a bad search's message."""
    res = resource(path)
    reads = env.reads
    search = params.get("search", "")
    cols = COLUMNS[path]
    out: dict[str, Any] = {"search": search, "columns": cols, "rows": [], "error": None}
    objs = list(reads.list(res.cls))
    query = None
    try:
        query = compile_search(search)
        if res.searchable and not query.empty:
            objs = [
                o
                for o in objs
                if query.matches(functools.partial(search_values, res, o, reads=reads))
            ]
    except Exception as e:  # a bad search shows its message, as the API's 400 does
        out["error"] = getattr(e, "detail", None) or str(e)
        objs = []
    objs = authz.visible(env, res, objs)
    sort = params.get("sort") or ""
    desc = params.get("order") == "desc"
    by = {c.key: c for c in cols}
    if sort in by:
        col = by[sort]
        objs.sort(key=lambda o: _sort_key(col.get(o, reads).sort), reverse=desc)
    elif query is not None and query.sort_key and not out["error"]:
        key = query.sort_key
        sort, desc = (key if key in by else ""), query.sort_desc
        objs.sort(
            key=lambda o: (search_values(res, o, key, reads) or [""])[0], reverse=query.sort_desc
        )
    else:
        sort = cols[1].key if cols[0].key == "status" else cols[0].key
        col = by[sort]
        objs.sort(key=lambda o: _sort_key(col.get(o, reads).sort))
    total = len(objs)
    pages = max(1, -(-total // PAGE_SIZE))
    default_page = query.page if query is not None and query.page else 1
    page = min(_int(params.get("page"), default_page), pages)
    chunk = objs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    out["rows"] = [{"id": str(o.id), "cells": [c.get(o, reads) for c in cols]} for o in chunk]
    out.update(
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1 if total else 0,
        last=(page - 1) * PAGE_SIZE + len(chunk),
        sort=sort,
        order="desc" if desc else "asc",
    )
    return out


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float) else (1, str(v))


# -- detail views --------------------------------------------------------------------

TABS = {
    "vms": ["general", "disks", "nics", "snapshots", "permissions", "events", "history"],
}
DEFAULT_TABS = ["general", "permissions", "events", "history"]
TAB_TITLES = {
    "general": "General",
    "disks": "Disks",
    "nics": "Network Interfaces",
    "snapshots": "Snapshots",
    "permissions": "Permissions",
    "events": "Events",
    "history": "History",
}
_HIDDEN = {"version", "nics", "disk_attachments", "snapshots", "run_attempts"}


def general(obj: Any, reads: Any) -> list[tuple[str, str, str | None]]:
    """(label, value, link) for each plain field; ids become the names they refer to."""
    data = redacted(msgspec.to_builtins(obj))
    rows: list[tuple[str, str, str | None]] = []
    for k, v in data.items():
        if k in _HIDDEN or isinstance(v, dict | list):
            continue
        label = k.removesuffix("_id").replace("_", " ").capitalize()
        link = None
        if k.endswith("_id") and v:
            try:
                target = reads.any(UUID(str(v)))
            except ValueError:
                target = None
            if target is not None:
                kind = getattr(type(target), "KIND", "")
                path = next((p for p, r in RESOURCES.items() if r.tag == kind), None)
                link = f"/ovirt-engine/webadmin/{path}/{target.id}" if path in COLUMNS else None
                v = getattr(target, "name", None) or v
        rows.append((label, _str(v), link))
    return rows


def vm_disks(vm: Any, reads: Any) -> list[dict[str, Any]]:
    out = []
    for a in vm.disk_attachments:
        d = reads.get("Disk", a.disk_id)
        out.append(
            {
                "id": str(a.disk_id),
                "name": d.name if d is not None else str(a.disk_id),
                "size": f"{(d.provisioned_size if d else 0) / 1024**3:.1f} GiB",
                "status": _str(d.status).lower() if d is not None else "",
                "format": _str(d.format) if d is not None else "",
                "interface": _str(a.interface),
                "bootable": _str(a.bootable),
                "active": _str(a.active),
            }
        )
    return out


def vm_nics(vm: Any, reads: Any) -> list[dict[str, Any]]:
    out = []
    for n in vm.nics:
        p = reads.get("VnicProfile", n.vnic_profile_id) if n.vnic_profile_id else None
        out.append(
            {
                "name": n.name,
                "profile": p.name if p is not None else "<empty>",
                "mac": n.mac,
                "interface": _str(n.interface),
                "plugged": _str(n.plugged),
                "linked": _str(n.linked),
            }
        )
    return out


def vm_snapshots(vm: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": str(s.id),
            "description": s.description,
            "status": _str(s.status).lower(),
            "type": _str(s.snapshot_type),
            "created": s.created_at,
            "memory": _str(s.persist_memory),
            "removable": _str(s.snapshot_type).lower() == "regular",
        }
        for s in vm.snapshots
    ]


def permissions_of(obj_id: UUID, reads: Any) -> list[dict[str, Any]]:
    out = []
    for p in reads.list("Permission"):
        if p.object_id != obj_id:
            continue
        role = reads.get("Role", p.role_id)
        who = reads.any(p.user_id or p.group_id) if (p.user_id or p.group_id) else None
        out.append(
            {
                "role": role.name if role is not None else str(p.role_id),
                "user": getattr(who, "user_name", None) or getattr(who, "name", "") or "",
                "kind": "user" if p.user_id else "group",
            }
        )
    return out


def events_of(api: Any, env: Any, tag: str | None, obj_id: str | None, limit: int = 200):
    """The newest audit entries the user may read, about one object when given."""
    entries = [e for e in api.feed.list() if "id" in e]
    if obj_id is not None:
        entries = [e for e in entries if e.get(tag) == obj_id or e.get("object_id") == obj_id]
    return authz.visible_events(env, entries)[:limit]


def history_of(api: Any, env: Any, path: str, obj_id: UUID) -> list[dict[str, Any]]:
    """Every change of the object from /orrery/history (also after it was removed), for
    a user who may see it (the same rule as /orrery/history)."""
    try:
        resp = extensions.history(api, env, path, str(obj_id))
    except ApiError:  # no history, or not the user's to see
        return []
    rows = json.loads(resp.text or "{}")["history"]
    for r in rows:
        r["time"] = r["time"][:19].replace("T", " ")
        r["changes"] = [
            (k, _short(before), _short(after)) for k, (before, after) in r["diff"].items()
        ]
    return list(reversed(rows))


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def system_tree(env: Any) -> list[dict[str, Any]]:
    """Data center -> cluster -> host -> VM (running there; VMs not running sit under
    their cluster), of what the user may see."""
    reads = env.reads

    def seen(path: str, cls: str) -> list[Any]:
        objs = authz.visible(env, resource(path), list(reads.list(cls)))
        return sorted(objs, key=lambda o: o.name.lower())

    def node(path: str, o: Any, children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        status = _str(getattr(o, "status", "")).lower()
        return {
            "name": o.name,
            "href": f"/ovirt-engine/webadmin/{path}/{o.id}",
            "status": status_class(status) if status else "",
            "children": children or [],
        }

    def vm_nodes(vms: list[Any], key: str, name: str) -> list[dict[str, Any]]:
        """The first TREE_VMS VMs, then a link to the VM list searched for the rest."""
        kids = [node("vms", v) for v in vms[:TREE_VMS]]
        if len(vms) > TREE_VMS:
            search = quote(f"Vms: {key}={name}")
            kids.append(
                {
                    "name": f"{len(vms) - TREE_VMS} more VMs",
                    "href": f"/ovirt-engine/webadmin/vms?search={search}",
                    "status": "",
                    "children": [],
                }
            )
        return kids

    hosts, vms = seen("hosts", "Host"), seen("vms", "Vm")
    out = []
    for dc in seen("datacenters", "DataCenter"):
        clusters = []
        for c in (c for c in seen("clusters", "Cluster") if c.data_center_id == dc.id):
            kids = []
            for h in (h for h in hosts if h.cluster_id == c.id):
                running = [v for v in vms if v.run_on_host_id == h.id]
                kids.append(node("hosts", h, vm_nodes(running, "host", h.name)))
            idle = [v for v in vms if v.cluster_id == c.id and not v.run_on_host_id]
            kids += vm_nodes(idle, "cluster", c.name)
            clusters.append(node("clusters", c, kids))
        out.append(node("datacenters", dc, clusters))
    return out
