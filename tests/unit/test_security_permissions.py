"""Permissions: inheritance down the object hierarchy, through groups and Everyone; the
last SuperUser of admin@internal; the user-portal (filter) view; creator ownership.

Data centers, clusters and hosts are the real aggregates; VMs, pools, disks, storage
domains, networks, profiles and templates are stand-ins carrying only the contract
attribute names (docs/model.md), put straight into the engine: the walk upward must
work from those names alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import msgspec
import pytest

from commands.datacenter import AddCluster, AddDataCenter
from commands.permission import AddPermission, AddRole, RecordPermissionDenied, RemovePermission
from commands.system import InitializeSystem
from commands.user import AddGroup, AddUser, AddUserToGroup, RemoveUserFromGroup
from domain.base import AGGREGATE_TYPES, Aggregate, Ctx, DomainError, Meta, NotFound, Tx
from domain.permission import (
    Forbidden,
    Permission,
    UserPermissionDenied,
    ancestors,
    parents,
    permissions_on,
    permit_for,
    remove_object_permissions,
)
from domain.role import BUILTIN_BY_NAME
from domain.rules.access_rules import (
    Sight,
    add_permission,
    can_login,
    grant_owner,
    is_admin,
    is_permitted,
    permits_on,
    require_permit,
    visible_object_ids,
)
from domain.system import ADMIN_USER_ID, DEFAULT_CLUSTER_ID, DEFAULT_DATA_CENTER_ID
from domain.user import EVERYONE_GROUP_ID, User, find_user
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA"
ROLE = {name: spec.id for name, spec in BUILTIN_BY_NAME.items()}


class _Att(msgspec.Struct, frozen=True):
    disk_id: UUID


class FakeVm(Aggregate, frozen=True, kw_only=True):
    KIND = "vm"
    cluster_id: UUID | None = None
    pool_id: UUID | None = None
    disk_attachments: tuple[_Att, ...] = ()


class FakePool(Aggregate, frozen=True, kw_only=True):
    KIND = "vm_pool"
    cluster_id: UUID


class FakeStorageDomain(Aggregate, frozen=True, kw_only=True):
    KIND = "storage_domain"
    data_center_id: UUID | None = None


class FakeDisk(Aggregate, frozen=True, kw_only=True):
    KIND = "disk"
    storage_domain_id: UUID | None = None


class FakeNetwork(Aggregate, frozen=True, kw_only=True):
    KIND = "network"
    data_center_id: UUID


class FakeProfile(Aggregate, frozen=True, kw_only=True):
    KIND = "vnic_profile"
    network_id: UUID


class FakeTemplate(Aggregate, frozen=True, kw_only=True):
    KIND = "template"
    data_center_id: UUID | None = None
    cluster_id: UUID | None = None


# The stand-ins are registered (so kind lookups find them) only while this module's tests
# run: other modules' tests see the real aggregate registry.
_STANDINS = [FakeVm, FakePool, FakeStorageDomain, FakeDisk, FakeNetwork, FakeProfile, FakeTemplate]
for _cls in _STANDINS:
    AGGREGATE_TYPES.pop(_cls.__name__, None)


@pytest.fixture(autouse=True, scope="module")
def _standins_registered() -> Iterator[None]:
    for cls in _STANDINS:
        AGGREGATE_TYPES[cls.__name__] = cls
    yield
    for cls in _STANDINS:
        AGGREGATE_TYPES.pop(cls.__name__, None)


class Site:
    """Two data centers with clusters, hosts and stand-in objects, plus a few users."""

    def __init__(self) -> None:
        w = self.w = World()
        w.run(InitializeSystem(admin_password_hash=HASH))
        self.dc1 = DEFAULT_DATA_CENTER_ID
        self.c1 = DEFAULT_CLUSTER_ID
        self.dc2 = w.run(AddDataCenter(name="dc2"))
        self.c2 = w.run(AddCluster(name="c2", data_center_id=self.dc2))
        self.c1b = w.run(AddCluster(name="c1b", data_center_id=self.dc1))
        self.h1 = self.call(
            "domain.rules.host_rules", "add_host", name="h1", address="10.0.0.1", cluster_id=self.c1
        )
        self.h2 = self.call(
            "domain.rules.host_rules", "add_host", name="h2", address="10.0.0.2", cluster_id=self.c2
        )
        self.pool = self.put(FakePool, cluster_id=self.c1)
        self.sd1 = self.put(FakeStorageDomain, data_center_id=self.dc1)
        self.sd_loose = self.put(FakeStorageDomain)
        self.disk1 = self.put(FakeDisk, storage_domain_id=self.sd1)
        self.disk2 = self.put(FakeDisk, storage_domain_id=self.sd1)
        self.vm1 = self.put(FakeVm, cluster_id=self.c1, disk_attachments=(_Att(self.disk1),))
        self.vm2 = self.put(FakeVm, cluster_id=self.c1, pool_id=self.pool)
        self.vm3 = self.put(FakeVm, cluster_id=self.c2)
        self.vm4 = self.put(FakeVm, cluster_id=self.c1b)
        self.net = self.put(FakeNetwork, data_center_id=self.dc1)
        self.profile = self.put(FakeProfile, network_id=self.net)
        self.tpl = self.put(FakeTemplate, data_center_id=self.dc2)
        self.tpl_by_cluster = self.put(FakeTemplate, cluster_id=self.c1)
        self.alice = w.run(AddUser(user_name="alice@internal"))
        self.bob = w.run(AddUser(user_name="bob@internal"))
        self.admin = find_user(w.engine, "admin@internal").id

    def call(self, module: str, fn: str, **kw: Any) -> Any:
        import importlib

        f = getattr(importlib.import_module(module), fn)
        tx = Tx(self.w.engine, Ctx(now=self.w.now, meta=Meta()), self.w.next_id)
        out = f(tx, **kw)
        self.w.engine.apply_all(tx.events)
        self.w.log.extend(tx.events)
        return out

    def put(self, cls: type[Aggregate], **fields: Any) -> UUID:
        oid = self.w.next_id()
        self.w.engine.restore(oid, cls(id=oid, version=1, **fields), None)
        return oid

    def grant(self, role: str, who: UUID, kind: str = "system", obj: UUID | None = None) -> UUID:
        key = "group_id" if self.w.engine.find(User, who) is None else "user_id"
        return self.w.run(
            AddPermission(role_id=ROLE[role], object_kind=kind, object_id=obj, **{key: who})
        )

    def may(self, user: UUID, permit: str, kind: str, obj: UUID | None) -> bool:
        return is_permitted(self.w.engine, user, permit, kind, obj)


@pytest.fixture
def site() -> Site:
    return Site()


def test_parents_follow_the_contract_names(site: Site) -> None:
    e = site.w.engine
    assert parents(e, "system", None) == []
    assert parents(e, "data_center", site.dc1) == [("system", None)]
    assert parents(e, "cluster", site.c1) == [("data_center", site.dc1)]
    assert parents(e, "host", site.h1) == [("cluster", site.c1)]
    assert parents(e, "vm", site.vm2) == [("cluster", site.c1), ("vm_pool", site.pool)]
    assert parents(e, "disk", site.disk1) == [("storage_domain", site.sd1), ("vm", site.vm1)]
    assert parents(e, "storage_domain", site.sd_loose) == [("system", None)]
    assert parents(e, "vnic_profile", site.profile) == [("network", site.net)]
    assert parents(e, "template", site.tpl_by_cluster) == [("data_center", site.dc1)]
    assert parents(e, "vm", UUID(int=999)) == [("system", None)]  # unknown: system only
    assert ancestors(e, "disk", site.disk1) == {
        site.disk1,
        site.sd1,
        site.vm1,
        site.c1,
        site.dc1,
        None,
    }


def test_superuser_on_system_may_do_everything(site: Site) -> None:
    for kind, obj in (("vm", site.vm3), ("host", site.h2), ("system", None), ("disk", site.disk2)):
        assert site.may(site.admin, "delete_vm", kind, obj)
        assert site.may(site.admin, "configure_engine", kind, obj)
    assert not site.may(site.admin, "no_such_permit", "vm", site.vm1)
    assert is_admin(site.w.engine, site.admin) and can_login(site.w.engine, site.admin)


def test_no_permission_no_access(site: Site) -> None:
    assert not site.may(site.alice, "login", "system", None)
    assert not can_login(site.w.engine, site.alice)
    assert not site.may(UUID(int=12345), "login", "system", None)  # no such user
    with pytest.raises(Forbidden) as e:
        require_permit(site.w.engine, site.alice, "vm_basic_operations", "vm", site.vm1)
    assert e.value.status == 403


def test_cluster_admin_reaches_down_not_across(site: Site) -> None:
    site.grant("ClusterAdmin", site.alice, "cluster", site.c1)
    assert site.may(site.alice, "edit_host_configuration", "host", site.h1)
    assert site.may(site.alice, "delete_vm", "vm", site.vm1)
    assert site.may(site.alice, "delete_vm", "vm", site.vm2)
    assert site.may(site.alice, "edit_cluster_configuration", "cluster", site.c1)
    assert not site.may(site.alice, "edit_host_configuration", "host", site.h2)
    assert not site.may(site.alice, "delete_vm", "vm", site.vm3)
    assert not site.may(site.alice, "delete_vm", "vm", site.vm4)  # sibling cluster
    assert not site.may(site.alice, "edit_storage_pool_configuration", "data_center", site.dc1)
    assert not site.may(site.alice, "create_cluster", "system", None)
    assert is_admin(site.w.engine, site.alice) and can_login(site.w.engine, site.alice)


def test_data_center_admin_covers_its_clusters_hosts_networks(site: Site) -> None:
    site.grant("DataCenterAdmin", site.alice, "data_center", site.dc1)
    assert site.may(site.alice, "create_cluster", "data_center", site.dc1)
    assert site.may(site.alice, "delete_vm", "vm", site.vm4)
    assert site.may(site.alice, "edit_host_configuration", "host", site.h1)
    assert site.may(site.alice, "configure_network_vnic_profile", "vnic_profile", site.profile)
    assert site.may(site.alice, "edit_template_properties", "template", site.tpl_by_cluster)
    assert not site.may(site.alice, "edit_template_properties", "template", site.tpl)
    # "except Storage"
    assert not site.may(site.alice, "manipulate_storage_domain", "storage_domain", site.sd1)
    assert not site.may(site.alice, "delete_vm", "vm", site.vm3)


def test_vm_inherits_from_its_pool_and_disk_from_its_vm(site: Site) -> None:
    site.grant("UserRole", site.alice, "vm_pool", site.pool)
    assert site.may(site.alice, "vm_basic_operations", "vm", site.vm2)
    assert not site.may(site.alice, "vm_basic_operations", "vm", site.vm1)
    site.grant("UserVmManager", site.bob, "vm", site.vm1)
    assert site.may(site.bob, "edit_disk_properties", "disk", site.disk1)
    assert not site.may(site.bob, "edit_disk_properties", "disk", site.disk2)


def test_group_permissions_apply_to_members(site: Site) -> None:
    ops = site.w.run(AddGroup(name="ops"))
    site.grant("UserRole", ops, "cluster", site.c2)
    assert not site.may(site.alice, "vm_basic_operations", "vm", site.vm3)
    site.w.run(AddUserToGroup(user_id=site.alice, group_id=ops))
    assert site.may(site.alice, "vm_basic_operations", "vm", site.vm3)
    assert not site.may(site.bob, "vm_basic_operations", "vm", site.vm3)
    assert permits_on(site.w.engine, site.alice, "vm", site.vm3) >= {"vm_basic_operations"}
    site.w.run(RemoveUserFromGroup(user_id=site.alice, group_id=ops))
    assert not site.may(site.alice, "vm_basic_operations", "vm", site.vm3)


def test_everyone_group_applies_to_all_users(site: Site) -> None:
    site.grant("UserRole", EVERYONE_GROUP_ID, "vm", site.vm1)
    assert site.may(site.alice, "vm_basic_operations", "vm", site.vm1)
    assert site.may(site.bob, "connect_to_vm", "vm", site.vm1)
    assert not site.may(site.bob, "connect_to_vm", "vm", site.vm2)


def test_object_form_of_the_check(site: Site) -> None:
    site.grant("HostAdmin", site.alice, "host", site.h1)
    host = site.w.engine.objects[site.h1]
    assert is_permitted(site.w.engine, site.alice, "manipulate_host", host)
    assert not is_permitted(site.w.engine, site.alice, "manipulate_host", None)
    assert is_permitted(site.w.engine, site.admin, "manipulate_host", None)


def test_permission_rules(site: Site) -> None:
    site.grant("UserRole", site.alice, "vm", site.vm1)
    with pytest.raises(DomainError, match="already exists"):
        site.grant("UserRole", site.alice, "vm", site.vm1)
    with pytest.raises(NotFound):
        site.grant("UserRole", site.alice, "vm", UUID(int=4242))
    with pytest.raises(NotFound):
        site.grant("UserRole", site.alice, "host", site.vm1)  # wrong kind for that id
    with pytest.raises(DomainError, match="either a user or a group"):
        site.w.run(AddPermission(role_id=ROLE["UserRole"]))
    with pytest.raises(NotFound):
        site.w.run(AddPermission(role_id=UUID(int=77), user_id=site.alice))
    with pytest.raises(NotFound):
        site.w.run(AddPermission(role_id=ROLE["UserRole"], user_id=UUID(int=77)))
    assert [p.user_id for p in permissions_on(site.w.engine, site.vm1)] == [site.alice]


def test_last_superuser_of_admin_cannot_be_removed(site: Site) -> None:
    e = site.w.engine
    sys_perm = next(p for p in e.all(Permission) if p.user_id == ADMIN_USER_ID)
    assert (sys_perm.role_id, sys_perm.object_id) == (ROLE["SuperUser"], None)
    with pytest.raises(DomainError, match="last SuperUser permission of admin@internal"):
        site.w.run(RemovePermission(permission_id=sys_perm.id))
    # Other permissions of admin, and other users' SuperUser, can go.
    on_dc = site.grant("SuperUser", site.admin, "data_center", site.dc2)
    site.w.run(RemovePermission(permission_id=on_dc))
    alice_su = site.grant("SuperUser", site.alice)
    assert site.may(site.alice, "configure_engine", "system", None)
    site.w.run(RemovePermission(permission_id=alice_su))
    assert not site.may(site.alice, "configure_engine", "system", None)
    assert site.may(site.admin, "configure_engine", "system", None)


def test_filter_view(site: Site) -> None:
    e = site.w.engine
    assert visible_object_ids(e, site.alice, "vm") == set()
    site.grant("UserRole", site.alice, "vm", site.vm1)
    assert visible_object_ids(e, site.alice, "vm") == {site.vm1}
    # A creator role on a cluster lets her create there but shows nothing below it ...
    site.grant("PowerUserRole", site.alice, "cluster", site.c2)
    assert visible_object_ids(e, site.alice, "vm") == {site.vm1}
    assert site.may(site.alice, "create_vm", "cluster", site.c2)
    # ... while a role that views children does.
    site.grant("UserRole", site.alice, "vm_pool", site.pool)
    assert visible_object_ids(e, site.alice, "vm") == {site.vm1, site.vm2}
    site.grant("ReadOnlyAdmin", site.bob, "data_center", site.dc1)
    assert visible_object_ids(e, site.bob, "vm") == {site.vm1, site.vm2, site.vm4}
    assert visible_object_ids(e, site.bob, "host") == {site.h1}
    assert visible_object_ids(e, site.bob, "cluster") == {site.c1, site.c1b}
    assert visible_object_ids(e, site.admin, "vm") == {site.vm1, site.vm2, site.vm3, site.vm4}


def test_sight_places_an_object_the_state_no_longer_holds_by_its_own_containers(
    site: Site,
) -> None:
    e = site.w.engine
    gone_in_c2 = FakeVm(id=site.w.next_id(), version=3, cluster_id=site.c2)
    gone_in_c1 = FakeVm(id=site.w.next_id(), version=3, cluster_id=site.c1)
    assert not Sight(e, site.alice).sees("vm", gone_in_c2)
    # A creator role on its former cluster shows nothing below it ...
    site.grant("PowerUserRole", site.alice, "cluster", site.c2)
    assert not Sight(e, site.alice).sees("vm", gone_in_c2)
    # ... a role that shows children does, on the cluster or above it, and only there.
    site.grant("UserRole", site.alice, "data_center", site.dc2)
    sight = Sight(e, site.alice)
    assert sight.sees("vm", gone_in_c2) and not sight.sees("vm", gone_in_c1)
    # Given only its id, an object the state does not hold has no containers.
    assert not sight.sees("vm", gone_in_c2.id)
    # The objects the state holds go by their containers now.
    assert visible_object_ids(e, site.alice, "vm") == {site.vm3}
    assert visible_object_ids(e, site.alice, "host") == {site.h2}
    assert visible_object_ids(e, site.alice, "cluster") == {site.c2}
    assert visible_object_ids(e, site.alice, "template") == {site.tpl}


def test_creator_becomes_owner(site: Site) -> None:
    w = site.w
    tx = Tx(w.engine, Ctx(now=w.now, meta=Meta()), w.next_id)
    new_vm = w.next_id()  # created in the same Tx: not in the engine yet
    pid = grant_owner(tx, site.alice, "vm", new_vm)
    assert pid is not None
    assert grant_owner(tx, None, "vm", new_vm) is None
    assert grant_owner(tx, UUID(int=404), "vm", new_vm) is None
    assert grant_owner(tx, site.alice, "host", site.h1) is None  # no owner role for hosts
    w.engine.apply_all(tx.events)
    w.engine.restore(new_vm, FakeVm(id=new_vm, version=1, cluster_id=site.c2), None)
    perm = w.engine.get(Permission, pid)
    assert (perm.role_id, perm.user_id, perm.object_kind) == (
        ROLE["UserVmManager"],
        site.alice,
        "vm",
    )
    assert site.may(site.alice, "delete_vm", "vm", new_vm)
    assert visible_object_ids(w.engine, site.alice, "vm") == {new_vm}
    tx2 = Tx(w.engine, Ctx(now=w.now, meta=Meta()), w.next_id)
    assert grant_owner(tx2, site.alice, "vm", new_vm) is None  # already the owner
    assert remove_object_permissions(tx2, new_vm) == 1
    w.engine.apply_all(tx2.events)
    assert not site.may(site.alice, "delete_vm", "vm", new_vm)


def test_denials_are_recorded_on_the_user(site: Site) -> None:
    assert site.w.run(
        RecordPermissionDenied(
            user_id=site.alice,
            permit="delete_vm",
            action="remove",
            object_kind="vm",
            object_id=site.vm1,
        )
    )
    ev = site.w.log[-1]
    assert isinstance(ev, UserPermissionDenied)
    assert (ev.originator_id, ev.permit, ev.object_id) == (site.alice, "delete_vm", site.vm1)
    assert not site.w.run(RecordPermissionDenied(user_id=UUID(int=5), permit="login"))


def test_custom_role_on_a_cluster(site: Site) -> None:
    rid = site.w.run(AddRole(name="CdChanger", permits=["login", "change_vm_cd"]))
    site.w.run(
        AddPermission(role_id=rid, user_id=site.bob, object_kind="cluster", object_id=site.c1)
    )
    assert not site.may(site.bob, "change_vm_cd", "vm", site.vm4)  # c1b is not c1
    assert site.may(site.bob, "change_vm_cd", "vm", site.vm1)
    assert not site.may(site.bob, "vm_basic_operations", "vm", site.vm1)


def test_permit_for_rest_operations() -> None:
    assert permit_for("create", "vm") == "create_vm"
    assert permit_for("edit", "vm") == "edit_vm_properties"
    assert permit_for("delete", "host") == "delete_host"
    assert permit_for("start", "vm") == "vm_basic_operations"
    assert permit_for("migrate", "vm") == "migrate_vm"
    assert permit_for("deactivate", "host") == "manipulate_host"
    assert permit_for("view", "vm") == "login"
    assert permit_for("create", "data_center") == "create_storage_pool"
    assert permit_for("frobnicate", "thing") == "configure_engine"


def test_an_undone_batch_leaves_no_stale_grant(site: Site) -> None:
    """The bus undoes an unsaved batch with engine.restore (no events): checks must follow."""
    e = site.w.engine
    assert not site.may(site.alice, "delete_vm", "vm", site.vm1)  # index built now
    tx = Tx(e, Ctx(now=site.w.now, meta=Meta()), site.w.next_id)
    pid = add_permission(
        tx, role_id=ROLE["UserVmManager"], user_id=site.alice, object_kind="vm", object_id=site.vm1
    )
    e.apply_all(tx.events)
    assert site.may(site.alice, "delete_vm", "vm", site.vm1)
    assert visible_object_ids(e, site.alice, "vm") == {site.vm1}
    e.restore(pid, None, None)  # the commit failed: undo
    assert not site.may(site.alice, "delete_vm", "vm", site.vm1)
    assert visible_object_ids(e, site.alice, "vm") == set()


def test_only_a_system_superuser_gives_or_takes_an_administrative_role(site: Site) -> None:
    # alice administers cluster c1: she may not make bob (or herself) an administrator,
    # who would see everything, nor take such a role away; a UserRole she may give.
    site.grant("ClusterAdmin", site.alice, "cluster", site.c1)
    with pytest.raises(Forbidden, match="Only a SuperUser of the whole system"):
        site.w.run(
            AddPermission(
                role_id=ROLE["ClusterAdmin"],
                object_kind="cluster",
                object_id=site.c1,
                user_id=site.bob,
                actor_id=site.alice,
            )
        )
    assert not site.may(site.bob, "edit_cluster_configuration", "cluster", site.c1)
    site.w.run(
        AddPermission(
            role_id=ROLE["UserRole"],
            object_kind="vm",
            object_id=site.vm1,
            user_id=site.bob,
            actor_id=site.alice,
        )
    )
    theirs = site.grant("ClusterAdmin", site.bob, "cluster", site.c1)  # by the Manager
    with pytest.raises(Forbidden, match="Only a SuperUser of the whole system"):
        site.w.run(RemovePermission(permission_id=theirs, actor_id=site.alice))
    # the system's SuperUser may do both
    site.w.run(RemovePermission(permission_id=theirs, actor_id=site.admin))
    site.w.run(
        AddPermission(
            role_id=ROLE["ClusterAdmin"],
            object_kind="cluster",
            object_id=site.c1,
            user_id=site.bob,
            actor_id=site.admin,
        )
    )
    assert site.may(site.bob, "edit_cluster_configuration", "cluster", site.c1)
