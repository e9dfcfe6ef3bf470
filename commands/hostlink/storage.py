"""Storage: a storage domain that becomes active is connected on every connected host of
its data center (``ConnectStorage``; a host that cannot is reported), and each active
domain's space is measured every ``space_every`` seconds on a host that reaches it and
reported when it moved by more than 1% (or for the first time): the low-space rules and
the history warehouse read it.

Connecting one session to one domain (also done by the handshake and a disk move) is
``core.connect_storage``. May import ``.core``; no other flow.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from commands import storage as sd_cmds
from commands.hostlink.core import ACTOR, Core
from domain.statuses import StorageDomainStatus
from domain.storage import StorageDomain, StorageDomainStatusChanged
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")


class Storage:
    def __init__(self, core: Core, *, space_every: float) -> None:
        self.core = core
        self.space_every = space_every

    def status_changed(self, ev: StorageDomainStatusChanged) -> None:
        if ev.status == StorageDomainStatus.ACTIVE:
            self.core.spawn(self.connect_everywhere(ev.originator_id))

    async def connect_everywhere(self, sd_id: UUID) -> None:
        sd = self.core.find(StorageDomain, sd_id)
        if sd is None:
            return
        for s in list(self.core.sessions.values()):
            if s.client is not None and sd in self.core.dc_storage_of_host(s.host_id):
                await self.core.connect_storage(s, sd)

    async def space_loop(self) -> None:
        while True:
            await asyncio.sleep(self.space_every)
            try:
                await self.measure_space()
            except Exception:
                log.exception("storage space tick failed")

    async def measure_space(self) -> None:
        domains = [
            sd
            for sd in self.core.all(StorageDomain)
            if sd.status == StorageDomainStatus.ACTIVE and sd.data_center_id is not None
        ]
        for sd in domains:
            host_id = self.core.storage_host(sd)
            if host_id is None:
                continue
            try:
                space: P.StorageSpaceResult = await self.core.call(
                    host_id, P.StorageSpace(sd_id=str(sd.id))
                )
            except P.HostdError:
                continue  # not connected there yet: the next tick asks again
            if _moved(sd.available, space.available) or _moved(sd.used, space.used):
                await self.core.run_command(
                    sd_cmds.ReportStorageDomainSpace(
                        storage_domain_id=sd.id,
                        available=space.available,
                        used=space.used,
                        actor=ACTOR,
                    )
                )


def _moved(old: int, new: int) -> bool:
    return old != new and (old == 0 or abs(new - old) > old // 100)
