"""Users and groups: internal users with a password hash, directory users by name, membership,
and the login facts (success, failure with its reason) the audit feed shows.

The domain only ever sees a password *hash*; hashing and verifying live in the command
layer (``commands/passwords.py``). A user name is ``principal@domain``: ``admin@internal``
for the built-in internal domain, ``jdoe@example.com`` for a user of another authz domain
(such users have no password here).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, InvalidInput, NotFound, Tx

if TYPE_CHECKING:
    from domain.engine import Engine

INTERNAL_DOMAIN = "internal"
ADMIN_USER_NAME = "admin@internal"
# oVirt's well-known id of the Everyone group: every user is implicitly a member.
EVERYONE_GROUP_ID = UUID("eee00000-0000-0000-0000-123456789eee")
EVERYONE_GROUP_NAME = "Everyone"


class LoginFailure(StrEnum):
    UNKNOWN_USER = "unknown_user"
    WRONG_PASSWORD = "wrong_password"
    NO_PASSWORD = "no_password"  # internal user without a password, or a directory user
    NOT_PERMITTED = "not_permitted"  # no role with the login permit anywhere
    LOCKED = "locked"  # too many failed logins: the account is locked for a while
    THROTTLED = "throttled"  # an attempt before the delay after the last failure ran out


class User(Aggregate, frozen=True, kw_only=True):
    KIND = "user"
    LABEL = "User"
    SECRET_FIELDS = frozenset({"password_hash"})

    user_name: str
    name: str = ""
    last_name: str = ""
    email: str = ""
    domain: str = INTERNAL_DOMAIN
    principal: str = ""
    password_hash: str | None = None
    group_ids: tuple[UUID, ...] = ()
    created_at: str = ""
    password_changed_at: str = ""
    last_login_at: str = ""
    last_failed_login_at: str = ""
    failed_logins: int = 0  # consecutive failures since the last success
    locked_until: str = ""  # ISO time; set by UserLocked, cleared by UserUnlocked

    def name_scope(self) -> tuple[Any, ...] | None:
        # Unique by user_name, not by (first) name: see find_user.
        return None

    @property
    def internal(self) -> bool:
        return self.domain == INTERNAL_DOMAIN

    def __repr__(self) -> str:  # keep even the hash out of logs and tracebacks
        return f"User(id={self.id}, user_name={self.user_name!r}, version={self.version})"


class Group(Aggregate, frozen=True, kw_only=True):
    KIND = "group"
    LABEL = "Group"

    name: str
    domain: str = INTERNAL_DOMAIN
    description: str = ""
    builtin: bool = False
    created_at: str = ""

    def name_scope(self) -> tuple[Any, ...] | None:
        return ("group", self.domain)


class UserAdded(Event, frozen=True, kw_only=True):
    CREATES = "User"
    user_name: str
    name: str = ""
    last_name: str = ""
    email: str = ""
    domain: str = INTERNAL_DOMAIN
    principal: str = ""
    password_hash: str | None = None
    created_at: str = ""
    password_changed_at: str = ""


class UserUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    last_name: str | UnsetType = UNSET
    email: str | UnsetType = UNSET


class UserPasswordChanged(Event, frozen=True, kw_only=True):
    """A new hash; ``rehash`` marks a re-hash of the same password with newer parameters."""

    password_hash: str
    rehash: bool = False

    def evolve(self, agg: Any) -> Any:
        changes: dict[str, Any] = {"password_hash": self.password_hash}
        if not self.rehash:
            changes["password_changed_at"] = self.timestamp.isoformat()
        return msgspec.structs.replace(agg, version=self.originator_version, **changes)


class UserRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


class UserAddedToGroup(Event, frozen=True, kw_only=True):
    group_id: UUID

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg, version=self.originator_version, group_ids=(*agg.group_ids, self.group_id)
        )


class UserRemovedFromGroup(Event, frozen=True, kw_only=True):
    group_id: UUID

    def evolve(self, agg: Any) -> Any:
        ids = tuple(g for g in agg.group_ids if g != self.group_id)
        return msgspec.structs.replace(agg, version=self.originator_version, group_ids=ids)


class UserLoggedIn(Event, frozen=True, kw_only=True):
    source: str = ""  # where from (client address), when known

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg,
            version=self.originator_version,
            last_login_at=self.timestamp.isoformat(),
            failed_logins=0,
        )


class UserLoginFailed(Event, frozen=True, kw_only=True):
    """``count`` failed attempts from ``source`` (a flood is folded into one event)."""

    reason: LoginFailure
    source: str = ""
    count: int = 1

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg,
            version=self.originator_version,
            last_failed_login_at=self.timestamp.isoformat(),
            failed_logins=agg.failed_logins + self.count,
        )


class UserLocked(Event, frozen=True, kw_only=True):
    """After ``failures`` failed logins the account is locked until ``until``."""

    until: str
    failures: int

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg, version=self.originator_version, locked_until=self.until
        )


class UserUnlocked(Event, frozen=True, kw_only=True):
    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(
            agg, version=self.originator_version, locked_until="", failed_logins=0
        )


class GroupAdded(Event, frozen=True, kw_only=True):
    CREATES = "Group"
    name: str
    domain: str = INTERNAL_DOMAIN
    description: str = ""
    builtin: bool = False
    created_at: str = ""


class GroupRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- reading ---------------------------------------------------------------------------------


def split_user_name(user_name: str) -> tuple[str, str]:
    """``"jdoe@example.com"`` -> ("jdoe", "example.com"); a bare name is internal."""
    principal, at, domain = user_name.strip().rpartition("@")
    if not at:
        principal, domain = domain, INTERNAL_DOMAIN
    return principal, domain


def normalize_user_name(user_name: str) -> str:
    principal, domain = split_user_name(user_name)
    return f"{principal}@{domain}"


def find_user(engine: Engine, user_name: str) -> User | None:
    """The user called ``user_name`` (``admin`` means ``admin@internal``), or None."""
    wanted = normalize_user_name(user_name)
    for u in engine.all(User):
        if u.user_name == wanted:
            return u
    return None


def get_user(engine: Engine, user_name: str) -> User:
    user = find_user(engine, user_name)
    if user is None:
        raise NotFound(f"User {normalize_user_name(user_name)} not found.", field="user_name")
    return user


def is_locked(user: User, now: datetime) -> bool:
    """Whether the account is locked at ``now``."""
    return bool(user.locked_until) and datetime.fromisoformat(user.locked_until) > now


def group_ids_of(engine: Engine, user_id: UUID) -> tuple[UUID, ...]:
    """The groups whose permissions apply to the user: its own plus Everyone."""
    user = engine.find(User, user_id)
    own = user.group_ids if user is not None else ()
    return (*own, EVERYONE_GROUP_ID)


# -- decisions -------------------------------------------------------------------------------


def _check_user_name(user_name: str) -> tuple[str, str]:
    principal, domain = split_user_name(user_name)
    if not principal or not domain or any(c.isspace() for c in principal + domain):
        raise InvalidInput(
            f"Invalid user name {user_name!r}: use NAME@DOMAIN, e.g. jdoe@internal.",
            field="user_name",
        )
    return principal, domain


def require_password_domain(domain: str, action: str) -> None:
    """Only users of the internal domain have a password here."""
    if domain != INTERNAL_DOMAIN:
        raise DomainError(
            f"Cannot {action}. Users of the {domain} domain are authenticated by it "
            "and have no password here.",
            field="password",
        )


def add_user(
    tx: Tx,
    *,
    user_name: str,
    password_hash: str | None = None,
    name: str = "",
    last_name: str = "",
    email: str = "",
    id: UUID | None = None,
) -> UUID:
    """Adds an internal user (optionally with a password hash) or a directory user by name."""
    principal, domain = _check_user_name(user_name)
    full = f"{principal}@{domain}"
    if find_user(tx.engine, full) is not None:
        raise DomainError("Cannot add User. The User already exists.", field="user_name")
    if password_hash is not None:
        require_password_domain(domain, "add User")
        if not password_hash:
            raise InvalidInput("The password hash must not be empty.", field="password")
    user_id = tx.new_id(id)
    now = tx.now.isoformat()
    tx.emit(
        UserAdded,
        user_id,
        user_name=full,
        name=name or principal,
        last_name=last_name,
        email=email,
        domain=domain,
        principal=principal,
        password_hash=password_hash,
        created_at=now,
        password_changed_at=now if password_hash else "",
    )
    return user_id


def update_user(
    tx: Tx,
    user_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    last_name: str | UnsetType = UNSET,
    email: str | UnsetType = UNSET,
) -> None:
    user = tx.engine.get(User, user_id)
    changes = {
        k: v
        for k, v in dict(name=name, last_name=last_name, email=email).items()
        if v is not UNSET and v != getattr(user, k)
    }
    if changes:
        tx.emit(UserUpdated, user_id, **changes)


def change_password(tx: Tx, user_id: UUID, password_hash: str) -> None:
    user = tx.engine.get(User, user_id)
    require_password_domain(user.domain, "change password")
    if not password_hash:
        raise InvalidInput("The password hash must not be empty.", field="password")
    tx.emit(UserPasswordChanged, user_id, password_hash=password_hash)


def add_group(
    tx: Tx,
    *,
    name: str,
    domain: str = INTERNAL_DOMAIN,
    description: str = "",
    id: UUID | None = None,
    builtin: bool = False,
) -> UUID:
    name = name.strip()
    if not name:
        raise InvalidInput("The group name must not be empty.", field="name")
    tx.engine.require_unique_name(("group", domain), name, label="Group")
    group_id = tx.new_id(id)
    tx.emit(
        GroupAdded,
        group_id,
        name=name,
        domain=domain,
        description=description,
        builtin=builtin,
        created_at=tx.now.isoformat(),
    )
    return group_id


def add_everyone_group(tx: Tx) -> UUID | None:
    if tx.engine.exists(EVERYONE_GROUP_ID):
        return None
    return add_group(
        tx,
        name=EVERYONE_GROUP_NAME,
        domain="",
        description="Every user, implicitly",
        id=EVERYONE_GROUP_ID,
        builtin=True,
    )


def add_user_to_group(tx: Tx, user_id: UUID, group_id: UUID) -> None:
    user = tx.engine.get(User, user_id, field="user")
    group = tx.engine.get(Group, group_id, field="group")
    if group.builtin:
        raise DomainError(f"Cannot add User to Group. Every user is a member of {group.name}.")
    if group_id in user.group_ids:
        raise DomainError("Cannot add User to Group. The User is already a member.")
    tx.emit(UserAddedToGroup, user_id, group_id=group_id)


def remove_user_from_group(tx: Tx, user_id: UUID, group_id: UUID) -> None:
    user = tx.engine.get(User, user_id, field="user")
    if group_id not in user.group_ids:
        raise DomainError("Cannot remove User from Group. The User is not a member.")
    tx.emit(UserRemovedFromGroup, user_id, group_id=group_id)


def record_login_success(
    tx: Tx, user_id: UUID, *, source: str = "", rehash: str | None = None
) -> None:
    """A login that the command layer verified; ``rehash`` is the password re-hashed with
    the current parameters when the stored hash used older ones."""
    user = tx.engine.get(User, user_id, field="user")
    tx.emit(UserLoggedIn, user.id, source=source)
    if rehash:
        tx.emit(UserPasswordChanged, user.id, password_hash=rehash, rehash=True)


def unlock_user(tx: Tx, user_id: UUID) -> None:
    """Lifts a lock after failed logins and forgets the failures."""
    user = tx.engine.get(User, user_id, field="user")
    if not is_locked(user, tx.now) and user.failed_logins == 0:
        raise DomainError("Cannot unlock User. The User is not locked.", field="user")
    tx.emit(UserUnlocked, user.id)


__all__ = [
    "ADMIN_USER_NAME",
    "EVERYONE_GROUP_ID",
    "INTERNAL_DOMAIN",
    "Group",
    "GroupAdded",
    "GroupRemoved",
    "LoginFailure",
    "User",
    "UserAdded",
    "UserAddedToGroup",
    "UserLocked",
    "UserLoggedIn",
    "UserLoginFailed",
    "UserPasswordChanged",
    "UserRemoved",
    "UserRemovedFromGroup",
    "UserUnlocked",
    "UserUpdated",
    "add_group",
    "add_user",
    "add_user_to_group",
    "change_password",
    "find_user",
    "get_user",
    "is_locked",
    "record_login_success",
    "remove_user_from_group",
    "unlock_user",
    "update_user",
]
