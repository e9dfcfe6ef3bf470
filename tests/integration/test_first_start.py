"""First start through the real bus on SQLite and PostgreSQL: initialization creates the
installation once, survives restarts, races safely, and admin@internal can log in."""

from __future__ import annotations

import asyncio
import threading

import pytest

from commands.bootstrap import open_bus
from commands.passwords import verify_password
from commands.system import ADMIN_PASSWORD_ENV, InitializeSystem, ensure_initialized
from commands.user import AddUser, authenticate, authenticate_async
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.permission import Permission
from domain.role import BUILTIN_ROLES, SUPER_USER_ROLE_ID, Role
from domain.system import DEFAULT_CLUSTER_ID, DEFAULT_DATA_CENTER_ID, is_initialized
from domain.user import LoginFailure, User, UserLoggedIn, UserLoginFailed, find_user

pytestmark = pytest.mark.integration

PASSWORD = "integration-admin-pw"


def test_initialize_once_across_restarts(store_location, monkeypatch) -> None:
    monkeypatch.delenv(ADMIN_PASSWORD_ENV, raising=False)
    bus = open_bus(**store_location)
    try:
        assert not is_initialized(bus.engine)
        assert ensure_initialized(bus, admin_password=PASSWORD) is None  # given, not generated
        e = bus.engine
        assert is_initialized(e)
        assert {r.id for r in e.all(Role)} == {r.id for r in BUILTIN_ROLES}
        assert e.get(DataCenter, DEFAULT_DATA_CENTER_ID).name == "Default"
        assert e.get(Cluster, DEFAULT_CLUSTER_ID).data_center_id == DEFAULT_DATA_CENTER_ID
        admin = find_user(e, "admin@internal")
        assert admin is not None and verify_password(admin.password_hash, PASSWORD)
        assert any(
            p.user_id == admin.id and p.role_id == SUPER_USER_ROLE_ID and p.object_id is None
            for p in e.all(Permission)
        )
        head, digest = bus.log.head(), e.digest()
        # Running the command again is a no-op.
        again = bus.execute(InitializeSystem(admin_password="other"))
        assert again.value == {"initialized": False} and again.events == 0
        assert bus.log.head() == head
    finally:
        bus.stop()

    bus2 = open_bus(**store_location)
    try:
        assert bus2.engine.digest() == digest
        assert ensure_initialized(bus2, admin_password="ignored now") is None
        assert bus2.log.head() == head
        admin = find_user(bus2.engine, "admin")
        assert verify_password(admin.password_hash, PASSWORD)
        # Nothing stored holds the plain password.
        for _, ev in bus2.log.iter_all():
            assert PASSWORD not in repr(ev)
        for note in bus2.log.read_raw(0, 10_000):
            assert PASSWORD.encode() not in bytes(note.state)
    finally:
        bus2.stop()


def test_generated_password_logs_in_and_logins_are_recorded(store_location, monkeypatch) -> None:
    monkeypatch.delenv(ADMIN_PASSWORD_ENV, raising=False)
    bus = open_bus(**store_location)
    try:
        generated = ensure_initialized(bus)
        assert generated and len(generated) >= 20
        ok = authenticate(bus, "admin", generated, source="127.0.0.1")
        assert ok.ok and ok.user_name == "admin@internal"
        bad = authenticate(bus, "admin@internal", generated + "x")
        assert bad.failure == LoginFailure.WRONG_PASSWORD and bad.user_id is None
        assert authenticate(bus, "nobody", "x").failure == LoginFailure.UNKNOWN_USER
        # A user with a password but no role anywhere may not log in.
        bus.execute(AddUser(user_name="bob@internal", password="bob-password"))
        assert authenticate(bus, "bob", "bob-password").failure == LoginFailure.NOT_PERMITTED
        bus.execute(AddUser(user_name="carol@example.com"))
        assert authenticate(bus, "carol@example.com", "x").failure == LoginFailure.NO_PASSWORD
        admin_id = ok.user_id
    finally:
        bus.stop()
    bus2 = open_bus(**store_location)
    try:
        admin = bus2.engine.get(User, admin_id)
        assert admin.last_login_at and admin.failed_logins == 1
        mine = bus2.log.events_of(admin_id)
        assert any(isinstance(e, UserLoggedIn) and e.source == "127.0.0.1" for e in mine)
        assert any(
            isinstance(e, UserLoginFailed) and e.reason == LoginFailure.WRONG_PASSWORD for e in mine
        )
    finally:
        bus2.stop()


def test_password_from_the_environment(store_location, monkeypatch) -> None:
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "from-the-env")
    bus = open_bus(**store_location)
    try:
        assert ensure_initialized(bus) is None
        assert authenticate(bus, "admin@internal", "from-the-env").ok
        # The event-loop form, as the SSO endpoint uses it.
        ok = asyncio.run(authenticate_async(bus, "admin", "from-the-env", source="::1"))
        assert ok.ok and ok.user_id == find_user(bus.engine, "admin").id
        bad = asyncio.run(authenticate_async(bus, "admin", "nope"))
        assert bad.failure == LoginFailure.WRONG_PASSWORD
        assert find_user(bus.engine, "admin").failed_logins == 1
    finally:
        bus.stop()


def test_two_managers_starting_together_initialize_once(store_location, monkeypatch) -> None:
    monkeypatch.delenv(ADMIN_PASSWORD_ENV, raising=False)
    a = open_bus(**store_location)
    b = open_bus(**store_location)
    try:
        results: dict[str, str | None] = {}
        start = threading.Barrier(2)

        def run(name: str, bus) -> None:
            start.wait()
            results[name] = ensure_initialized(bus)

        ts = [threading.Thread(target=run, args=(n, x)) for n, x in (("a", a), ("b", b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        a.catch_up()
        b.catch_up()
        winners = [pw for pw in results.values() if pw is not None]
        assert len(winners) == 1  # only the manager that initialized reports a password
        assert a.engine.digest() == b.engine.digest()
        assert a.engine.count(DataCenter) == 1 and a.engine.count(Role) == len(BUILTIN_ROLES)
        with a.lock:
            assert sum(1 for u in a.engine.all(User) if u.user_name == "admin@internal") == 1
        assert authenticate(a, "admin", winners[0]).ok
    finally:
        a.stop()
        b.stop()


def test_users_cli(store_location, monkeypatch, capsys) -> None:
    import io
    import json

    from api.cli import main

    where = ["--data-dir", str(store_location["data_dir"])]
    if store_location["database_url"]:
        where += ["--database-url", store_location["database_url"]]
    bus = open_bus(**store_location)
    try:
        ensure_initialized(bus, admin_password=PASSWORD)
    finally:
        bus.stop()
    monkeypatch.setattr("sys.stdin", io.StringIO("cli-secret\n"))
    assert (
        main(["users", "add", "dora@internal", "--password-stdin", "--role", "UserRole", *where])
        == 0
    )
    assert main(["users", "add", "eve@example.com", *where]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("changed-secret\n"))
    assert main(["users", "passwd", "dora", "--password-stdin", *where]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["users", "add", "frank@internal", *where]) == 2  # no terminal, no password
    capsys.readouterr()
    assert main(["users", "list", "--json", *where]) == 0
    rows = {r["user_name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"admin@internal", "dora@internal", "eve@example.com"}
    assert rows["dora@internal"]["roles"] == ["UserRole@system"]
    assert main(["users", "list", *where]) == 0
    out = capsys.readouterr().out
    assert "dora@internal" in out and "cli-secret" not in out
    bus = open_bus(**store_location)
    try:
        assert authenticate(bus, "dora", "changed-secret").ok
        assert authenticate(bus, "dora", "cli-secret").failure == LoginFailure.WRONG_PASSWORD
    finally:
        bus.stop()
