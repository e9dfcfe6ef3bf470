"""The portals' session rules without a server: cookies, CSRF tokens, Origin checks and
where a login may send the browser."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from api.portal import session as sess
from api.sso import Session

pytestmark = pytest.mark.unit


class _Auth:
    def __init__(self) -> None:
        self.live = {"tok-a": Session("tok-a", None, "admin@internal", 1e12)}
        self.revoked: list[str] = []

    def session(self, token: str) -> Any:
        return self.live.get(token)

    def logout(self, token: str) -> bool:
        self.revoked.append(token)
        return self.live.pop(token, None) is not None


def _req(headers: dict[str, str] | None = None, secure: bool = False, host: str = "m:8443"):
    h = {"Host": host, **(headers or {})}
    ctx = ssl.create_default_context() if secure else None
    return make_mocked_request("POST", "/ovirt-engine/portal/api/vms", headers=h, sslcontext=ctx)


def test_session_cookie_is_httponly_strict_and_secure_only_under_https() -> None:
    s = sess.Sessions(_Auth())
    for secure in (False, True):
        resp = web.Response()
        s.set_cookie(resp, _req(secure=secure), sess.COOKIE, "tok-a")
        morsel = resp.cookies[sess.COOKIE]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/ovirt-engine"
        assert bool(morsel["secure"]) is secure


def test_csrf_token_belongs_to_its_session_and_process() -> None:
    auth = _Auth()
    s = sess.Sessions(auth)
    a = auth.live["tok-a"]
    token = s.csrf_for(a)
    s.check_csrf(_req({"X-CSRF-Token": token}), a, {})
    s.check_csrf(_req(), a, {"csrf_token": token})
    other = Session("tok-b", None, "x@internal", 1e12)
    for given in ("", "0" * 64, s.csrf_for(other), sess.Sessions(auth).csrf_for(a)):
        with pytest.raises(sess.Refused):
            s.check_csrf(_req({"X-CSRF-Token": given} if given else {}), a, {})


def test_login_form_token_must_match_its_cookie() -> None:
    s = sess.Sessions(_Auth())
    ok = _req({"Cookie": f"{sess.LOGIN_COOKIE}=abc123"})
    s.check_login_csrf(ok, {"csrf_token": "abc123"})
    for req, form in (
        (ok, {"csrf_token": "abc124"}),
        (ok, {}),
        (_req(), {"csrf_token": "abc123"}),
    ):
        with pytest.raises(sess.Refused):
            s.check_login_csrf(req, form)


def test_logout_revokes_the_token() -> None:
    auth = _Auth()
    s = sess.Sessions(auth)
    resp = web.Response()
    s.end(_req({"Cookie": f"{sess.COOKIE}=tok-a"}), resp)
    assert auth.revoked == ["tok-a"] and auth.session("tok-a") is None
    assert resp.cookies[sess.COOKIE].value == ""


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({}, True),
        ({"Origin": "http://m:8443"}, True),
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Origin": "http://m:8444"}, False),
        ({"Origin": "https://m:8443"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "http://evil.example"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
    ],
)
def test_origin_check(headers: dict[str, str], ok: bool) -> None:
    if ok:
        sess.check_origin(_req(headers))
    else:
        with pytest.raises(sess.Refused):
            sess.check_origin(_req(headers))


def test_origin_under_https_is_the_https_origin() -> None:
    sess.check_origin(_req({"Origin": "https://m:8443"}, secure=True))
    with pytest.raises(sess.Refused):
        sess.check_origin(_req({"Origin": "http://m:8443"}, secure=True))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ovirt-engine/web-ui/", "/ovirt-engine/web-ui/"),
        (
            "/ovirt-engine/webadmin/vms?search=name%3Dx",
            "/ovirt-engine/webadmin/vms?search=name%3Dx",
        ),
        ("https://evil.example/", "/d/"),
        ("//evil.example/ovirt-engine/", "/d/"),
        ("/ovirt-engine", "/d/"),
        ("/ovirt-engine/\\evil", "/d/"),
        ("/ovirt-engine/x\r\nSet-Cookie: a=b", "/d/"),
        ("", "/d/"),
        (None, "/d/"),
    ],
)
def test_login_goes_only_to_portal_paths(target: str | None, expected: str) -> None:
    assert sess.safe_next(target, "/d/") == expected


def test_every_page_gets_a_csp_without_inline_script() -> None:
    resp = sess.secure_headers(web.Response())
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
