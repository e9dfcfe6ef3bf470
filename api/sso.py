"""Single sign-on as oVirt's engine offers it to clients: password-grant bearer tokens.

POST /ovirt-engine/sso/oauth/token (form: grant_type=password, scope, username, password)
answers JSON ``{"access_token", "scope", "exp", "token_type": "bearer"}`` or
``{"error_code": "access_denied", "error": "..."}``; POST /ovirt-engine/services/sso-logout
(form: token) revokes. Tokens live in memory and expire after ``ttl`` seconds of disuse
(``ORRERY_TOKEN_TTL``, default 1800, as oVirt's session timeout) and in any case
``lifetime`` seconds after the login (``ORRERY_TOKEN_LIFETIME``, default 28800: a working
day); a restart logs everyone out and clients log in again on the 401.

Every use of a token or of a remembered HTTP Basic credential checks the user again: it
must still exist, may still log in (not locked, a role with the login permit) and must
not have changed its password since. Changes this Manager makes count at once; changes
another process made to the log (``orrery users passwd``) once the Manager has read
them, which a request starts at most every ``SYNC_SECONDS``. Logging out ends every token
and remembered Basic credential of the user.

Passwords are checked by ``commands.user.check_login`` against the User aggregate; the
outcome is recorded in the log (``UserLoggedIn`` / folded ``UserLoginFailed``), and
failures are throttled and lock the account (``api/logins.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.logins import LoginGuard, LoginPolicy, ignores_lock
from commands.user import check_login
from domain.rules.access_rules import can_login
from domain.user import LoginFailure, User, is_locked, normalize_user_name

WRONG = "Cannot authenticate user: the user name or password is incorrect."
LOCKED = (
    "Cannot authenticate user: the account is locked after too many failed logins; "
    "an administrator can unlock it (orrery users unlock NAME)."
)
BASIC_REMEMBERED = 300.0  # seconds a checked Basic credential is remembered at most
SYNC_SECONDS = 2.0  # how often requests make the Manager read what others wrote to the log

log = logging.getLogger("orrery.api.sso")


class LoginRefused(Exception):
    """A refused login; ``str()`` is the message for the client (never the password)."""


class Session:
    __slots__ = (
        "ends",
        "expires",
        "ignore_lock",
        "stamp",
        "token",
        "user_id",
        "user_name",
    )

    def __init__(
        self,
        token: str,
        user_id: UUID | None,
        user_name: str,
        expires: float,
        *,
        ends: float = math.inf,
        stamp: str = "",
        ignore_lock: bool = False,
    ) -> None:
        self.token = token
        self.user_id = user_id
        self.user_name = user_name
        self.expires = expires  # idle expiry, moved on by each use
        self.ends = ends  # absolute expiry
        self.stamp = stamp  # the user's password_changed_at when it logged in
        self.ignore_lock = ignore_lock


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 < value < math.inf:
        raise ValueError(f"{name}={raw!r} must be a number of seconds > 0")
    return value


class Authenticator:
    def __init__(
        self,
        bus: Any,
        *,
        ttl: float | None = None,
        lifetime: float | None = None,
        policy: LoginPolicy | None = None,
        clock: Any = time.time,
    ):
        self.bus = bus
        self.ttl = ttl if ttl is not None else _env_seconds("ORRERY_TOKEN_TTL", 1800)
        self.lifetime = (
            lifetime if lifetime is not None else _env_seconds("ORRERY_TOKEN_LIFETIME", 28800)
        )
        self.clock = clock
        self.guard = LoginGuard(bus, policy)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._basic_cache: dict[tuple[str, str], tuple[float, Session]] = {}
        self._next_sync = 0.0
        self._syncing = False

    # -- passwords -----------------------------------------------------------------
    def verify(self, user_name: str, password: str, source: str = "") -> Session:
        """A session (not yet stored) for the right password of a user who may log in;
        else ``LoginRefused``. ``source`` is the client's address. Runs the slow hash:
        call it off the event loop."""
        name = normalize_user_name(user_name[:255])
        wait = self.guard.wait_left(name, source)
        if wait > 0:
            self.guard.failed(name, source, LoginFailure.THROTTLED)
            raise LoginRefused(
                f"Cannot authenticate user: too many failed logins from {source or 'here'}; "
                f"try again in {math.ceil(wait)} s."
            )
        exempt = ignores_lock(name, source)
        outcome, record = check_login(
            self.bus, name, password, source=source[:255], ignore_lock=exempt
        )
        if outcome.failure == LoginFailure.LOCKED:
            # Another process (``orrery users unlock``) may have lifted it: read the log.
            self.bus.catch_up()
            outcome, record = check_login(
                self.bus, name, password, source=source[:255], ignore_lock=exempt
            )
        if not outcome.ok:
            assert outcome.failure is not None
            self.guard.failed(name, source, outcome.failure)
            raise LoginRefused(LOCKED if outcome.failure == LoginFailure.LOCKED else WRONG)
        self.guard.succeeded(name, source)
        self.bus.execute(record)
        now = self.clock()
        with self.bus.lock:
            user = self.bus.engine.find(User, outcome.user_id)
        stamp = user.password_changed_at if user is not None else ""
        return Session(
            "",
            outcome.user_id,
            outcome.user_name,
            now + min(self.ttl, self.lifetime),
            ends=now + self.lifetime,
            stamp=stamp,
            ignore_lock=exempt,
        )

    def still_valid(self, s: Session) -> bool:
        """The user of a session exists, may log in and kept its password."""
        self._sync()
        with self.bus.lock:
            engine = self.bus.engine
            user = engine.find(User, s.user_id) if s.user_id is not None else None
            if user is None or user.password_changed_at != s.stamp:
                return False
            if not s.ignore_lock and is_locked(user, datetime.now(UTC)):
                return False
            return bool(can_login(engine, user.id))

    # -- tokens --------------------------------------------------------------------
    def login(self, user_name: str, password: str, source: str = "") -> Session:
        s = self.verify(user_name, password, source)
        s.token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[s.token] = s
            if len(self._sessions) > 100_000:
                self._expire()
        return s

    def session(self, token: str) -> Session | None:
        now = self.clock()
        with self._lock:
            s = self._sessions.get(token)
            if s is None:
                return None
            if s.expires < now or s.ends < now:
                del self._sessions[token]
                return None
        if not self.still_valid(s):
            self.end_user(s.user_id)
            return None
        with self._lock:
            s.expires = min(now + self.ttl, s.ends)
        return s

    def logout(self, token: str) -> bool:
        """Ends the token's session and every other token and remembered Basic
        credential of its user."""
        with self._lock:
            s = self._sessions.pop(token, None)
        if s is None:
            return False
        self.end_user(s.user_id)
        return True

    def end_user(self, user_id: UUID | None) -> int:
        """Ends every token and remembered Basic credential of the user; how many."""
        with self._lock:
            tokens = [t for t, s in self._sessions.items() if s.user_id == user_id]
            for t in tokens:
                del self._sessions[t]
            basics = [k for k, (_, s) in self._basic_cache.items() if s.user_id == user_id]
            for k in basics:
                del self._basic_cache[k]
        return len(tokens) + len(basics)

    def basic(self, user_name: str, password: str, source: str = "") -> Session:
        """HTTP Basic: a checked credential is remembered for a few minutes (while its
        user stays valid); else the password is checked (and the outcome recorded)."""
        key = (user_name, hashlib.sha256(password.encode()).hexdigest())
        now = self.clock()
        with self._lock:
            hit = self._basic_cache.get(key)
        if hit is not None and hit[0] >= now and hit[1].ends >= now:
            if self.still_valid(hit[1]):
                return hit[1]
            self.end_user(hit[1].user_id)
        s = self.verify(user_name, password, source)
        with self._lock:
            if len(self._basic_cache) > 10_000:
                self._basic_cache.clear()
            self._basic_cache[key] = (now + min(self.ttl, BASIC_REMEMBERED), s)
        return s

    def close(self) -> None:
        self.guard.close()

    def _sync(self) -> None:
        """Has the bus read what other processes appended to the log, in the background
        (the caller may be the event loop), at most every SYNC_SECONDS."""
        now = time.monotonic()
        with self._lock:
            if self._syncing or now < self._next_sync:
                return
            self._syncing = True
            self._next_sync = now + SYNC_SECONDS

        def run() -> None:
            try:
                self.bus.catch_up()
            except Exception as e:  # the bus stopping: the next request tries again
                log.debug("catching up with the log failed: %s", type(e).__name__)
            finally:
                self._syncing = False

        threading.Thread(target=run, name="orrery-auth-sync", daemon=True).start()

    def _expire(self) -> None:
        now = self.clock()
        for k in [k for k, s in self._sessions.items() if s.expires < now or s.ends < now]:
            del self._sessions[k]


__all__ = ["Authenticator", "LoginRefused", "Session"]
