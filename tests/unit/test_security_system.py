"""First-start initialization: what a fresh installation holds, idempotence, replay."""

from __future__ import annotations

import pytest

from commands.datacenter import AddDataCenter
from commands.passwords import verify_password
from commands.system import InitializeSystem
from domain.base import DomainError
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.network import LogicalNetwork
from domain.permission import Permission
from domain.role import BUILTIN_ROLES, SUPER_USER_ROLE_ID, Role
from domain.rules import system_rules
from domain.rules.access_rules import is_permitted
from domain.system import (
    ADMIN_USER_ID,
    DEFAULT_CLUSTER_ID,
    DEFAULT_DATA_CENTER_ID,
    SYSTEM_ID,
    System,
    is_initialized,
)
from domain.user import EVERYONE_GROUP_ID, Group, User, find_user
from domain.values import BLANK_TEMPLATE_ID
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

PLAIN = "first-start-password"


@pytest.fixture(scope="module")
def hashed() -> str:
    from commands.passwords import hash_password

    return hash_password(PLAIN)


def test_fresh_installation(hashed: str) -> None:
    w = World()
    assert not is_initialized(w.engine)
    out = w.run(InitializeSystem(admin_password_hash=hashed))
    e = w.engine
    assert out["initialized"] is True and is_initialized(e)
    assert e.get(System, SYSTEM_ID).initialized_at == w.now.isoformat()
    assert {r.id for r in e.all(Role)} == {r.id for r in BUILTIN_ROLES}
    assert e.get(Group, EVERYONE_GROUP_ID).name == "Everyone"
    dc = e.get(DataCenter, DEFAULT_DATA_CENTER_ID)
    assert dc.name == "Default"
    assert [n.name for n in e.all(LogicalNetwork) if n.data_center_id == dc.id] == ["ovirtmgmt"]
    cluster = e.get(Cluster, DEFAULT_CLUSTER_ID)
    assert (cluster.name, cluster.data_center_id) == ("Default", dc.id)
    admin = find_user(e, "admin@internal")
    assert admin is not None and admin.id == ADMIN_USER_ID == out["admin_user_id"]
    assert verify_password(admin.password_hash, PLAIN)
    perms = [p for p in e.all(Permission) if p.user_id == admin.id]
    assert [(p.role_id, p.object_kind, p.object_id) for p in perms] == [
        (SUPER_USER_ROLE_ID, "system", None)
    ]
    assert is_permitted(e, admin.id, "create_vm", "cluster", cluster.id)
    assert out["blank_template"] is True
    blank = e.objects[BLANK_TEMPLATE_ID]
    assert (blank.KIND, getattr(blank, "name", None)) == ("template", "Blank")
    assert w.replayed().digest() == e.digest()


def test_initialization_happens_once(hashed: str) -> None:
    w = World()
    w.run(InitializeSystem(admin_password_hash=hashed))
    n, digest = len(w.log), w.engine.digest()
    assert w.run(InitializeSystem(admin_password="something else")) == {"initialized": False}
    assert len(w.log) == n and w.engine.digest() == digest
    assert verify_password(find_user(w.engine, "admin").password_hash, PLAIN)


def test_an_existing_default_data_center_is_reused() -> None:
    w = World()
    dc = w.run(AddDataCenter(name="Default"))
    out = w.run(InitializeSystem())
    assert out["data_center_id"] == dc
    assert w.engine.get(Cluster, out["cluster_id"]).data_center_id == dc
    assert w.engine.count(DataCenter) == 1
    admin = w.engine.get(User, out["admin_user_id"])
    assert admin.password_hash is None  # no password given: cannot log in yet


def test_a_failing_step_leaves_no_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tx):
        raise DomainError("template area broke")

    monkeypatch.setattr(system_rules, "add_blank_template", broken)
    w = World()
    before = w.engine.digest()
    with pytest.raises(DomainError, match="template area broke"):
        w.run(InitializeSystem())
    assert w.engine.digest() == before and not w.engine.objects
    assert not is_initialized(w.engine)


def test_bad_admin_password_input() -> None:
    from domain.base import InvalidInput

    w = World()
    with pytest.raises(InvalidInput):
        w.run(InitializeSystem(admin_password_hash="not-a-hash"))
    with pytest.raises(InvalidInput):
        w.run(InitializeSystem(admin_password="a", admin_password_hash="b"))
    assert not w.engine.objects
