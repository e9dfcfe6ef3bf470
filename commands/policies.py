"""The Manager's own decisions: policies that react to committed events and to time.

Each decision is a command with the actor ``system``, so it is an event like any other:

- HA restart: a highly available VM that went down with an error (its QEMU died, or its
  host was fenced / confirmed rebooted) is started again, highest ``ha_priority`` first;
  a start that the rules refuse, or a launch that fails, is retried every
  ``ha_retry_interval`` seconds up to ``ha_max_retries`` times, then every
  ``ha_long_interval`` (oVirt's HaAutoStartVmsRunner: 30 s x 10, then 30 min).
- VM pool prestart: each pool keeps ``prestarted_vms`` of its free VMs running
  (``domain.rules.vmpool_rules.vms_to_prestart``), checked when a pool or one of its VMs changes and
  every ``pool_interval`` seconds.
- Host maintenance: a host ``preparing_for_maintenance`` has its VMs live-migrated away
  (``MigrateVm``, the scheduler picks the destination) and, once none remains,
  ``FinishHostMaintenance``. A failed migration is tried again after
  ``migrate_retry_interval``.

SPM election needs no policy: ``datacenter_status_rules.refresh_data_center`` (in
``domain.rules``) elects one in the same transaction as every host or storage status change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from uuid import UUID

from commands import host as host_cmds
from commands import vm as vm_cmds
from commands.bus import CommandBus
from commands.messages import Command
from domain.base import DomainError, Event
from domain.host import Host, HostStatusChanged
from domain.rules.vmpool_rules import vms_to_prestart
from domain.statuses import VM_MIGRATABLE, HostStatus, VmStatus
from domain.vm import Vm, VmMarkedDown, VmStatusReported, ha_restart_candidates, vms_running_on
from domain.vmpool import VmPool

log = logging.getLogger("orrery.policies")

ACTOR = "system"
_WAKERS = frozenset({"VmMigrated", "VmMigrationFailed", "VmImagesReady", "VmAdded"})


class _HaState:
    __slots__ = ("attempts", "next_at")

    def __init__(self) -> None:
        self.attempts = 0
        self.next_at = 0.0


class Policies:
    def __init__(
        self,
        bus: CommandBus,
        *,
        tick: float = 1.0,
        ha_retry_interval: float = 30.0,
        ha_max_retries: int = 10,
        ha_long_interval: float = 1800.0,
        pool_interval: float = 60.0,
        migrate_retry_interval: float = 10.0,
    ) -> None:
        self.bus = bus
        self.tick = tick
        self.ha_retry_interval = ha_retry_interval
        self.ha_max_retries = ha_max_retries
        self.ha_long_interval = ha_long_interval
        self.pool_interval = pool_interval
        self.migrate_retry_interval = migrate_retry_interval
        self._ha: dict[UUID, _HaState] = {}
        self._migrations: dict[UUID, float] = {}  # vm id -> when we last asked
        self._next_pools = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.decisions: list[tuple[str, UUID]] = []  # (command, object) for tests/status

    async def start(self) -> Policies:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="policies")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    def on_event(self, ev: Event) -> None:
        """Called on the loop for each committed event: wakes the loop when it matters
        (and lets the pools be looked at again at once)."""
        if isinstance(ev, VmStatusReported) and ev.status not in (VmStatus.DOWN, VmStatus.UP):
            return
        if (
            isinstance(ev, VmStatusReported | VmMarkedDown | HostStatusChanged)
            or type(ev).__name__.startswith("VmPool")
            or type(ev).__name__ in _WAKERS
        ):
            self._next_pools = 0.0
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("policy tick failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)

    async def run_once(self) -> None:
        await self._ha_restart()
        await self._maintenance()
        now = time.monotonic()
        if now >= self._next_pools:
            self._next_pools = now + self.pool_interval
            await self._prestart()

    async def _run(self, cmd: Command, what: UUID) -> bool:
        try:
            await self.bus.execute_async(cmd)
        except DomainError as e:
            log.info("%s of %s refused: %s", cmd.NAME, what, e)
            return False
        self.decisions.append((cmd.NAME, what))
        del self.decisions[:-1000]
        return True

    # -- HA ---------------------------------------------------------------------------------
    async def _ha_restart(self) -> None:
        with self.bus.lock:
            candidates = ha_restart_candidates(self.bus.engine)
            up = {
                v.id
                for v in self.bus.engine.all(Vm)
                if v.id in self._ha and v.status == VmStatus.UP
            }
        for vm_id in up:  # came back: a later failure starts counting afresh
            self._ha.pop(vm_id, None)
        wanted = {v.id for v in candidates}
        for vm_id in [k for k in self._ha if k not in wanted and k not in up]:
            vm = self.bus.engine.find(Vm, vm_id)
            if vm is None or not vm.highly_available or vm.exit_status == "normal":
                self._ha.pop(vm_id, None)  # removed, no longer HA, or stopped on purpose
        now = time.monotonic()
        for vm in candidates:
            st = self._ha.setdefault(vm.id, _HaState())
            if now < st.next_at:
                continue
            st.attempts += 1
            interval = (
                self.ha_retry_interval
                if st.attempts < self.ha_max_retries
                else self.ha_long_interval
            )
            st.next_at = now + interval
            log.info("HA: restarting VM %s (attempt %d)", vm.name, st.attempts)
            await self._run(vm_cmds.StartVm(vm_id=vm.id, actor=ACTOR), vm.id)

    # -- pools ------------------------------------------------------------------------------
    async def _prestart(self) -> None:
        with self.bus.lock:
            plan = [
                (p.id, vm_id)
                for p in self.bus.engine.all(VmPool)
                for vm_id in vms_to_prestart(self.bus.engine, p.id)
            ]
        for _pool_id, vm_id in plan:
            await self._run(vm_cmds.StartVm(vm_id=vm_id, actor=ACTOR), vm_id)

    # -- maintenance ----------------------------------------------------------------------
    async def _maintenance(self) -> None:
        with self.bus.lock:
            hosts = [
                h
                for h in self.bus.engine.all(Host)
                if h.status == HostStatus.PREPARING_FOR_MAINTENANCE
            ]
            work: list[tuple[Host, list[Any]]] = [
                (h, vms_running_on(self.bus.engine, h.id)) for h in hosts
            ]
        now = time.monotonic()
        for host, vms in work:
            if not vms:
                await self._run(
                    host_cmds.FinishHostMaintenance(host_id=host.id, actor=ACTOR), host.id
                )
                continue
            for vm in vms:
                if vm.run_on_host_id != host.id or vm.status not in VM_MIGRATABLE:
                    continue  # on its way in or out, or migrating already: wait
                if now - self._migrations.get(vm.id, -1e9) < self.migrate_retry_interval:
                    continue
                self._migrations[vm.id] = now
                await self._run(vm_cmds.MigrateVm(vm_id=vm.id, actor=ACTOR), vm.id)
        done = {h.id for h, _ in work}
        for vm_id in list(self._migrations):
            vm = self.bus.engine.find(Vm, vm_id)
            if vm is None or vm.run_on_host_id not in done:
                self._migrations.pop(vm_id, None)


__all__ = ["Policies"]
