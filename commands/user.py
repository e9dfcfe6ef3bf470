"""User and group commands, login recording, and ``authenticate`` for the API's SSO.

Commands that carry a password never show it in their repr; their handler hashes it
(argon2id) so only the hash reaches the event. Hashing costs ~0.3 s, so callers off the
writer thread should pass the command through ``prehashed`` first: the writer then only
checks and records.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.passwords import (
    MAX_PASSWORD_LENGTH,
    check_password,
    hash_password,
    hide_secrets,
    is_password_hash,
)
from commands.registry import handles
from domain import user as users
from domain.base import InvalidInput, Tx
from domain.rules import user_rules
from domain.rules.access_rules import can_login
from domain.user import LoginFailure

if TYPE_CHECKING:
    from commands.bus import CommandBus

Password = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
PasswordHash = Annotated[str, msgspec.Meta(max_length=1024)]
Source = Annotated[str, msgspec.Meta(max_length=255)]


class AddUser(Command, frozen=True, kw_only=True):
    """``user_name`` is NAME@DOMAIN (a bare NAME means NAME@internal). Only internal users
    get a password; users of other domains are added by name."""

    user_name: Name
    password: Password | None = None
    password_hash: PasswordHash | None = None
    name: ShortText = ""
    last_name: ShortText = ""
    email: ShortText = ""
    id: UUID | None = None

    __repr__, __rich_repr__ = hide_secrets("password", "password_hash")


class UpdateUser(Command, frozen=True, kw_only=True):
    user_id: UUID
    name: ShortText | UnsetType = UNSET
    last_name: ShortText | UnsetType = UNSET
    email: ShortText | UnsetType = UNSET


class RemoveUser(Command, frozen=True, kw_only=True):
    user_id: UUID


class ChangeUserPassword(Command, frozen=True, kw_only=True):
    """By ``user_id`` or ``user_name``; carries the new password or its hash."""

    user_id: UUID | None = None
    user_name: Name | None = None
    password: Password | None = None
    password_hash: PasswordHash | None = None

    __repr__, __rich_repr__ = hide_secrets("password", "password_hash")


class AddGroup(Command, frozen=True, kw_only=True):
    name: Name
    domain: Name = users.INTERNAL_DOMAIN
    description: ShortText = ""
    id: UUID | None = None


class RemoveGroup(Command, frozen=True, kw_only=True):
    group_id: UUID


class AddUserToGroup(Command, frozen=True, kw_only=True):
    user_id: UUID
    group_id: UUID


class RemoveUserFromGroup(Command, frozen=True, kw_only=True):
    user_id: UUID
    group_id: UUID


class RecordLoginSuccess(Command, frozen=True, kw_only=True):
    """A login the caller verified; ``rehash`` replaces an outdated hash of the password."""

    user_id: UUID
    source: Source = ""
    rehash: PasswordHash | None = None

    __repr__, __rich_repr__ = hide_secrets("rehash")


class RecordLoginFailure(Command, frozen=True, kw_only=True):
    """``count`` failed attempts (folded); ``lock_after`` > 0 locks the account for
    ``lock_minutes`` once its consecutive failures reach it (the policy in force, so the
    log says why an account was locked)."""

    user_name: Annotated[str, msgspec.Meta(max_length=255)]
    reason: LoginFailure
    source: Source = ""
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    lock_after: Annotated[int, msgspec.Meta(ge=0)] = 0
    lock_minutes: Annotated[float, msgspec.Meta(ge=0)] = 0


class UnlockUser(Command, frozen=True, kw_only=True):
    """Lifts a lock after failed logins (``orrery users unlock NAME``)."""

    user_id: UUID | None = None
    user_name: Name | None = None


# -- handlers --------------------------------------------------------------------------------


def _hash_of(password: str | None, password_hash: str | None) -> str | None:
    if password is not None and password_hash is not None:
        raise InvalidInput("Give either a password or its hash, not both.", field="password")
    if password is not None:
        return hash_password(password)
    if password_hash is not None and not is_password_hash(password_hash):
        raise InvalidInput("The password hash is not an argon2id hash.", field="password_hash")
    return password_hash


@handles(AddUser)
def _add_user(tx: Tx, c: AddUser) -> UUID:
    if c.password is not None or c.password_hash is not None:
        # Refuse a directory user's password before spending a hash on it.
        users.require_password_domain(users.split_user_name(c.user_name)[1], "add User")
    return users.add_user(
        tx,
        user_name=c.user_name,
        password_hash=_hash_of(c.password, c.password_hash),
        name=c.name,
        last_name=c.last_name,
        email=c.email,
        id=c.id,
    )


@handles(UpdateUser)
def _update_user(tx: Tx, c: UpdateUser) -> None:
    users.update_user(tx, c.user_id, name=c.name, last_name=c.last_name, email=c.email)


@handles(RemoveUser)
def _remove_user(tx: Tx, c: RemoveUser) -> None:
    user_rules.remove_user(tx, c.user_id)


def _target_user(tx: Tx, user_id: UUID | None, user_name: str | None) -> users.User:
    if (user_id is None) == (user_name is None):
        raise InvalidInput("Give either user_id or user_name.", field="user_id")
    if user_id is not None:
        return tx.engine.get(users.User, user_id, field="user_id")
    assert user_name is not None
    return users.get_user(tx.engine, user_name)


@handles(ChangeUserPassword)
def _change_password(tx: Tx, c: ChangeUserPassword) -> None:
    target = _target_user(tx, c.user_id, c.user_name)
    if c.password is None and c.password_hash is None:
        raise InvalidInput("A new password is required.", field="password")
    users.require_password_domain(target.domain, "change password")  # before hashing
    new_hash = _hash_of(c.password, c.password_hash)
    assert new_hash is not None
    users.change_password(tx, target.id, new_hash)


@handles(AddGroup)
def _add_group(tx: Tx, c: AddGroup) -> UUID:
    return users.add_group(tx, name=c.name, domain=c.domain, description=c.description, id=c.id)


@handles(RemoveGroup)
def _remove_group(tx: Tx, c: RemoveGroup) -> None:
    user_rules.remove_group(tx, c.group_id)


@handles(AddUserToGroup)
def _add_to_group(tx: Tx, c: AddUserToGroup) -> None:
    users.add_user_to_group(tx, c.user_id, c.group_id)


@handles(RemoveUserFromGroup)
def _remove_from_group(tx: Tx, c: RemoveUserFromGroup) -> None:
    users.remove_user_from_group(tx, c.user_id, c.group_id)


@handles(RecordLoginSuccess)
def _login_ok(tx: Tx, c: RecordLoginSuccess) -> None:
    if c.rehash is not None and not is_password_hash(c.rehash):
        raise InvalidInput("The password hash is not an argon2id hash.", field="rehash")
    users.record_login_success(tx, c.user_id, source=c.source, rehash=c.rehash)


@handles(RecordLoginFailure)
def _login_failed(tx: Tx, c: RecordLoginFailure) -> UUID | None:
    return user_rules.record_login_failure(
        tx,
        c.user_name,
        c.reason,
        source=c.source,
        count=c.count,
        lock_after=c.lock_after,
        lock_minutes=c.lock_minutes,
    )


@handles(UnlockUser)
def _unlock(tx: Tx, c: UnlockUser) -> None:
    users.unlock_user(tx, _target_user(tx, c.user_id, c.user_name).id)


# -- helpers for callers off the writer thread ---------------------------------------------

P = TypeVar("P", AddUser, ChangeUserPassword)


def prehashed(cmd: P) -> P:
    """The command with its plain password replaced by the hash (do this before submitting
    so the ~0.3 s of hashing is not spent on the writer thread)."""
    if cmd.password is None:
        return cmd
    return msgspec.structs.replace(cmd, password=None, password_hash=hash_password(cmd.password))


class LoginOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What ``authenticate`` found: the user's id when it may log in, else why not."""

    user_id: UUID | None = None
    user_name: str = ""
    failure: LoginFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def check_login(
    bus: CommandBus,
    user_name: str,
    password: str,
    *,
    source: str = "",
    ignore_lock: bool = False,
) -> tuple[LoginOutcome, Command]:
    """Decides a login without recording it: the outcome and the command that records it
    (RecordLoginSuccess or RecordLoginFailure). Runs the slow hash on the calling thread.

    Unknown names and users without a password cost one hash too, so timing does not
    reveal them. A locked account is refused before its password is checked, unless
    ``ignore_lock`` (``admin@internal`` on the Manager's own machine). The login permit
    is checked only after the password.
    """
    full = users.normalize_user_name(user_name)
    with bus.lock:
        user = users.find_user(bus.engine, full)
        stored = user.password_hash if user is not None else None
    if user is not None and not ignore_lock and users.is_locked(user, datetime.now(UTC)):
        locked = RecordLoginFailure(user_name=full[:255], reason=LoginFailure.LOCKED, source=source)
        return LoginOutcome(user_name=full, failure=LoginFailure.LOCKED), locked
    verdict = check_password(stored, password)
    failure: LoginFailure | None = None
    if user is None:
        failure = LoginFailure.UNKNOWN_USER
    elif stored is None:
        failure = LoginFailure.NO_PASSWORD
    elif not verdict.ok:
        failure = LoginFailure.WRONG_PASSWORD
    else:
        with bus.lock:
            allowed = can_login(bus.engine, user.id)
        if not allowed:
            failure = LoginFailure.NOT_PERMITTED
    if failure is not None:
        record: Command = RecordLoginFailure(user_name=full[:255], reason=failure, source=source)
        return LoginOutcome(user_name=full, failure=failure), record
    assert user is not None
    record = RecordLoginSuccess(user_id=user.id, source=source, rehash=verdict.rehash, actor=full)
    return LoginOutcome(user_id=user.id, user_name=full), record


def authenticate(
    bus: CommandBus, user_name: str, password: str, *, source: str = ""
) -> LoginOutcome:
    """Checks an internal user's password and login permit, and records the outcome
    (UserLoggedIn / UserLoginFailed with the reason) through the bus."""
    outcome, record = check_login(bus, user_name, password, source=source)
    bus.execute(record)
    return outcome


async def authenticate_async(
    bus: CommandBus, user_name: str, password: str, *, source: str = ""
) -> LoginOutcome:
    """``authenticate`` for an event loop: the hash runs in the default executor."""
    loop = asyncio.get_running_loop()
    outcome, record = await loop.run_in_executor(
        None, functools.partial(check_login, bus, user_name, password, source=source)
    )
    await bus.execute_async(record)
    return outcome


__all__ = [
    "AddGroup",
    "AddUser",
    "AddUserToGroup",
    "ChangeUserPassword",
    "LoginOutcome",
    "RecordLoginFailure",
    "RecordLoginSuccess",
    "RemoveGroup",
    "RemoveUser",
    "RemoveUserFromGroup",
    "UnlockUser",
    "UpdateUser",
    "authenticate",
    "authenticate_async",
    "check_login",
    "prehashed",
]
