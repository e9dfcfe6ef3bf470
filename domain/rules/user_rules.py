"""Users and groups against what refers to them: removal takes their permissions
and tags and releases the pool VMs they hold; a failed login by an unknown name is
recorded on the system.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from domain.base import DomainError, InvalidInput, Tx
from domain.permission import remove_permissions_of_principal
from domain.rules.vmpool_rules import release_user
from domain.system import SYSTEM_ID, System, UnknownUserLoginFailed
from domain.tag import detach_everywhere
from domain.user import (
    ADMIN_USER_NAME,
    Group,
    GroupRemoved,
    LoginFailure,
    User,
    UserLocked,
    UserLoginFailed,
    UserRemoved,
    UserRemovedFromGroup,
    find_user,
    is_locked,
)


def remove_user(tx: Tx, user_id: UUID) -> None:
    """Removes a user and the permissions given to it."""

    user = tx.engine.get(User, user_id)
    if user.user_name == ADMIN_USER_NAME:
        raise DomainError("Cannot remove User. The built-in admin@internal user cannot be removed.")
    remove_permissions_of_principal(tx, user_id)
    detach_everywhere(tx, user_id)
    release_user(tx, user_id)
    tx.emit(UserRemoved, user_id)


def remove_group(tx: Tx, group_id: UUID) -> None:
    """Removes a group, its members' membership and the permissions given to it."""

    group = tx.engine.get(Group, group_id)
    if group.builtin:
        raise DomainError(f"Cannot remove Group. The {group.name} group is built-in.")
    for user in list(tx.engine.all(User)):
        if group_id in user.group_ids:
            tx.emit(UserRemovedFromGroup, user.id, group_id=group_id)
    remove_permissions_of_principal(tx, group_id)
    detach_everywhere(tx, group_id)
    tx.emit(GroupRemoved, group_id)


def record_login_failure(
    tx: Tx,
    user_name: str,
    reason: LoginFailure,
    *,
    source: str = "",
    count: int = 1,
    lock_after: int = 0,
    lock_minutes: float = 0,
) -> UUID | None:
    """Records ``count`` failed logins on the user, or on the system object when no such
    user exists; returns the object it was recorded on (None before first start).

    With ``lock_after`` > 0, the failure that brings the user's consecutive failures to
    ``lock_after`` or more locks an account that is not locked already, for
    ``lock_minutes`` from now."""
    if count < 1:
        raise InvalidInput("The count of failed logins must be at least 1.", field="count")
    user = find_user(tx.engine, user_name)
    if user is not None:
        tx.emit(UserLoginFailed, user.id, reason=reason, source=source, count=count)
        failures = user.failed_logins + count
        if lock_after > 0 and failures >= lock_after and not is_locked(user, tx.now):
            until = tx.now + timedelta(minutes=lock_minutes)
            tx.emit(UserLocked, user.id, until=until.isoformat(), failures=failures)
        return user.id
    if tx.engine.find(System, SYSTEM_ID) is None:
        return None
    tx.emit(
        UnknownUserLoginFailed,
        SYSTEM_ID,
        user_name=user_name[:255],
        reason=LoginFailure.UNKNOWN_USER,
        source=source,
        count=count,
    )
    return SYSTEM_ID
