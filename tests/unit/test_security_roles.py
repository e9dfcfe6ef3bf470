"""Roles: oVirt's built-ins with their well-known ids, read-only; custom roles add/update/remove."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands.permission import AddPermission, AddRole, RemoveRole, UpdateRole
from commands.system import InitializeSystem
from commands.user import AddUser
from domain.base import DomainError, InvalidInput
from domain.role import ADMIN_PERMITS, ALL_PERMITS, BUILTIN_ROLES, PERMITS, Role, find_role
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
def world() -> World:
    w = World()
    w.run(InitializeSystem(admin_password_hash=HASH))
    return w


def test_builtins_exist_with_ovirt_ids(world: World) -> None:
    names = {r.name for r in world.engine.all(Role)}
    for name in (
        "SuperUser",
        "DataCenterAdmin",
        "ClusterAdmin",
        "PowerUserRole",
        "UserRole",
        "UserVmManager",
        "VmPoolAdmin",
        "ReadOnlyAdmin",
        "HostAdmin",
        "NetworkAdmin",
        "StorageAdmin",
        "TemplateAdmin",
    ):
        assert name in names
    assert find_role(world.engine, "SuperUser").id == UUID("00000000-0000-0000-0000-000000000001")
    assert find_role(world.engine, "UserRole").id == UUID("00000000-0000-0000-0001-000000000001")
    assert find_role(world.engine, "UserVmManager").id == UUID(
        "def00006-0000-0000-0000-def000000006"
    )
    assert all(r.builtin for r in world.engine.all(Role))


def test_builtin_permits() -> None:
    by = {r.name: r for r in BUILTIN_ROLES}
    assert set(by["SuperUser"].permits) == set(ALL_PERMITS)
    assert by["SuperUser"].administrative and not by["UserRole"].administrative
    assert "vm_basic_operations" in by["UserRole"].permits
    assert "create_vm" not in by["UserRole"].permits
    assert {"create_vm", "create_template", "create_disk"} <= set(by["PowerUserRole"].permits)
    assert not by["PowerUserRole"].view_children
    assert {"delete_vm", "edit_vm_properties", "manipulate_vm_snapshots"} <= set(
        by["UserVmManager"].permits
    )
    assert {"create_host", "edit_host_configuration"} <= set(by["ClusterAdmin"].permits)
    # DataCenterAdmin: everything underneath a data center except storage.
    dca = set(by["DataCenterAdmin"].permits)
    assert {"create_cluster", "configure_storage_pool_network"} <= dca
    assert "create_storage_domain" not in dca and "manipulate_storage_domain" not in dca
    assert set(by["ClusterAdmin"].permits) <= dca
    assert by["ReadOnlyAdmin"].permits == ("login",) and by["ReadOnlyAdmin"].administrative
    for r in BUILTIN_ROLES:
        assert "login" in r.permits
        assert set(r.permits) <= set(PERMITS)
        if not r.administrative:  # user roles hold user permits only
            assert not set(r.permits) & ADMIN_PERMITS, r.name
    assert len({r.id for r in BUILTIN_ROLES}) == len(BUILTIN_ROLES)


def test_builtins_cannot_be_changed_or_removed(world: World) -> None:
    for r in list(world.engine.all(Role)):
        with pytest.raises(DomainError, match="built-in"):
            world.run(RemoveRole(role_id=r.id))
        with pytest.raises(DomainError, match="built-in"):
            world.run(UpdateRole(role_id=r.id, description="mine now"))
        with pytest.raises(DomainError, match="built-in"):
            world.run(UpdateRole(role_id=r.id, permits=["login"]))


def test_initialize_again_adds_no_roles(world: World) -> None:
    n = len(world.log)
    assert world.run(InitializeSystem()) == {"initialized": False}
    assert len(world.log) == n


def test_custom_roles(world: World) -> None:
    rid = world.run(AddRole(name="Operator", permits=["login", "vm_basic_operations"]))
    role = world.engine.get(Role, rid)
    assert (role.builtin, role.administrative, role.permits) == (
        False,
        False,
        ("login", "vm_basic_operations"),
    )
    world.run(UpdateRole(role_id=rid, permits=["login", "change_vm_cd", "login"]))
    assert world.engine.get(Role, rid).permits == ("login", "change_vm_cd")
    world.run(UpdateRole(role_id=rid, name="CdOperator", description="cds"))
    assert find_role(world.engine, "CdOperator").id == rid
    with pytest.raises(DomainError, match="name is already in use"):
        world.run(AddRole(name="CdOperator"))
    with pytest.raises(DomainError, match="name is already in use"):
        world.run(UpdateRole(role_id=rid, name="SuperUser"))
    world.run(RemoveRole(role_id=rid))
    assert world.engine.find(Role, rid) is None


def test_permit_rules(world: World) -> None:
    with pytest.raises(InvalidInput, match="Unknown permit"):
        world.run(AddRole(name="Bad", permits=["fly_to_the_moon"]))
    with pytest.raises(DomainError, match="administrative permit"):
        world.run(AddRole(name="Sneaky", permits=["login", "create_host"]))
    rid = world.run(AddRole(name="HostOps", administrative=True, permits=["create_host"]))
    with pytest.raises(DomainError, match="administrative permit"):
        world.run(UpdateRole(role_id=rid, administrative=False))


def test_role_in_use_cannot_be_removed(world: World) -> None:
    rid = world.run(AddRole(name="Viewer", permits=["login"]))
    uid = world.run(AddUser(user_name="bob@internal"))
    world.run(AddPermission(role_id=rid, user_id=uid))
    with pytest.raises(DomainError, match="in use"):
        world.run(RemoveRole(role_id=rid))
    rid2 = world.run(AddRole(name="Admins", administrative=True, permits=["login"]))
    world.run(AddPermission(role_id=rid2, user_id=uid))
    with pytest.raises(DomainError, match="type cannot be changed"):
        world.run(UpdateRole(role_id=rid2, administrative=False))
