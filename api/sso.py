"""Single sign-on as oVirt's engine offers it to clients: password-grant bearer tokens.

POST /ovirt-engine/sso/oauth/token (form: grant_type=password, scope, username, password)
answers JSON ``{"access_token", "scope", "exp", "token_type": "bearer"}`` or
``{"error_code": "access_denied", "error": "..."}``; POST /ovirt-engine/services/sso-logout
(form: token) revokes. Tokens live in memory and expire after ``ttl`` seconds of disuse
(``ORRERY_TOKEN_TTL``, default 1800, as oVirt's session timeout) — a restart logs everyone
out and clients log in again on the 401.

Passwords are checked through ``commands.passwords`` against the User aggregate's
``password_hash``. Until the user area has landed, the only account is ``admin@internal``
with the password the server was started with.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from typing import Any
from uuid import UUID

from commands import passwords, user

log = logging.getLogger("orrery.api.sso")


class Session:
    __slots__ = ("expires", "token", "user_id", "user_name")

    def __init__(self, token: str, user_id: UUID | None, user_name: str, expires: float) -> None:
        self.token = token
        self.user_id = user_id
        self.user_name = user_name
        self.expires = expires


def _verify(password_hash: str, password: str) -> bool:
    """Checks a password against its stored hash (``commands.passwords``)."""
    return passwords.verify_password(password_hash, password)


class Authenticator:
    def __init__(
        self,
        reads: Any,
        *,
        bus: Any = None,
        fallback_password: str | None = None,
        ttl: float | None = None,
    ):
        self.reads = reads
        self.bus = bus
        self.ttl = ttl if ttl is not None else float(os.environ.get("ORRERY_TOKEN_TTL", "1800"))
        self.fallback_password = fallback_password
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._basic_cache: dict[tuple[str, str], tuple[float, tuple[UUID | None, str]]] = {}

    # -- users ---------------------------------------------------------------------
    def find_user(self, user_name: str) -> Any:
        name = user_name.strip()
        if "@" not in name:
            name += "@internal"
        for u in self.reads.list("User"):
            if getattr(u, "user_name", None) == name:
                return u
        return None

    def check_password(self, user_name: str, password: str) -> tuple[UUID | None, str] | None:
        """(user id, canonical name) for the right password, else None."""
        user = self.find_user(user_name)
        if user is not None:
            h = getattr(user, "password_hash", None)
            if h and _verify(h, password):
                if getattr(user, "disabled", False) or getattr(user, "locked", False):
                    return None
                return user.id, user.user_name
            return None
        name = user_name if "@" in user_name else user_name + "@internal"
        if (
            name == "admin@internal"
            and self.fallback_password is not None
            and not self.reads.list("User")
            and hmac.compare_digest(password.encode(), self.fallback_password.encode())
        ):
            return None, name
        return None

    # -- tokens --------------------------------------------------------------------
    def verify(self, user_name: str, password: str, source: str = "") -> tuple[Any, str] | None:
        """(user id, full name) when the password is right and the user may log in.

        With the user area present, ``commands.user.authenticate`` decides and records the
        outcome (UserLoggedIn / UserLoginFailed); otherwise the fallback admin password.
        """
        auth = _authenticate_fn()
        if auth is not None and self.bus is not None:
            out = auth(self.bus, user_name[:255], password, source=source[:255])
            return (out.user_id, out.user_name) if out.ok else None
        return self.check_password(user_name, password)

    @property
    def records_failures(self) -> bool:
        return _authenticate_fn() is not None and self.bus is not None

    def login(self, user_name: str, password: str, source: str = "") -> Session | None:
        who = self.verify(user_name, password, source)
        if who is None:
            return None
        token = secrets.token_urlsafe(32)
        s = Session(token, who[0], who[1], time.time() + self.ttl)
        with self._lock:
            self._sessions[token] = s
            if len(self._sessions) > 100_000:
                self._expire()
        return s

    def session(self, token: str) -> Session | None:
        now = time.time()
        with self._lock:
            s = self._sessions.get(token)
            if s is None:
                return None
            if s.expires < now:
                del self._sessions[token]
                return None
            s.expires = now + self.ttl
            return s

    def logout(self, token: str) -> bool:
        with self._lock:
            return self._sessions.pop(token, None) is not None

    def basic(self, user_name: str, password: str, source: str = "") -> Session | None:
        """HTTP Basic: the password check is remembered for a few minutes."""
        import hashlib

        key = (user_name, hashlib.sha256(password.encode()).hexdigest())
        now = time.time()
        with self._lock:
            hit = self._basic_cache.get(key)
        if hit is None or hit[0] < now:
            who = self.verify(user_name, password, source)
            if who is None:
                return None
            hit = (now + min(self.ttl, 300), who)
            with self._lock:
                if len(self._basic_cache) > 10_000:
                    self._basic_cache.clear()
                self._basic_cache[key] = hit
        return Session("", hit[1][0], hit[1][1], now + self.ttl)

    def _expire(self) -> None:
        now = time.time()
        for k in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[k]


def _authenticate_fn() -> Any:
    return user.authenticate


async def record_login_failure(bus: Any, user_name: str, reason: str, source: str) -> None:
    """Records a failed login through the user area's command, when it exists."""
    import commands.all  # noqa: F401
    from commands.messages import COMMAND_TYPES, parse_command

    for name in ("RecordLoginFailure", "RecordLoginFailed", "RecordFailedLogin"):
        cls = COMMAND_TYPES.get(name)
        if cls is None:
            continue
        fields = set(cls.__struct_fields__)
        data: dict[str, Any] = {}
        for k, v in (
            ("user_name", user_name),
            ("username", user_name),
            ("reason", reason),
            ("source", source),
            ("address", source),
        ):
            if k in fields:
                data[k] = v
        try:
            await bus.execute_async(parse_command(cls, data))
        except Exception as e:  # a failed record must not turn into a 500
            log.warning("could not record the login failure: %s", type(e).__name__)
        return
