"""HostLink reads the Engine only under the bus's lock: driven over a ComputeWorld whose
Engine records every read made without the lock held (no hosts connected, so each flow
reads what it needs and then finds its host unreachable)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands import disk as disk_cmds
from commands import vm as vm_cmds
from commands.credentials import HostSecrets
from commands.hostlink import HostLink
from commands.hostlink.dispatch import dispatch
from domain.engine import Engine
from hostd import protocol as P
from tests.unit.test_compute_setup import ComputeWorld
from tests.unit.test_hostlink import FakeBus

pytestmark = pytest.mark.unit

MiB = 1 << 20


class OwnedLock:
    """A reentrant lock that says whether the calling thread holds it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> OwnedLock:
        self._lock.acquire()
        self._owner = threading.get_ident()
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def held(self) -> bool:
        return self._owner == threading.get_ident()


class GuardedEngine:
    """The world's Engine; each read (and each step of an iteration) made while the lock
    is not held is recorded in ``unlocked``."""

    def __init__(self, engine: Engine, lock: OwnedLock) -> None:
        self._engine = engine
        self._lock = lock
        self.unlocked: list[str] = []

    def _check(self, what: str) -> None:
        if not self._lock.held():
            self.unlocked.append(what)

    def find(self, cls: type, obj_id: Any) -> Any:
        self._check(f"find {cls.__name__}")
        return self._engine.find(cls, obj_id)

    def get(self, cls: type, obj_id: Any, **kw: Any) -> Any:
        self._check(f"get {cls.__name__}")
        return self._engine.get(cls, obj_id, **kw)

    def all(self, cls: type) -> Iterator[Any]:
        self._check(f"all {cls.__name__}")
        for obj in self._engine.all(cls):
            self._check(f"iterating all {cls.__name__}")
            yield obj

    def __getattr__(self, name: str) -> Any:
        self._check(name)
        return getattr(self._engine, name)


class GuardedBus(FakeBus):
    def __init__(self, w: ComputeWorld) -> None:
        super().__init__(w)
        self.lock = OwnedLock()  # type: ignore[assignment]
        self.engine = GuardedEngine(w.engine, self.lock)  # type: ignore[assignment]
        self.listeners: list[Any] = []

    def subscribe(self, fn: Any) -> None:
        self.listeners.append(fn)


def test_every_engine_read_of_the_flows_holds_the_bus_lock(tmp_path: Path) -> None:
    w = ComputeWorld()
    vm_id = w.add_vm("withdisk")
    disk_id = w.add_vm_disk(vm_id, provisioned_size=8 * MiB)
    w.run(vm_cmds.AddSnapshot(vm_id=vm_id, description="s1"))
    running = w.running_vm("running")
    w.run(disk_cmds.AddDisk(name="loose", provisioned_size=8 * MiB, storage_domain_id=w.sd))
    bus = GuardedBus(w)
    link = HostLink(bus, HostSecrets(tmp_path / "secrets.json"), policies=False)  # type: ignore[arg-type]

    async def drive() -> None:
        # What start() reads, then every committed event of the world through the table:
        # the flows read the Engine, find no host connected and report or note it.
        with bus.lock:
            link.core.index_volumes()
            link.images.load_unfinished()
        for ev in list(w.log):
            dispatch(link.flows, ev)
        while link.core.actions:
            await asyncio.gather(*list(link.core.actions), return_exceptions=True)
        link.images.resume_unfinished()
        link.monitor.retry_networks()
        await link.monitor.check_silence()
        await link.storage.measure_space()
        await link.storage.connect_everywhere(w.sd)
        link.vm_spec(vm_id, w.hosts[0])
        await link.vms.vm_call(running, lambda i: P.DestroyVm(vm_id=i))

    async def drive_and_stop() -> None:
        try:
            await drive()
        finally:
            # The session tasks the flows started (each retrying its unreachable host)
            # are stopped here, not left for asyncio.run to cancel once.
            await link.stop()

    asyncio.run(drive_and_stop())
    assert link.errors, "the flows ran (and found no host)"
    assert disk_id in link.core.volumes
    assert bus.engine.unlocked == []
