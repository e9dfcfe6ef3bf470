"""HostLink's pure parts and the policies, on a ComputeWorld (no hosts, no bus thread)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from commands import host as host_cmds
from commands import vm as c
from commands.credentials import CONSOLE_TICKETS, ConsoleTickets, new_console_password
from commands.hostlink.core import cancel_all
from commands.messages import Command
from commands.policies import Policies
from commands.store import decode_event
from domain import host
from domain.rules import host_rules
from domain.statuses import HostStatus
from domain.statuses import VmStatus as S
from domain.vm import VmConsoleTicketSet, VmStartRequested
from tests.unit.test_compute_setup import ComputeWorld

pytestmark = pytest.mark.unit


class _Result(msgspec.Struct):
    value: Any


class FakeBus:
    """What the policies use of a CommandBus, over a ComputeWorld."""

    def __init__(self, w: ComputeWorld) -> None:
        self.w = w
        self.engine = w.engine
        self.lock = threading.RLock()
        self.commands: list[Command] = []

    async def execute_async(self, cmd: Command) -> _Result:
        self.commands.append(cmd)
        return _Result(self.w.run(cmd))


def test_console_tickets_are_taken_once_and_expire() -> None:
    t = ConsoleTickets()
    vm = uuid4()
    t.put(vm, 3, "secret", 60)
    assert t.take(vm, 2) is None
    assert t.take(vm, 3) == "secret"
    assert t.take(vm, 3) is None
    t.put(vm, 4, "old", -1)
    assert t.take(vm, 4) is None
    assert len(new_console_password("vnc")) == 8
    assert len(new_console_password("spice")) == 16


def test_ticket_command_returns_the_password_the_event_does_not_hold_it() -> None:
    w = ComputeWorld()
    vm_id = w.running_vm()
    out = w.run(c.SetVmConsoleTicket(vm_id=vm_id, expiry=60))
    ev = w.log[-1]
    assert isinstance(ev, VmConsoleTicketSet)
    assert out["ticket"] not in msgspec.json.encode(ev).decode()
    assert CONSOLE_TICKETS.take(vm_id, ev.originator_version) == out["ticket"]


def test_old_ticket_events_lose_their_password_when_read() -> None:
    vm_id = uuid4()
    v1 = {
        "originator_id": str(vm_id),
        "originator_version": 7,
        "timestamp": "2026-01-01T00:00:00+00:00",
        "protocol": "vnc",
        "ticket": "hunter22",
        "expires_at": "2026-01-01T00:02:00+00:00",
        "host_id": str(uuid4()),
    }
    ev = decode_event("VmConsoleTicketSet", msgspec.json.encode(v1))
    assert isinstance(ev, VmConsoleTicketSet) and ev.originator_version == 7
    assert "hunter22" not in msgspec.json.encode(ev).decode()


def test_ha_restart_retries_on_its_interval_and_skips_normal_exits() -> None:
    w = ComputeWorld()
    bus = FakeBus(w)
    pol = Policies(bus, ha_retry_interval=0.2, ha_max_retries=2, ha_long_interval=60)  # type: ignore[arg-type]
    ha = w.running_vm("ha", highly_available=True, ha_priority=10)
    low = w.running_vm("ha-low", highly_available=True, ha_priority=1)
    plain = w.running_vm("plain")
    for v in (ha, low, plain):
        w.report(v, S.DOWN, exit_status="error")
    stopped = w.running_vm("stopped", highly_available=True)
    w.run(c.StopVm(vm_id=stopped))
    w.report(stopped, S.DOWN, exit_status="normal")  # HostLink: libvirt said "destroyed"

    asyncio.run(pol.run_once())
    started = [cmd.vm_id for cmd in bus.commands]
    assert started == [ha, low]  # by priority; neither the plain nor the stopped VM
    assert all(cmd.actor == "system" for cmd in bus.commands)
    assert w.vm(ha).status == S.WAIT_FOR_LAUNCH
    assert any(isinstance(e, VmStartRequested) and e.originator_id == ha for e in w.log)
    # It dies again before the policy saw it up: the next try waits for the interval.
    w.report(ha, S.UP)
    w.report(ha, S.DOWN, exit_status="error")
    asyncio.run(pol.run_once())
    assert len(bus.commands) == 2
    time.sleep(0.25)
    asyncio.run(pol.run_once())
    assert [cmd.vm_id for cmd in bus.commands[2:]] == [ha]
    # After ha_max_retries the long interval applies.
    w.report(ha, S.UP)
    w.report(ha, S.DOWN, exit_status="error")
    time.sleep(0.25)
    asyncio.run(pol.run_once())
    assert len(bus.commands) == 3


def test_maintenance_migrates_vms_away_then_finishes() -> None:
    w = ComputeWorld()
    bus = FakeBus(w)
    pol = Policies(bus)  # type: ignore[arg-type]
    vm_id = w.running_vm()
    src = w.vm(vm_id).run_on_host_id
    assert src is not None
    w.do(host_rules.deactivate_host, src)
    assert w.engine.get(host.Host, src).status == HostStatus.PREPARING_FOR_MAINTENANCE
    asyncio.run(pol.run_once())
    assert [type(cmd) for cmd in bus.commands] == [c.MigrateVm]
    vm = w.vm(vm_id)
    assert vm.status == S.MIGRATING and vm.migrating_to_host_id not in (None, src)
    asyncio.run(pol.run_once())  # nothing new while it migrates
    assert len(bus.commands) == 1
    w.run(c.ReportVmMigrationDone(vm_id=vm_id, host_id=vm.migrating_to_host_id, downtime_ms=20))
    asyncio.run(pol.run_once())
    assert isinstance(bus.commands[-1], host_cmds.FinishHostMaintenance)
    assert w.engine.get(host.Host, src).status == HostStatus.MAINTENANCE


def test_cancel_all_stops_a_task_that_swallowed_the_first_cancel() -> None:
    # What asyncio.wait_for on 3.11 can do to a host session: the cancel that arrives as
    # the connection attempt fails is lost, and the session goes on retrying.
    lost: list[int] = []

    async def session() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if not lost:
                    lost.append(1)
                    continue
                raise

    release: list[int] = []

    async def stubborn() -> None:  # ignores every cancel until released
        while not release:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    async def main() -> tuple[list[str], bool]:
        t = asyncio.create_task(session(), name="host-h1")
        stuck = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0.05)
        left = await cancel_all([t, stuck], timeout=1.0)
        done = t.cancelled()
        release.append(1)
        await stuck
        return left, done

    left, done = asyncio.run(main())
    assert lost == [1] and done
    assert left == ["stubborn"]
