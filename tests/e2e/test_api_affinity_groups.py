"""Affinity groups over the API (issue 16): ``/clusters/{id}/affinitygroups`` add, get,
update and remove with their VM and host rules (oVirt 4.4's ``vms_rule``/``hosts_rule``)
and their ``vms``/``hosts``, through the unmodified ovirtsdk4; what Orrery cannot carry
out (a disabled rule, affinity labels) is refused with a 400 naming the field. As
anonymous, as a user without permission, as a UserRole user on one VM and as the
superuser. (The scheduler's use of the groups is tested in tests/unit.)"""

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
    cpu_model="Intel", cpu_cores=4, memory_total=16 << 30, kvm=True, networks=("ovirtmgmt",)
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Any:
    with running_server(tmp_path_factory.mktemp("affinity")) as srv:
        c = connection(srv)
        s = c.system_service()
        hosts = []
        for i in (1, 2):
            h = s.hosts_service().add(
                types.Host(
                    name=f"h{i}",
                    address=f"10.0.0.{i}",
                    cluster=types.Cluster(name="Default"),
                    root_password="unused",
                )
            )
            hid = UUID(h.id)
            srv.bus.execute(COMMAND_TYPES["ReportHostInstalled"](host_id=hid, success=True))
            srv.bus.execute(
                COMMAND_TYPES["ReportHostCapabilities"](
                    host_id=hid, hardware_uuid=f"hw-{i}", **CAPS
                )
            )
            hosts.append(h)
        vms = [
            s.vms_service().add(
                types.Vm(
                    name=n,
                    cluster=types.Cluster(name="Default"),
                    template=types.Template(name="Blank"),
                )
            )
            for n in ("v1", "v2")
        ]
        s.users_service().add(
            types.User(user_name="bob", domain=types.Domain(name="internal"), password="pw-a")
        )
        alice = s.users_service().add(
            types.User(user_name="alice", domain=types.Domain(name="internal"), password="pw-a")
        )
        s.vms_service().vm_service(vms[0].id).permissions_service().add(
            types.Permission(role=types.Role(name="UserRole"), user=types.User(id=alice.id))
        )
        cluster = s.clusters_service().list(search="name=Default")[0]
        groups = s.clusters_service().cluster_service(cluster.id).affinity_groups_service()
        try:
            yield {"srv": srv, "s": s, "hosts": hosts, "vms": vms, "cl": cluster, "groups": groups}
        finally:
            c.close()


def test_affinity_group_add_get_update_remove(world):
    groups, (v1, v2), (h1, _) = world["groups"], world["vms"], world["hosts"]
    g = groups.add(
        types.AffinityGroup(
            name="apart",
            description="not together",
            vms_rule=types.AffinityRule(enabled=True, positive=False, enforcing=True),
            hosts_rule=types.AffinityRule(enabled=True, positive=True, enforcing=False),
            vms=[types.Vm(id=v1.id), types.Vm(name="v2")],
            hosts=[types.Host(id=h1.id)],
        )
    )
    got = groups.group_service(g.id).get()
    assert got.name == "apart" and got.description == "not together"
    assert (got.vms_rule.positive, got.vms_rule.enforcing) == (False, True)
    assert (got.hosts_rule.positive, got.hosts_rule.enforcing) == (True, False)
    assert {v.id for v in got.vms} == {v1.id, v2.id}
    assert [h.id for h in got.hosts] == [h1.id]
    assert got.cluster.id == world["cl"].id
    groups.group_service(g.id).update(
        types.AffinityGroup(
            vms_rule=types.AffinityRule(enabled=True, positive=True, enforcing=False),
            vms=[types.Vm(id=v1.id)],
        )
    )
    got = groups.group_service(g.id).get()
    assert (got.vms_rule.positive, got.vms_rule.enforcing) == (True, False)
    assert [v.id for v in got.vms] == [v1.id]
    assert [x.name for x in groups.list()] == ["apart"]
    groups.group_service(g.id).remove()
    assert groups.list() == []


def test_a_vm_outside_the_cluster_or_a_duplicate_name_is_refused(world):
    groups, (v1, _) = world["groups"], world["vms"]
    groups.add(types.AffinityGroup(name="dup", vms=[types.Vm(id=v1.id)]))
    with pytest.raises(sdk.Error) as e:
        groups.add(types.AffinityGroup(name="dup"))
    assert e.value.code == 409
    with pytest.raises(sdk.Error) as e:
        groups.add(types.AffinityGroup(name="x", vms=[types.Vm(name="no-such-vm")]))
    assert e.value.code == 404
    assert [x.name for x in groups.list()] == ["dup"]
    groups.group_service(groups.list()[0].id).remove()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"<vms_rule><enabled>false</enabled></vms_rule>", b"vms_rule.enabled"),
        (b"<hosts_rule><enabled>false</enabled></hosts_rule>", b"hosts_rule.enabled"),
        (b'<vm_labels><affinity_label id="%s"/></vm_labels>' % (b"1" * 8), b"vm_labels"),
    ],
)
def test_what_orrery_cannot_carry_out_is_a_400_naming_it(world, body, field):
    srv, cl = world["srv"], world["cl"]
    xml = b"<affinity_group><name>bad</name>" + body + b"</affinity_group>"
    status, _, out = http(srv, "POST", f"{API}/clusters/{cl.id}/affinitygroups", xml, headers=XML)
    assert status == 400, out
    assert b"<fault>" in out and field in out, out
    assert world["groups"].list() == []


def test_affinity_groups_as_each_kind_of_user(world):
    srv, cl, groups, (v1, _) = world["srv"], world["cl"], world["groups"], world["vms"]
    g = groups.add(types.AffinityGroup(name="secret", vms=[types.Vm(id=v1.id)]))
    path = f"{API}/clusters/{cl.id}/affinitygroups"
    new = b"<affinity_group><name>mine</name></affinity_group>"
    for user in (None, "bob@internal", "alice@internal"):
        for method, p, body in (
            ("GET", path, None),
            ("GET", f"{path}/{g.id}", None),
            ("POST", path, new),
            ("PUT", f"{path}/{g.id}", b"<affinity_group><name>x</name></affinity_group>"),
            ("DELETE", f"{path}/{g.id}", None),
        ):
            status, _, out = http(srv, method, p, body, user=user, password="pw-a", headers=XML)
            # anonymous and bob (no permission: cannot log in) 401; alice sees no cluster
            want = (401,) if user != "alice@internal" else (403, 404)
            assert status in want, (user, method, p, status, out)
            assert b"secret" not in out
    assert [x.name for x in groups.list()] == ["secret"]
    groups.group_service(g.id).remove()
