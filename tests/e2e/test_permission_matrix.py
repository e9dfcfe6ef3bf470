"""The permission matrix: every route the API server serves x every method x four callers,
over real HTTP on a real PostgreSQL log, each cell judged by the hand-written policy of
``tests/e2e/permission_policy.py``.

The routes come from the running application, not from a list in this file: the aiohttp
router's routes (the portals), and behind its one catch-all route the tables it dispatches
on (``api.collections.RESOURCES`` with every item, action, sub-collection, sub-item and
sub-action; ``api.specials.SPECIAL``; the /orrery paths of ``api.openapi``; the warehouse
reports). A router route, special or /orrery path with no rule here fails the test.

Callers (``CALLERS``):

- ``anonymous``: no credentials;
- ``nop``: a user with no permission on anything in the world. (A user with no permission
  at all cannot log in: every request of it is a 401, as anonymous; see
  test_api_visibility. ``nop`` holds UserRole on one VM outside the world, VM C, so it is
  logged in and sees nothing of the world);
- ``alice``: UserRole on VM A only;
- ``admin``: admin@internal, SuperUser on the system.

The world: the Default data center and cluster, a host that is up, a data storage domain,
a network, VM A (alice's), VM B (another user's), VM C (nop's), each of A and B with a NIC,
a disk and a snapshot, permissions, and the events all this wrote.

Every GET (and HEAD) is made before any write; then the writes of the unprivileged, then
the superuser's (DELETEs last). The failures are collected and reported together:
route, method, caller, status and the start of the body.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
import uuid
from dataclasses import replace
from typing import Any
from uuid import UUID

import ovirtsdk4.types as types
import pytest

from api.collections import RESOURCES
from api.openapi import document
from api.portal import routes as portal_routes
from api.portal import views
from api.specials import SPECIAL
from api.warehouse_routes import REPORT_NAMES
from commands.messages import COMMAND_TYPES
from commands.pki import ManagerPki
from tests.conftest import drop_pg_schema, new_pg_schema
from tests.e2e.api_server import ADMIN_PASSWORD, connection, running_server, sso_token
from tests.e2e.permission_policy import (
    API,
    CALLERS,
    METHODS,
    ORRERY,
    PORTAL,
    PUBLIC,
    Req,
    judge,
    leaks,
)

pytestmark = pytest.mark.e2e

# -- the world ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = new_pg_schema("t_perm_")
    data = tmp_path_factory.mktemp("perm")
    try:
        with running_server(data, database_url=url, warehouse=True) as srv:
            srv.api.pki = ManagerPki.open(data / "pki")
            yield srv
    finally:
        drop_pg_schema(url)


def _cmd(name: str, **kw: Any) -> Any:
    return COMMAND_TYPES[name](**kw)


def _vm_with_things(
    srv: Any, s: Any, name: str, disk: str, cluster: str = "Default"
) -> tuple[Any, Any, Any]:
    vms = s.vms_service()
    vm = vms.add(
        types.Vm(
            name=name, cluster=types.Cluster(name=cluster), template=types.Template(name="Blank")
        )
    )
    svc = vms.vm_service(vm.id)
    profile = s.vnic_profiles_service().list()[0]
    svc.nics_service().add(types.Nic(name="nic1", vnic_profile=types.VnicProfile(id=profile.id)))
    da = svc.disk_attachments_service().add(
        types.DiskAttachment(
            disk=types.Disk(
                name=disk,
                provisioned_size=1 << 30,
                format=types.DiskFormat.COW,
                storage_domains=[types.StorageDomain(name="pm-data")],
            ),
            interface=types.DiskInterface.VIRTIO,
            bootable=True,
            active=True,
        )
    )
    srv.bus.execute(_cmd("ReportDiskOperation", disk_id=UUID(da.disk.id), ok=True))
    snap = svc.snapshots_service().add(
        types.Snapshot(description=f"{name}-snap", persist_memorystate=False)
    )
    srv.bus.execute(_cmd("ReportSnapshot", vm_id=UUID(vm.id), snapshot_id=UUID(snap.id), ok=True))
    return vm, da.disk, snap


def _grant(s: Any, vm_id: str, user_id: str) -> Any:
    perms = s.vms_service().vm_service(vm_id).permissions_service()
    return perms.add(
        types.Permission(role=types.Role(name="UserRole"), user=types.User(id=user_id))
    )


@pytest.fixture(scope="module")
def world(server):
    admin = connection(server)
    s = admin.system_service()
    users = {}
    for name in ("alice", "nop", "carol", "pmother"):
        users[name] = s.users_service().add(
            types.User(user_name=name, domain=types.Domain(name="internal"), password=f"pw-{name}")
        )
    host = s.hosts_service().add(
        types.Host(
            name="pm-host",
            address="127.0.0.1",
            cluster=types.Cluster(name="Default"),
            root_password="unused",
        )
    )
    hid = UUID(host.id)
    server.bus.execute(_cmd("ReportHostInstalled", host_id=hid, success=True))
    server.bus.execute(
        _cmd(
            "ReportHostCapabilities",
            host_id=hid,
            cpu_model="Intel",
            cpu_cores=4,
            memory_total=16 << 30,
            cpu_sockets=1,
            libvirt_version="9.0",
            qemu_version="8.0",
            kvm=True,
            hardware_uuid="hw-pm",
            os_version="Debian 12",
            networks=("ovirtmgmt",),
        )
    )
    sd = s.storage_domains_service().add(
        types.StorageDomain(
            name="pm-data",
            type=types.StorageDomainType.DATA,
            host=types.Host(name="pm-host"),
            storage=types.HostStorage(type=types.StorageType.NFS, address="10.0.0.1", path="/d"),
        )
    )
    dc = s.data_centers_service().list(search="name=Default")[0]
    s.data_centers_service().data_center_service(dc.id).storage_domains_service().add(
        types.StorageDomain(id=sd.id)
    )
    s.networks_service().add(types.Network(name="pm-net", data_center=types.DataCenter(id=dc.id)))
    vm_a, disk_a, snap_a = _vm_with_things(server, s, "pm-vm-a", "pm-disk-a")
    vm_b, disk_b, snap_b = _vm_with_things(server, s, "pm-vm-b-secret", "pm-disk-b-secret")
    s.clusters_service().add(
        types.Cluster(name="pm-cluster2", data_center=types.DataCenter(id=dc.id))
    )
    vm_d, disk_d, snap_d = _vm_with_things(
        server, s, "pm-vm-d-secret", "pm-disk-d-secret", "pm-cluster2"
    )
    vm_c = s.vms_service().add(
        types.Vm(
            name="pm-vm-c",
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
        )
    )
    perm_a = _grant(s, vm_a.id, users["alice"].id)
    perm_b = _grant(s, vm_b.id, users["pmother"].id)
    _grant(s, vm_c.id, users["nop"].id)
    default = s.clusters_service().list(search="name=Default")[0]
    perm_carol = (
        s.clusters_service()
        .cluster_service(default.id)
        .permissions_service()
        .add(
            types.Permission(
                role=types.Role(name="ClusterAdmin"), user=types.User(id=users["carol"].id)
            )
        )
    )
    ids = {
        "vm_a": vm_a.id,
        "vm_b": vm_b.id,
        "disk_a": disk_a.id,
        "disk_b": disk_b.id,
        "vm_d": vm_d.id,
        "disk_d": disk_d.id,
        "perm_a": perm_a.id,
        "perm_b": perm_b.id,
        "user": users["pmother"].id,
        "perm_carol": perm_carol.id,
    }
    events = json.loads(_get(server, f"{API}/events")[2])["event"]
    ids["event_a"] = next(e["id"] for e in events if e.get("vm", {}).get("id") == vm_a.id)
    ids["event_b"] = next(e["id"] for e in events if e.get("vm", {}).get("id") == vm_b.id)
    ids["event_d"] = next(e["id"] for e in events if e.get("vm", {}).get("id") == vm_d.id)
    nics = {
        k: json.loads(_get(server, f"{API}/vms/{ids[k]}/nics")[2])["nic"][0]["id"]
        for k in ("vm_a", "vm_b", "vm_d")
    }
    # Strings of each object that must not reach who may not see it.
    secret = {
        "vm_a": {vm_a.id, "pm-vm-a", snap_a.id, nics["vm_a"]},
        "vm_b": {vm_b.id, "pm-vm-b-secret", snap_b.id, nics["vm_b"]},
        "disk_a": {disk_a.id, "pm-disk-a"},
        "disk_b": {disk_b.id, "pm-disk-b-secret"},
        "vm_d": {vm_d.id, "pm-vm-d-secret", snap_d.id, nics["vm_d"]},
        "disk_d": {disk_d.id, "pm-disk-d-secret"},
        "perm_a": {perm_a.id},
        "perm_b": {perm_b.id},
    }
    tokens = {}
    for who, password in (
        ("alice", "pw-alice"),
        ("nop", "pw-nop"),
        ("carol", "pw-carol"),
        ("admin", ADMIN_PASSWORD),
    ):
        name = "admin@internal" if who == "admin" else f"{who}@internal"
        status, answer = sso_token(server, name, password)
        assert status == 200, answer
        tokens[who] = answer["access_token"]
    position = server.bus.log.head()
    yield {"ids": ids, "secret": secret, "tokens": tokens, "position": position}
    admin.close()


# -- requests ----------------------------------------------------------------------------


def _request(
    srv: Any,
    method: str,
    path: str,
    *,
    token: str | None = None,
    via: str = "api",
    headers: dict[str, str] | None = None,
    stream: bool = False,
    fmt: str = "json",
) -> tuple[int, dict[str, str], bytes]:
    """One request as the holder of ``token`` (None: anonymous): a bearer token for the
    API, the session cookie for the portal. A stream is read up to the end of its replay."""
    hdrs = {"Accept": f"application/{fmt}", **(headers or {})}
    if method in ("POST", "PUT"):
        hdrs["Content-Type"] = "application/xml"
    if token is not None:
        if via == "portal":
            hdrs["Cookie"] = f"{portal_routes.sess.COOKIE}={token}"
        else:
            hdrs["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=b"" if method in ("POST", "PUT") else None, headers=hdrs)
        resp = conn.getresponse()
        if stream and resp.status == 200:
            got = b""
            while b": connected" not in got:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                got += chunk
            return resp.status, dict(resp.getheaders()), got
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _get(srv: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    cred = base64.b64encode(f"admin@internal:{ADMIN_PASSWORD}".encode()).decode()
    return _request(srv, "GET", path, headers={"Authorization": f"Basic {cred}"})


def _first_ids(srv: Any, path: str, n: int = 1) -> list[str]:
    """The ids of the first items the superuser sees at ``path`` (a collection)."""
    status, _, body = _get(srv, path)
    if status != 200:
        return []
    tree = json.loads(body)
    items = next((v for v in tree.values() if isinstance(v, list)), []) if tree else []
    return [str(i["id"]) for i in items if isinstance(i, dict) and "id" in i][:n]


def _targets(srv: Any, w: dict[str, Any], path: str) -> list[tuple[str | None, str]]:
    """The objects of collection ``path`` the matrix names: the world's A and B where it
    has them, else the first the superuser lists, else an id that is nobody's."""
    ids = w["ids"]
    if path == "vms":
        return [("vm_a", ids["vm_a"]), ("vm_b", ids["vm_b"]), ("vm_d", ids["vm_d"])]
    if path == "disks":
        return [("disk_a", ids["disk_a"]), ("disk_b", ids["disk_b"]), ("disk_d", ids["disk_d"])]
    if path == "permissions":
        return [("perm_a", ids["perm_a"]), ("perm_b", ids["perm_b"])]
    if path == "users":
        return [(None, ids["user"])]  # never admin@internal itself: the matrix needs it
    if path == "events":
        return [(k, str(ids[k])) for k in ("event_a", "event_b", "event_d")]
    found = _first_ids(srv, f"{API}/{path}")
    return [(None, found[0])] if found else [(None, str(uuid.uuid4()))]


def _write_or_read(method: str) -> str:
    return "read" if method == "GET" else "write"


def api_tree(srv: Any, w: dict[str, Any]) -> list[Req]:
    """Every path of the REST API's tables (``RESOURCES``, ``SPECIAL``) x ``METHODS``."""
    keys = {str(v): k for k, v in w["ids"].items()}
    out = [Req(m, API, _write_or_read(m)) for m in METHODS]
    for name in SPECIAL:
        out += [Req(m, f"{API}/{name}", _write_or_read(m)) for m in METHODS]
        for subject, oid in _targets(srv, w, name):
            out += [Req(m, f"{API}/{name}/{oid}", _write_or_read(m), subject) for m in METHODS]
    for path, res in RESOURCES.items():
        out += [Req(m, f"{API}/{path}", _write_or_read(m)) for m in METHODS]
        for subject, oid in _targets(srv, w, path):
            item = f"{API}/{path}/{oid}"
            out += [Req(m, item, _write_or_read(m), subject) for m in METHODS]
            for verb in res.actions:
                out += [
                    Req(m, f"{item}/{verb}", _write_or_read(m), subject, action=verb)
                    for m in METHODS
                ]
            for sub in res.subs.values():
                sp = f"{item}/{sub.path}"
                out += [Req(m, sp, _write_or_read(m), subject, sub=sub.path) for m in METHODS]
                for iid in _first_ids(srv, sp):
                    ip = f"{sp}/{iid}"
                    # An item of another collection is judged as itself, an embedded one
                    # (a VM's NIC) as its parent.
                    own = keys.get(iid) if sub.kind == "child" else subject
                    up = (subject or "?") if sub.kind == "child" else None
                    out += [
                        Req(m, ip, _write_or_read(m), own, sub=sub.path, parent=up) for m in METHODS
                    ]
                    verbs = set(sub.actions)
                    if sub.kind == "child":
                        verbs |= set(RESOURCES[sub.resource or ""].actions)
                    for verb in sorted(verbs):
                        out.append(Req("POST", f"{ip}/{verb}", "write", own, verb, sub.path))
    # A search and a follow, the other two ways a list shows objects.
    b_name = urllib.parse.quote("name=pm-vm-b-secret")
    out.append(Req("GET", f"{API}/vms?search={b_name}", "read"))
    out.append(Req("GET", f"{API}/vms?follow=disk_attachments.disk,nics,snapshots", "read"))
    out.append(Req("GET", f"{API}/disks?search=name%3Dpm-disk-b-secret", "read"))
    follow = "disk_attachments.disk,nics,snapshots,cluster,host,template,permissions"
    for key in ("vm_a", "vm_b", "vm_d"):
        out.append(Req("GET", f"{API}/vms/{w['ids'][key]}?follow={follow}", "read", key))
    out.append(Req("GET", f"{API}/events?search=severity%3Dnormal&from=0", "read"))
    # The state of a past position (as_of): the same reads, answered by a replay.
    past = [
        replace(r, path=f"{r.path}?as_of={w['position']}")
        for r in out
        if r.method == "GET" and "?" not in r.path and r.path.count("/") <= 4
    ]
    # And every read in XML too (its own renderer and cache).
    xml = [replace(r, fmt="xml") for r in out if r.method == "GET"]
    # An administrator's own view (filter=true): what it holds permissions on.
    own = [
        replace(r, path=r.path + ("&" if "?" in r.path else "?") + "filter=true", filtered=True)
        for r in out
        if r.method == "GET"
    ]
    return out + past + xml + own


def orrery_tree(srv: Any, w: dict[str, Any]) -> list[Req]:
    described = {p for p in document()["paths"] if p.startswith("/orrery/")}
    missing = described - set(ORRERY)
    assert not missing, f"/orrery paths with no rule in the permission matrix: {missing}"
    out = [Req("GET", "/orrery/openapi.json", "public")]
    for m in METHODS:
        out.append(Req(m, "/orrery/status", _write_or_read(m)))
        out.append(Req(m, "/orrery/events/stream?from=0", "stream" if m == "GET" else "write"))
        out.append(Req(m, "/orrery/warehouse/sql?query=SELECT%201", "admin_read"))
        for name in REPORT_NAMES:
            out.append(Req(m, f"/orrery/warehouse/reports/{name}?hours=24", _write_or_read(m)))
    for path in RESOURCES:
        for subject, oid in _targets(srv, w, path):
            out.append(Req("GET", f"/orrery/history/{path}/{oid}", "read", subject))
    out.append(Req("DELETE", f"/orrery/history/vms/{w['ids']['vm_a']}", "write", "vm_a"))
    return out


def sso_tree() -> list[Req]:
    pki = "/ovirt-engine/services/pki-resource"
    out = []
    for m in ("GET", "POST"):
        out.append(Req(m, "/ovirt-engine/sso/oauth/token", "public"))
        out.append(Req(m, "/ovirt-engine/services/sso-logout", "public", logout=True))
    for m in METHODS:
        out.append(Req(m, f"{pki}?resource=ca-certificate&format=X509-PEM-CA", "public"))
    return out


def router_tree(srv: Any, w: dict[str, Any], app_routes: list[tuple[str, str]]) -> list[Req]:
    """The router's routes, each expanded with the world's objects; the catch-all's are
    the trees above."""
    out: list[Req] = []
    paths = [p for p in RESOURCES if views.resource(p) is not None]
    for method, canonical in app_routes:
        rule = "public" if canonical in PUBLIC else PORTAL.get(canonical)
        assert rule is not None, f"router route with no rule in the permission matrix: {canonical}"
        if rule == "catch-all":
            continue
        if rule == "bridge":
            continue  # expanded from the API tree in the test
        if canonical == "/ovirt-engine/webadmin/{path}":
            out += [Req(method, f"/ovirt-engine/webadmin/{p}", rule, via="portal") for p in paths]
        elif canonical == "/ovirt-engine/webadmin/{path}/{id}":
            for p in paths:
                for subject, oid in _targets(srv, w, p):
                    base = f"/ovirt-engine/webadmin/{p}/{oid}"
                    for tab in views.TABS.get(p, views.DEFAULT_TABS):
                        out.append(Req(method, f"{base}?tab={tab}", rule, subject, via="portal"))
        elif canonical == "/ovirt-engine/web-ui/vms/{id}":
            for subject in ("vm_a", "vm_b", "vm_d"):
                out.append(
                    Req(
                        method,
                        f"/ovirt-engine/web-ui/vms/{w['ids'][subject]}",
                        rule,
                        subject,
                        via="portal",
                        filtered=True,
                    )
                )
        elif canonical == "/ovirt-engine/portal/static/{name}":
            out += [
                Req(method, f"/ovirt-engine/portal/static/{f.name}", rule)
                for f in _files(portal_routes.STATIC)
            ]
        elif canonical == "/ovirt-engine/portal/vendor/{tail}":
            vendor = portal_routes.VENDOR
            some = (
                sorted(p for p in vendor.rglob("*") if p.is_file())[:3] if vendor.is_dir() else []
            )
            out += [
                Req(method, f"/ovirt-engine/portal/vendor/{p.relative_to(vendor)}", rule)
                for p in some
            ]
        elif canonical == "/ovirt-engine/portal/stream":
            out.append(Req(method, canonical, "stream", via="portal"))
        else:
            logout = canonical == "/ovirt-engine/logout"
            vm_portal = canonical.startswith("/ovirt-engine/web-ui/")
            out.append(
                Req(method, canonical, rule, via="portal", logout=logout, filtered=vm_portal)
            )
    return out


def _files(d: Any) -> list[Any]:
    return sorted(p for p in d.iterdir() if p.is_file())


def _order(reqs: list[Req], perm_carol: str) -> list[tuple[Req, str]]:
    """Every GET first (nothing has changed yet), then the writes of the unprivileged, then
    the ClusterAdmin's and the superuser's: additions and actions and updates, removals
    last."""
    reads = [(r, who) for r in reqs if r.method in ("GET", "HEAD") for who in CALLERS]
    writes = [r for r in reqs if r.method not in ("GET", "HEAD")]
    weak = [(r, who) for who in ("anonymous", "nop", "alice") for r in writes]
    # The refusals are events the refused user may read (its own actions): read the
    # audit feed again after them.
    weak += [
        (r, who)
        for r in reqs
        if r.method == "GET" and "event" in r.path
        for who in ("nop", "alice", "carol")
    ]
    strong = [(r, who) for who in ("carol", "admin") for r in writes if r.method != "DELETE"]
    # Removals deepest first, so a sub-item goes before its parent; permissions last (a
    # ClusterAdmin removing its own cannot go on).
    gone = sorted(
        (r for r in writes if r.method == "DELETE"),
        key=lambda r: ("/permissions" in r.path, perm_carol in r.path, -r.path.count("/")),
    )
    ordered = reads + weak + strong + [(r, who) for who in ("carol", "admin") for r in gone]
    # Logging out ends the caller's every session: those go last of all.
    return [c for c in ordered if not c[0].logout] + [c for c in ordered if c[0].logout]


def test_the_api_root_counts_only_what_the_caller_sees(server, world):
    """Runs before the matrix, whose superuser removes things at its end."""
    for who, vms in (("nop", 1), ("alice", 1), ("carol", 4), ("admin", 4)):
        status, _, body = _request(server, "GET", API, token=world["tokens"][who])
        assert status == 200, body
        summary = json.loads(body)["summary"]
        assert summary["vms"]["total"] == vms, (who, summary)
        users = summary["users"]
        assert users["active"] <= users["total"], (who, users)  # no count of the unseen
    assert users == {"total": 5, "active": 5}  # admin, alice, nop, carol, pmother


def test_every_route_for_every_caller_is_as_the_policy_says(server, world):
    app_routes = sorted(
        {(r.method, r.resource.canonical) for r in server.api.app().router.routes()}
    )
    api = api_tree(server, world)
    bridged = [
        replace(r, path="/ovirt-engine/portal/api/" + r.path[len(API) + 1 :], via="portal")
        for r in api
        if r.method == "GET" and r.fmt == "json"
    ]
    reqs = (
        api
        + bridged
        + orrery_tree(server, world)
        + sso_tree()
        + router_tree(server, world, app_routes)
    )
    tokens = world["tokens"]
    failures = []
    count = 0
    every_secret = {x for strings in world["secret"].values() for x in strings}
    seen_by_admin: set[str] = set()
    for req, who in _order(reqs, world["ids"]["perm_carol"]):
        token = tokens.get(who)
        headers = {"Last-Event-ID": "0"} if req.via == "portal" and req.cls == "stream" else {}
        status, hdrs, body = _request(
            server,
            req.method,
            req.path,
            token=token,
            via=req.via,
            headers=headers,
            stream=req.cls == "stream",
            fmt=req.fmt,
        )
        count += 1
        if who == "admin" and req.method == "GET":
            text = body.decode(errors="replace")
            seen_by_admin |= {x for x in every_secret if x in text and x not in req.path}
        wrong = judge(req, who, status, hdrs)
        if wrong is None:  # any answer, also a refusal's message
            shown = leaks(world, who, req, body)
            if shown:
                wrong = f"shows what {who} may not see: {', '.join(sorted(shown))}"
        if wrong is not None:
            snippet = body[:160].decode(errors="replace").replace("\n", " ")
            failures.append(f"{req.method} {req.path} as {who}: {status} ({wrong}) {snippet}")
    print(f"permission matrix: {count} requests over {len(reqs)} route/method pairs")
    # The leak check looks for strings the responses do carry (else it could not fail).
    assert seen_by_admin == every_secret, every_secret - seen_by_admin
    assert not failures, f"{len(failures)} of {count} cells wrong:\n" + "\n".join(failures)
