"""Hostile XML over real HTTP: document type declarations, entity expansion (billion
laughs) and external entities are refused in every encoding a client can send, as a 400
<fault> that says why, and nothing is written to the log."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import connection, http, running_server

pytestmark = pytest.mark.e2e

LAUGHS = (
    '<?xml version="1.0" encoding="{enc}"?>'
    '<!DOCTYPE data_center [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    "<data_center><name>bomb&d;</name></data_center>"
)
EXTERNAL = (
    '<?xml version="1.0" encoding="{enc}"?>'
    '<!DOCTYPE data_center [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<data_center><name>ext&x;</name></data_center>"
)
# An entity declared in an external DTD only: no internal subset, nothing but the DOCTYPE.
EXTERNAL_DTD = (
    '<?xml version="1.0" encoding="{enc}"?>'
    '<!DOCTYPE data_center SYSTEM "http://127.0.0.1:1/evil.dtd">'
    "<data_center><name>dtd</name></data_center>"
)

# (label, bytes encoding, encoding declared in the prolog)
ENCODINGS = [
    ("utf-8", "utf-8", "UTF-8"),
    ("utf-16 with BOM", "utf-16", "UTF-16"),
    ("utf-16le declared, no BOM", "utf-16-le", "UTF-16"),
    ("utf-16be declared, no BOM", "utf-16-be", "UTF-16"),
    ("utf-32 with BOM", "utf-32", "UTF-32"),
    ("utf-32be declared, no BOM", "utf-32-be", "UTF-32"),
    ("utf-32le declared, no BOM", "utf-32-le", "UTF-32"),
]
BODIES = [("billion laughs", LAUGHS), ("external entity", EXTERNAL), ("external DTD", EXTERNAL_DTD)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("xml")) as srv:
        c = connection(srv)
        system = c.system_service()
        user = system.users_service().add(
            types.User(user_name="xuser", domain=types.Domain(name="internal"), password="pw-x")
        )
        vm = system.vms_service().add(
            types.Vm(
                name="xml-vm",
                cluster=types.Cluster(name="Default"),
                template=types.Template(name="Blank"),
            )
        )
        system.vms_service().vm_service(vm.id).permissions_service().add(
            types.Permission(role=types.Role(name="UserRole"), user=types.User(id=user.id))
        )
        c.close()
        srv.vm_id = vm.id
        yield srv


def _fault(status: int, body: bytes) -> str:
    assert status == 400, (status, body[:300])
    root = ET.fromstring(body)
    assert root.tag == "fault", body[:300]
    return root.findtext("detail") or ""


def _written(srv, head: int) -> list[str]:
    """What was written since ``head``, less the logins (a Basic login is an event)."""
    topics = [type(e).__name__ for _, e in srv.bus.log.read(head, 100)]
    return [t for t in topics if t != "UserLoggedIn"]


def _dc_names(srv) -> list[str]:
    status, _, body = http(srv, "GET", "/ovirt-engine/api/datacenters")
    assert status == 200
    return [e.findtext("name") or "" for e in ET.fromstring(body).findall("data_center")]


@pytest.mark.parametrize("label,codec,declared", ENCODINGS, ids=[e[0] for e in ENCODINGS])
@pytest.mark.parametrize("kind,template", BODIES, ids=[b[0] for b in BODIES])
def test_hostile_xml_is_a_400_fault_in_every_encoding(
    server, kind, template, label, codec, declared
):
    body = template.format(enc=declared).encode(codec)
    head = server.bus.log.head()
    status, _, answer = http(
        server,
        "POST",
        "/ovirt-engine/api/datacenters",
        body,
        headers={"Content-Type": "application/xml"},
    )
    detail = _fault(status, answer)
    assert "document type declarations are not allowed" in detail, detail
    assert _written(server, head) == []
    assert not [n for n in _dc_names(server) if n.startswith(("bomb", "ext", "dtd"))]


@pytest.mark.parametrize("label,codec,declared", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_plain_xml_in_every_encoding_still_works(server, label, codec, declared):
    name = "enc-" + codec
    body = (
        f'<?xml version="1.0" encoding="{declared}"?>'
        f"<data_center><name>{name}</name><description>é ü ✓</description></data_center>"
    ).encode(codec)
    status, _, answer = http(
        server,
        "POST",
        "/ovirt-engine/api/datacenters",
        body,
        headers={"Content-Type": "application/xml"},
    )
    assert status == 201, answer[:300]
    root = ET.fromstring(answer)
    assert root.findtext("name") == name and root.findtext("description") == "é ü ✓"


def test_anonymous_hostile_body_is_refused_without_a_write(server):
    head = server.bus.log.head()
    status, _, _ = http(
        server,
        "POST",
        "/ovirt-engine/api/datacenters",
        LAUGHS.format(enc="UTF-16").encode("utf-16"),
        user=None,
        headers={"Content-Type": "application/xml"},
    )
    assert status == 401
    assert server.bus.log.head() == head


def test_userrole_user_hostile_action_body_is_a_400_and_the_vm_stays_down(server):
    head = server.bus.log.head()
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE action [<!ENTITY x SYSTEM "file:///etc/passwd">]><action><async>&x;</async>'
        "</action>"
    ).encode("utf-16")
    status, _, answer = http(
        server,
        "POST",
        f"/ovirt-engine/api/vms/{server.vm_id}/start",
        body,
        user="xuser@internal",
        password="pw-x",
        headers={"Content-Type": "application/xml"},
    )
    detail = _fault(status, answer)
    assert "document type declarations are not allowed" in detail
    assert _written(server, head) == []
    status, _, vm = http(server, "GET", f"/ovirt-engine/api/vms/{server.vm_id}")
    assert ET.fromstring(vm).findtext("status") == "down"
