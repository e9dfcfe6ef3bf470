"""/events over real HTTP when the event feed is filled after start (api.feed): the same
pages, in the same order, for every kind of user as the feed the Manager built while it
ran; the entries the read side's describe() gives for the whole log; and while the feed
is still filling, the API answers and /events gives a 503 naming the feed, never a part.

Users: anonymous, a user with no permission (who therefore cannot log in), a UserRole
user on one VM (alice) and the superuser (admin@internal)."""

from __future__ import annotations

import json
from typing import Any

import ovirtsdk4.types as types
import pytest

import api.feed as api_feed
from api.feed import Feed
from domain.engine import Engine
from projections import feed as read_feed
from projections.runner import Change
from tests.conftest import drop_pg_schema, new_pg_schema
from tests.e2e.api_server import ADMIN_PASSWORD, connection, http, running_server

pytestmark = pytest.mark.e2e

API = "/ovirt-engine/api"
USERS = {  # those who can log in (a failed login counts against the address)
    "alice": ("alice@internal", "pw-alice"),
    "admin": ("admin@internal", ADMIN_PASSWORD),
}
PAGES = ["/events", "/events?max=5", "/events?from=3", "/events?search=severity%3Enormal"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = new_pg_schema("t_feedfill_")
    try:
        with running_server(tmp_path_factory.mktemp("feedfill"), database_url=url) as srv:
            admin = connection(srv)
            system = admin.system_service()
            users = system.users_service()
            ids = {}
            for name in ("alice", "nop"):
                u = users.add(
                    types.User(
                        user_name=name, domain=types.Domain(name="internal"), password=f"pw-{name}"
                    )
                )
                ids[name] = u.id
            vms = system.vms_service()
            for name in ("ff-a", "ff-b"):
                vm = vms.add(
                    types.Vm(
                        name=name,
                        cluster=types.Cluster(name="Default"),
                        template=types.Template(name="Blank"),
                    )
                )
                vms.vm_service(vm.id).update(types.Vm(description=f"{name} here"))
                if name == "ff-a":
                    perms = vms.vm_service(vm.id).permissions_service()
                    perms.add(
                        types.Permission(
                            role=types.Role(name="UserRole"), user=types.User(id=ids["alice"])
                        )
                    )
            admin.close()
            yield srv
    finally:
        drop_pg_schema(url)


def _answers(srv: Any) -> dict[tuple[str, str], tuple[int, Any]]:
    out = {}
    for who, (user, pw) in USERS.items():
        for page in PAGES:
            status, _, body = http(
                srv,
                "GET",
                API + page,
                user=user,
                password=pw,
                headers={"Accept": "application/json"},
            )
            out[who, page] = (status, json.loads(body) if body else None)
    return out


def test_pages_after_a_refill_equal_the_running_feeds_for_every_user(server) -> None:
    assert http(server, "GET", API + "/events", user=None)[0] == 401
    nop = http(
        server, "GET", API + "/events", user="nop@internal", password="pw-nop", source="127.0.0.3"
    )
    assert nop[0] == 401  # no permission: no login
    live = _answers(server)
    admin = [int(e["id"]) for e in live["admin", "/events"][1]["event"]]
    alice = [int(e["id"]) for e in live["alice", "/events"][1]["event"]]
    assert admin == list(range(server.bus.log.head(), 0, -1))
    assert alice and set(alice) < set(admin)  # filtered, not empty
    server.api.feed = Feed(server.bus)  # what a restarted Manager fills after start
    assert server.api.feed.ready.wait(60)
    assert _answers(server) == live


def test_admins_events_are_the_whole_log_described_from_position_0(server) -> None:
    _, _, body = http(server, "GET", API + "/events", headers={"Accept": "application/json"})
    got = {int(e["id"]): e for e in json.loads(body)["event"]}
    engine = Engine()
    compared = 0
    for nid, ev in server.bus.log.iter_all(0):
        before = engine.objects.get(ev.originator_id)
        engine.apply(ev)
        engine.position = nid
        d = read_feed.describe(
            Change(nid, ev, before, engine.objects.get(ev.originator_id)), engine
        )
        if d is not None:
            e = got[nid]
            assert (e["description"], e["severity"], e["code"]) == (
                d["description"],
                d["severity"],
                d["code"],
            )
            compared += 1
    assert compared > 10


def test_while_the_feed_fills_the_api_answers_and_events_say_what_they_wait_for(
    server, monkeypatch
) -> None:
    live = _answers(server)
    monkeypatch.setattr(api_feed, "READY_WAIT", 0.2)
    held = Feed(server.bus, fill=False)  # a fill that has not got anywhere yet
    server.api.feed = held
    status, _, _ = http(server, "GET", API + "/datacenters", headers={"Accept": "application/json"})
    assert status == 200
    assert http(server, "GET", API + "/events", user=None)[0] == 401  # authentication first
    nop = http(
        server, "GET", API + "/events", user="nop@internal", password="pw-nop", source="127.0.0.3"
    )
    assert nop[0] == 401
    for who in ("alice", "admin"):
        user, pw = USERS[who]
        for page in [*PAGES, "/events/1"]:
            status, _, body = http(
                server,
                "GET",
                API + page,
                user=user,
                password=pw,
                headers={"Accept": "application/json"},
            )
            assert status == 503, (who, page, body[:200])
            assert b"event feed is still reading" in body
    status, _, body = http(server, "GET", "/orrery/events/stream?from=1")  # no stream begun
    assert status == 503 and b"event feed is still reading" in body
    held.start_fill()
    assert held.ready.wait(60)
    assert _answers(server) == live
