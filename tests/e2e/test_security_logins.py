"""Logins over real HTTP: throttled per (user, source address), an account locked after
five failures from any source (``admin@internal`` still gets in from the Manager's own
machine), ``orrery users unlock``, and every outcome in the log with its source address,
a flood folded into counted events the audit feed shows (codes 30 and 114)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import ovirtsdk4.types as types
import pytest

from api.logins import LoginGuard, LoginPolicy
from domain.system import UnknownUserLoginFailed
from domain.user import LoginFailure, UserLocked, UserLoggedIn, UserLoginFailed
from tests.conftest import REQUIRE
from tests.e2e.api_server import ADMIN_PASSWORD, connection, http, running_server, sso_token

pytestmark = pytest.mark.e2e

POLICY = LoginPolicy(delay_base=0.5, delay_max=5, lock_after=5, lock_minutes=30, fold_seconds=2)
PASSWORDS = {"alice": "pw-alice-1", "bob": "pw-bob-1", "carol": "pw-carol-1", "dave": "pw-d-1"}


def _global_address() -> str:
    """An address of this machine that is not loopback (the Manager seen from outside)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout.split()
    addrs = [out[i + 1].split("/")[0] for i, w in enumerate(out) if w == "inet"]
    if not addrs:
        if REQUIRE:
            pytest.fail("no non-loopback IPv4 address on this machine")
        pytest.skip("no non-loopback IPv4 address on this machine")
    return addrs[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("logins")
    with running_server(data, host="0.0.0.0") as srv:
        srv.api.auth.guard = LoginGuard(srv.bus, POLICY)
        c = connection(srv)
        system = c.system_service()
        vm = system.vms_service().add(
            types.Vm(
                name="login-vm",
                cluster=types.Cluster(name="Default"),
                template=types.Template(name="Blank"),
            )
        )
        for name in ("alice", "bob", "carol", "dave"):
            u = system.users_service().add(
                types.User(
                    user_name=name, domain=types.Domain(name="internal"), password=PASSWORDS[name]
                )
            )
            if name != "bob":  # bob has no permission anywhere
                system.vms_service().vm_service(vm.id).permissions_service().add(
                    types.Permission(role=types.Role(name="UserRole"), user=types.User(id=u.id))
                )
        c.close()
        srv.data_dir = data
        yield srv


def _detail(body: bytes) -> str:
    return ET.fromstring(body).findtext("detail") or ""


def _log(srv, cls, after: int = 0) -> list:
    return [e for _, e in srv.bus.log.read(after, 100_000) if isinstance(e, cls)]


def test_anonymous_is_401_and_writes_nothing(server):
    head = server.bus.log.head()
    status, _, _ = http(server, "GET", "/ovirt-engine/api/vms", user=None)
    assert status == 401
    assert server.bus.log.head() == head


def test_user_without_permission_is_refused_and_recorded(server):
    head = server.bus.log.head()
    status, _, body = http(
        server, "GET", "/ovirt-engine/api", user="bob", password=PASSWORDS["bob"]
    )
    assert status == 401 and "incorrect" in _detail(body)
    failed = _log(server, UserLoginFailed, head)
    assert [(e.reason, e.source, e.count) for e in failed] == [
        (LoginFailure.NOT_PERMITTED, "127.0.0.1", 1)
    ]


def test_failures_are_throttled_per_user_and_source(server):
    for _ in range(2):
        status, body = sso_token(server, "alice@internal", "wrong")
        assert status == 400 and "incorrect" in body["error"]
    # The right password, too soon after two failures from this address: not even checked.
    status, body = sso_token(server, "alice@internal", PASSWORDS["alice"])
    assert status == 400 and "try again in" in body["error"], body
    # From another address the same user is not held back; a UserRole user sees its VM.
    status, body = sso_token(server, "alice@internal", PASSWORDS["alice"], source="127.0.0.2")
    assert status == 200, body
    status, _, vms = http(server, "GET", "/ovirt-engine/api/vms", token=body["access_token"])
    assert status == 200
    assert [v.findtext("name") for v in ET.fromstring(vms).findall("vm")] == ["login-vm"]
    time.sleep(1.1)  # the delay after three failures: 1 s
    status, body = sso_token(server, "alice@internal", PASSWORDS["alice"])
    assert status == 200, body


def test_five_failures_lock_the_account_until_unlocked(server):
    head = server.bus.log.head()
    for i in range(5):  # five sources: no throttling, still one account
        status, _, body = http(
            server, "GET", "/ovirt-engine/api", user="carol", password="bad", source=f"127.0.1.{i}"
        )
        assert status == 401 and "incorrect" in _detail(body)
    locks = _log(server, UserLocked, head)
    assert len(locks) == 1 and locks[0].failures == 5
    status, _, body = http(
        server, "GET", "/ovirt-engine/api", user="carol", password=PASSWORDS["carol"]
    )
    assert status == 401 and "locked" in _detail(body)
    status, answer = sso_token(server, "carol", PASSWORDS["carol"], source="127.0.2.1")
    assert status == 400 and "locked" in answer["error"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "users",
            "unlock",
            "carol",
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "carol@internal unlocked" in out.stdout
    status, answer = sso_token(server, "carol", PASSWORDS["carol"], source="127.0.2.2")
    assert status == 200, answer


def test_admin_locked_from_outside_still_logs_in_on_the_managers_machine(server):
    outside = _global_address()
    head = server.bus.log.head()
    guard = server.api.auth.guard
    guard.policy = LoginPolicy(delay_base=0, lock_after=5, lock_minutes=30, fold_seconds=2)
    try:
        for i in range(5):
            status, _, _ = http(
                server, "GET", "/ovirt-engine/api", password=f"guess{i}", to=outside, source=outside
            )
            assert status == 401
        assert len(_log(server, UserLocked, head)) == 1
        status, _, body = http(server, "GET", "/ovirt-engine/api", to=outside, source=outside)
        assert status == 401 and "locked" in _detail(body)
    finally:
        guard.policy = POLICY
    status, _, _ = http(server, "GET", "/ovirt-engine/api")  # from 127.0.0.1
    assert status == 200
    status, answer = sso_token(server, "admin@internal", ADMIN_PASSWORD, source="127.0.0.9")
    assert status == 200, answer
    sources = {e.source for e in _log(server, UserLoginFailed, head)}
    assert sources == {outside}


def test_a_flood_is_folded_and_shown_in_the_audit_feed(server):
    head = server.bus.log.head()
    for _ in range(20):  # one source, as fast as it goes: 2 checked, 18 throttled
        status, _ = sso_token(server, "dave@internal", "flood-guess", source="127.0.3.1")
        assert status == 400
    for _ in range(3):
        sso_token(server, "nobody-here", "flood-guess", source="127.0.3.1")
    time.sleep(POLICY.fold_seconds + 1.5)  # the fold window ends
    failed = [e for e in _log(server, UserLoginFailed, head) if e.source == "127.0.3.1"]
    assert sum(e.count for e in failed) == 20
    assert len(failed) <= 3, [e.count for e in failed]
    unknown = _log(server, UnknownUserLoginFailed, head)
    assert sum(e.count for e in unknown) == 3 and len(unknown) <= 2
    # No password in the log, in any form.
    for _, ev in server.bus.log.read(0, 100_000):
        text = repr(ev) + json.dumps(ev.payload(), default=str)
        for secret in ("flood-guess", "guess1", ADMIN_PASSWORD, *PASSWORDS.values()):
            assert secret not in text, type(ev).__name__
    # The audit feed, as the administrator sees it.
    status, _, body = http(server, "GET", "/ovirt-engine/api/events?max=500")
    assert status == 200
    entries = [
        (int(e.findtext("code") or 0), e.findtext("description") or "")
        for e in ET.fromstring(body).findall("event")
    ]
    fails = [d for c, d in entries if c == 114 and "dave@internal" in d]
    assert fails and all("127.0.3.1" in d for d in fails), fails
    folded = max(failed, key=lambda e: e.count).count
    assert any(f"({folded} attempt(s))" in d for d in fails), fails
    logins = [d for c, d in entries if c == 30]
    assert any("carol@internal" in d and "127.0.2.2" in d for d in logins), logins
    assert _log(server, UserLoggedIn, 0)
