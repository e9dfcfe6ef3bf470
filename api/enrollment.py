"""A new host's enrollment secret: the ``root_password`` of the AddHost request, which
hostd is enrolled with. It is never in the command, the log or a response: read from the
request here, and kept in the host secrets store only once the host's AddHost has
committed, so a refused command (an existing host's id or name) leaves every stored
secret as it was."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from api.faults import ApiError
from api.schema import Input
from commands.host import AddHost, ReportHostInstalled
from commands.messages import Command

log = logging.getLogger("orrery.api")


def secret_of(cmd: Command, inp: Input, body: Any, env: Any, host_secrets: Any) -> str | None:
    """The secret an AddHost request carries, None when it carries none; 400 when this
    Manager keeps no host secrets."""
    if not isinstance(cmd, AddHost) or "root_password" not in inp.fields:
        return None
    secret = inp.fields["root_password"](body if isinstance(body, dict) else {}, env)
    if not isinstance(secret, str) or not secret:
        return None
    if host_secrets is None:
        raise ApiError(400, "Operation Failed", "This Manager does not manage host secrets.")
    return secret


async def keep(
    host_secrets: Any, run: Callable[[Command], Awaitable[Any]], host_id: UUID, secret: str
) -> None:
    """Stores a committed host's secret; when that fails the host cannot be reached, so
    its installation fails (``run`` submits the report), with the reason, never the
    secret."""
    try:
        host_secrets.put(host_id, secret)
    except OSError as e:
        reason = f"The host's enrollment secret could not be stored ({e.strerror})."
        log.error("host %s: %s", host_id, reason)
        with contextlib.suppress(ApiError):  # no longer installing: nothing to fail
            await run(
                ReportHostInstalled(host_id=host_id, success=False, message=reason, actor="system")
            )
