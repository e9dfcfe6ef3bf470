"""What a user may see, over real HTTP on a real PostgreSQL log: object histories, the
live event stream, events by id, removing an event, and ``as_of`` reads (authentication
and permissions first, on the permissions of now; never on a write; the current state
past the log's end; one at a time per user, with a time limit).

Each hole is tried as anonymous, as a user with no permission (who therefore cannot log
in), as a UserRole user on one VM (alice; bob holds UserRole on another VM) and as the
superuser (admin@internal).

A slow replay is made real by holding an ACCESS EXCLUSIVE lock on the log's table from
the test: a read of the log then waits for as long as the test wants, while everything
the Manager answers from memory goes on.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import ovirtsdk4.types as types
import pytest

from commands.store import libpq_url
from tests.conftest import drop_pg_schema, new_pg_schema, pg_owner_url
from tests.e2e.api_server import ADMIN_PASSWORD, connection, running_server

pytestmark = pytest.mark.e2e

LIMIT = 1.0  # the server's as_of time limit in these tests (seconds)
API = "/ovirt-engine/api"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = new_pg_schema("t_vis_")
    try:
        with running_server(
            tmp_path_factory.mktemp("vis"), database_url=url, as_of_timeout=LIMIT
        ) as srv:
            srv.pg = url.rsplit("schema=", 1)[1]  # type: ignore[attr-defined]
            yield srv
    finally:
        drop_pg_schema(url)


def _vm(vms: Any, name: str) -> Any:
    return vms.add(
        types.Vm(
            name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank")
        )
    )


def _grant(admin: Any, vm_id: str, user_id: str) -> Any:
    perms = admin.system_service().vms_service().vm_service(vm_id).permissions_service()
    return perms.add(
        types.Permission(role=types.Role(name="UserRole"), user=types.User(id=user_id))
    )


@pytest.fixture(scope="module")
def world(server):
    admin = connection(server)
    system = admin.system_service()
    users = system.users_service()
    ids = {}
    for name in ("alice", "bob", "nop"):
        u = users.add(
            types.User(user_name=name, domain=types.Domain(name="internal"), password=f"pw-{name}")
        )
        ids[name] = u.id
    vms = system.vms_service()
    vm_a = _vm(vms, "vis-alice-vm")
    vm_b = _vm(vms, "vis-bob-vm")
    # A VM that existed for a while in the Default cluster (no one but admin held it).
    before_gone = server.bus.log.head()
    gone = _vm(vms, "vis-gone-vm")
    vms.vm_service(gone.id).update(types.Vm(description="was here"))
    while_gone_existed = server.bus.log.head()
    vms.vm_service(gone.id).remove()
    # Alice gets her permission only now: after vm_a and vis-gone-vm existed.
    _grant(admin, vm_a.id, ids["alice"])
    _grant(admin, vm_b.id, ids["bob"])
    w = {
        "admin": admin,
        "ids": ids,
        "vm_a": vm_a.id,
        "vm_b": vm_b.id,
        "gone": gone.id,
        "before_gone": before_gone,
        "while_gone_existed": while_gone_existed,
        "tokens": {
            "admin": _token(server, "admin@internal", ADMIN_PASSWORD),
            "alice": _token(server, "alice@internal", "pw-alice"),
            "bob": _token(server, "bob@internal", "pw-bob"),
        },
    }
    yield w
    admin.close()


def _token(server: Any, user: str, password: str) -> str | None:
    form = urllib.parse.urlencode(
        {"grant_type": "password", "scope": "ovirt-app-api", "username": user, "password": password}
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/ovirt-engine/sso/oauth/token", form
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]
    except urllib.error.HTTPError as e:
        assert e.code == 400
        return None


def _call(
    server: Any, method: str, path: str, token: str | None, body: bytes | None = None, timeout=30
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", data=body, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def _who(world: Any) -> dict[str, str | None]:
    """Every caller's bearer token: None for anonymous; the user with no permission cannot
    get one (no login permit), so it is asked with HTTP Basic."""
    return {"anonymous": None, **world["tokens"]}


def _basic(server: Any, method: str, path: str, user: str, password: str) -> int:
    import base64

    cred = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        headers={"Authorization": f"Basic {cred}", "Accept": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_user_with_no_permission_cannot_log_in_to_any_of_it(server, world):
    assert _token(server, "nop@internal", "pw-nop") is None
    for method, path in (
        ("GET", f"/orrery/history/vms/{world['vm_a']}"),
        ("GET", "/orrery/events/stream"),
        ("GET", f"{API}/events/1"),
        ("DELETE", f"{API}/events/1"),
        ("GET", f"{API}/vms?as_of=1"),
        ("PUT", f"{API}/vms/{world['vm_a']}?as_of=1"),
    ):
        assert _basic(server, method, path, "nop@internal", "pw-nop") == 401, (method, path)


# -- history -------------------------------------------------------------------------------


def test_history_is_shown_only_to_who_may_see_the_object(server, world):
    t = _who(world)
    a, b, gone = world["vm_a"], world["vm_b"], world["gone"]
    assert _call(server, "GET", f"/orrery/history/vms/{a}", t["anonymous"])[0] == 401
    status, body = _call(server, "GET", f"/orrery/history/vms/{a}", t["alice"])
    assert status == 200 and body["history"][0]["event"] == "VmAdded", body
    assert _call(server, "GET", f"/orrery/history/vms/{b}", t["alice"])[0] == 404
    assert _call(server, "GET", f"/orrery/history/vms/{a}", t["bob"])[0] == 404
    assert _call(server, "GET", f"/orrery/history/vms/{b}", t["bob"])[0] == 200
    # A removed VM: by the cluster it was in, where neither alice nor bob holds anything.
    for who in ("alice", "bob"):
        assert _call(server, "GET", f"/orrery/history/vms/{gone}", t[who])[0] == 404, who
    status, body = _call(server, "GET", f"/orrery/history/vms/{gone}", t["admin"])
    assert status == 200 and body["history"][-1]["event"] == "VmRemoved"
    for vm in (a, b):
        assert _call(server, "GET", f"/orrery/history/vms/{vm}", t["admin"])[0] == 200
    # The collection must name the object's kind.
    assert _call(server, "GET", f"/orrery/history/datacenters/{a}", t["admin"])[0] == 404
    status, fault = _call(server, "GET", f"/orrery/history/vms/{a}?as_of=1", t["admin"])
    assert status == 400 and "as_of" in fault["detail"]


# -- events by id and removing them ----------------------------------------------------------


def _event_about(server: Any, world: Any, vm_id: str) -> int:
    status, body = _call(server, "GET", f"{API}/events?max=1000", world["tokens"]["admin"])
    assert status == 200
    for e in body["event"]:
        if e.get("vm", {}).get("id") == vm_id:
            return int(e["id"])
    raise AssertionError(f"no event about {vm_id}")


def test_events_by_id_obey_the_same_rule_as_the_list(server, world):
    t = _who(world)
    ea = _event_about(server, world, world["vm_a"])
    eb = _event_about(server, world, world["vm_b"])
    assert _call(server, "GET", f"{API}/events/{ea}", t["anonymous"])[0] == 401
    assert _call(server, "GET", f"{API}/events/{ea}", t["alice"])[0] == 200
    assert _call(server, "GET", f"{API}/events/{eb}", t["alice"])[0] == 404
    assert _call(server, "GET", f"{API}/events/{ea}", t["bob"])[0] == 404
    assert _call(server, "GET", f"{API}/events/{eb}", t["bob"])[0] == 200
    for e in (ea, eb):
        assert _call(server, "GET", f"{API}/events/{e}", t["admin"])[0] == 200
    listed = {
        int(e["id"]) for e in _call(server, "GET", f"{API}/events?max=1000", t["alice"])[1]["event"]
    }
    assert ea in listed and eb not in listed
    # ``max`` counts what the user may read, also when the newest entries are not hers.
    vms = world["admin"].system_service().vms_service()
    vms.vm_service(world["vm_b"]).update(types.Vm(description="newest is bob's"))
    status, body = _call(server, "GET", f"{API}/events?max=1", t["alice"])
    assert status == 200 and [e["vm"]["id"] for e in body["event"]] == [world["vm_a"]], body


def test_removing_an_event_needs_the_system_permission_and_is_recorded(server, world):
    t = _who(world)
    vms = world["admin"].system_service().vms_service()
    vms.vm_service(world["vm_a"]).update(types.Vm(description="an entry to remove"))
    ea = _event_about(server, world, world["vm_a"])  # that update's entry
    eb = _event_about(server, world, world["vm_b"])
    assert _call(server, "DELETE", f"{API}/events/{ea}", t["anonymous"])[0] == 401
    # Alice sees her VM's event but may not remove audit entries: 403 (and it stays).
    assert _call(server, "DELETE", f"{API}/events/{ea}", t["alice"])[0] == 403
    assert _call(server, "GET", f"{API}/events/{ea}", t["alice"])[0] == 200
    # Bob's VM's event does not exist for alice.
    assert _call(server, "DELETE", f"{API}/events/{eb}", t["alice"])[0] == 404
    assert _call(server, "DELETE", f"{API}/events/{eb}", t["bob"])[0] == 403
    head = server.bus.log.head()
    status, body = _call(server, "DELETE", f"{API}/events/{ea}", t["admin"])
    assert status == 200 and body["status"] == "complete"
    hidden = [ev for _, ev in server.bus.log.read(head, 50) if type(ev).__name__ == "EventHidden"]
    assert [ev.position for ev in hidden] == [ea]
    assert hidden[0].meta.actor == "admin@internal"
    for who in ("admin", "alice"):
        assert _call(server, "GET", f"{API}/events/{ea}", t[who])[0] == 404, who
        ids = {
            int(e["id"]) for e in _call(server, "GET", f"{API}/events?max=1000", t[who])[1]["event"]
        }
        assert ea not in ids, who
    assert _call(server, "DELETE", f"{API}/events/{ea}", t["admin"])[0] == 404  # gone already
    assert _call(server, "GET", f"{API}/events/{eb}", t["bob"])[0] == 200


# -- the live stream ---------------------------------------------------------------------------


class _Stream:
    """One /orrery/events/stream connection; its messages arrive in a queue."""

    def __init__(self, server: Any, token: str | None) -> None:
        import http.client

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.request("GET", "/orrery/events/stream", headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.q: queue.Queue[dict] = queue.Queue()
        self.connected = threading.Event()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
            assert self.connected.wait(10)

    def _read(self) -> None:
        try:
            for raw in self.resp:
                line = raw.decode().strip()
                if line == ": connected":
                    self.connected.set()
                elif line.startswith("data: "):
                    self.q.put(json.loads(line[6:]))
        except Exception:  # closed at the end of the test
            return

    def until(self, after: int, vm_id: str, deadline: float = 10.0) -> list[dict]:
        """Every message up to and including the first one after log position ``after``
        about the VM; fails when that does not come within the deadline."""
        got: list[dict] = []
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                e = self.q.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            got.append(e)
            if int(e["id"]) > after and e.get("vm", {}).get("id") == vm_id:
                return got
        raise AssertionError(f"no message about {vm_id} after {after} in {deadline} s: {got}")

    def close(self) -> None:
        import socket

        if self.conn.sock is not None:  # the reader thread's read ends at once
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def _vm_ids(msgs: list[dict], after: int) -> set[str]:
    return {m["vm"]["id"] for m in msgs if m.get("vm") and int(m["id"]) > after}


def test_the_stream_sends_each_user_only_what_they_may_see_as_permissions_change(server, world):
    t = _who(world)
    anonymous = _Stream(server, t["anonymous"])
    anonymous.close()
    assert anonymous.status == 401
    admin = world["admin"]
    vms = admin.system_service().vms_service()
    a, b = world["vm_a"], world["vm_b"]
    log = server.bus.log

    def change(vm_id: str, text: str) -> None:
        vms.vm_service(vm_id).update(types.Vm(description=text))

    streams = {who: _Stream(server, t[who]) for who in ("alice", "bob", "admin")}
    try:
        pre = log.head()
        change(b, "s1-b")
        change(a, "s1-a")
        got = streams["alice"].until(pre, a)
        assert a in _vm_ids(got, pre) and b not in _vm_ids(got, pre), got
        assert _vm_ids(streams["admin"].until(pre, a), pre) == {a, b}
        got = streams["bob"].until(pre, b)
        change(b, "s1-fence")  # bob's next one: alice's change in between never comes
        got += streams["bob"].until(pre, b)
        assert _vm_ids(got, pre) == {b}, got

        # Alice is given bob's VM while her stream runs: its next event reaches her ...
        perm = _grant(admin, b, world["ids"]["alice"])
        pre = log.head()
        change(b, "s2-b")
        assert b in _vm_ids(streams["alice"].until(pre, b), pre)
        # ... and when it is taken away again, the next ones do not, while hers still do.
        vms.vm_service(b).permissions_service().permission_service(perm.id).remove()
        pre = log.head()
        change(b, "s3-b")
        change(a, "s3-a")
        got = streams["alice"].until(pre, a)
        assert _vm_ids(got, pre) == {a}, got
    finally:
        for s in streams.values():
            s.close()


# -- as_of --------------------------------------------------------------------------------------


@contextmanager
def _log_locked(server: Any) -> Iterator[None]:
    """Holds an ACCESS EXCLUSIVE lock on the log's table: every read of the log waits."""
    import psycopg

    schema = server.pg
    rec = server.bus.log.recorder
    # The log's owner may lock it; the Manager's own role may only read and append.
    with psycopg.connect(libpq_url(pg_owner_url())) as conn:
        conn.execute(f'LOCK TABLE "{schema}"."{rec.events_table_name}" IN ACCESS EXCLUSIVE MODE')
        try:
            yield
        finally:
            conn.rollback()


def _names(body: Any) -> set[str]:
    return {v["name"] for v in (body or {}).get("vm", [])}


def test_as_of_authenticates_first_and_never_replays_for_anonymous(server, world):
    with _log_locked(server):
        t0 = time.monotonic()
        status, body = _call(server, "GET", f"{API}/vms?as_of=1", None, timeout=5)
        assert status == 401, body
        assert time.monotonic() - t0 < 2.0
        status, _ = _call(server, "GET", f"{API}/vms?as_of=2026-01-01T00:00:00Z", None, timeout=5)
        assert status == 401


def test_as_of_is_refused_on_every_write(server, world):
    t = _who(world)
    a = world["vm_a"]
    desc = json.dumps({"description": "written through as_of"}).encode()
    writes = [
        ("PUT", f"{API}/vms/{a}?as_of=1", desc),
        ("POST", f"{API}/vms?as_of=1", json.dumps({"name": "asof-new"}).encode()),
        ("DELETE", f"{API}/vms/{a}?as_of=1", None),
        ("POST", f"{API}/vms/{a}/start?as_of=1", b"{}"),
        ("POST", f"{API}/vms/{a}/permissions?as_of=1", b"{}"),
    ]
    head = server.bus.log.head()
    for method, path, body in writes:
        assert _call(server, method, path, t["anonymous"], body)[0] == 401, path
        for who in ("alice", "bob", "admin"):
            status, fault = _call(server, method, path, t[who], body)
            assert status == 400, (who, method, path, fault)
            assert "as_of" in fault["detail"], fault
    assert server.bus.log.head() == head  # nothing was written, nothing refused as 403
    assert world["admin"].system_service().vms_service().vm_service(a).get().description != (
        "written through as_of"
    )


def test_as_of_past_the_end_is_the_current_state_without_a_replay(server, world):
    t = _who(world)
    head = server.bus.log.head()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    with _log_locked(server):
        for spec in (str(head), str(head + 1000), later):
            for who, want in (("alice", {"vis-alice-vm"}), ("bob", {"vis-bob-vm"})):
                status, body = _call(server, "GET", f"{API}/vms?as_of={spec}", t[who], timeout=5)
                assert status == 200 and _names(body) == want, (spec, who, body)
            status, body = _call(server, "GET", f"{API}/vms?as_of={spec}", t["admin"], timeout=5)
            assert status == 200 and {"vis-alice-vm", "vis-bob-vm"} <= _names(body)
            assert "vis-gone-vm" not in _names(body)


def test_as_of_decides_visibility_on_the_permissions_of_now(server, world):
    t = _who(world)
    spec = world["while_gone_existed"]  # before alice held anything
    status, body = _call(server, "GET", f"{API}/vms?as_of={spec}", t["alice"])
    assert status == 200 and _names(body) == {"vis-alice-vm"}, body
    status, body = _call(server, "GET", f"{API}/vms/{world['vm_a']}?as_of={spec}", t["alice"])
    assert status == 200 and body["name"] == "vis-alice-vm"
    # The removed VM was in the Default cluster, where alice holds nothing now.
    status, _ = _call(server, "GET", f"{API}/vms/{world['gone']}?as_of={spec}", t["alice"])
    assert status == 404
    status, body = _call(server, "GET", f"{API}/vms?as_of={spec}", t["admin"])
    assert status == 200 and {"vis-gone-vm", "vis-alice-vm"} <= _names(body), body
    status, body = _call(server, "GET", f"{API}/vms?as_of={world['before_gone']}", t["admin"])
    assert "vis-gone-vm" not in _names(body)
    # The audit feed as of then: nothing later, and for alice only what she may read now.
    for who in ("admin", "alice"):
        status, body = _call(server, "GET", f"{API}/events?as_of={spec}&max=1000", t[who])
        ids = [int(e["id"]) for e in body["event"]]
        assert status == 200 and ids and max(ids) <= spec, (who, ids)
        assert _call(server, "GET", f"{API}/events/{spec + 1}?as_of={spec}", t[who])[0] == 404
    alice_vms = {e["vm"]["id"] for e in body["event"] if e.get("vm")}
    assert alice_vms == {world["vm_a"]}, body


def test_as_of_reads_run_one_at_a_time_per_user_and_give_up_after_the_limit(server, world):
    t = _who(world)
    spec = world["while_gone_existed"] - 1  # a past state no earlier test asked for
    out: dict[str, tuple[float, int, Any]] = {}

    def ask(key: str, who: str) -> None:
        t0 = time.monotonic()
        status, body = _call(server, "GET", f"{API}/vms?as_of={spec}", t[who], timeout=15)
        out[key] = (time.monotonic() - t0, status, body)

    with _log_locked(server):
        first = threading.Thread(target=ask, args=("first", "alice"))
        first.start()
        time.sleep(0.3)
        second = threading.Thread(target=ask, args=("second", "alice"))
        second.start()
        # Meanwhile the Manager answers what it holds in memory.
        t0 = time.monotonic()
        status, body = _call(server, "GET", f"{API}/vms", t["bob"], timeout=5)
        assert status == 200 and _names(body) == {"vis-bob-vm"}
        assert time.monotonic() - t0 < LIMIT
        first.join(10)
        second.join(10)
        for key in ("first", "second"):
            took, status, fault = out[key]
            assert status == 503, (key, status, fault)
            assert "as_of" in fault["detail"] or "as-of" in fault["detail"], fault
            assert LIMIT * 0.8 <= took < LIMIT + 3.0, (key, took)
        assert "did not finish" in out["first"][2]["detail"], out["first"]
        assert "Another as_of read" in out["second"][2]["detail"], out["second"]
    # Once the log reads again, the abandoned replay stops and alice's next read answers.
    end = time.monotonic() + 10
    while True:
        status, body = _call(server, "GET", f"{API}/vms?as_of={spec}", t["alice"], timeout=15)
        if status == 200 or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert status == 200 and _names(body) == {"vis-alice-vm"}, body
