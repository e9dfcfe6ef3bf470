"""Host actions that used to answer "complete" and do nothing (issue 16): ``refresh`` asks
the host link to read the host's capabilities again (GetCapabilities over the real hostd)
and reports the outcome as oVirt's event 606/607; ``upgradecheck`` is refused with a 409
fault saying why (Orrery hosts have no package upgrade channel). As anonymous, as a user
without permission, as a UserRole user on one VM (all refused) and as the superuser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import connection, http, running_server
from tests.integration.hostd_fixtures import running_hosts

pytestmark = pytest.mark.e2e

API = "/ovirt-engine/api"
XML = {"Content-Type": "application/xml"}


def _wait(fetch: Any, ok: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if ok(last):
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    with running_hosts(1, ["--heartbeat-interval", "0.5"]) as hosts:
        uris: dict[UUID, str] = {}
        options = {"heartbeat_timeout": 3.0, "reconnect_every": 0.5, "libvirt_uris": uris}
        with running_server(tmp_path_factory.mktemp("hostact"), hostlink_options=options) as srv:
            c = connection(srv)
            s = c.system_service()
            h = hosts.hosts[0]
            added = s.hosts_service().add(
                types.Host(
                    name=h.name,
                    address="127.0.0.1",
                    port=h.hostd_port,
                    root_password=hosts.token,
                    cluster=types.Cluster(name="Default"),
                )
            )
            uris[UUID(added.id)] = h.uri
            hs = s.hosts_service().host_service(added.id)
            _wait(hs.get, lambda x: x.status == types.HostStatus.UP, "host up")
            users = {
                name: s.users_service().add(
                    types.User(
                        user_name=name, domain=types.Domain(name="internal"), password="pw-a"
                    )
                )
                for name in ("bob", "alice")
            }
            alice = users["alice"]
            vm = s.vms_service().add(
                types.Vm(
                    name="v1",
                    cluster=types.Cluster(name="Default"),
                    template=types.Template(name="Blank"),
                )
            )
            s.vms_service().vm_service(vm.id).permissions_service().add(
                types.Permission(role=types.Role(name="UserRole"), user=types.User(id=alice.id))
            )
            try:
                yield {"srv": srv, "s": s, "host": added, "hs": hs, "name": h.name}
            finally:
                c.close()


def _events(s: Any, code: int) -> list[Any]:
    return [e for e in s.events_service().list(max=500) if e.code == code]


@pytest.mark.parametrize(
    # a user with no permission at all cannot log in (oVirt's rule), hence 401
    ("user", "status"),
    [(None, 401), ("bob@internal", 401), ("alice@internal", 404)],
)
@pytest.mark.parametrize("action", ["refresh", "upgradecheck"])
def test_host_actions_are_refused_to_users_without_the_host(world, user, status, action):
    srv, hid = world["srv"], world["host"].id
    before = len(_events(world["s"], 606)) + len(_events(world["s"], 607))
    got, _, body = http(
        srv,
        "POST",
        f"{API}/hosts/{hid}/{action}",
        b"<action/>",
        user=user,
        password="pw-a",
        headers=XML,
    )
    assert got in (status, 403), body
    assert b"complete" not in body
    time.sleep(0.5)
    assert len(_events(world["s"], 606)) + len(_events(world["s"], 607)) == before


def test_refresh_rereads_the_capabilities_from_the_host(world):
    s, hs, name = world["s"], world["hs"], world["name"]
    assert _events(s, 606) == []
    hs.refresh()
    ev = _wait(lambda: _events(s, 606), bool, "event 606")
    assert ev[0].description == f"Successfully refreshed the capabilities of host {name}."
    assert ev[0].host.id == world["host"].id
    assert _events(s, 607) == []
    assert hs.get().status == types.HostStatus.UP


def test_refresh_of_a_host_in_maintenance_is_refused(world):
    s, hs = world["s"], world["hs"]
    hs.deactivate()
    _wait(hs.get, lambda x: x.status == types.HostStatus.MAINTENANCE, "maintenance")
    n = len(_events(s, 606))
    try:
        with pytest.raises(sdk.Error) as e:
            hs.refresh()
        assert "Host status must be Up or NonOperational" in str(e.value)
        assert e.value.code == 409
        time.sleep(0.5)
        assert len(_events(s, 606)) == n
    finally:
        hs.activate()
        _wait(hs.get, lambda x: x.status == types.HostStatus.UP, "host up again")


def test_upgradecheck_says_there_is_no_upgrade_channel(world):
    srv, hid = world["srv"], world["host"].id
    status, _, body = http(
        srv, "POST", f"{API}/hosts/{hid}/upgradecheck", b"<action/>", headers=XML
    )
    assert status == 409, body
    assert b"<fault>" in body and b"no package upgrade channel" in body, body
    assert b"complete" not in body
    with pytest.raises(sdk.Error) as e:
        world["hs"].upgrade_check()
    assert "no package upgrade channel" in str(e.value)
