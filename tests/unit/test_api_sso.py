"""Bearer sessions and logins on a real bus (SQLite log): expiry, absolute lifetime,
logout, re-checks of the user on every use, throttling, locking and folded records."""

from __future__ import annotations

import time

import pytest

from api.logins import LoginGuard, LoginPolicy
from api.sso import Authenticator, LoginRefused
from commands.bootstrap import open_bus
from commands.permission import AddPermission
from commands.system import ensure_initialized
from commands.user import AddUser, ChangeUserPassword, RemoveUser, UnlockUser, prehashed
from domain.role import find_role
from domain.system import UnknownUserLoginFailed
from domain.user import LoginFailure, User, UserLocked, UserLoggedIn, UserLoginFailed, find_user

pytestmark = pytest.mark.unit

ADMIN_PW = "s3cret-admin"
REMOTE = "192.0.2.7"  # TEST-NET-1: an address that is not loopback
OTHER = "198.51.100.9"
NO_DELAY = LoginPolicy(delay_base=0, lock_after=5, lock_minutes=30, fold_seconds=0)


@pytest.fixture
def bus(tmp_path):
    b = open_bus(None, tmp_path)
    ensure_initialized(b, admin_password=ADMIN_PW)
    uid = b.execute(prehashed(AddUser(user_name="alice@internal", password="pw-alice"))).value
    role = find_role(b.engine, "UserRole")
    assert role is not None
    b.execute(AddPermission(role_id=role.id, user_id=uid))
    yield b
    b.stop()


def _auth(bus, policy=NO_DELAY, **kw) -> Authenticator:
    auth = Authenticator(bus, ttl=kw.pop("ttl", 60), **kw)
    auth.guard = LoginGuard(bus, policy)
    return auth


def _events(bus, cls, after=0):
    return [e for _, e in bus.log.read(after, 10_000) if isinstance(e, cls)]


def test_login_idle_expiry_and_logout(bus):
    auth = _auth(bus, ttl=0.3)
    with pytest.raises(LoginRefused, match="incorrect"):
        auth.login("admin@internal", "wrong", REMOTE)
    s = auth.login("admin", ADMIN_PW, REMOTE)
    assert s.user_name == "admin@internal"
    assert auth.session(s.token) is s
    time.sleep(0.4)
    assert auth.session(s.token) is None  # idle too long
    s2 = auth.login("admin@internal", ADMIN_PW, REMOTE)
    assert auth.logout(s2.token) is True
    assert auth.session(s2.token) is None
    assert auth.logout("unknown") is False
    ok = _events(bus, UserLoggedIn)
    assert [e.source for e in ok] == [REMOTE, REMOTE]


def test_tokens_have_an_absolute_lifetime_however_busy(bus):
    auth = _auth(bus, ttl=60, lifetime=0.6)
    s = auth.login("alice", "pw-alice", REMOTE)
    for _ in range(4):  # used all the time: the idle expiry keeps moving
        assert auth.session(s.token) is s
        time.sleep(0.1)
    time.sleep(0.4)
    assert auth.session(s.token) is None


def test_password_change_ends_tokens_and_remembered_basic(bus):
    auth = _auth(bus)
    s = auth.login("alice", "pw-alice", REMOTE)
    assert auth.basic("alice", "pw-alice", REMOTE) is not None
    uid = s.user_id
    bus.execute(prehashed(ChangeUserPassword(user_id=uid, password="pw-new")))
    assert auth.session(s.token) is None
    with pytest.raises(LoginRefused):
        auth.basic("alice", "pw-alice", REMOTE)  # the old password, once remembered
    assert auth.basic("alice", "pw-new", REMOTE).user_id == uid


def test_removed_or_unpermitted_user_loses_its_token(bus):
    auth = _auth(bus)
    s = auth.login("alice", "pw-alice", REMOTE)
    b = auth.basic("alice", "pw-alice", REMOTE)
    assert b.user_id == s.user_id
    bus.execute(RemoveUser(user_id=s.user_id))
    assert auth.session(s.token) is None
    with pytest.raises(LoginRefused):
        auth.basic("alice", "pw-alice", REMOTE)


def test_logout_ends_every_token_and_basic_credential_of_the_user(bus):
    auth = _auth(bus)
    one = auth.login("alice", "pw-alice", REMOTE)
    two = auth.login("alice", "pw-alice", OTHER)
    admin = auth.login("admin", ADMIN_PW, REMOTE)
    auth.basic("alice", "pw-alice", REMOTE)
    before = len(_events(bus, UserLoggedIn))
    assert auth.logout(one.token)
    assert auth.session(two.token) is None
    assert auth.session(admin.token) is admin  # another user's stays
    # The Basic credential is checked again (a new login event), not taken from memory.
    auth.basic("alice", "pw-alice", REMOTE)
    assert len(_events(bus, UserLoggedIn)) == before + 1


def test_failures_are_throttled_per_user_and_source_with_a_growing_delay(bus):
    auth = _auth(bus, LoginPolicy(delay_base=0.4, delay_max=10, lock_after=0, fold_seconds=0))
    with pytest.raises(LoginRefused, match="incorrect"):
        auth.login("alice", "bad", REMOTE)
    with pytest.raises(LoginRefused, match="incorrect"):  # a typo is retried at once
        auth.login("alice", "bad again", REMOTE)
    # Right away again: refused without looking at the password, even the right one.
    with pytest.raises(LoginRefused, match="try again in"):
        auth.login("alice", "pw-alice", REMOTE)
    # Three failures now: the delay has doubled (0.8 s) from the throttled attempt.
    time.sleep(0.5)
    with pytest.raises(LoginRefused, match="try again in"):
        auth.login("alice", "pw-alice", REMOTE)
    third = time.monotonic()
    # Another source, or another user from this source, is not held back.
    assert auth.login("alice", "pw-alice", OTHER).user_name == "alice@internal"
    assert auth.login("admin", ADMIN_PW, REMOTE).user_name == "admin@internal"
    time.sleep(max(0.0, third + 1.7 - time.monotonic()))  # past 2 * 0.8 s after the third
    assert auth.login("alice", "pw-alice", REMOTE).user_name == "alice@internal"
    failed = _events(bus, UserLoginFailed)
    reasons = [e.reason for e in failed]
    wrong, throttled = LoginFailure.WRONG_PASSWORD, LoginFailure.THROTTLED
    assert reasons == [wrong, wrong, throttled, throttled]
    assert {e.source for e in failed} == {REMOTE}


def test_five_failures_from_any_source_lock_the_account(bus):
    auth = _auth(bus)
    for i in range(5):
        with pytest.raises(LoginRefused, match="incorrect"):
            auth.login("alice", f"bad{i}", (REMOTE, OTHER)[i % 2])
    locks = _events(bus, UserLocked)
    assert len(locks) == 1 and locks[0].failures == 5
    with pytest.raises(LoginRefused, match="locked"):
        auth.login("alice", "pw-alice", "203.0.113.1")
    with pytest.raises(LoginRefused, match="locked"):
        auth.basic("alice", "pw-alice", "127.0.0.1")  # only admin is let in locally
    with bus.lock:
        user = find_user(bus.engine, "alice")
    assert user is not None and user.locked_until
    bus.execute(UnlockUser(user_name="alice@internal"))
    assert auth.login("alice", "pw-alice", REMOTE).user_name == "alice@internal"
    assert bus.engine.get(User, user.id).failed_logins == 0


def test_a_token_of_a_user_locked_meanwhile_stops_working(bus):
    auth = _auth(bus)
    s = auth.login("alice", "pw-alice", REMOTE)
    for i in range(5):
        with pytest.raises(LoginRefused):
            auth.login("alice", f"bad{i}", OTHER)
    assert auth.session(s.token) is None


def test_admin_can_always_log_in_from_loopback(bus):
    auth = _auth(bus)
    for i in range(6):
        with pytest.raises(LoginRefused):
            auth.login("admin", f"bad{i}", REMOTE)
    with pytest.raises(LoginRefused, match="locked"):
        auth.login("admin", ADMIN_PW, REMOTE)
    for local in ("127.0.0.1", "::1"):
        s = auth.login("admin@internal", ADMIN_PW, local)
        assert auth.session(s.token) is s
    with pytest.raises(LoginRefused, match="incorrect"):
        auth.login("admin", "still-wrong", "127.0.0.1")  # the password is still checked


def test_the_lock_is_configurable(bus):
    auth = _auth(bus, LoginPolicy(delay_base=0, lock_after=2, lock_minutes=0.01, fold_seconds=0))
    for i in range(2):
        with pytest.raises(LoginRefused, match="incorrect"):
            auth.login("alice", f"bad{i}", REMOTE)
    with pytest.raises(LoginRefused, match="locked"):
        auth.login("alice", "pw-alice", REMOTE)
    time.sleep(0.7)  # 0.01 minutes
    assert auth.login("alice", "pw-alice", REMOTE).user_name == "alice@internal"


def test_a_flood_of_failures_is_folded_into_counted_events(bus):
    head = bus.log.head()
    guard = LoginGuard(bus, LoginPolicy(delay_base=0, lock_after=0, fold_seconds=0.5))
    for _ in range(40):
        guard.failed("alice@internal", REMOTE, LoginFailure.WRONG_PASSWORD)
    for _ in range(7):
        guard.failed("mallory@internal", OTHER, LoginFailure.UNKNOWN_USER)
    # The first of each window at once, the rest when the window ends.
    first = _events(bus, UserLoginFailed, head)
    assert [e.count for e in first] == [1]
    time.sleep(0.9)
    folded = _events(bus, UserLoginFailed, head)
    assert [e.count for e in folded] == [1, 39]
    unknown = _events(bus, UnknownUserLoginFailed, head)
    assert [e.count for e in unknown] == [1, 6] and unknown[0].source == OTHER
    assert bus.engine.get(User, folded[0].originator_id).failed_logins == 40


def test_folded_failures_still_lock_at_the_fifth(bus):
    head = bus.log.head()
    guard = LoginGuard(bus, LoginPolicy(delay_base=0, lock_after=5, fold_seconds=60))
    for _ in range(5):
        guard.failed("alice@internal", REMOTE, LoginFailure.WRONG_PASSWORD)
    failed = _events(bus, UserLoginFailed, head)
    assert [e.count for e in failed] == [1, 4]
    assert len(_events(bus, UserLocked, head)) == 1
    guard.close()


def test_policy_from_the_environment():
    p = LoginPolicy.from_env({"ORRERY_LOGIN_LOCK_AFTER": "3", "ORRERY_LOGIN_DELAY": "0.5"})
    assert (p.lock_after, p.delay_base, p.lock_minutes) == (3, 0.5, 30.0)
    assert [p.delay(n) for n in (0, 1, 2, 3, 4)] == [0.0, 0.0, 0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="ORRERY_LOGIN_LOCK_MINUTES"):
        LoginPolicy.from_env({"ORRERY_LOGIN_LOCK_MINUTES": "soon"})
    with pytest.raises(ValueError, match="ORRERY_LOGIN_DELAY_MAX"):
        LoginPolicy.from_env({"ORRERY_LOGIN_DELAY_MAX": "-1"})
