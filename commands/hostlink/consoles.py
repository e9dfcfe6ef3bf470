"""Consoles: a committed ``VmConsoleTicketSet`` (protocol, host, expiry) hands the password
the ``SetVmConsoleTicket`` handler left in ``credentials.CONSOLE_TICKETS`` to the VM's
host (``SetTicket``). A ticket set by another Manager process has no password here and is
skipped. The password never enters the log, the errors or a log line.

May import ``.core`` and ``commands.credentials``; no other flow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from commands.credentials import CONSOLE_TICKETS
from commands.hostlink.core import Core
from domain.vm import VmConsoleTicketSet
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")


class Consoles:
    def __init__(self, core: Core) -> None:
        self.core = core

    def ticket_set(self, ev: VmConsoleTicketSet) -> None:
        oid = ev.originator_id
        password = CONSOLE_TICKETS.take(oid, ev.originator_version)
        if password is None:
            log.info("console ticket of VM %s: no password at hand (set elsewhere)", oid)
        else:
            self.core.spawn(self.set_ticket(oid, ev, password))

    async def set_ticket(self, vm_id: UUID, ev: VmConsoleTicketSet, password: str) -> None:
        try:
            until = datetime.fromisoformat(ev.expires_at)
            expiry = max(1, int((until - datetime.now(UTC)).total_seconds()))
            await self.core.call(
                ev.host_id,
                P.SetTicket(
                    vm_id=str(vm_id),
                    password=password,
                    expiry_s=expiry,
                    protocol="spice" if str(ev.protocol) == "spice" else "vnc",
                ),
            )
        except (P.HostdError, ValueError) as e:
            self.core.note(f"console ticket of VM {vm_id}: {e}")
