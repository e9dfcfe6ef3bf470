"""Tags over the API (issue 16): ``/tags`` with its parent hierarchy, ``/vms/{id}/tags`` and
``/hosts/{id}/tags`` attaching and detaching, and the ``tag=`` search key on VMs and hosts,
through the unmodified ovirtsdk4 and raw HTTP. Tags are visible to every logged-in user;
what they are attached to only where the user sees the object. As anonymous, as a user
without permission, as a UserRole user on one VM and as the superuser."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import ovirtsdk4 as sdk
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
    libvirt_version="9.0",
    kvm=True,
    networks=("ovirtmgmt",),
)


def _vm(s: Any, name: str) -> Any:
    return s.vms_service().add(
        types.Vm(
            name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank")
        )
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Any:
    with running_server(tmp_path_factory.mktemp("tags")) as srv:
        c = connection(srv)
        s = c.system_service()
        host = s.hosts_service().add(
            types.Host(
                name="h1",
                address="10.0.0.1",
                cluster=types.Cluster(name="Default"),
                root_password="unused",
            )
        )
        hid = UUID(host.id)
        srv.bus.execute(COMMAND_TYPES["ReportHostInstalled"](host_id=hid, success=True))
        srv.bus.execute(COMMAND_TYPES["ReportHostCapabilities"](host_id=hid, **CAPS))
        v1, v2 = _vm(s, "v1"), _vm(s, "v2")
        alice = s.users_service().add(
            types.User(user_name="alice", domain=types.Domain(name="internal"), password="pw-a")
        )
        s.users_service().add(
            types.User(user_name="bob", domain=types.Domain(name="internal"), password="pw-a")
        )
        s.vms_service().vm_service(v1.id).permissions_service().add(
            types.Permission(role=types.Role(name="UserRole"), user=types.User(id=alice.id))
        )
        try:
            yield {"srv": srv, "s": s, "host": host, "v1": v1, "v2": v2}
        finally:
            c.close()


def _names(items: list[Any]) -> set[str]:
    return {i.name for i in items}


def test_tag_hierarchy_add_update_remove(world):
    tags = world["s"].tags_service()
    env = tags.add(types.Tag(name="env", description="environments"))
    prod = tags.add(types.Tag(name="prod", parent=types.Tag(name="env")))
    assert prod.parent.id == env.id
    other = tags.add(types.Tag(name="other"))
    got = tags.tag_service(prod.id).get()
    assert (got.name, got.parent.id) == ("prod", env.id)
    tags.tag_service(prod.id).update(types.Tag(name="production", parent=types.Tag(id=other.id)))
    got = tags.tag_service(prod.id).get()
    assert (got.name, got.parent.id) == ("production", other.id)
    with pytest.raises(sdk.Error) as e:  # a tag cannot become its own ancestor
        tags.tag_service(other.id).update(types.Tag(parent=types.Tag(id=prod.id)))
    assert "own ancestor" in str(e.value)
    with pytest.raises(sdk.Error) as e:
        tags.add(types.Tag(name="env"))
    assert e.value.code == 409
    tags.tag_service(other.id).remove()  # takes its sub-tag with it
    assert {"env", "other", "production"} & _names(tags.list()) == {"env"}
    tags.tag_service(env.id).remove()


def test_tags_attach_to_vms_and_hosts_and_are_searched_by_tag(world):
    s, v1, v2, host = world["s"], world["v1"], world["v2"], world["host"]
    s.tags_service().add(types.Tag(name="web"))
    vm_tags = s.vms_service().vm_service(v1.id).tags_service()
    web = vm_tags.add(types.Tag(name="web"))
    host_tags = s.hosts_service().host_service(host.id).tags_service()
    host_tags.add(types.Tag(id=web.id))
    assert _names(vm_tags.list()) == {"web"}
    assert _names(host_tags.list()) == {"web"}
    assert s.vms_service().vm_service(v2.id).tags_service().list() == []
    assert _names(s.vms_service().list(search="tag=web")) == {"v1"}
    assert _names(s.hosts_service().list(search="tag=web")) == {"h1"}
    assert _names(s.vms_service().list(search="tag=w*")) == {"v1"}
    with pytest.raises(sdk.Error) as e:
        vm_tags.add(types.Tag(name="web"))
    assert "already attached" in str(e.value)
    vm_tags.tag_service(web.id).remove()
    assert vm_tags.list() == []
    assert s.vms_service().list(search="tag=web") == []
    assert _names(s.tags_service().list()) >= {"web"}  # detaching keeps the tag
    host_tags.tag_service(web.id).remove()
    assert s.hosts_service().list(search="tag=web") == []


def _as(world: Any, method: str, path: str, user: str | None, body: bytes | None = None) -> Any:
    return http(world["srv"], method, API + path, body, user=user, password="pw-a", headers=XML)


def test_tags_as_each_kind_of_user(world):
    s, v1, v2, host = world["s"], world["v1"], world["v2"], world["host"]
    blue = s.tags_service().add(types.Tag(name="blue"))
    s.vms_service().vm_service(v1.id).tags_service().add(types.Tag(id=blue.id))
    s.vms_service().vm_service(v2.id).tags_service().add(types.Tag(id=blue.id))
    s.hosts_service().host_service(host.id).tags_service().add(types.Tag(id=blue.id))
    tag_xml = b'<tag id="%s"/>' % blue.id.encode()
    for user in (None, "bob@internal"):  # anonymous; no permission at all cannot log in
        for method, path, body in (
            ("GET", "/tags", None),
            ("GET", f"/vms/{v1.id}/tags", None),
            ("POST", f"/vms/{v1.id}/tags", tag_xml),
            ("DELETE", f"/vms/{v1.id}/tags/{blue.id}", None),
        ):
            status, _, out = _as(world, method, path, user, body)
            assert status == 401, (user, path, out)
            assert b"blue" not in out
    # UserRole on v1: sees every tag, the tags of v1, nothing of v2 or the host
    status, _, out = _as(world, "GET", "/tags", "alice@internal")
    assert status == 200 and b"<name>blue</name>" in out, out
    status, _, out = _as(world, "GET", f"/tags/{blue.id}", "alice@internal")
    assert status == 200 and b"<name>blue</name>" in out, out
    status, _, out = _as(world, "GET", f"/vms/{v1.id}/tags", "alice@internal")
    assert status == 200 and b"<name>blue</name>" in out, out
    for path in (f"/vms/{v2.id}/tags", f"/hosts/{host.id}/tags"):
        status, _, out = _as(world, "GET", path, "alice@internal")
        assert status == 404 and b"blue" not in out, (path, out)
    status, _, out = _as(world, "GET", "/vms?search=tag%3Dblue", "alice@internal")
    assert status == 200 and b"<name>v1</name>" in out and b"<name>v2</name>" not in out, out
    # ... and may not attach, detach or manage tags
    status, _, out = _as(world, "DELETE", f"/vms/{v1.id}/tags/{blue.id}", "alice@internal")
    assert status == 403, out
    status, _, out = _as(world, "POST", "/tags", "alice@internal", b"<tag><name>x</name></tag>")
    assert status == 403, out
    status, _, out = _as(world, "DELETE", f"/tags/{blue.id}", "alice@internal")
    assert status == 403, out
    assert _names(s.vms_service().vm_service(v1.id).tags_service().list()) == {"blue"}
    assert "x" not in _names(s.tags_service().list())
    # the superuser sees it all
    status, _, out = _as(world, "GET", f"/hosts/{host.id}/tags", None)
    assert status == 401
    assert _names(s.hosts_service().host_service(host.id).tags_service().list()) == {"blue"}
