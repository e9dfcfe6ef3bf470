"""The unmodified ovirtsdk4 4.6.3 client against a real Orrery server on loopback."""

from __future__ import annotations

import json
import urllib.request

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import ADMIN_PASSWORD, connection, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("api")) as srv:
        yield srv


@pytest.fixture
def conn(server):
    c = connection(server)
    yield c
    c.close()


def test_connection_test_and_root(conn):
    assert conn.test(raise_exception=True) is True
    api = conn.system_service().get()
    assert api.product_info.name == "Orrery"
    assert api.product_info.version.major == 4
    assert api.special_objects.blank_template.id == "00000000-0000-0000-0000-000000000000"
    assert api.summary.hosts.total is not None
    assert api.authenticated_user is not None


def test_first_start_objects(conn):
    system = conn.system_service()
    assert "Default" in [d.name for d in system.data_centers_service().list()]
    assert "Default" in [c.name for c in system.clusters_service().list()]
    blank = (
        system.templates_service().template_service("00000000-0000-0000-0000-000000000000").get()
    )
    assert blank.name == "Blank"
    assert [u.user_name for u in system.users_service().list()] == ["admin@internal"]


def test_add_search_follow_and_remove_data_center_and_cluster(conn):
    system = conn.system_service()
    dcs = system.data_centers_service()
    dc = dcs.add(
        types.DataCenter(name="e2e-dc", local=False, version=types.Version(major=4, minor=7))
    )
    assert dc.id and dc.name == "e2e-dc"
    assert (dc.version.major, dc.version.minor) == (4, 7)
    assert dc.status == types.DataCenterStatus.UNINITIALIZED
    assert [d.name for d in dcs.list(search="name=e2e-*")] == ["e2e-dc"]
    assert [d.name for d in dcs.list(search='name="e2e-dc"')] == ["e2e-dc"]
    assert dcs.list(search="name=nothing-like-this") == []
    assert len(dcs.list(max=1)) == 1

    clusters = system.clusters_service()
    cl = clusters.add(
        types.Cluster(
            name="e2e-cl",
            data_center=types.DataCenter(name="e2e-dc"),
            cpu=types.Cpu(type="Intel Nehalem Family"),
        )
    )
    assert cl.data_center.id == dc.id
    assert cl.cpu.type == "Intel Nehalem Family"
    assert conn.follow_link(cl.data_center).name == "e2e-dc"
    found = clusters.list(search="name=e2e-cl and datacenter=e2e-dc")
    assert [c.id for c in found] == [cl.id]
    assert [c.name for c in dcs.data_center_service(dc.id).clusters_service().list()] == ["e2e-cl"]

    # A rule violation: 409 with oVirt's detail.
    with pytest.raises(sdk.Error) as err:
        dcs.data_center_service(dc.id).remove()
    assert err.value.code == 409
    assert "Cannot remove Data Center. The Data Center contains Clusters." in str(err.value)
    assert err.value.fault.reason == "Operation Failed"

    updated = dcs.data_center_service(dc.id).update(types.DataCenter(description="changed"))
    assert updated.description == "changed"
    assert dcs.data_center_service(dc.id).get().description == "changed"


def test_remove_data_center(conn):
    dcs = conn.system_service().data_centers_service()
    dc = dcs.add(types.DataCenter(name="e2e-gone", local=False))
    dcs.data_center_service(dc.id).remove()
    with pytest.raises(sdk.NotFoundError):
        dcs.data_center_service(dc.id).get()


def test_missing_object_is_not_found(conn):
    svc = (
        conn.system_service()
        .data_centers_service()
        .data_center_service("00000000-0000-0000-0000-0000000000ff")
    )
    with pytest.raises(sdk.NotFoundError) as err:
        svc.get()
    assert err.value.code == 404


def test_duplicate_name_is_409(conn):
    dcs = conn.system_service().data_centers_service()
    with pytest.raises(sdk.Error) as err:
        dcs.add(types.DataCenter(name="Default", local=False))
    assert err.value.code == 409
    assert "name is already in use" in str(err.value)


def test_invalid_input_names_the_field(conn):
    dcs = conn.system_service().data_centers_service()
    with pytest.raises(sdk.Error) as err:
        dcs.add(types.DataCenter(name="x" * 300, local=False))
    assert err.value.code == 400
    assert "name" in err.value.fault.detail


def test_wrong_password_raises_auth_error(server):
    c = connection(server, password="not-the-password")
    with pytest.raises(sdk.AuthError):
        c.test(raise_exception=True)
    # The failure is an event in the log.
    admin = connection(server)
    try:
        events = admin.system_service().events_service().list(max=20)
        assert any("login" in (e.description or "").lower() for e in events)
    finally:
        admin.close()


def test_events_never_empty_and_from(conn):
    events = conn.system_service().events_service()
    first = events.list(max=1)
    assert len(first) == 1
    newest = int(first[0].id)
    assert events.list(from_=newest) == []
    conn.system_service().data_centers_service().add(types.DataCenter(name="e2e-ev", local=False))
    newer = events.list(from_=newest)
    assert newer and all(int(e.id) > newest for e in newer)


def test_logout_revokes_the_token(server):
    c = connection(server)
    c.test(raise_exception=True)
    token = c.authenticate()
    c.close()  # logs out
    req = urllib.request.Request(
        server.url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 401


def test_json_mode(server):
    c = connection(server)
    token = c.authenticate()
    req = urllib.request.Request(
        server.url + "/datacenters?search=name%3DDefault",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "Version": "4"},
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        body = json.loads(resp.read())
    assert [d["name"] for d in body["data_center"]] == ["Default"]
    assert body["data_center"][0]["href"].startswith("/ovirt-engine/api/datacenters/")
    c.close()


def test_sso_token_endpoint_shapes(server):
    data = (
        "grant_type=password&scope=ovirt-app-api&username=admin%40internal"
        f"&password={ADMIN_PASSWORD}"
    )
    req = urllib.request.Request(
        server.url.replace("/api", "/sso/oauth/token"),
        data=data.encode(),
        headers={"Accept": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        body = json.loads(resp.read())
    assert body["token_type"] == "bearer" and body["access_token"] and body["exp"]
    bad = urllib.request.Request(
        server.url.replace("/api", "/sso/oauth/token"),
        data=b"grant_type=password&scope=ovirt-app-api&username=admin%40internal&password=x",
        headers={"Accept": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad)
    body = json.loads(err.value.read())
    assert body["error_code"] == "access_denied" and body["error"]
