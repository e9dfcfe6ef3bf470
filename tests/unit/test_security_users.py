"""Users, groups and membership; login successes and failures as domain facts."""

from __future__ import annotations

import pytest

from commands.permission import AddPermission
from commands.system import InitializeSystem
from commands.user import (
    AddGroup,
    AddUser,
    AddUserToGroup,
    ChangeUserPassword,
    RecordLoginFailure,
    RecordLoginSuccess,
    RemoveGroup,
    RemoveUser,
    RemoveUserFromGroup,
    UpdateUser,
)
from domain.base import DomainError, InvalidInput, NotFound
from domain.permission import Permission
from domain.role import BUILTIN_BY_NAME
from domain.system import SYSTEM_ID, System, UnknownUserLoginFailed
from domain.user import (
    EVERYONE_GROUP_ID,
    Group,
    LoginFailure,
    User,
    UserLoggedIn,
    UserLoginFailed,
    find_user,
)
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

# A well-formed argon2id hash (of nothing in particular): these tests need no hashing.
HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)
USER_ROLE = BUILTIN_BY_NAME["UserRole"].id


@pytest.fixture
def world() -> World:
    w = World()
    w.run(InitializeSystem(admin_password_hash=HASH))
    return w


def test_internal_and_directory_users(world: World) -> None:
    bob = world.run(AddUser(user_name="bob", password_hash=HASH, email="bob@example.com"))
    user = world.engine.get(User, bob)
    assert (user.user_name, user.domain, user.principal, user.name) == (
        "bob@internal",
        "internal",
        "bob",
        "bob",
    )
    assert user.password_hash == HASH and user.internal
    ext = world.run(AddUser(user_name="jdoe@example.com", name="John", last_name="Doe"))
    jdoe = world.engine.get(User, ext)
    assert (jdoe.domain, jdoe.password_hash, jdoe.internal) == ("example.com", None, False)
    assert find_user(world.engine, "bob@internal").id == bob
    assert find_user(world.engine, "bob").id == bob
    assert find_user(world.engine, "bob@example.com") is None


def test_user_rules(world: World) -> None:
    world.run(AddUser(user_name="bob@internal"))
    with pytest.raises(DomainError, match="already exists"):
        world.run(AddUser(user_name="bob"))
    with pytest.raises(DomainError, match="have no password here"):
        world.run(AddUser(user_name="x@corp.example", password_hash=HASH))
    with pytest.raises(InvalidInput):
        world.run(AddUser(user_name="has space@internal"))
    with pytest.raises(InvalidInput):
        world.run(AddUser(user_name="@internal"))
    ext = world.run(AddUser(user_name="y@corp.example"))
    with pytest.raises(DomainError, match="have no password here"):
        world.run(ChangeUserPassword(user_id=ext, password_hash=HASH))
    with pytest.raises(NotFound):
        world.run(ChangeUserPassword(user_name="ghost", password_hash=HASH))
    with pytest.raises(InvalidInput):
        world.run(ChangeUserPassword(user_name="bob"))


def test_update_and_remove_user_drops_its_permissions(world: World) -> None:
    uid = world.run(AddUser(user_name="bob@internal"))
    world.run(UpdateUser(user_id=uid, name="Bob", last_name="Builder"))
    assert world.engine.get(User, uid).last_name == "Builder"
    n = len(world.log)
    world.run(UpdateUser(user_id=uid, name="Bob"))  # no change, no event
    assert len(world.log) == n
    world.run(AddPermission(role_id=USER_ROLE, user_id=uid))
    assert any(p.user_id == uid for p in world.engine.all(Permission))
    world.run(RemoveUser(user_id=uid))
    assert world.engine.find(User, uid) is None
    assert not any(p.user_id == uid for p in world.engine.all(Permission))


def test_admin_cannot_be_removed(world: World) -> None:
    admin = find_user(world.engine, "admin@internal")
    with pytest.raises(DomainError, match="admin@internal"):
        world.run(RemoveUser(user_id=admin.id))


def test_groups_and_membership(world: World) -> None:
    uid = world.run(AddUser(user_name="bob@internal"))
    gid = world.run(AddGroup(name="ops"))
    with pytest.raises(DomainError, match="name is already in use"):
        world.run(AddGroup(name="ops"))
    world.run(AddGroup(name="ops", domain="example.com"))  # another domain's "ops"
    world.run(AddUserToGroup(user_id=uid, group_id=gid))
    assert world.engine.get(User, uid).group_ids == (gid,)
    with pytest.raises(DomainError, match="already a member"):
        world.run(AddUserToGroup(user_id=uid, group_id=gid))
    world.run(RemoveUserFromGroup(user_id=uid, group_id=gid))
    assert world.engine.get(User, uid).group_ids == ()
    with pytest.raises(DomainError, match="not a member"):
        world.run(RemoveUserFromGroup(user_id=uid, group_id=gid))
    # Removing a group ends memberships and drops the group's permissions.
    world.run(AddUserToGroup(user_id=uid, group_id=gid))
    world.run(AddPermission(role_id=USER_ROLE, group_id=gid))
    world.run(RemoveGroup(group_id=gid))
    assert world.engine.find(Group, gid) is None
    assert world.engine.get(User, uid).group_ids == ()
    assert not any(p.group_id == gid for p in world.engine.all(Permission))
    assert world.replayed().digest() == world.engine.digest()


def test_everyone_is_builtin(world: World) -> None:
    uid = world.run(AddUser(user_name="bob@internal"))
    assert world.engine.get(Group, EVERYONE_GROUP_ID).builtin
    with pytest.raises(DomainError, match="built-in"):
        world.run(RemoveGroup(group_id=EVERYONE_GROUP_ID))
    with pytest.raises(DomainError, match="Every user"):
        world.run(AddUserToGroup(user_id=uid, group_id=EVERYONE_GROUP_ID))


def test_login_facts(world: World) -> None:
    uid = world.run(AddUser(user_name="bob@internal", password_hash=HASH))
    world.run(
        RecordLoginFailure(user_name="bob", reason=LoginFailure.WRONG_PASSWORD, source="1.2.3.4")
    )
    world.tick()
    world.run(RecordLoginFailure(user_name="bob@internal", reason=LoginFailure.WRONG_PASSWORD))
    bob = world.engine.get(User, uid)
    assert bob.failed_logins == 2 and bob.last_failed_login_at
    failed = [e for e in world.log if isinstance(e, UserLoginFailed)]
    assert [(e.reason, e.source) for e in failed] == [
        (LoginFailure.WRONG_PASSWORD, "1.2.3.4"),
        (LoginFailure.WRONG_PASSWORD, ""),
    ]
    world.tick()
    world.run(RecordLoginSuccess(user_id=uid, source="1.2.3.4"))
    bob = world.engine.get(User, uid)
    assert bob.failed_logins == 0 and bob.last_login_at == world.now.isoformat()
    assert isinstance(world.log[-1], UserLoggedIn)
    # A re-hash on login replaces the hash but is not a password change.
    changed_at = bob.password_changed_at
    newer = HASH.replace("t=3", "t=4")
    world.run(RecordLoginSuccess(user_id=uid, rehash=newer))
    bob = world.engine.get(User, uid)
    assert bob.password_hash == newer and bob.password_changed_at == changed_at
    with pytest.raises(InvalidInput):
        world.run(RecordLoginSuccess(user_id=uid, rehash="not a hash"))


def test_unknown_user_failures_are_recorded_on_the_system(world: World) -> None:
    before = world.engine.get(System, SYSTEM_ID).version
    got = world.run(RecordLoginFailure(user_name="mallory", reason=LoginFailure.UNKNOWN_USER))
    assert got == SYSTEM_ID
    ev = world.log[-1]
    assert isinstance(ev, UnknownUserLoginFailed) and ev.user_name == "mallory"
    assert world.engine.get(System, SYSTEM_ID).version == before + 1
    # Before first start there is nowhere to record it: nothing happens.
    fresh = World()
    assert fresh.run(RecordLoginFailure(user_name="x", reason=LoginFailure.UNKNOWN_USER)) is None
    assert fresh.log == []
