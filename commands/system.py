"""First start: the ``InitializeSystem`` command and ``ensure_initialized`` for startup."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from commands.messages import Command
from commands.passwords import (
    MAX_PASSWORD_LENGTH,
    generate_password,
    hash_password,
    hide_secrets,
    is_password_hash,
)
from commands.registry import handles
from domain.base import InvalidInput, Tx
from domain.rules.system_rules import initialize_system
from domain.system import is_initialized

if TYPE_CHECKING:
    from commands.bus import CommandBus

ADMIN_PASSWORD_ENV = "ORRERY_ADMIN_PASSWORD"


class InitializeSystem(Command, frozen=True, kw_only=True):
    """Creates the built-in roles, the Default data center and cluster, the Blank template
    and admin@internal (SuperUser on system) with this password; does nothing when the
    system is initialized already."""

    admin_password: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PASSWORD_LENGTH)] | (
        None
    ) = None
    admin_password_hash: Annotated[str, msgspec.Meta(max_length=1024)] | None = None

    __repr__, __rich_repr__ = hide_secrets("admin_password", "admin_password_hash")


@handles(InitializeSystem)
def _initialize(tx: Tx, c: InitializeSystem) -> dict[str, Any]:
    if is_initialized(tx.engine):
        return {"initialized": False}
    if c.admin_password is not None and c.admin_password_hash is not None:
        raise InvalidInput("Give either a password or its hash, not both.", field="admin_password")
    digest = c.admin_password_hash
    if digest is not None and not is_password_hash(digest):
        raise InvalidInput(
            "The password hash is not an argon2id hash.", field="admin_password_hash"
        )
    if c.admin_password is not None:
        digest = hash_password(c.admin_password)
    return initialize_system(tx, admin_password_hash=digest)


def ensure_initialized(bus: CommandBus, admin_password: str | None = None) -> str | None:
    """Initializes a fresh installation; call once the bus has caught up with the log.

    The admin@internal password is ``admin_password``, else $ORRERY_ADMIN_PASSWORD, else a
    random one. Returns that random password when one was generated *and* this call did
    the initialization (print it once; it is stored only as a hash), else None.
    """
    if is_initialized(bus.engine):
        return None
    chosen = admin_password or os.environ.get(ADMIN_PASSWORD_ENV) or None
    generated = None
    if chosen is None:
        chosen = generated = generate_password()
    # Hash here, not on the writer thread.
    result = bus.execute(
        InitializeSystem(admin_password_hash=hash_password(chosen), actor="system")
    )
    done = isinstance(result.value, dict) and result.value.get("initialized")
    return generated if done else None


__all__ = ["ADMIN_PASSWORD_ENV", "InitializeSystem", "ensure_initialized"]
