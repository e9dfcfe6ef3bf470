"""Permissions through the API, and Orrery's extensions: the live event stream, per-object
history with diffs, as-of reads, the OpenAPI document."""

from __future__ import annotations

import json
import threading
import urllib.request

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import connection, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("ext")) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server):
    c = connection(server)
    yield c
    c.close()


def _get(server, path, token, accept="application/json"):
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        headers={"Authorization": f"Bearer {token}", "Accept": accept},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def test_user_sees_only_what_it_holds_and_is_refused_the_rest(server, admin):
    system = admin.system_service()
    users = system.users_service()
    user = users.add(
        types.User(user_name="alice", domain=types.Domain(name="internal"), password="pw-alice")
    )
    assert user.user_name == "alice@internal"
    # No permission yet: no login.
    with pytest.raises(sdk.AuthError):
        connection(server, "alice@internal", "pw-alice").test(raise_exception=True)

    vms = system.vms_service()
    mine = vms.add(
        types.Vm(
            name="alice-vm",
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
        )
    )
    vms.add(
        types.Vm(
            name="other-vm",
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
        )
    )
    perm = (
        vms.vm_service(mine.id)
        .permissions_service()
        .add(types.Permission(role=types.Role(name="UserRole"), user=types.User(id=user.id)))
    )
    assert perm.role.id and perm.user.id == user.id
    assert any(p.id == perm.id for p in vms.vm_service(mine.id).permissions_service().list())

    alice = connection(server, "alice@internal", "pw-alice")
    try:
        assert alice.test(raise_exception=True)
        seen = [v.name for v in alice.system_service().vms_service().list()]
        assert seen == ["alice-vm"]
        # The audit feed shows alice events about her VM, none about the other one.
        admin_texts = [e.description for e in system.events_service().list(max=500)]
        assert any("other-vm" in t for t in admin_texts)
        texts = [e.description for e in alice.system_service().events_service().list(max=500)]
        assert any("alice-vm" in t for t in texts), texts
        assert not any("other-vm" in t for t in texts), texts
        head = server.bus.log.head()
        dc = admin.system_service().data_centers_service().list(search="name=Default")[0]
        with pytest.raises(sdk.AuthError) as err:
            alice.system_service().data_centers_service().data_center_service(dc.id).update(
                types.DataCenter(description="mine now")
            )
        assert err.value.code == 403
        assert server.bus.log.head() > head  # the refusal is an event
        topics = [type(e).__name__ for _, e in server.bus.log.read(head, 10)]
        assert any("Denied" in t for t in topics), topics
    finally:
        alice.close()


def test_history_with_diffs(server, admin):
    dcs = admin.system_service().data_centers_service()
    dc = dcs.add(types.DataCenter(name="hist-dc", local=False))
    dcs.data_center_service(dc.id).update(types.DataCenter(description="second"))
    token = admin.authenticate()
    _, body = _get(server, f"/orrery/history/datacenters/{dc.id}", token)
    hist = json.loads(body)["history"]
    assert hist[0]["event"] == "DataCenterAdded"
    assert hist[0]["actor"] == "admin@internal"
    assert hist[-1]["diff"]["description"] == ["", "second"]


def test_as_of_reads_the_past(server, admin):
    dcs = admin.system_service().data_centers_service()
    before = server.bus.log.head()
    dc = dcs.add(types.DataCenter(name="asof-dc", local=False))
    dcs.data_center_service(dc.id).update(types.DataCenter(description="later"))
    token = admin.authenticate()
    _, body = _get(server, f"/ovirt-engine/api/datacenters?as_of={before}", token)
    names = [d["name"] for d in json.loads(body)["data_center"]]
    assert "asof-dc" not in names and "Default" in names
    _, body = _get(server, f"/ovirt-engine/api/datacenters/{dc.id}?as_of={before + 1}", token)
    assert json.loads(body)["description"] == ""
    _, body = _get(server, f"/ovirt-engine/api/datacenters/{dc.id}", token)
    assert json.loads(body)["description"] == "later"


def test_event_stream_delivers_new_events(server, admin):
    token = admin.authenticate()
    got: list[dict] = []
    ready = threading.Event()

    def listen():
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/orrery/events/stream",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            for raw in resp:
                line = raw.decode().strip()
                if line == ": connected":
                    ready.set()
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    if any("stream-dc" in e.get("description", "") for e in got):
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    admin.system_service().data_centers_service().add(
        types.DataCenter(name="stream-dc", local=False)
    )
    t.join(15)
    assert any("stream-dc" in e["description"] for e in got)
    assert all(int(e["id"]) > 0 for e in got)


def test_openapi_document(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/orrery/openapi.json") as r:
        doc = json.loads(r.read())
    assert doc["openapi"].startswith("3.")
    assert "/orrery/events/stream" in doc["paths"]
    assert "/orrery/history/{collection}/{id}" in doc["paths"]


def test_unauthenticated_requests_are_refused(server):
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/ovirt-engine/api/vms")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 401
    assert b"<fault>" in err.value.read()
