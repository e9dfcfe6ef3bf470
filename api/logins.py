"""Login throttling, the account lock policy, and folded records of failed logins.

Per (user, source address): after n >= 2 consecutive failures, the next attempt is not
even checked before ``delay_base * 2**(n-2)`` seconds (at most ``delay_max``) have passed
since the last one (the first failure costs nothing: a typo is retried at once); an
attempt sooner is refused unchecked and counts as one more failure.
After ``lock_after`` consecutive failures from any source the account is locked for
``lock_minutes``: the domain decides it from the policy the record command carries, so
the log says why. ``admin@internal`` logging in from the Manager's own machine (a
loopback address) ignores the lock.

A flood is folded: the first failure of (user, source) in a ``fold_seconds`` window is
recorded at once; the others of that window become one event with their count when the
window ends, or at once when they bring the account to its lock, or before a success.

The policy comes from the environment (``LoginPolicy.from_env``):
``ORRERY_LOGIN_DELAY`` (s, default 1), ``ORRERY_LOGIN_DELAY_MAX`` (s, 300),
``ORRERY_LOGIN_LOCK_AFTER`` (failures, 5; 0 never locks), ``ORRERY_LOGIN_LOCK_MINUTES``
(30), ``ORRERY_LOGIN_FOLD_SECONDS`` (30).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from commands.user import RecordLoginFailure
from domain.user import ADMIN_USER_NAME, LoginFailure, find_user, is_locked

log = logging.getLogger("orrery.api.logins")

MAX_KEYS = 10_000


@dataclass(frozen=True)
class LoginPolicy:
    delay_base: float = 1.0
    delay_max: float = 300.0
    lock_after: int = 5
    lock_minutes: float = 30.0
    fold_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoginPolicy:
        """The policy from ``ORRERY_LOGIN_*``; a bad value is an error naming it."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field, var, kind in (
            ("delay_base", "ORRERY_LOGIN_DELAY", float),
            ("delay_max", "ORRERY_LOGIN_DELAY_MAX", float),
            ("lock_after", "ORRERY_LOGIN_LOCK_AFTER", int),
            ("lock_minutes", "ORRERY_LOGIN_LOCK_MINUTES", float),
            ("fold_seconds", "ORRERY_LOGIN_FOLD_SECONDS", float),
        ):
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a number") from None
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"{var}={raw!r} must be a finite number >= 0")
            values[field] = value
        return cls(**values)

    def delay(self, failures: int) -> float:
        """How long after the last of ``failures`` consecutive failures the next attempt
        waits: nothing after the first (a mistyped password is retried at once), then
        ``delay_base``, doubling with each failure up to ``delay_max``."""
        if failures <= 1 or self.delay_base <= 0:
            return 0.0
        return float(min(self.delay_max, self.delay_base * 2 ** min(failures - 2, 60)))


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def ignores_lock(user_name: str, address: str) -> bool:
    """``admin@internal`` on the Manager's own machine can always log in."""
    return user_name == ADMIN_USER_NAME and is_loopback(address)


class _Source:
    """What is known of one (user, source): consecutive failures, the window."""

    __slots__ = ("failures", "last", "pending", "reason", "timer", "window_end")

    def __init__(self) -> None:
        self.failures = 0
        self.last = 0.0
        self.window_end = 0.0
        self.pending = 0
        self.reason = LoginFailure.WRONG_PASSWORD
        self.timer: threading.Timer | None = None


class LoginGuard:
    """Throttles and records failed logins (thread-safe; the callers run in executors)."""

    def __init__(
        self,
        bus: Any,
        policy: LoginPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.policy = policy or LoginPolicy.from_env()
        self.clock = clock
        self._lock = threading.Lock()
        self._sources: dict[tuple[str, str], _Source] = {}
        self._closed = False

    def wait_left(self, user_name: str, address: str) -> float:
        """Seconds before an attempt of (user, source) is checked again; 0: now."""
        with self._lock:
            s = self._sources.get((user_name, address))
            if s is None or s.failures == 0:
                return 0.0
            return max(0.0, s.last + self.policy.delay(s.failures) - self.clock())

    def failed(self, user_name: str, address: str, reason: LoginFailure) -> None:
        """One failed attempt: the delay grows; recorded now or folded."""
        now = self.clock()
        key = (user_name, address)
        record: tuple[int, LoginFailure] | None = None
        with self._lock:
            s = self._sources.get(key)
            if s is None:
                if len(self._sources) >= MAX_KEYS:
                    self._evict()
                s = self._sources[key] = _Source()
            s.failures += 1
            s.last = now
            if now >= s.window_end:
                # A new window: flush what the old one held, record this one now.
                leftover = (s.pending, s.reason) if s.pending else None
                self._cancel(s)
                s.pending = 0
                s.window_end = now + self.policy.fold_seconds
                if leftover is not None:
                    self._record(user_name, address, *leftover)
                record = (1, reason)
                if self.policy.fold_seconds > 0:
                    self._schedule(key, s)
            else:
                s.pending += 1
                s.reason = reason
                if self._reaches_lock(user_name, s.pending):
                    record = (s.pending, reason)
                    s.pending = 0
        if record is not None:
            self._record(user_name, address, *record)

    def succeeded(self, user_name: str, address: str) -> None:
        """A success: folded failures are recorded first, the delay is forgotten."""
        with self._lock:
            s = self._sources.pop((user_name, address), None)
            if s is not None:
                self._cancel(s)
        if s is not None and s.pending:
            self._record(user_name, address, s.pending, s.reason)

    def forget(self, user_name: str) -> None:
        """An unlock: the user's delays start afresh (folded failures are recorded)."""
        with self._lock:
            keys = [k for k in self._sources if k[0] == user_name]
            gone = [(k, self._sources.pop(k)) for k in keys]
            for _, s in gone:
                self._cancel(s)
        for (user, address), s in gone:
            if s.pending:
                self._record(user, address, s.pending, s.reason)

    def close(self) -> None:
        """Records what is still folded and stops the timers."""
        with self._lock:
            self._closed = True
            items = list(self._sources.items())
            self._sources.clear()
            for _, s in items:
                self._cancel(s)
        for (user, address), s in items:
            if s.pending:
                self._record(user, address, s.pending, s.reason)

    # -- internals ---------------------------------------------------------------------
    def _reaches_lock(self, user_name: str, pending: int) -> bool:
        after = self.policy.lock_after
        if after <= 0:
            return False
        with self.bus.lock:
            user = find_user(self.bus.engine, user_name)
        if user is None or is_locked(user, datetime.now(UTC)):
            return False
        return user.failed_logins + pending >= after

    def _schedule(self, key: tuple[str, str], s: _Source) -> None:
        if self._closed:
            return
        t = threading.Timer(self.policy.fold_seconds, self._window_ended, args=(key, s))
        t.daemon = True
        s.timer = t
        t.start()

    def _window_ended(self, key: tuple[str, str], s: _Source) -> None:
        with self._lock:
            if s.timer is None or s.pending == 0:
                s.timer = None
                return
            s.timer = None
            pending, reason = s.pending, s.reason
            s.pending = 0
        self._record(key[0], key[1], pending, reason)

    @staticmethod
    def _cancel(s: _Source) -> None:
        if s.timer is not None:
            s.timer.cancel()
            s.timer = None

    def _evict(self) -> None:
        """Drops the oldest sources without folded failures (under the lock)."""
        for key in sorted(self._sources, key=lambda k: self._sources[k].last)[: MAX_KEYS // 10]:
            s = self._sources[key]
            if not s.pending:
                self._cancel(s)
                del self._sources[key]

    def _record(self, user_name: str, address: str, count: int, reason: LoginFailure) -> None:
        cmd = RecordLoginFailure(
            user_name=user_name[:255],
            reason=reason,
            source=address[:255],
            count=count,
            lock_after=self.policy.lock_after,
            lock_minutes=self.policy.lock_minutes,
        )
        try:
            self.bus.execute(cmd)
        except Exception as e:  # a failed record must not turn a refusal into a 500
            log.warning("could not record %d failed login(s): %s", count, type(e).__name__)


__all__ = ["LoginGuard", "LoginPolicy", "ignores_lock", "is_loopback"]
