"""Sessions over real HTTP: every request checks the user again (removed, locked, password
changed — also by another process — or its permission gone: the token and the remembered
Basic credential stop working), tokens have an absolute lifetime besides the idle one,
and logging out ends every token and remembered Basic credential of the user."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

import ovirtsdk4.types as types
import pytest

from api.sso import SYNC_SECONDS
from domain.user import UserLoggedIn
from tests.e2e.api_server import ADMIN_PASSWORD, connection, http, running_server, sso_token

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("sessions")
    with running_server(data) as srv:
        c = connection(srv)
        system = c.system_service()
        vm = system.vms_service().add(
            types.Vm(
                name="session-vm",
                cluster=types.Cluster(name="Default"),
                template=types.Template(name="Blank"),
            )
        )
        srv.vm_id = vm.id
        srv.data_dir = data
        srv.admin = c
        yield srv
        c.close()


def _user(srv, name: str, password: str, *, role: bool = True) -> str:
    system = srv.admin.system_service()
    u = system.users_service().add(
        types.User(user_name=name, domain=types.Domain(name="internal"), password=password)
    )
    if role:
        system.vms_service().vm_service(srv.vm_id).permissions_service().add(
            types.Permission(role=types.Role(name="UserRole"), user=types.User(id=u.id))
        )
    return u.id


def _vms(srv, **auth) -> tuple[int, list[str]]:
    status, _, body = http(srv, "GET", "/ovirt-engine/api/vms", **auth)
    if status != 200:
        return status, []
    return status, [v.findtext("name") or "" for v in ET.fromstring(body).findall("vm")]


def _logins(srv) -> int:
    return sum(isinstance(e, UserLoggedIn) for _, e in srv.bus.log.read(0, 100_000))


def test_anonymous_and_a_made_up_token_are_401(server):
    assert _vms(server, user=None)[0] == 401
    assert _vms(server, token="not-a-token")[0] == 401


def test_user_without_permission_gets_no_token(server):
    _user(server, "nopriv", "pw-nopriv", role=False)
    status, body = sso_token(server, "nopriv", "pw-nopriv")
    assert status == 400 and body["error_code"] == "access_denied"


def test_removing_a_user_ends_its_token_and_basic_credential(server):
    uid = _user(server, "gone", "pw-gone")
    status, body = sso_token(server, "gone", "pw-gone")
    assert status == 200
    token = body["access_token"]
    assert _vms(server, token=token) == (200, ["session-vm"])
    assert _vms(server, user="gone", password="pw-gone") == (200, ["session-vm"])
    status, _, _ = http(server, "DELETE", f"/ovirt-engine/api/users/{uid}")
    assert status == 200
    assert _vms(server, token=token)[0] == 401
    assert _vms(server, user="gone", password="pw-gone")[0] == 401
    assert _vms(server)[0] == 200  # the superuser's own credentials go on working


def test_removing_the_permission_ends_the_token(server):
    uid = _user(server, "perm", "pw-perm")
    status, body = sso_token(server, "perm", "pw-perm")
    assert status == 200
    token = body["access_token"]
    assert _vms(server, token=token)[0] == 200
    perms = server.admin.system_service().vms_service().vm_service(server.vm_id)
    for p in perms.permissions_service().list():
        if p.user is not None and p.user.id == uid:
            perms.permissions_service().permission_service(p.id).remove()
    assert _vms(server, token=token)[0] == 401


def test_a_locked_account_loses_its_token(server):
    _user(server, "lockme", "pw-lockme")
    status, body = sso_token(server, "lockme", "pw-lockme")
    assert status == 200
    token = body["access_token"]
    assert _vms(server, token=token)[0] == 200
    for i in range(5):  # from five addresses: no throttling in the way
        assert sso_token(server, "lockme", "wrong", source=f"127.0.4.{i}")[0] == 400
    assert _vms(server, token=token)[0] == 401


def test_a_password_changed_by_another_process_ends_tokens_and_basic(server):
    _user(server, "erin", "pw-erin-old")
    status, body = sso_token(server, "erin", "pw-erin-old")
    assert status == 200
    token = body["access_token"]
    assert _vms(server, token=token)[0] == 200
    assert _vms(server, user="erin", password="pw-erin-old")[0] == 200  # now remembered
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "users",
            "passwd",
            "erin",
            "--password-stdin",
            "--data-dir",
            str(server.data_dir),
        ],
        input="pw-erin-new\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + SYNC_SECONDS + 3
    while _vms(server, token=token)[0] == 200:
        assert time.monotonic() < deadline, "the old token still works"
        time.sleep(0.2)
    assert _vms(server, user="erin", password="pw-erin-old")[0] == 401
    assert _vms(server, user="erin", password="pw-erin-new") == (200, ["session-vm"])


def test_tokens_have_an_absolute_lifetime(server):
    _user(server, "busy", "pw-busy")
    auth = server.api.auth
    old = auth.lifetime
    auth.lifetime = 1.5
    try:
        status, body = sso_token(server, "busy", "pw-busy")
    finally:
        auth.lifetime = old
    assert status == 200
    token = body["access_token"]
    assert int(body["exp"]) / 1000 <= time.time() + 1.5
    start = time.monotonic()
    while time.monotonic() - start < 1.2:  # in use all the time: idle expiry never reached
        assert _vms(server, token=token)[0] == 200
        time.sleep(0.2)
    time.sleep(0.6)
    assert _vms(server, token=token)[0] == 401


def test_logout_ends_every_token_and_basic_credential_of_the_user(server):
    _user(server, "frank", "pw-frank")
    one = sso_token(server, "frank", "pw-frank")[1]["access_token"]
    two = sso_token(server, "frank", "pw-frank", source="127.0.0.5")[1]["access_token"]
    assert _vms(server, user="frank", password="pw-frank")[0] == 200
    admin = sso_token(server, "admin@internal", ADMIN_PASSWORD)[1]["access_token"]
    status, _, _ = http(
        server,
        "POST",
        "/ovirt-engine/services/sso-logout",
        urllib.parse.urlencode({"token": one}).encode(),
        user=None,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert _vms(server, token=one)[0] == 401
    assert _vms(server, token=two)[0] == 401
    assert _vms(server, token=admin)[0] == 200  # another user's token stays
    # The Basic credential is no longer remembered: checked again, a new login event.
    before = _logins(server)
    assert _vms(server, user="frank", password="pw-frank")[0] == 200
    assert _logins(server) == before + 1
