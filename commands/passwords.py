"""Password hashing for internal users: argon2id, memory-hard, verified in constant time.

The plain password lives only here and in the command that carries it (whose repr hides
it); events, the Engine and every message see the encoded hash only. ``check_password``
also says when a stored hash used older parameters, so a successful login can re-hash.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hmac
import secrets
from collections.abc import Iterator
from typing import Any

import msgspec
from argon2 import PasswordHasher, Type, exceptions, extract_parameters
from argon2.low_level import hash_secret_raw

from domain.base import InvalidInput

# RFC 9106's second recommended option: argon2id, t=3, 64 MiB, 4 lanes; 16-byte salt.
TIME_COST = 3
MEMORY_COST = 64 * 1024  # KiB
PARALLELISM = 4
HASH_LEN = 32
SALT_LEN = 16
MAX_PASSWORD_LENGTH = 1024

_HASHER = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST,
    parallelism=PARALLELISM,
    hash_len=HASH_LEN,
    salt_len=SALT_LEN,
    type=Type.ID,
)
HIDDEN = "'***'"


@functools.cache
def _dummy_hash() -> str:
    """Verified against when there is no hash (unknown user, no password), so such
    attempts cost as much time as a real one and do not reveal which names exist."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hide_secrets(*fields: str) -> tuple[Any, Any]:
    """``__repr__`` and ``__rich_repr__`` for a command Struct that show ``fields`` as ***.

    Use in the class body: ``__repr__, __rich_repr__ = hide_secrets("password")``.
    """

    def items(self: Any) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in fields and value is not None:
                yield name, _Masked()
            else:
                yield name, value

    def __repr__(self: Any) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in items(self))
        return f"{type(self).__name__}({body})"

    def __rich_repr__(self: Any) -> Iterator[tuple[str, Any]]:
        yield from items(self)

    return __repr__, __rich_repr__


class _Masked:
    __slots__ = ()

    def __repr__(self) -> str:
        return HIDDEN


class Verified(msgspec.Struct, frozen=True):
    """The outcome of a check: ``ok``, and a fresh hash when the stored one is outdated."""

    ok: bool
    rehash: str | None = None

    def __repr__(self) -> str:
        return f"Verified(ok={self.ok}, rehash={'***' if self.rehash else None})"


def validate_password(password: str) -> str:
    """Refuses an empty or oversized password; the message never contains the password."""
    if not isinstance(password, str) or not password:
        raise InvalidInput("The password must not be empty.", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password must be at most {MAX_PASSWORD_LENGTH} characters.", field="password"
        )
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("The password is not valid text.", field="password") from None
    return password


def hash_password(password: str) -> str:
    """The argon2id encoded hash (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``)."""
    return _HASHER.hash(validate_password(password))


# Bounds on the parameters of a hash we accept from outside (an imported user), so a
# crafted hash cannot make each login attempt allocate gigabytes or spin for minutes.
MAX_MEMORY_COST = 256 * 1024  # KiB
MAX_TIME_COST = 16
MAX_PARALLELISM = 16


def is_password_hash(value: str) -> bool:
    """Whether ``value`` is an argon2id encoded hash this module can verify, with
    parameters within sane bounds."""
    if not isinstance(value, str) or not value.startswith("$argon2id$"):
        return False
    try:
        p = extract_parameters(value)
        salt_b64, digest_b64 = value.rsplit("$", 2)[-2:]
        salt, digest = _b64decode(salt_b64), _b64decode(digest_b64)
    except (exceptions.InvalidHashError, ValueError):
        return False
    return (
        1 <= p.time_cost <= MAX_TIME_COST
        and 8 <= p.memory_cost <= MAX_MEMORY_COST
        and 1 <= p.parallelism <= MAX_PARALLELISM
        and len(salt) >= 8
        and 16 <= len(digest) <= 64
    )


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the encoded hash, compared in constant time.

    The candidate is hashed with the stored salt and parameters and the two digests are
    compared with ``hmac.compare_digest``. A missing or malformed hash still costs one
    full hash, then fails.
    """
    try:
        secret = password.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        secret = None
    if secret is None or not password_hash or not is_password_hash(password_hash):
        _spend()
        return False
    try:
        params = extract_parameters(password_hash)
        salt_b64, digest_b64 = password_hash.rsplit("$", 2)[-2:]
        salt, expected = _b64decode(salt_b64), _b64decode(digest_b64)
        actual = hash_secret_raw(
            secret=secret,
            salt=salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=len(expected),
            type=Type.ID,
            version=params.version,
        )
    except (ValueError, exceptions.HashingError):
        return False
    return hmac.compare_digest(actual, expected)


def _spend() -> None:
    """One verification's worth of work whose outcome is thrown away."""
    with contextlib.suppress(exceptions.VerificationError):
        _HASHER.verify(_dummy_hash(), "-")


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    return _HASHER.check_needs_rehash(password_hash)


def check_password(password_hash: str | None, password: str) -> Verified:
    """Verifies; on success with outdated parameters also returns the password re-hashed."""
    if not verify_password(password_hash, password):
        return Verified(False)
    assert password_hash is not None
    if needs_rehash(password_hash):
        return Verified(True, _HASHER.hash(password))
    return Verified(True)


def generate_password(nbytes: int = 18) -> str:
    """A random password for the first administrator (24 URL-safe characters)."""
    return secrets.token_urlsafe(nbytes)


__all__ = [
    "HIDDEN",
    "Verified",
    "check_password",
    "generate_password",
    "hash_password",
    "hide_secrets",
    "is_password_hash",
    "needs_rehash",
    "validate_password",
    "verify_password",
]
