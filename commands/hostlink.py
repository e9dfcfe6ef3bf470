"""The Manager's side of the host protocol: one session per host, and the policies that
carry committed events out to hostd.

Facts flow in as commands (``ReportVmStatus``, ``ReportHostCapabilities``, ...) so every
input that moves state is an event; committed events flow out as host calls:

    VmScheduled -> CreateVm on the chosen host      DiskAdded -> CreateImage on the SPM
      (restoring_state -> RestoreVm)                  (a thin copy: backed by the template's
    VmShutdown/Stop/Reboot/Pause/Resume/Suspend ->    volume; a full copy: CopyImage)
      the matching hostd call                       DiskExtendStarted -> ResizeImage
    VmMigrationStarted -> Migrate                   DiskMoveStarted -> CopyImage + DeleteImage
    VmSnapshotAdded -> SnapshotCreate               DiskRemoved -> DeleteImage (best effort)
    VmConsoleTicketSet -> SetTicket                 DiskDiscardStarted -> DeleteImage of each
                                                      volume, reported (a pool revert)
                                                    StorageDomain active -> ConnectStorage

Every image operation ends with ``ReportDiskOperation``, which settles image-locked VMs
and templates (``VmImagesReady`` / ``TemplateImagesReady``).

Console passwords never enter the log: the SetVmConsoleTicket handler makes one, returns
it to the caller and leaves it in ``CONSOLE_TICKETS`` (memory only) for the HostLink, which
hands it to hostd when the ``VmConsoleTicketSet`` event (protocol, host, expiry) commits.

Monitoring: a host whose session drops (or goes silent past ``heartbeat_timeout``) is
reported ``connecting``; after ``non_responsive_after`` seconds more it is marked
``non_responsive`` (its VMs become unknown). A session that comes back reports what runs
(``ListVms``), so VM states are adopted rather than recreated.

Host enrollment secrets never enter the log: they live in ``HostSecrets`` (a 0600 file).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets as _secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from commands import disk as disk_cmds
from commands import host as host_cmds
from commands import storage as sd_cmds
from commands import vm as vm_cmds
from commands.bus import CommandBus
from commands.messages import Command
from domain.base import DomainError, Event
from domain.disk import (
    Disk,
    DiskAdded,
    DiskDiscardStarted,
    DiskExtendStarted,
    DiskMoveStarted,
    DiskOperationCompleted,
    DiskRemoved,
)
from domain.host import NETWORK_UNREACHABLE, Host, HostAdded, HostStatusChanged
from domain.network import LogicalNetwork, VnicProfile
from domain.statuses import (
    DiskStatus,
    HostStatus,
    SnapshotStatus,
    StorageDomainStatus,
    VmStatus,
)
from domain.storage import StorageDomain, StorageDomainStatusChanged
from domain.values import SnapshotType
from domain.vm import (
    Snapshot,
    Vm,
    VmConsoleTicketSet,
    VmMigrationCanceled,
    VmMigrationStarted,
    VmPauseRequested,
    VmRebootRequested,
    VmResumeRequested,
    VmScheduled,
    VmShutdownRequested,
    VmSnapshotAdded,
    VmSnapshotCommitted,
    VmSnapshotPreviewed,
    VmSnapshotRemoveStarted,
    VmSnapshotUndone,
    VmStopRequested,
    VmSuspendRequested,
    disk_layers,
)
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")

ACTOR = "system"
# libvirt's reasons for a VM going down that are not failures.
NORMAL_EXITS = frozenset({"shutdown", "destroyed", "saved", "migrated", "from_snapshot"})
MiB = 1024 * 1024
# Host statuses in which the Manager keeps a session open.
MONITORED = {
    HostStatus.INSTALLING,
    HostStatus.INITIALIZING,
    HostStatus.UP,
    HostStatus.CONNECTING,
    HostStatus.NON_RESPONSIVE,
    HostStatus.NON_OPERATIONAL,
    HostStatus.PREPARING_FOR_MAINTENANCE,
    HostStatus.MAINTENANCE,
    HostStatus.ERROR,
}


class ConsoleTickets:
    """Console passwords on their way from the command that made them to the host: in
    memory only, by (VM id, version of the VmConsoleTicketSet event), each dropped once
    handed over or once it expired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[UUID, int], tuple[str, float]] = {}

    def put(self, vm_id: UUID, version: int, password: str, ttl_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (_, until) in self._items.items() if until < now]:
                del self._items[k]
            self._items[(vm_id, version)] = (password, now + ttl_s)

    def take(self, vm_id: UUID, version: int) -> str | None:
        with self._lock:
            item = self._items.pop((vm_id, version), None)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]


CONSOLE_TICKETS = ConsoleTickets()


def new_console_password(protocol: str = "vnc") -> str:
    """A one-time console password: 8 characters for VNC (libvirt's limit), 16 for SPICE."""
    return _secrets.token_urlsafe(12)[: 8 if str(protocol) == "vnc" else 16]


class HostSecrets:
    """Host enrollment secrets, by host id, in a file only root can read.

    A secret is written once its host's ``AddHost`` has committed (a refused command
    stores nothing); ``put`` changes what ``get`` answers only once the file is written.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            self._data = json.loads(self.path.read_text() or "{}")

    def get(self, host_id: UUID) -> str | None:
        return self._data.get(str(host_id))

    async def wait_for(self, host_id: UUID, timeout: float) -> str | None:
        """The host's secret, waiting up to ``timeout`` seconds for it to be stored."""
        deadline = time.monotonic() + timeout
        while (secret := self.get(host_id)) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return secret

    def put(self, host_id: UUID, secret: str) -> None:
        """Stores a secret; raises OSError (nothing changed) when the file cannot be written."""
        with self._lock:
            self._write({**self._data, str(host_id): secret})

    def forget(self, host_id: UUID) -> None:
        with self._lock:
            if str(host_id) in self._data:
                self._write({k: v for k, v in self._data.items() if k != str(host_id)})

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)
        self._data = data


def volume_path(sd_root: str, sd_id: UUID, disk_id: UUID) -> str:
    """Where a disk's base volume lives on a file storage domain (volume id = disk id)."""
    return f"{sd_root}/{sd_id}/images/{disk_id}/{disk_id}"


class _Session:
    """One host's connection, its capabilities and where it sees each storage domain."""

    def __init__(self, host_id: UUID) -> None:
        self.host_id = host_id
        self.client: P.HostClient | None = None
        self.caps: P.Capabilities | None = None
        self.storage: dict[str, str] = {}
        self.last_seen = 0.0
        self.task: asyncio.Task[None] | None = None
        self.lost_at: float | None = None
        self.latest_stats: P.StatsSample | None = None
        self.fact_lock = asyncio.Lock()
        self.handshaking = False
        self.networks_tried = 0.0  # when the monitor last retried the host's networks


class HostLink:
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
    ) -> None:
        self.bus = bus
        self.secrets = secrets
        self.heartbeat_timeout = heartbeat_timeout
        self.non_responsive_after = non_responsive_after
        self.reconnect_every = reconnect_every
        self.shutdown_timeout = shutdown_timeout
        self.space_every = space_every
        # A host non-operational for want of its cluster's networks: how often the monitor
        # asks it again (oVirt's auto-recovery), and the tries within one handshake.
        self.network_retry_every = network_retry_every
        self.network_tries = 3
        self.migration_grace = 10.0  # wait for MigrationDone after the destination's "up"
        self.telemetry = telemetry
        self.sessions: dict[UUID, _Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[list[tuple[int, Event]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._actions: set[asyncio.Task[Any]] = set()
        self.libvirt_uris = libvirt_uris if libvirt_uris is not None else {}
        self.errors: list[str] = []  # recent action failures, for tests and status pages
        # commands.policies.Policies, started and stopped with us: True for the default
        # timings (oVirt's), None or False for none.
        if policies is True:
            from commands.policies import Policies

            policies = Policies(bus)
        self.policies = policies or None
        # Where each disk's volumes live, so a removed disk's files can still be found:
        # disk id -> (storage domain id, volume ids, base first).
        self._volumes: dict[UUID, tuple[UUID, list[UUID]]] = {}
        # At most this many VM launches (CreateVm) at once per host; 0: no limit.
        self.launch_concurrency = launch_concurrency
        self._launch_slots: dict[UUID, asyncio.Semaphore] = {}
        self._unfinished: dict[UUID, str] = {}  # disk id -> image operation to resume

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> HostLink:
        self._loop = asyncio.get_running_loop()
        with self.bus.lock:  # listeners are called under it: nothing slips between
            self._index_volumes()
            # Image operations left unfinished by a previous Manager: carried out again
            # once a host can reach their storage.
            self._unfinished = {
                d.id: d.operation
                for d in self.bus.engine.all(Disk)
                if d.status == DiskStatus.LOCKED and d.operation
            }
            self.bus.subscribe(self._on_committed)
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="hostlink-dispatch"),
            asyncio.create_task(self._monitor_loop(), name="hostlink-monitor"),
            asyncio.create_task(self._space_loop(), name="hostlink-space"),
        ]
        if self.policies is not None:
            await self.policies.start()
        return self

    async def stop(self) -> None:
        self._loop = None  # committed events are no longer ours to carry out
        if self.policies is not None:
            await self.policies.stop()
        for t in list(self._actions):
            t.cancel()
        for t in self._tasks + [s.task for s in self.sessions.values() if s.task]:
            t.cancel()
        for t in self._tasks + [s.task for s in self.sessions.values() if s.task]:
            with contextlib.suppress(BaseException):
                await t
        for s in self.sessions.values():
            if s.client is not None:
                await s.client.close()
        self.sessions.clear()

    def _on_committed(self, pairs: list[tuple[int, Event]]) -> None:
        # Called on the writer thread: hand over to our loop.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._events.put_nowait, pairs)

    async def run_command(self, cmd: Command) -> Any:
        """Executes a report command; a rule that says no is logged, not raised."""
        try:
            return (await self.bus.execute_async(cmd)).value
        except DomainError as e:
            log.debug("%s refused: %s", cmd.NAME, e)
            return None

    # -- sessions and monitoring --------------------------------------------------------
    async def _monitor_loop(self) -> None:
        while True:
            try:
                self._reconcile_sessions()
                await self._check_silence()
                self._resume_unfinished()
                self._retry_networks()
            except Exception:
                log.exception("monitor tick failed")
            await asyncio.sleep(min(1.0, self.reconnect_every))

    def _reconcile_sessions(self) -> None:
        with self.bus.lock:
            hosts = {h.id: h for h in self.bus.engine.all(Host)}
        for hid, h in hosts.items():
            s = self.sessions.get(hid)
            if h.status in MONITORED and (s is None or s.task is None or s.task.done()):
                s = s or self.sessions.setdefault(hid, _Session(hid))
                s.task = asyncio.create_task(self._session(hid), name=f"host-{h.name}")
        for hid in list(self.sessions):
            if hid not in hosts:
                s = self.sessions.pop(hid)
                if s.task is not None:
                    s.task.cancel()

    def _resume_unfinished(self) -> None:
        for disk_id in list(self._unfinished):
            disk = self.bus.engine.find(Disk, disk_id)
            if disk is None or disk.status != DiskStatus.LOCKED or not disk.operation:
                del self._unfinished[disk_id]
                continue
            sd = self.bus.engine.find(StorageDomain, disk.storage_domain_id)
            if self._storage_host(sd) is None:
                continue
            del self._unfinished[disk_id]
            log.info("resuming the %s of disk %s", disk.operation, disk_id)
            if disk.operation == "copy" and disk.base_disk_id is None:
                self._spawn(self._copy_image(disk_id))
            elif disk.operation in ("create", "copy"):
                self._spawn(self._create_image(disk_id))
            elif disk.operation == "extend":
                self._spawn(self._extend_image(disk_id))
            elif disk.operation == "move" and disk.move_target_id is not None:
                self._spawn(self._move_image(disk_id, disk.move_target_id))
            elif disk.operation == "remove":
                self._spawn(self._discard_image(disk_id))

    async def _space_loop(self) -> None:
        """Measures each active storage domain's space on a host that reaches it and
        reports it when it moved by more than 1% (or for the first time): the low-space
        rules and the history warehouse read it."""
        while True:
            await asyncio.sleep(self.space_every)
            try:
                await self._measure_space()
            except Exception:
                log.exception("storage space tick failed")

    async def _measure_space(self) -> None:
        with self.bus.lock:
            domains = [
                sd
                for sd in self.bus.engine.all(StorageDomain)
                if sd.status == StorageDomainStatus.ACTIVE and sd.data_center_id is not None
            ]
        for sd in domains:
            host_id = self._storage_host(sd)
            if host_id is None:
                continue
            try:
                space: P.StorageSpaceResult = await self._call(
                    host_id, P.StorageSpace(sd_id=str(sd.id))
                )
            except P.HostdError:
                continue  # not connected there yet: the next tick asks again
            if _moved(sd.available, space.available) or _moved(sd.used, space.used):
                await self.run_command(
                    sd_cmds.ReportStorageDomainSpace(
                        storage_domain_id=sd.id,
                        available=space.available,
                        used=space.used,
                        actor=ACTOR,
                    )
                )

    async def _check_silence(self) -> None:
        now = time.monotonic()
        for s in list(self.sessions.values()):
            if s.client is not None and now - s.last_seen > self.heartbeat_timeout:
                log.info("host %s silent for %.0fs", s.host_id, now - s.last_seen)
                await s.client.close()
            if s.client is None and s.lost_at is not None:
                host = self.bus.engine.find(Host, s.host_id)
                if (
                    host is not None
                    and host.status == HostStatus.CONNECTING
                    and now - s.lost_at >= self.non_responsive_after
                ):
                    await self.run_command(
                        host_cmds.MarkHostNonResponsive(host_id=s.host_id, actor=ACTOR)
                    )

    async def _session(self, host_id: UUID) -> None:
        s = self.sessions[host_id]
        while True:
            host = self.bus.engine.find(Host, host_id)
            if host is None or host.status not in MONITORED:
                return
            # A host just added has its secret stored a moment after it is committed.
            wait = self.reconnect_every if host.status == HostStatus.INSTALLING else 0.0
            secret = await self.secrets.wait_for(host_id, wait)
            try:
                client = await P.HostClient.connect(
                    host.address, host.port, secret or "", timeout=5.0
                )
            except (TimeoutError, OSError, P.HostdError) as e:
                await self._connection_failed(s, host, str(e))
                await asyncio.sleep(self.reconnect_every)
                continue
            s.client = client
            s.last_seen = time.monotonic()
            client.listeners.append(functools.partial(self._on_fact, s))
            try:
                await self._handshake(s)
                await client.closed.wait()
            except P.HostdError as e:
                log.info("host %s: %s", host.name, e)
            except Exception:
                log.exception("host %s session failed", host.name)
            finally:
                s.client = None
                with contextlib.suppress(Exception):
                    await client.close()
            host = self.bus.engine.find(Host, host_id)
            if host is not None:
                await self._connection_failed(s, host, "connection lost")
            await asyncio.sleep(self.reconnect_every)

    async def _connection_failed(self, s: _Session, host: Host, why: str) -> None:
        if host.status == HostStatus.INSTALLING:
            # The installer (here: the first contact) failed.
            if s.lost_at is None:
                s.lost_at = time.monotonic()
            elif time.monotonic() - s.lost_at >= self.non_responsive_after:
                await self.run_command(
                    host_cmds.ReportHostInstalled(
                        host_id=host.id, success=False, message=why[:900], actor=ACTOR
                    )
                )
            return
        if host.status in (HostStatus.UP, HostStatus.NON_OPERATIONAL, HostStatus.INITIALIZING):
            await self.run_command(host_cmds.ReportHostConnectionLost(host_id=host.id, actor=ACTOR))
        if s.lost_at is None:
            s.lost_at = time.monotonic()

    async def _handshake(self, s: _Session) -> None:
        s.handshaking = True
        try:
            await self._handshake_once(s)
        finally:
            s.handshaking = False

    async def _handshake_once(self, s: _Session) -> None:
        client = s.client
        assert client is not None
        host = self.bus.engine.get(Host, s.host_id)
        if host.status == HostStatus.INSTALLING:
            await self.run_command(host_cmds.ReportHostInstalled(host_id=host.id, actor=ACTOR))
        elif host.status in (HostStatus.CONNECTING, HostStatus.NON_RESPONSIVE):
            await self.run_command(
                host_cmds.ReportHostConnectionRestored(host_id=host.id, actor=ACTOR)
            )
        s.lost_at = None
        # Bridges for the cluster's networks, then the data center's active storage.
        nets = self._cluster_networks(host.cluster_id)
        network_error = await self._setup_networks(client, nets) if nets else ""
        caps: P.Capabilities = await client.call(P.GetCapabilities())
        s.caps = caps
        s.storage = dict(caps.storage)
        for sd in self._dc_storage(host.cluster_id):
            await self._connect_storage(s, sd)
        host = self.bus.engine.get(Host, s.host_id)
        if host.status not in (HostStatus.MAINTENANCE, HostStatus.PREPARING_FOR_MAINTENANCE):
            await self.run_command(
                host_cmds.ReportHostCapabilities(
                    host_id=host.id,
                    cpu_model=caps.cpu_model[:1000] or "unknown",
                    cpu_cores=max(1, caps.cpus),
                    cpu_sockets=max(1, caps.cpu_sockets),
                    memory_total=caps.memory_mib * MiB,
                    libvirt_version=caps.libvirt_version,
                    qemu_version=caps.qemu_version,
                    kvm=caps.kvm,
                    hardware_uuid=caps.host_id,
                    networks=tuple(n.network for n in caps.networks if n.ok),
                    network_error=network_error[:1000],
                    actor=ACTOR,
                )
            )
        await self._adopt_vms(s)

    async def _setup_networks(self, client: P.HostClient, nets: list[str]) -> str:
        """Asks the host for the bridges of its cluster's networks, a few times before
        this handshake gives up. Returns "" or hostd's reason, which the capabilities
        report carries into the host's status detail and an event; the monitor retries a
        host left without its networks (``_retry_networks``)."""
        why = ""
        for attempt in range(self.network_tries):
            if attempt:
                await asyncio.sleep(0.5 * attempt)
            try:
                res: P.NetworksResult = await client.call(
                    P.SetupNetworks(bridges=[P.BridgeSpec(network=n) for n in nets])
                )
            except P.HostdError as e:
                why = str(e)
                continue
            bad = [f"{st.network}: {st.detail}" for st in res.networks if not st.ok]
            if not bad:
                return ""
            why = "; ".join(bad)
        log.info("host %s: networks not set up: %s", client, why)
        return why

    def _retry_networks(self) -> None:
        """Hosts non-operational for want of networks are handshaken again now and then:
        their bridges are asked for anew and a host that has them all comes up."""
        now = time.monotonic()
        with self.bus.lock:
            lacking = {
                h.id
                for h in self.bus.engine.all(Host)
                if h.status == HostStatus.NON_OPERATIONAL
                and h.status_detail.startswith(NETWORK_UNREACHABLE)
            }
        for s in self.sessions.values():
            if (
                s.host_id in lacking
                and s.client is not None
                and not s.handshaking
                and now - s.networks_tried >= self.network_retry_every
            ):
                s.networks_tried = now
                self._spawn(self._rehandshake(s))

    async def _rehandshake(self, s: _Session) -> None:
        if s.handshaking:
            return  # the handshake under way reports the host anyway
        try:
            await self._handshake(s)
        except P.HostdError as e:
            self._note(f"host {s.host_id}: {e}")

    async def _adopt_vms(self, s: _Session) -> None:
        """Reports what runs on the host, so a restart of either side loses nothing."""
        assert s.client is not None
        listing: P.VmList = await s.client.call(P.ListVms())
        running = {v.id: v for v in listing.vms}
        with self.bus.lock:
            mine = [
                v
                for v in self.bus.engine.all(Vm)
                if v.run_on_host_id == s.host_id and v.status != VmStatus.DOWN
            ]
        for vm in mine:
            info = running.get(str(vm.id))
            status = _vm_status(info.status) if info is not None else VmStatus.DOWN
            if _saving(vm, status):
                continue
            if status is not None and status != vm.status:
                await self.run_command(
                    vm_cmds.ReportVmStatus(
                        vm_id=vm.id,
                        host_id=s.host_id,
                        status=status,
                        reason=(info.reason if info else "not running on the host")[:900],
                        actor=ACTOR,
                    )
                )

    # -- facts -> commands ----------------------------------------------------------------
    def _on_fact(self, s: _Session, fact: Any) -> None:
        s.last_seen = time.monotonic()
        if isinstance(fact, P.VmStatusChanged):
            self._spawn(self._vm_fact(s, fact))
        elif isinstance(fact, P.MigrationDone):
            self._spawn(self._migration_fact(fact))
        elif isinstance(fact, P.StatsSample):
            s.latest_stats = fact
            if self.telemetry is not None:
                try:
                    self.telemetry(s.host_id, fact)
                except Exception:
                    log.exception("telemetry sink failed")

    async def _vm_fact(self, s: _Session, fact: P.VmStatusChanged) -> None:
        # One host's VM facts are reported in the order the host sent them (asyncio's
        # lock wakes waiters first come, first served; tasks start in creation order).
        async with s.fact_lock:
            await self._vm_fact_in_order(s, fact)

    async def _vm_fact_in_order(self, s: _Session, fact: P.VmStatusChanged) -> None:
        status = _vm_status(fact.status)
        try:
            vm_id = UUID(fact.vm_id)
        except ValueError:
            return
        vm = self.bus.engine.find(Vm, vm_id)
        if status is None or vm is None:
            return
        if status == VmStatus.MIGRATING or (
            vm.status == VmStatus.MIGRATING
            and status == VmStatus.DOWN
            and fact.reason == "migrated"
        ):
            return  # the migration's outcome comes with MigrationDone
        if _saving(vm, status):
            return
        if (
            vm.status == VmStatus.MIGRATING
            and status == VmStatus.UP
            and s.host_id == vm.migrating_to_host_id
        ):
            # Running on the destination: the source's MigrationDone (with the measured
            # downtime) settles it; only if that never comes does this report count.
            version = vm.version
            await asyncio.sleep(self.migration_grace)
            vm = self.bus.engine.find(Vm, vm_id)
            if vm is None or vm.version != version:
                return  # settled (or a later migration began): this report is stale
        exit_status = ""
        if status == VmStatus.DOWN:
            # A power-off or shutdown someone asked for ends normally; a QEMU that died
            # (crashed, failed) is an error, which is what HA restarts.
            exit_status = "normal" if fact.reason in NORMAL_EXITS else "error"
        await self.run_command(
            vm_cmds.ReportVmStatus(
                vm_id=vm_id,
                host_id=s.host_id,
                status=status,
                reason=fact.reason[:900],
                exit_status=exit_status,
                actor=ACTOR,
            )
        )

    async def _migration_fact(self, fact: P.MigrationDone) -> None:
        vm = self.bus.engine.find(Vm, UUID(fact.vm_id))
        if vm is None or vm.status != VmStatus.MIGRATING or vm.migrating_to_host_id is None:
            return
        if fact.ok:
            await self.run_command(
                vm_cmds.ReportVmMigrationDone(
                    vm_id=vm.id,
                    host_id=vm.migrating_to_host_id,
                    downtime_ms=max(0, fact.downtime_ms or 0),
                    actor=ACTOR,
                )
            )
        elif not fact.cancelled:
            await self.run_command(
                vm_cmds.ReportVmMigrationFailed(
                    vm_id=vm.id, reason=(fact.error or "migration failed")[:900], actor=ACTOR
                )
            )

    # -- committed events -> host calls ----------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while True:
            pairs = await self._events.get()
            for _nid, ev in pairs:
                try:
                    self._dispatch(ev)
                except Exception:
                    log.exception("dispatch of %s failed", ev.TOPIC)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._actions.add(t)
        t.add_done_callback(self._actions.discard)

    def _dispatch(self, ev: Event) -> None:
        oid = ev.originator_id
        if isinstance(ev, VmScheduled):
            if ev.status == VmStatus.RESTORING_STATE:
                self._spawn(self._restore_vm(oid, ev.host_id, ev.start_paused))
            else:
                self._spawn(self._run_vm(oid, ev.host_id, ev.start_paused))
        elif isinstance(ev, VmShutdownRequested):
            self._spawn(
                self._vm_call(oid, lambda i: P.ShutdownVm(vm_id=i, timeout_s=self.shutdown_timeout))
            )
        elif isinstance(ev, VmStopRequested):
            self._spawn(self._vm_call(oid, lambda i: P.DestroyVm(vm_id=i)))
        elif isinstance(ev, VmRebootRequested):
            self._spawn(self._vm_call(oid, lambda i: P.RebootVm(vm_id=i)))
        elif isinstance(ev, VmPauseRequested):
            self._spawn(self._vm_call(oid, lambda i: P.PauseVm(vm_id=i)))
        elif isinstance(ev, VmSuspendRequested):
            self._spawn(self._vm_call(oid, lambda i: P.SuspendVm(vm_id=i)))
        elif isinstance(ev, VmResumeRequested):
            self._spawn(self._vm_call(oid, lambda i: P.ResumeVm(vm_id=i)))
        elif isinstance(ev, VmMigrationStarted):
            self._spawn(self._migrate(oid, ev.source_host_id, ev.destination_host_id))
        elif isinstance(ev, VmMigrationCanceled):
            self._spawn(self._vm_call(oid, lambda i: P.MigrateCancel(vm_id=i)))
        elif isinstance(ev, VmSnapshotAdded) and ev.snapshot.operation == "create":
            for disk_id in ev.snapshot.config.disk_ids if ev.snapshot.config else ():
                if disk_id in self._volumes:
                    self._volumes[disk_id][1].append(ev.snapshot.id)
            self._spawn(self._snapshot_create(oid, ev.snapshot))
        elif isinstance(ev, VmSnapshotRemoveStarted):
            self._spawn(self._snapshot_remove(oid, ev.snapshot_id))
        elif isinstance(ev, VmSnapshotPreviewed):
            self._spawn(self._snapshot_preview(oid, ev.snapshot_id, ev.saved.id))
        elif isinstance(ev, VmSnapshotUndone):
            self._spawn(self._snapshot_undo(oid, ev.snapshot_id, ev.saved_id))
        elif isinstance(ev, VmSnapshotCommitted):
            self._spawn(self._snapshot_commit(oid, ev.snapshot_id, ev.removed_ids))
        elif isinstance(ev, VmConsoleTicketSet):
            password = CONSOLE_TICKETS.take(oid, ev.originator_version)
            if password is None:
                log.info("console ticket of VM %s: no password at hand (set elsewhere)", oid)
            else:
                self._spawn(self._set_ticket(oid, ev, password))
        elif isinstance(ev, DiskAdded):
            self._volumes[oid] = (ev.storage_domain_id, [oid])
            if ev.operation == "copy" and ev.base_disk_id is None:
                self._spawn(self._copy_image(oid))
            else:
                self._spawn(self._create_image(oid))
        elif isinstance(ev, DiskExtendStarted):
            self._spawn(self._extend_image(oid))
        elif isinstance(ev, DiskMoveStarted):
            self._spawn(self._move_image(oid, ev.move_target_id))
        elif isinstance(ev, DiskDiscardStarted):
            self._spawn(self._discard_image(oid))
        elif isinstance(ev, DiskOperationCompleted) and ev.storage_domain_id is not None:
            self._volumes[oid] = (ev.storage_domain_id, [oid])  # a move flattens the chain
        elif isinstance(ev, DiskRemoved):
            vols = self._volumes.pop(oid, None)
            if vols is not None:
                self._spawn(self._delete_volumes(oid, *vols))
        elif isinstance(ev, StorageDomainStatusChanged) and ev.status == StorageDomainStatus.ACTIVE:
            self._spawn(self._connect_everywhere(oid))
        elif isinstance(ev, HostAdded | HostStatusChanged):
            self._reconcile_sessions()
            s = self.sessions.get(oid)
            if (
                isinstance(ev, HostStatusChanged)
                and ev.status == HostStatus.INITIALIZING
                and s is not None
                and s.client is not None
            ):
                # Activated (from maintenance, non-operational ...) while connected: the
                # host is brought up by reporting it afresh, as after a reconnect.
                self._spawn(self._rehandshake(s))
        if self.policies is not None:
            self.policies.on_event(ev)

    async def _call(self, host_id: UUID | None, req: P.Request) -> Any:
        s = self.sessions.get(host_id) if host_id is not None else None
        if s is None or s.client is None:
            raise P.HostdError("disconnected", f"host {host_id} is not connected")
        return await s.client.call(req)

    async def _vm_call(self, vm_id: UUID, make: Callable[[str], P.Request]) -> None:
        vm = self.bus.engine.find(Vm, vm_id)
        if vm is None:
            return
        try:
            await self._call(vm.run_on_host_id, make(str(vm_id)))
        except P.HostdError as e:
            self._note(f"VM {vm.name}: {e}")
            if e.code == "not_found" and vm.run_on_host_id is not None:
                await self.run_command(
                    vm_cmds.ReportVmStatus(
                        vm_id=vm_id,
                        host_id=vm.run_on_host_id,
                        status=VmStatus.DOWN,
                        reason=e.message[:900],
                        actor=ACTOR,
                    )
                )

    async def _run_vm(self, vm_id: UUID, host_id: UUID, paused: bool) -> None:
        try:
            spec = self.vm_spec(vm_id, host_id)
            if self.launch_concurrency > 0:
                slot = self._launch_slots.setdefault(
                    host_id, asyncio.Semaphore(self.launch_concurrency)
                )
                async with slot:
                    await self._call(host_id, P.CreateVm(spec=spec, start=True, paused=paused))
            else:
                await self._call(host_id, P.CreateVm(spec=spec, start=True, paused=paused))
        except (P.HostdError, LookupError, DomainError) as e:
            # A failed launch is a fact with its reason; the VM must not stay launching.
            self._note(f"run VM {vm_id}: {e}")
            await self.run_command(
                vm_cmds.ReportVmStatus(
                    vm_id=vm_id,
                    host_id=host_id,
                    status=VmStatus.DOWN,
                    reason=f"Failed to run VM: {getattr(e, 'message', e)}"[:900],
                    exit_status="error",
                    actor=ACTOR,
                )
            )

    async def _restore_vm(self, vm_id: UUID, host_id: UUID, paused: bool) -> None:
        """A suspended VM runs again from its saved memory, which lives with the host that
        saved it (the scheduler sends it back there while that host can take it); on
        another host (or when the image is gone) it boots afresh."""
        try:
            await self._call(host_id, P.RestoreVm(vm_id=str(vm_id), paused=paused))
            return
        except P.HostdError as e:
            if e.code not in ("not_found", "invalid"):
                self._note(f"restore VM {vm_id}: {e}")
                await self.run_command(
                    vm_cmds.ReportVmStatus(
                        vm_id=vm_id,
                        host_id=host_id,
                        status=VmStatus.DOWN,
                        reason=f"Failed to restore VM: {e.message}"[:900],
                        exit_status="error",
                        actor=ACTOR,
                    )
                )
                return
            log.info("VM %s has no saved state on host %s: starting it afresh", vm_id, host_id)
        await self._run_vm(vm_id, host_id, paused)

    async def _migrate(self, vm_id: UUID, source: UUID, dest: UUID) -> None:
        try:
            uri = self.libvirt_uri(dest)
            await self._call(source, P.Migrate(vm_id=str(vm_id), dest_uri=uri, unsafe=True))
        except (P.HostdError, LookupError) as e:
            self._note(f"migrate VM {vm_id}: {e}")
            await self.run_command(
                vm_cmds.ReportVmMigrationFailed(vm_id=vm_id, reason=str(e)[:900], actor=ACTOR)
            )

    # -- snapshots: each one puts a qcow2 layer named after it on top of every disk it
    # covers, so a disk's active volume is the layer of its newest snapshot (or the disk's
    # own base volume) and is derived from the VM's snapshot list, never stored apart.
    def _disk_paths(
        self, vm: Vm, snap: Snapshot, host_id: UUID | None
    ) -> list[tuple[Disk, str, str]]:
        """(disk, the volume under the snapshot's layer, the snapshot's layer) per disk."""
        roots = self.sessions[host_id].storage if host_id in self.sessions else {}
        out = []
        for disk_id in snap.config.disk_ids if snap.config else ():
            d = self.bus.engine.find(Disk, disk_id)
            if d is None:
                continue
            root = roots.get(str(d.storage_domain_id))
            if root is None:
                sd = self.bus.engine.get(StorageDomain, d.storage_domain_id)
                root = sd.path
            below = disk_leaf(vm, d, root, before=snap.id)
            layer = f"{root}/{d.storage_domain_id}/images/{d.id}/{snap.id}"
            out.append((d, below, layer))
        return out

    async def _snapshot_create(self, vm_id: UUID, snap: Snapshot) -> None:
        vm = self.bus.engine.find(Vm, vm_id)
        if vm is None:
            return
        running = vm.status in (VmStatus.UP, VmStatus.PAUSED) and vm.run_on_host_id is not None
        host_id = vm.run_on_host_id if running else self._any_storage_host(vm)
        ok = True
        try:
            paths = self._disk_paths(vm, snap, host_id)
            if running:
                await self._call(
                    host_id,
                    P.SnapshotCreate(
                        vm_id=str(vm_id),
                        snapshot_id=str(snap.id),
                        memory=snap.persist_memory,
                        disks=[
                            P.SnapshotDisk(target=below, new_path=layer)
                            for _, below, layer in paths
                        ],
                    ),
                )
            else:
                for d, below, _layer in paths:
                    sd_root = below.split(f"/{d.storage_domain_id}/images/")[0]
                    await self._call(
                        host_id,
                        P.CreateImage(
                            volume=P.VolumeRef(
                                sd_path=sd_root,
                                sd_id=str(d.storage_domain_id),
                                disk_id=str(d.id),
                                volume_id=str(snap.id),
                            ),
                            backing=below,
                            backing_format="qcow2" if d.format == "cow" else "raw",
                        ),
                    )
        except (P.HostdError, LookupError) as e:
            self._note(f"snapshot {snap.id} of VM {vm.name}: {e}")
            ok = False
        await self.run_command(
            vm_cmds.ReportSnapshot(vm_id=vm_id, snapshot_id=snap.id, ok=ok, actor=ACTOR)
        )

    async def _snapshot_remove(self, vm_id: UUID, snapshot_id: UUID) -> None:
        vm = self.bus.engine.find(Vm, vm_id)
        snap = vm.snapshot(snapshot_id) if vm is not None else None
        if vm is None or snap is None:
            return
        ok = True
        try:
            running = vm.status in (VmStatus.UP, VmStatus.PAUSED) and vm.run_on_host_id
            if running:
                # Live merge, on the host running it: the snapshot's layer may be the
                # active one (commit + pivot) or one deeper in the chain.
                paths = self._disk_paths(vm, snap, vm.run_on_host_id)
                await self._call(
                    vm.run_on_host_id,
                    P.SnapshotDelete(vm_id=str(vm_id), layers=[layer for _, _, layer in paths]),
                )
            else:
                # Cold merge, on any up host that reaches the storage (oVirt's SPM role).
                host_id = self._any_storage_host(vm)
                if host_id is None:
                    raise LookupError("no up host can reach the VM's storage domains")
                for d, _below, layer in self._disk_paths(vm, snap, host_id):
                    root = layer.split(f"/{d.storage_domain_id}/images/")[0]
                    await self._call(
                        host_id, P.MergeVolume(leaf=disk_leaf(vm, d, root), layer=layer)
                    )
            for d in self._covered(snap):
                vols = self._volumes.get(d.id)
                if vols is not None and snapshot_id in vols[1]:
                    vols[1].remove(snapshot_id)
        except (P.HostdError, LookupError) as e:
            self._note(f"remove snapshot {snapshot_id} of VM {vm.name}: {e}")
            ok = False
        await self.run_command(
            vm_cmds.ReportSnapshot(vm_id=vm_id, snapshot_id=snapshot_id, ok=ok, actor=ACTOR)
        )

    # -- preview / undo / commit of a down VM (no report: the domain locks nothing). While
    # a snapshot S is in preview, every disk S covers runs on a preview layer named after
    # the ``saved`` (preview-type) record, on top of S's content (the volume under S's
    # layer); undo deletes it and the normal leaf is active again. Commit drops S's old
    # layer (the state after S) and the later snapshots' layers, and puts a fresh empty
    # layer named after S on top of the preview layer, so the plain derivation (newest
    # snapshot covering the disk -> its layer) keeps pointing at the committed state:
    # base ... <- under-S <- preview(saved id) <- S. The preview layer's name is then no
    # longer derivable from the snapshot list; it stays in the qcow2 backing chain.
    def _volume(self, d: Disk, host_id: UUID | None, volume: UUID) -> tuple[str, str]:
        """(the domain's root as the host sees it, the volume's path)."""
        roots = self.sessions[host_id].storage if host_id in self.sessions else {}
        root = roots.get(str(d.storage_domain_id))
        if root is None:
            root = self.bus.engine.get(StorageDomain, d.storage_domain_id).path
        return root, f"{root}/{d.storage_domain_id}/images/{d.id}/{volume}"

    async def _new_layer(
        self, host_id: UUID | None, d: Disk, volume: UUID, backing: str, backing_fmt: str
    ) -> None:
        root, _ = self._volume(d, host_id, volume)
        await self._call(
            host_id,
            P.CreateImage(
                volume=P.VolumeRef(
                    sd_path=root,
                    sd_id=str(d.storage_domain_id),
                    disk_id=str(d.id),
                    volume_id=str(volume),
                ),
                backing=backing,
                backing_format="qcow2" if backing_fmt == "qcow2" else "raw",
            ),
        )

    def _covered(self, snap: Snapshot | None) -> list[Disk]:
        out = []
        for disk_id in snap.config.disk_ids if snap is not None and snap.config else ():
            d = self.bus.engine.find(Disk, disk_id)
            if d is not None:
                out.append(d)
        return out

    async def _snapshot_preview(self, vm_id: UUID, snapshot_id: UUID, saved_id: UUID) -> None:
        vm = self.bus.engine.find(Vm, vm_id)
        snap = vm.snapshot(snapshot_id) if vm is not None else None
        if vm is None or snap is None:
            return
        host_id = self._any_storage_host(vm)
        for d in self._covered(snap):
            if d.id in self._volumes and saved_id not in self._volumes[d.id][1]:
                self._volumes[d.id][1].append(saved_id)
            root, _ = self._volume(d, host_id, saved_id)
            below = disk_leaf(vm, d, root, before=snap.id)
            fmt = _fmt(d.format) if below.endswith(f"/{d.id}") else "qcow2"
            try:
                if host_id is None:
                    raise LookupError("no up host can reach the storage domain")
                await self._new_layer(host_id, d, saved_id, below, fmt)
            except (P.HostdError, LookupError) as e:
                self._note(f"preview snapshot {snapshot_id} of VM {vm.name}: {e}")

    async def _snapshot_undo(self, vm_id: UUID, snapshot_id: UUID, saved_id: UUID) -> None:
        vm = self.bus.engine.find(Vm, vm_id)
        snap = vm.snapshot(snapshot_id) if vm is not None else None
        if vm is None or snap is None:
            return
        host_id = self._any_storage_host(vm)
        for d in self._covered(snap):
            vols = self._volumes.get(d.id)
            if vols is not None and saved_id in vols[1]:
                vols[1].remove(saved_id)
            _, path = self._volume(d, host_id, saved_id)
            try:
                if host_id is None:
                    raise LookupError("no up host can reach the storage domain")
                await self._call(host_id, P.DeleteImage(path=path))
            except (P.HostdError, LookupError) as e:
                self._note(f"undo preview of VM {vm.name}: delete {path}: {e}")

    async def _snapshot_commit(
        self, vm_id: UUID, snapshot_id: UUID, removed_ids: tuple[UUID, ...]
    ) -> None:
        vm = self.bus.engine.find(Vm, vm_id)
        snap = vm.snapshot(snapshot_id) if vm is not None else None
        if vm is None or snap is None:
            return
        # commit_snapshot lists the later snapshots, then the preview-type record.
        removed = set(removed_ids)
        saved_id = removed_ids[-1] if removed_ids else None
        host_id = self._any_storage_host(vm)
        covered = {d.id for d in self._covered(snap)}
        for att in vm.disk_attachments:
            d = self.bus.engine.find(Disk, att.disk_id)
            vols = self._volumes.get(att.disk_id)
            if d is None or vols is None:
                continue
            dropped = [v for v in vols[1] if v in removed]
            preview = saved_id if d.id in covered and saved_id in dropped else None
            if d.id in covered and preview is None:
                self._note(f"commit snapshot {snapshot_id} of VM {vm.name}: no preview layer")
            gone = [v for v in dropped if v != preview]
            if preview is not None:
                gone.append(snap.id)
            try:
                if host_id is None:
                    raise LookupError("no up host can reach the storage domain")
                for v in reversed(gone):
                    _, path = self._volume(d, host_id, v)
                    await self._call(host_id, P.DeleteImage(path=path))
                if preview is not None:
                    _, ppath = self._volume(d, host_id, preview)
                    await self._new_layer(host_id, d, snap.id, ppath, "qcow2")
            except (P.HostdError, LookupError) as e:
                self._note(f"commit snapshot {snapshot_id} of VM {vm.name}: {e}")
            # Volume list: ... under-S, preview, S (the later snapshots are gone).
            kept = [v for v in vols[1] if v not in removed and v != snap.id]
            if preview is not None:
                kept += [preview, snap.id]
            elif snap.id in vols[1]:
                kept.append(snap.id)
            vols[1][:] = kept

    def _any_storage_host(self, vm: Vm) -> UUID | None:
        for att in vm.disk_attachments:
            d = self.bus.engine.find(Disk, att.disk_id)
            sd = self.bus.engine.find(StorageDomain, d.storage_domain_id) if d else None
            hid = self._storage_host(sd)
            if hid is not None:
                return hid
        return None

    def libvirt_uri(self, host_id: UUID) -> str:
        """How another host's libvirt reaches this one, for migration."""
        if host_id in self.libvirt_uris:
            return self.libvirt_uris[host_id]
        s = self.sessions.get(host_id)
        uri = getattr(s.caps, "libvirt_uri", None) if s is not None else None
        if not uri:
            raise LookupError(f"the libvirt address of host {host_id} is not known")
        return str(uri)

    # -- images ---------------------------------------------------------------------------
    def _index_volumes(self) -> None:
        """Every disk's domain and volumes (base, then snapshot layers), from the engine."""
        eng = self.bus.engine
        self._volumes = {d.id: (d.storage_domain_id, [d.id]) for d in eng.all(Disk)}
        for vm in eng.all(Vm):
            covered = dict.fromkeys(d for s in vm.snapshots if s.config for d in s.config.disk_ids)
            for disk_id in covered:
                if disk_id in self._volumes:
                    self._volumes[disk_id][1].extend(disk_layers(vm, disk_id))

    def _image_host(self, sd_id: UUID | None) -> tuple[UUID, _Session, StorageDomain]:
        sd = self.bus.engine.find(StorageDomain, sd_id) if sd_id is not None else None
        host_id = self._storage_host(sd)
        if sd is None or host_id is None:
            raise LookupError("no up host can reach the storage domain")
        return host_id, self.sessions[host_id], sd

    @staticmethod
    def _root(s: _Session, sd: StorageDomain) -> str:
        return s.storage.get(str(sd.id)) or sd.path

    def _attached_vm(self, disk_id: UUID) -> Vm | None:
        return next((v for v in self.bus.engine.all(Vm) if v.attachment(disk_id) is not None), None)

    def _leaf_of(self, disk: Disk, root: str) -> str:
        vm = self._attached_vm(disk.id)
        if vm is None:
            return volume_path(root, disk.storage_domain_id, disk.id)
        return disk_leaf(vm, disk, root)

    async def _report_disk(
        self, disk_id: UUID, what: str, e: BaseException | None, info: Any = None
    ) -> None:
        if e is not None:
            self._note(f"{what} {disk_id}: {e}")
        await self.run_command(
            disk_cmds.ReportDiskOperation(
                disk_id=disk_id,
                ok=e is None,
                actual_size=getattr(info, "actual_size", None) if e is None else None,
                reason=str(e)[:900] if e is not None else "",
                actor=ACTOR,
            )
        )

    async def _create_image(self, disk_id: UUID) -> None:
        """A blank volume, or a thin one over its base disk's volume (a VM's disk made
        from a template: ``base_disk_id`` is the template's disk, on the same domain)."""
        disk = self.bus.engine.find(Disk, disk_id)
        if disk is None or disk.operation not in ("create", "copy"):
            return
        try:
            host_id, s, sd = self._image_host(disk.storage_domain_id)
            root = self._root(s, sd)
            base = self.bus.engine.find(Disk, disk.base_disk_id) if disk.base_disk_id else None
            if disk.base_disk_id is not None and base is None:
                raise LookupError(f"the base disk {disk.base_disk_id} is gone")
            backing = None
            if base is not None:
                base_sd = self.bus.engine.get(StorageDomain, base.storage_domain_id)
                backing = volume_path(self._root(s, base_sd), base.storage_domain_id, base.id)
            info: P.ImageInfoResult = await self._call_new_volume(
                host_id,
                P.CreateImage(
                    volume=P.VolumeRef(
                        sd_path=root, sd_id=str(sd.id), disk_id=str(disk_id), volume_id=str(disk_id)
                    ),
                    size_bytes=disk.provisioned_size,
                    format="qcow2" if disk.format == "cow" or base is not None else "raw",
                    backing=backing,
                    backing_format=_fmt(base.format) if base is not None else "qcow2",
                    preallocate=not disk.sparse,
                ),
            )
        except (P.HostdError, LookupError, KeyError, DomainError) as e:
            await self._report_disk(disk_id, "create image", e)
            return
        await self._report_disk(disk_id, "create image", None, info)

    def _copy_source(self, disk: Disk) -> tuple[Disk, Vm | None]:
        """The disk a full copy is made from: for a template's disk, the disk of the VM
        it is made from at the same position; for a cloned VM's disk, the template's."""
        from domain.template import Template

        eng = self.bus.engine
        if disk.template_id is not None:
            t = eng.find(Template, disk.template_id)
            vm = eng.find(Vm, t.source_vm_id) if t is not None and t.source_vm_id else None
            if t is None or vm is None or disk.id not in t.disk_ids:
                raise LookupError("the template's source VM is gone")
            att = vm.disk_attachments[t.disk_ids.index(disk.id)]
            return eng.get(Disk, att.disk_id), vm
        owner = self._attached_vm(disk.id)
        t = eng.find(Template, owner.template_id) if owner is not None else None
        if owner is None or t is None:
            raise LookupError("the disk copied is not known")
        idx = next(i for i, a in enumerate(owner.disk_attachments) if a.disk_id == disk.id)
        if idx >= len(t.disk_ids):
            raise LookupError("the template's disk copied is not known")
        return eng.get(Disk, t.disk_ids[idx]), None

    async def _call_new_volume(self, host_id: UUID, req: P.CreateImage | P.CopyImage) -> Any:
        """Creates a volume; one already there (made before a Manager restart) counts."""
        try:
            return await self._call(host_id, req)
        except P.HostdError as e:
            if "already exists" not in e.message:
                raise
            v = req.volume
            path = f"{v.sd_path}/{v.sd_id}/images/{v.disk_id}/{v.volume_id}"
            return await self._call(host_id, P.ImageInfo(path=path))

    async def _copy_to_volume(
        self, host_id: UUID, source: str, sd_root: str, sd_id: UUID, disk: Disk
    ) -> P.ImageInfoResult:
        """A flat copy of ``source`` as the disk's own base volume on domain ``sd_id``."""
        info: P.ImageInfoResult = await self._call_new_volume(
            host_id,
            P.CopyImage(
                source=source,
                volume=P.VolumeRef(
                    sd_path=sd_root,
                    sd_id=str(sd_id),
                    disk_id=str(disk.id),
                    volume_id=str(disk.id),
                ),
                format=_fmt(disk.format),
            ),
        )
        return info

    async def _copy_image(self, disk_id: UUID) -> None:
        """A full, independent copy (a template's disk, or a cloned VM's)."""
        disk = self.bus.engine.find(Disk, disk_id)
        if disk is None or disk.operation != "copy":
            return
        try:
            source, vm = self._copy_source(disk)
            host_id, s, sd = self._image_host(disk.storage_domain_id)
            src_sd = self.bus.engine.get(StorageDomain, source.storage_domain_id)
            src_root = self._root(s, src_sd)
            src_path = (
                disk_leaf(vm, source, src_root)
                if vm is not None
                else volume_path(src_root, source.storage_domain_id, source.id)
            )
            info = await self._copy_to_volume(host_id, src_path, self._root(s, sd), sd.id, disk)
        except (P.HostdError, LookupError, KeyError, DomainError) as e:
            await self._report_disk(disk_id, "copy image", e)
            return
        await self._report_disk(disk_id, "copy image", None, info)

    async def _extend_image(self, disk_id: UUID) -> None:
        """Grows the disk's active volume: live on the host running its VM (the guest
        sees the new size at once), else on any host that reaches the storage."""
        disk = self.bus.engine.find(Disk, disk_id)
        if disk is None or disk.operation != "extend":
            return
        try:
            vm = self._attached_vm(disk_id)
            live = vm is not None and vm.status in (VmStatus.UP, VmStatus.PAUSED)
            if vm is not None and not live and vm.status not in (VmStatus.DOWN, VmStatus.SUSPENDED):
                raise LookupError(f"the VM is {vm.status.value}: extend it when up or down")
            if live and vm is not None:
                if vm.run_on_host_id not in self.sessions:
                    raise LookupError("the host running the VM is not connected")
                host_id = vm.run_on_host_id
                s = self.sessions[host_id]
                sd = self.bus.engine.get(StorageDomain, disk.storage_domain_id)
            else:
                host_id, s, sd = self._image_host(disk.storage_domain_id)
            info: P.ImageInfoResult = await self._call(
                host_id,
                P.ResizeImage(
                    path=self._leaf_of(disk, self._root(s, sd)),
                    size_bytes=disk.provisioned_size,
                    vm_id=str(vm.id) if live and vm is not None else None,
                ),
            )
        except (P.HostdError, LookupError, KeyError, DomainError) as e:
            await self._report_disk(disk_id, "extend image", e)
            return
        await self._report_disk(disk_id, "extend image", None, info)

    async def _move_image(self, disk_id: UUID, target_id: UUID) -> None:
        """Copies the disk to the target domain (flattening it), then deletes the source."""
        disk = self.bus.engine.find(Disk, disk_id)
        if disk is None or disk.operation != "move":
            return
        source_sd = disk.storage_domain_id
        try:
            vm = self._attached_vm(disk_id)
            if vm is not None and vm.status != VmStatus.DOWN:
                raise LookupError("moving the disk of a running VM is not supported yet")
            if len(self._volumes.get(disk_id, (None, [disk_id]))[1]) > 1:
                raise LookupError("moving a disk with snapshots is not supported yet")
            host_id, s, sd = self._image_host(source_sd)
            target = self.bus.engine.get(StorageDomain, target_id)
            if str(target.id) not in s.storage:
                await self._connect_storage(s, target)
            info = await self._copy_to_volume(
                host_id,
                self._leaf_of(disk, self._root(s, sd)),
                self._root(s, target),
                target.id,
                disk,
            )
        except (P.HostdError, LookupError, KeyError, DomainError) as e:
            await self._report_disk(disk_id, "move image", e)
            return
        await self._report_disk(disk_id, "move image", None, info)
        await self._delete_volumes(disk_id, source_sd, [disk_id])

    async def _discard_image(self, disk_id: UUID) -> None:
        """Deletes a discarded disk's volumes (newest first; one already gone counts) and
        reports it, which removes the disk; a failure is reported too (the disk is then
        illegal, for an administrator to remove)."""
        disk = self.bus.engine.find(Disk, disk_id)
        if disk is None or disk.operation != "remove":
            return
        try:
            host_id, s, sd = self._image_host(disk.storage_domain_id)
            images = f"{self._root(s, sd)}/{sd.id}/images/{disk_id}"
            # The volumes the event names, and any this link knows of besides (a committed
            # preview's layer is no longer derivable from the snapshot list).
            known = self._volumes.get(disk_id, (sd.id, []))[1]
            volumes = list(dict.fromkeys([*known, *(disk.volume_ids or (disk_id,))]))
            for vol in reversed(volumes):
                try:
                    await self._call(host_id, P.DeleteImage(path=f"{images}/{vol}"))
                except P.HostdError as e:
                    if "no such image" not in e.message:
                        raise
        except (P.HostdError, LookupError, KeyError, DomainError) as e:
            await self._report_disk(disk_id, "discard image", e)
            return
        self._volumes.pop(disk_id, None)  # gone: nothing left for DiskRemoved to delete
        await self._report_disk(disk_id, "discard image", None)

    async def _delete_volumes(self, disk_id: UUID, sd_id: UUID, volumes: list[UUID]) -> None:
        """Deletes a disk's volumes, newest layer first; best effort (logged)."""
        try:
            host_id, s, sd = self._image_host(sd_id)
        except LookupError as e:
            self._note(f"delete image {disk_id}: {e}")
            return
        root = self._root(s, sd)
        for vol in reversed(volumes):
            path = f"{root}/{sd_id}/images/{disk_id}/{vol}"
            try:
                await self._call(host_id, P.DeleteImage(path=path))
            except P.HostdError as e:
                if vol == disk_id or "no such image" not in e.message:
                    self._note(f"delete volume {path}: {e}")

    # -- consoles ----------------------------------------------------------------------------
    async def _set_ticket(self, vm_id: UUID, ev: VmConsoleTicketSet, password: str) -> None:
        from datetime import UTC, datetime

        try:
            until = datetime.fromisoformat(ev.expires_at)
            expiry = max(1, int((until - datetime.now(UTC)).total_seconds()))
            await self._call(
                ev.host_id,
                P.SetTicket(
                    vm_id=str(vm_id),
                    password=password,
                    expiry_s=expiry,
                    protocol="spice" if str(ev.protocol) == "spice" else "vnc",
                ),
            )
        except (P.HostdError, ValueError) as e:
            self._note(f"console ticket of VM {vm_id}: {e}")

    def _storage_host(self, sd: StorageDomain | None) -> UUID | None:
        """The SPM of the domain's data center, else any connected up host there."""
        if sd is None or sd.data_center_id is None:
            return None
        from domain.datacenter import DataCenter

        dc = self.bus.engine.find(DataCenter, sd.data_center_id)
        candidates = []
        if dc is not None and dc.spm_host_id is not None:
            candidates.append(dc.spm_host_id)
        candidates += sorted(
            (h.id for h in self.bus.engine.all(Host) if h.status == HostStatus.UP),
            key=str,
        )
        for hid in candidates:
            s = self.sessions.get(hid)
            if s is not None and s.client is not None:
                return hid
        return None

    async def _connect_everywhere(self, sd_id: UUID) -> None:
        sd = self.bus.engine.find(StorageDomain, sd_id)
        if sd is None:
            return
        for s in list(self.sessions.values()):
            if s.client is not None and sd in self._dc_storage_of_host(s.host_id):
                await self._connect_storage(s, sd)

    async def _connect_storage(self, s: _Session, sd: StorageDomain) -> None:
        if s.client is None or sd.storage_type not in ("posixfs", "localfs", "nfs"):
            return
        path = f"{sd.address}:{sd.path}" if sd.storage_type == "nfs" else sd.path
        try:
            res: P.StorageConnected = await s.client.call(
                P.ConnectStorage(sd_id=str(sd.id), kind=str(sd.storage_type), path=path)  # type: ignore[arg-type]
            )
            s.storage[str(sd.id)] = res.path
        except P.HostdError as e:
            self._note(f"connect storage {sd.name}: {e}")
            await self.run_command(
                host_cmds.ReportHostStorageUnreachable(
                    host_id=s.host_id, storage_domain_id=sd.id, actor=ACTOR
                )
            )

    # -- reading the engine ---------------------------------------------------------------
    def _cluster_networks(self, cluster_id: UUID) -> list[str]:
        with self.bus.lock:
            return sorted(
                n.name
                for n in self.bus.engine.all(LogicalNetwork)
                if cluster_id in getattr(n, "cluster_ids", ())
            )

    def _dc_storage(self, cluster_id: UUID) -> list[StorageDomain]:
        from domain.cluster import Cluster

        c = self.bus.engine.find(Cluster, cluster_id)
        if c is None:
            return []
        return [
            sd
            for sd in self.bus.engine.all(StorageDomain)
            if sd.data_center_id == c.data_center_id
            and sd.status in (StorageDomainStatus.ACTIVE, StorageDomainStatus.ACTIVATING)
        ]

    def _dc_storage_of_host(self, host_id: UUID) -> list[StorageDomain]:
        host = self.bus.engine.find(Host, host_id)
        return self._dc_storage(host.cluster_id) if host is not None else []

    def vm_spec(self, vm_id: UUID, host_id: UUID) -> P.VmSpec:
        """The VM as hostd needs it: its disks' volume paths as that host sees them."""
        eng = self.bus.engine
        vm = eng.get(Vm, vm_id)
        s = self.sessions.get(host_id)
        roots = s.storage if s is not None else {}
        disks = []
        for att in vm.disk_attachments:
            if not att.active:
                continue
            d = eng.get(Disk, att.disk_id)
            sd = eng.get(StorageDomain, d.storage_domain_id)
            root = roots.get(str(sd.id)) or sd.path
            disks.append(
                P.DiskSpec(
                    path=disk_leaf(vm, d, root),
                    format="qcow2" if d.format == "cow" else "raw",
                    bus=_bus(str(att.interface)),
                    disk_id=str(d.id),
                    bootable=att.bootable,
                    serial=str(d.id)[:20],
                )
            )
        nics = []
        for nic in vm.nics:
            if not nic.plugged:
                continue
            network = "ovirtmgmt"
            if nic.vnic_profile_id is not None:
                prof = eng.find(VnicProfile, nic.vnic_profile_id)
                net = eng.find(LogicalNetwork, prof.network_id) if prof is not None else None
                if net is not None:
                    network = net.name
            nics.append(
                P.NicSpec(
                    mac=nic.mac,
                    network=network,
                    model="virtio" if str(nic.interface) == "virtio" else "e1000",
                    nic_id=str(nic.id),
                )
            )
        return P.VmSpec(
            id=str(vm.id),
            name=vm.name,
            memory_mib=max(1, vm.memory // MiB),
            cpu=P.CpuTopology(sockets=vm.cpu_sockets, cores=vm.cpu_cores, threads=vm.cpu_threads),
            disks=disks,
            nics=nics,
            graphics=[P.GraphicsSpec(type="spice" if str(vm.graphics) == "spice" else "vnc")],
            custom_properties=dict(vm.custom_properties),
        )

    def _note(self, text: str) -> None:
        log.warning("%s", text)
        self.errors.append(text)
        del self.errors[:-100]


def disk_leaf(vm: Vm, disk: Disk, root: str, *, before: UUID | None = None) -> str:
    """The disk's active volume: the layer of the newest settled snapshot covering it
    (only those older than ``before`` when given), else the disk's base volume. While a
    snapshot covering the disk is in preview (and no ``before``), the preview layer named
    after the ``saved`` preview-type record (see ``HostLink._snapshot_preview``)."""
    if before is None:
        previewed = next((s for s in vm.snapshots if s.status == SnapshotStatus.IN_PREVIEW), None)
        saved = next((s for s in vm.snapshots if s.snapshot_type == SnapshotType.PREVIEW), None)
        if (
            previewed is not None
            and saved is not None
            and previewed.config is not None
            and disk.id in previewed.config.disk_ids
        ):
            return f"{root}/{disk.storage_domain_id}/images/{disk.id}/{saved.id}"
    volume = disk.id
    for snap in vm.snapshots:
        if before is not None and snap.id == before:
            break
        if snap.snapshot_type != SnapshotType.REGULAR or snap.config is None:
            continue
        if snap.status == SnapshotStatus.LOCKED and snap.operation == "create":
            continue
        if disk.id in snap.config.disk_ids:
            volume = snap.id
    return f"{root}/{disk.storage_domain_id}/images/{disk.id}/{volume}"


def _saving(vm: Vm, status: VmStatus | None) -> bool:
    """libvirt pauses a VM to save it: "suspended" (or a failure) follows. Reported, the
    pause would stick, since a paused VM cannot become suspended."""
    return vm.status == VmStatus.SAVING_STATE and status == VmStatus.PAUSED


def _moved(old: int, new: int) -> bool:
    return old != new and (old == 0 or abs(new - old) > old // 100)


def _vm_status(text: str) -> VmStatus | None:
    try:
        return VmStatus(text)
    except ValueError:
        return None


def _fmt(disk_format: Any) -> Any:
    return "qcow2" if str(disk_format) == "cow" else "raw"


def _bus(interface: str) -> Any:
    return {"virtio": "virtio", "virtio_scsi": "scsi", "ide": "ide", "sata": "sata"}.get(
        interface, "virtio"
    )


__all__ = ["HostLink", "HostSecrets", "disk_leaf", "volume_path"]
