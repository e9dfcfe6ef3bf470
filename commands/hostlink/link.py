"""``HostLink``: the Manager's side of the host protocol, assembled from its flows.

It builds the shared ``Core`` and one object per flow over it (sessions and monitoring,
VM runs, images, snapshots, storage, consoles), subscribes to the bus, and runs three
tasks: the dispatch loop (each committed event through ``dispatch.HANDLERS``, then the
policies), the monitor tick (sessions, silence, unfinished image operations, network
retries) and the storage space loop. The flows' settings read and write through it
(``link.network_retry_every = 1.0``).

May import every module of the package and ``commands.policies``; nothing of ours
imports it but the package's ``__init__``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands.bus import CommandBus
from commands.credentials import HostSecrets
from commands.hostlink.consoles import Consoles
from commands.hostlink.core import Core, cancel_all
from commands.hostlink.dispatch import Flows, dispatch
from commands.hostlink.images import Images
from commands.hostlink.sessions import Monitor
from commands.hostlink.snapshots import Snapshots
from commands.hostlink.storage import Storage
from commands.hostlink.vms import VmRuns
from commands.messages import Command
from commands.pki import ManagerPki
from commands.policies import Policies
from domain.base import Event
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")


class _Setting:
    """A flow's setting, read and set on the HostLink: ``_Setting("monitor")`` named
    ``reconnect_every`` is ``link.monitor.reconnect_every``."""

    def __init__(self, flow: str) -> None:
        self.flow = flow
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.flow), self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(getattr(obj, self.flow), self.name, value)


class HostLink:
    heartbeat_timeout = _Setting("monitor")
    non_responsive_after = _Setting("monitor")
    reconnect_every = _Setting("monitor")
    network_retry_every = _Setting("monitor")
    network_tries = _Setting("monitor")
    migration_grace = _Setting("monitor")
    telemetry = _Setting("monitor")
    shutdown_timeout = _Setting("vms")
    launch_concurrency = _Setting("vms")
    libvirt_uris = _Setting("vms")
    space_every = _Setting("storage")

    def __init__(
        self,
        bus: CommandBus,
        secrets: HostSecrets,
        *,
        heartbeat_timeout: float = 30.0,
        non_responsive_after: float = 60.0,
        reconnect_every: float = 2.0,
        shutdown_timeout: float = 30.0,
        space_every: float = 60.0,
        telemetry: Callable[[UUID, P.StatsSample], None] | None = None,
        libvirt_uris: dict[UUID, str] | None = None,
        policies: Any = True,
        launch_concurrency: int = 0,
        network_retry_every: float = 10.0,
        pki: ManagerPki | None = None,
    ) -> None:
        self.bus = bus
        self.secrets = secrets
        self.core = Core(bus, secrets, pki)
        self.sessions = self.core.sessions
        self.errors = self.core.errors
        self.monitor = Monitor(
            self.core,
            heartbeat_timeout=heartbeat_timeout,
            non_responsive_after=non_responsive_after,
            reconnect_every=reconnect_every,
            network_retry_every=network_retry_every,
            telemetry=telemetry,
        )
        self.vms = VmRuns(
            self.core,
            shutdown_timeout=shutdown_timeout,
            launch_concurrency=launch_concurrency,
            libvirt_uris=libvirt_uris if libvirt_uris is not None else {},
        )
        self.images = Images(self.core)
        self.snapshots = Snapshots(self.core)
        self.storage = Storage(self.core, space_every=space_every)
        self.consoles = Consoles(self.core)
        self.flows = Flows(
            self.core,
            self.monitor,
            self.vms,
            self.images,
            self.snapshots,
            self.storage,
            self.consoles,
        )
        # Policies, started and stopped with us: True for the default timings (oVirt's),
        # None or False for none.
        self.policies: Policies | None = Policies(bus) if policies is True else policies or None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[list[tuple[int, Event]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> HostLink:
        self._loop = asyncio.get_running_loop()
        with self.bus.lock:  # listeners are called under it: nothing slips between
            self.core.index_volumes()
            self.images.load_unfinished()
            self.bus.subscribe(self._on_committed)
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="hostlink-dispatch"),
            asyncio.create_task(self._monitor_loop(), name="hostlink-monitor"),
            asyncio.create_task(self.storage.space_loop(), name="hostlink-space"),
        ]
        if self.policies is not None:
            await self.policies.start()
        return self

    async def stop(self) -> None:
        self._loop = None  # committed events are no longer ours to carry out
        if self.policies is not None:
            await self.policies.stop()
        tasks = [*self.core.actions, *self._tasks]
        tasks += [s.task for s in self.sessions.values() if s.task]
        stuck = await cancel_all(tasks)
        if stuck:
            log.error("host link: tasks still running after stop: %s", ", ".join(stuck))
        for s in self.sessions.values():
            if s.client is not None:
                await s.client.close()
        self.sessions.clear()

    def _on_committed(self, pairs: list[tuple[int, Event]]) -> None:
        # Called on the writer thread: hand over to our loop.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._events.put_nowait, pairs)

    async def _dispatch_loop(self) -> None:
        while True:
            pairs = await self._events.get()
            for _nid, ev in pairs:
                try:
                    dispatch(self.flows, ev)
                    if self.policies is not None:
                        self.policies.on_event(ev)
                except Exception:
                    log.exception("dispatch of %s failed", ev.TOPIC)

    async def _monitor_loop(self) -> None:
        while True:
            try:
                self.monitor.reconcile_sessions()
                await self.monitor.check_silence()
                self.images.resume_unfinished()
                self.monitor.retry_networks()
            except Exception:
                log.exception("monitor tick failed")
            await asyncio.sleep(min(1.0, self.monitor.reconnect_every))

    # -- for callers ----------------------------------------------------------------------
    async def run_command(self, cmd: Command) -> Any:
        """Executes a report command; a rule that says no is logged, not raised."""
        return await self.core.run_command(cmd)

    def vm_spec(self, vm_id: UUID, host_id: UUID) -> P.VmSpec:
        """The VM as hostd needs it: its disks' volume paths as that host sees them."""
        return self.vms.vm_spec(vm_id, host_id)

    def libvirt_uri(self, host_id: UUID) -> str:
        """How another host's libvirt reaches this one, for migration."""
        return self.vms.libvirt_uri(host_id)
