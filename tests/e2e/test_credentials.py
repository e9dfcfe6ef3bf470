"""Credentials stay out of reach over real HTTP (issue 11, items 4 and 5).

Searching, filtering or sorting by a credential field (a password hash: each aggregate's
``SECRET_FIELDS``) is a 400 fault naming the field in every collection, so the answer
can no longer tell a right prefix of the hash from a wrong one; no rendering shows the
field. Adding a host with an existing host's id or name is refused without touching the
stored enrollment secret of that host, which still authenticates to its hostd; a secret
that cannot be stored fails the new host's installation with the reason.
Each request runs as anonymous, a user without permission, a UserRole user on one VM and
the superuser.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

import domain.model  # noqa: F401  (every aggregate class)
from api.resources import RESOURCES
from domain.base import AGGREGATE_TYPES
from hostd import protocol as P
from tests.e2e.api_server import ADMIN_PASSWORD, running_server
from tests.integration.hostd_fixtures import running_hosts, tls_of

pytestmark = pytest.mark.e2e

API = "/ovirt-engine/api"
ADMIN = ("admin@internal", ADMIN_PASSWORD)
VM_USER = ("vmuser@internal", "pw-vmuser-1")  # UserRole on one VM
NOBODY = ("nobody@internal", "pw-nobody-1")  # no permission anywhere


def call(
    srv: Any,
    method: str,
    path: str,
    who: tuple[str, str] | None,
    body: Any = None,
    accept: str = "application/json",
) -> tuple[int, bytes]:
    headers = {"Accept": accept, "Version": "4"}
    if who is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(who).encode()).decode()
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def ok(srv: Any, method: str, path: str, body: Any = None) -> Any:
    status, data = call(srv, method, path, ADMIN, body)
    assert status in (200, 201), (method, path, status, data[:300])
    return json.loads(data)


def add_people(srv: Any) -> dict[str, str]:
    """The two users besides admin, and the VM the UserRole user holds."""
    cluster = {"name": "Default"}
    vm = ok(
        srv,
        "POST",
        f"{API}/vms",
        {"name": "held", "cluster": cluster, "template": {"name": "Blank"}},
    )
    ok(
        srv,
        "POST",
        f"{API}/vms",
        {"name": "other", "cluster": cluster, "template": {"name": "Blank"}},
    )
    ids = {"vm": vm["id"]}
    for who in (VM_USER, NOBODY):
        principal = who[0].split("@")[0]
        u = ok(
            srv,
            "POST",
            f"{API}/users",
            {"user_name": principal, "domain": {"name": "internal"}, "password": who[1]},
        )
        ids[principal] = u["id"]
    ok(
        srv,
        "POST",
        f"{API}/vms/{vm['id']}/permissions",
        {"role": {"name": "UserRole"}, "user": {"id": ids["vmuser"]}},
    )
    return ids


# -- item 4: credential fields are not searchable -----------------------------------------


def credential_collections() -> list[tuple[str, str]]:
    """(collection, field) for every credential field of an aggregate the API lists (the
    users' password hash named as well: the tests run on it whatever the classes say)."""
    out = [("users", "password_hash")]
    for cls in AGGREGATE_TYPES.values():
        for res in RESOURCES.values():
            if res.cls == cls.__name__:
                out.extend((res.path, f) for f in sorted(getattr(cls, "SECRET_FIELDS", ())))
    return sorted(set(out))


def refused_searches(field: str) -> list[str]:
    up = field.upper()
    return [
        f"{field}=$argon2id$*",  # a right prefix of every hash
        f'{field}="$argon2id$v=19$m=*"',
        f"{field}=$scrypt$*",  # a wrong one: must answer the same
        f"{field}=*",
        f"{field}!=x",
        f"{field}>$a",
        f'{up}="$argon2id$*"',
        f"name=* and {field}=$argon2id$*",
        f"name=nothing-like-this or {field}=$argon2id$*",
        f"Users: {field}=$argon2id$*",
        f"sortby {field}",
        f"name=* sortby {field} desc",
        f"page 1 sortby {up}",
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("creds")) as srv:
        srv.people = add_people(srv)  # type: ignore[attr-defined]
        yield srv


def test_the_password_hash_is_declared_a_credential() -> None:
    assert "password_hash" in AGGREGATE_TYPES["User"].SECRET_FIELDS


@pytest.mark.parametrize("accept", ["application/json", "application/xml"])
def test_search_and_sort_by_a_credential_are_refused_naming_it(server, accept) -> None:
    for coll, field in credential_collections():
        for text in refused_searches(field):
            path = f"{API}/{coll}?" + urllib.parse.urlencode({"search": text})
            bodies = {}
            for who in (ADMIN, VM_USER):
                status, body = call(server, "GET", path, who, accept=accept)
                assert status == 400, (who[0], text, status, body[:300])
                assert field.encode() in body, (who[0], text, body[:300])
                assert b"$argon2" not in body
                bodies[who[0]] = body
            for who in (None, NOBODY):  # nobody without a permission gets in at all
                status, body = call(server, "GET", path, who, accept=accept)
                assert status == 401, (who, text, status, body[:300])
                assert field.encode() not in body
    # A right and a wrong prefix answer byte for byte the same.
    good = f"{API}/users?" + urllib.parse.urlencode({"search": "password_hash=$argon2id$*"})
    bad = f"{API}/users?" + urllib.parse.urlencode({"search": "password_hash=$zzzz$*"})
    ans = [call(server, "GET", p, ADMIN, accept=accept) for p in (good, bad)]
    assert ans[0][0] == ans[1][0] == 400
    assert ans[0][1].replace(b"$argon2id$", b"") == ans[1][1].replace(b"$zzzz$", b"")


def test_no_collection_searches_a_credential(server) -> None:
    fields = {f for _, f in credential_collections()}
    colls = sorted(p for p, r in RESOURCES.items() if r.searchable)
    assert "vms" in colls and "users" in colls
    for coll in [*colls, "events"]:
        for field in fields:
            for text in (f"{field}=*", f"sortby {field}"):
                path = f"{API}/{coll}?" + urllib.parse.urlencode({"search": text})
                for who in (ADMIN, VM_USER):
                    status, body = call(server, "GET", path, who)
                    assert status == 400, (coll, text, who[0], status, body[:300])
                    assert field.encode() in body, (coll, text, body[:300])
                for who in (None, NOBODY):
                    assert call(server, "GET", path, who)[0] == 401


def test_other_searches_still_work(server) -> None:
    q = urllib.parse.urlencode({"search": "usrname=vmuser* sortby name"})
    users = ok(server, "GET", f"{API}/users?{q}")["user"]
    assert [u["user_name"] for u in users] == ["vmuser@internal"]
    status, body = call(server, "GET", f"{API}/vms?search=name%3Dheld", VM_USER)
    assert status == 200 and [v["name"] for v in json.loads(body)["vm"]] == ["held"]


def test_no_rendering_shows_a_credential(server) -> None:
    people = server.people
    uid, vm = people["vmuser"], people["vm"]
    head = server.bus.log.head()
    paths = [
        f"{API}/users",
        f"{API}/users?follow=permissions",
        f"{API}/users/{uid}",
        f"{API}/users/{uid}?follow=permissions",
        f"{API}/users/{uid}/permissions",
        f"{API}/vms/{vm}/permissions?follow=user",
        f"{API}/vms/{vm}?follow=permissions",
        f"{API}/users?as_of={head}",
        f"{API}/users/{uid}?as_of={head}",
        f"/orrery/history/users/{uid}",
    ]
    for path in paths:
        for accept in ("application/json", "application/xml"):
            for who in (ADMIN, VM_USER):
                status, body = call(server, "GET", path, who, accept=accept)
                assert status in (200, 403, 404), (path, who[0], status, body[:300])
                assert b"$argon2" not in body, (path, who[0])
            seen = call(server, "GET", path, ADMIN, accept=accept)
            assert seen[0] == 200, (path, seen[1][:300])
            for who in (None, NOBODY):
                assert call(server, "GET", path, who, accept=accept)[0] == 401
    # The hash is there to be found: the users were added with a password.
    with server.bus.lock:
        user = server.bus.engine.find(AGGREGATE_TYPES["User"], uuid.UUID(uid))
    assert user.password_hash.startswith("$argon2id$")


# -- item 5: enrollment never touches another host's secret -------------------------------


def wait_until(fetch: Any, cond: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if cond(last):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def one_host():
    with running_hosts(1, ["--heartbeat-interval", "0.5"]) as c:
        yield c


def test_adding_a_host_with_an_existing_id_leaves_its_secret(one_host, tmp_path) -> None:
    options = {"heartbeat_timeout": 3.0, "non_responsive_after": 3.0, "reconnect_every": 0.5}
    h = one_host.hosts[0]
    with running_server(tmp_path, hostlink_options=options) as srv:
        add_people(srv)
        secrets_file = Path(tmp_path) / "host-secrets.json"
        host = ok(
            srv,
            "POST",
            f"{API}/hosts",
            {
                "name": "enrolled",
                "address": "127.0.0.1",
                "port": h.hostd_port,
                "cluster": {"name": "Default"},
                "root_password": one_host.token,
            },
        )
        hid = host["id"]
        path = f"{API}/hosts/{hid}"
        wait_until(lambda: ok(srv, "GET", path)["status"], lambda s: s == "up", "host up")
        stored = secrets_file.read_bytes()
        assert json.loads(stored) == {hid: one_host.token}

        head = srv.bus.log.head()
        thief = "not-the-hosts-secret"
        attempts = [
            # the same id under another name and port
            {"id": hid, "name": "impostor", "address": "127.0.0.1", "port": 1},
            # the same id and name
            {"id": hid, "name": "enrolled", "address": "127.0.0.2"},
            # another id, the same name
            {"id": str(uuid.uuid4()), "name": "enrolled", "address": "127.0.0.3"},
        ]
        for attempt in attempts:
            body = {**attempt, "cluster": {"name": "Default"}, "root_password": thief}
            for who, want in ((None, 401), (NOBODY, 401), (VM_USER, 403)):
                status, data = call(srv, "POST", f"{API}/hosts", who, body)
                assert status == want, (who, attempt, status, data[:300])
            status, data = call(srv, "POST", f"{API}/hosts", ADMIN, body)
            assert status in (400, 409), (attempt, status, data[:300])
            detail = json.loads(data)["detail"].lower()
            assert f"id {hid} is already in use" in detail or "name is already in use" in detail
            assert thief.encode() not in data
            assert secrets_file.read_bytes() == stored, attempt
        assert not list(Path(tmp_path).glob("host-secrets.tmp"))
        # Only refusal events were written; the thief's secret is nowhere in the log.
        raw = b"".join(n.state for n in srv.bus.log.read_raw(0, 100_000))
        assert thief.encode() not in raw and one_host.token.encode() not in raw
        assert all(ev.originator_id != uuid.UUID(hid) for _, ev in srv.bus.log.read(head, 1000))

        # The stored secret still opens the host's hostd ...
        async def hello() -> None:
            client = await P.HostClient.connect(
                "127.0.0.1",
                h.hostd_port,
                token=json.loads(secrets_file.read_text())[hid],
                ssl=tls_of(),
            )
            await client.close()

        asyncio.run(asyncio.wait_for(hello(), 30))
        # ... and the Manager, cut off from the host, gets back in with it.
        session = srv.link.sessions[uuid.UUID(hid)]
        old = session.client
        assert old is not None
        asyncio.run_coroutine_threadsafe(old.close(), srv._loop).result(10)
        wait_until(
            lambda: (session.client, ok(srv, "GET", path)["status"]),
            lambda s: s[0] is not None and s[0] is not old and s[1] == "up",
            "the host reconnected",
        )
        assert ok(srv, "GET", path)["status"] == "up"


def test_a_secret_that_cannot_be_stored_fails_the_installation(tmp_path) -> None:
    with running_server(tmp_path) as srv:
        add_people(srv)
        # The store writes through host-secrets.tmp: a directory there makes it fail.
        (Path(tmp_path) / "host-secrets.tmp").mkdir()
        secret = "a-secret-never-stored"
        body = {
            "name": "unstored",
            "address": "127.0.0.1",
            "port": 1,
            "cluster": {"name": "Default"},
            "root_password": secret,
        }
        for who, want in ((None, 401), (NOBODY, 401), (VM_USER, 403)):
            assert call(srv, "POST", f"{API}/hosts", who, body)[0] == want
        status, data = call(srv, "POST", f"{API}/hosts", ADMIN, body)
        assert status == 201, data[:300]
        assert secret.encode() not in data
        host = json.loads(data)
        assert host["status"] == "install_failed"
        assert "enrollment secret could not be stored" in host["status_detail"]
        assert not (Path(tmp_path) / "host-secrets.json").exists()
        raw = b"".join(n.state for n in srv.bus.log.read_raw(0, 100_000))
        assert secret.encode() not in raw
