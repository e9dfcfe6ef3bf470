"""Request fields the collection tables read but no command carried (issue 16): each is now
carried out, with its effect visible through the API, or refused with a 400 fault naming
it and nothing applied. Over real HTTP as the superuser, and as a UserRole user (403)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import ovirtsdk4.types as types
import pytest

from commands.messages import COMMAND_TYPES
from tests.e2e.api_server import connection, http, running_server

pytestmark = pytest.mark.e2e

API = "/ovirt-engine/api"
XML = {"Content-Type": "application/xml"}
CAPS = dict(
    cpu_model="Intel",
    cpu_cores=4,
    memory_total=16 << 30,
    cpu_sockets=1,
    libvirt_version="9.0",
    qemu_version="8.0",
    kvm=True,
    os_version="Debian 12",
    networks=("ovirtmgmt",),
)


def _run(srv: Any, name: str, **kw: Any) -> Any:
    return srv.bus.execute(COMMAND_TYPES[name](**kw))


def _add_host(s: Any, name: str, address: str) -> Any:
    return s.hosts_service().add(
        types.Host(
            name=name,
            address=address,
            cluster=types.Cluster(name="Default"),
            root_password="unused",
        )
    )


def _up_host(srv: Any, s: Any, name: str, address: str) -> Any:
    host = _add_host(s, name, address)
    hid = UUID(host.id)
    _run(srv, "ReportHostInstalled", host_id=hid, success=True)
    _run(srv, "ReportHostCapabilities", host_id=hid, hardware_uuid=f"hw-{name}", **CAPS)
    return s.hosts_service().host_service(host.id).get()


def _nfs(s: Any, name: str, path: str) -> Any:
    return s.storage_domains_service().add(
        types.StorageDomain(
            name=name,
            type=types.StorageDomainType.DATA,
            host=types.Host(name="h1"),
            storage=types.HostStorage(type=types.StorageType.NFS, address="10.0.0.1", path=path),
        )
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("dropped")) as srv:
        c = connection(srv)
        s = c.system_service()
        h1 = _up_host(srv, s, "h1", "127.0.0.1")
        sd = _nfs(s, "data1", "/d1")
        dc = s.data_centers_service().list(search="name=Default")[0]
        dcs = s.data_centers_service().data_center_service(dc.id).storage_domains_service()
        assert dcs.add(types.StorageDomain(id=sd.id)).status == types.StorageDomainStatus.ACTIVE
        other = s.data_centers_service().add(types.DataCenter(name="other", local=False))
        alice = s.users_service().add(
            types.User(user_name="alice", domain=types.Domain(name="internal"), password="pw-a")
        )
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
        yield {"srv": srv, "s": s, "h1": h1, "sd": sd, "dc": dc, "other": other}
        c.close()


def _fault(status: int, body: bytes, code: int, field: str) -> None:
    assert status == code, body
    assert b"<fault>" in body and field.encode() in body, body


def _get(srv: Any, path: str) -> bytes:
    status, _, body = http(srv, "GET", API + path)
    assert status == 200, body
    return body


# -- hosts ----------------------------------------------------------------------------------
HOST_XML = (
    b"<host><name>%s</name><address>%s</address><cluster><name>Default</name></cluster>"
    b"<root_password>unused</root_password></host>"
)


def test_add_host_activate_false_is_refused_and_adds_nothing(world):
    srv = world["srv"]
    status, _, body = http(
        srv,
        "POST",
        API + "/hosts?activate=false",
        HOST_XML % (b"h-noact", b"10.9.0.1"),
        headers=XML,
    )
    _fault(status, body, 400, "activate")
    assert b"h-noact" not in _get(srv, "/hosts")
    status, _, body = http(
        srv, "POST", API + "/hosts?activate=true", HOST_XML % (b"h-act", b"10.9.0.2"), headers=XML
    )
    assert status in (200, 201), body
    assert b"<status>installing</status>" in body


def test_remove_host_force_is_refused_and_the_host_stays(world):
    srv, s = world["srv"], world["s"]
    host = _add_host(s, "h-gone", "10.9.0.3")
    _run(srv, "ReportHostInstalled", host_id=UUID(host.id), success=False)
    status, _, body = http(srv, "DELETE", f"{API}/hosts/{host.id}?force=true")
    _fault(status, body, 400, "force")
    assert b"h-gone" in _get(srv, f"/hosts/{host.id}")
    status, _, body = http(srv, "DELETE", f"{API}/hosts/{host.id}?force=false")
    assert status == 200, body
    assert http(srv, "GET", f"{API}/hosts/{host.id}")[0] == 404


def test_deactivate_host_reason_is_the_status_detail(world):
    srv, s = world["srv"], world["s"]
    host = _up_host(srv, s, "h-maint", "10.9.0.4")
    act = b"<action><reason>kernel upgrade</reason></action>"
    status, _, body = http(srv, "POST", f"{API}/hosts/{host.id}/deactivate", act, headers=XML)
    assert status == 200, body
    shown = _get(srv, f"/hosts/{host.id}")
    assert b"<status>maintenance</status>" in shown
    assert b"<status_detail>kernel upgrade</status_detail>" in shown
    events = _get(srv, "/events")
    assert (
        b"h-maint was switched to Maintenance mode by admin@internal (reason: kernel upgrade)"
        in events
    )


def test_a_userrole_user_cannot_deactivate_a_host_with_a_reason(world):
    srv, h1 = world["srv"], world["h1"]
    act = b"<action><reason>mine</reason></action>"
    status, _, body = http(
        srv,
        "POST",
        f"{API}/hosts/{h1.id}/deactivate",
        act,
        user="alice@internal",
        password="pw-a",
        headers=XML,
    )
    assert status == 403, body
    assert b"<status>up</status>" in _get(srv, f"/hosts/{h1.id}")


# -- storage domains in a data center -------------------------------------------------------
def _in_dc(dc_id: str, sd_id: str, verb: str = "") -> str:
    return f"{API}/datacenters/{dc_id}/storagedomains/{sd_id}" + (f"/{verb}" if verb else "")


def test_a_data_center_path_names_the_domains_own_data_center(world):
    srv, sd, dc, other = world["srv"], world["sd"], world["dc"], world["other"]
    for verb in ("deactivate", "activate"):
        status, _, body = http(
            srv, "POST", _in_dc(other.id, sd.id, verb), b"<action/>", headers=XML
        )
        assert status == 404, (verb, body)
        assert b"<status>active</status>" in _get(srv, f"/storagedomains/{sd.id}")
    status, _, body = http(srv, "DELETE", _in_dc(other.id, sd.id))
    assert status == 404, body
    assert f'id="{dc.id}"'.encode() in _get(srv, f"/storagedomains/{sd.id}")


def test_force_on_deactivate_and_detach_is_refused(world):
    srv, s, dc = world["srv"], world["s"], world["dc"]
    sd2 = _nfs(s, "data2", "/d2")
    dcs = s.data_centers_service().data_center_service(dc.id).storage_domains_service()
    dcs.add(types.StorageDomain(id=sd2.id))
    act = b"<action><force>true</force></action>"
    status, _, body = http(srv, "POST", _in_dc(dc.id, sd2.id, "deactivate"), act, headers=XML)
    _fault(status, body, 400, "force")
    assert b"<status>active</status>" in _get(srv, _in_dc(dc.id, sd2.id)[len(API) :])
    act = b"<action><force>false</force></action>"
    status, _, body = http(srv, "POST", _in_dc(dc.id, sd2.id, "deactivate"), act, headers=XML)
    assert status == 200, body
    status, _, body = http(srv, "DELETE", _in_dc(dc.id, sd2.id) + "?force=true")
    _fault(status, body, 400, "force")
    assert f'id="{dc.id}"'.encode() in _get(srv, f"/storagedomains/{sd2.id}")
    status, _, body = http(srv, "DELETE", _in_dc(dc.id, sd2.id))
    assert status == 200, body
    assert b"<status>unattached</status>" in _get(srv, f"/storagedomains/{sd2.id}")


def test_remove_storage_domain_needs_the_named_host_up(world):
    srv, s = world["srv"], world["s"]
    sd3 = _nfs(s, "data3", "/d3")
    _add_host(s, "h-inst", "10.9.0.5")  # installing: not up
    status, _, body = http(srv, "DELETE", f"{API}/storagedomains/{sd3.id}?host=h-inst")
    assert status == 409, body
    assert b"h-inst" in body
    assert b"data3" in _get(srv, f"/storagedomains/{sd3.id}")
    status, _, body = http(srv, "DELETE", f"{API}/storagedomains/{sd3.id}?host={world['h1'].id}")
    assert status == 200, body
    assert http(srv, "GET", f"{API}/storagedomains/{sd3.id}")[0] == 404


def test_a_userrole_user_cannot_deactivate_a_storage_domain(world):
    srv, sd, dc = world["srv"], world["sd"], world["dc"]
    status, _, body = http(
        srv,
        "POST",
        _in_dc(dc.id, sd.id, "deactivate"),
        b"<action/>",
        user="alice@internal",
        password="pw-a",
        headers=XML,
    )
    assert status == 403, body
    assert b"<status>active</status>" in _get(srv, f"/storagedomains/{sd.id}")


# -- users ----------------------------------------------------------------------------------
def test_add_user_domain_other_than_the_names_is_refused(world):
    srv = world["srv"]
    user = b"<user><user_name>%s</user_name><domain><name>%s</name></domain></user>"
    status, _, body = http(
        srv, "POST", API + "/users", user % (b"carol@internal", b"elsewhere"), headers=XML
    )
    _fault(status, body, 400, "domain")
    assert b"carol" not in _get(srv, "/users")
    status, _, body = http(srv, "POST", API + "/users", user % (b"dave", b"internal"), headers=XML)
    assert status in (200, 201), body
    assert b"<user_name>dave@internal</user_name>" in body
