"""Bearer sessions: login, sliding expiry, logout; the fallback admin before users exist."""

from __future__ import annotations

import time

import pytest

from api.sso import Authenticator

pytestmark = pytest.mark.unit


class _NoUsers:
    def list(self, cls_name):
        return []


def test_fallback_admin_login_expiry_and_logout():
    auth = Authenticator(_NoUsers(), fallback_password="s3cret", ttl=0.2)
    assert auth.login("admin@internal", "wrong") is None
    assert auth.login("nobody@internal", "s3cret") is None
    s = auth.login("admin", "s3cret")
    assert s is not None and s.user_name == "admin@internal"
    assert auth.session(s.token) is s
    time.sleep(0.3)
    assert auth.session(s.token) is None  # expired
    s2 = auth.login("admin@internal", "s3cret")
    assert auth.logout(s2.token) is True
    assert auth.session(s2.token) is None
    assert auth.logout("unknown") is False


def test_basic_credentials_are_checked():
    auth = Authenticator(_NoUsers(), fallback_password="pw", ttl=60)
    assert auth.basic("admin@internal", "pw") is not None
    assert auth.basic("admin@internal", "nope") is None
