"""Authorization fails closed: with no state to decide on, or a request without a user
once users exist, nothing is permitted and nothing is visible. The one session without a
user (the Manager's administrator before any user exists) grants only until then."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from api import authz
from commands.system import InitializeSystem
from domain.datacenter import DataCenter
from domain.user import User
from tests.unit.helpers import World

pytestmark = pytest.mark.unit


@dataclass
class _Reads:
    engine: Any
    lock: Any = field(default_factory=threading.RLock)


@dataclass
class _Env:
    reads: Any
    user_id: Any = None
    user_name: str = "admin@internal"
    query: dict = field(default_factory=dict)


def _initialized() -> World:
    w = World()
    w.run(InitializeSystem(admin_password="pw"))
    return w


def test_no_state_to_decide_on_permits_and_shows_nothing() -> None:
    env = _Env(_Reads(None))
    with pytest.raises(authz.Denied):
        authz.check(env, "create_vm", "cluster", None, "add")
    assert authz.visible(env, "vm", ["x"]) == []
    assert not authz.sees_everything(env)


def test_a_request_without_a_user_once_users_exist_gets_nothing() -> None:
    w = _initialized()
    assert w.engine.count(User) >= 1
    env = _Env(_Reads(w.engine))
    with pytest.raises(authz.Denied):
        authz.check(env, "configure_engine", "system", None, "anything")
    dcs = list(w.engine.all(DataCenter))
    assert dcs  # the Default data center
    assert not authz.sees_everything(env)
    assert authz.visible(env, "data_center", dcs) == []
    assert not authz.event_visible(env, {"user": "None", "vm": None})


def test_the_bootstrap_administrator_is_only_for_a_system_without_users() -> None:
    env = _Env(_Reads(World().engine))
    authz.check(env, "configure_engine", "system", None, "initialize")  # no raise
    assert authz.sees_everything(env)


def test_the_initialized_administrator_is_decided_by_its_permissions() -> None:
    w = _initialized()
    admin = next(u for u in w.engine.all(User) if u.user_name == "admin@internal")
    env = _Env(_Reads(w.engine), user_id=admin.id)
    authz.check(env, "configure_engine", "system", None, "anything")
    assert authz.sees_everything(env)
    assert authz.visible(env, "data_center", list(w.engine.all(DataCenter)))
