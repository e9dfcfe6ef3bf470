"""What every host link flow shares: the bus, the host sessions, the index of each disk's
volumes, and the helpers to read the Engine, run a report command, call a host, spawn an
action and note a failure.

Reading the Engine: the writer thread changes it while the flows run on the event loop,
so every read goes through ``find`` / ``get`` / ``all`` (or ``reading()`` for several
reads that belong together), each of which holds ``bus.lock`` for the read only. Never
hold it across an ``await``; the Engine's objects are immutable, so what was read stays
valid (if possibly stale) after the lock is released.

``cancel_all`` stops background tasks for good: on Python 3.11 ``asyncio.wait_for``
can swallow a cancellation that arrives as its inner call completes (a host connection
refused at that instant), so one ``cancel()`` is not always the end of a task.

Also here, because more than one flow needs them: which host carries out a storage
domain's operations (``storage_host``), the domains a host's data center has active
(``dc_storage``), and connecting a session to a domain (``connect_storage``).

May import ``commands`` command modules, ``domain``, ``hostd.protocol``,
``commands.credentials`` and ``.volumes``; no flow module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from uuid import UUID

from commands import host as host_cmds
from commands.bus import CommandBus
from commands.credentials import HostSecrets
from commands.messages import Command
from commands.pki import ManagerPki
from domain.base import Aggregate, DomainError
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.disk import Disk
from domain.engine import Engine
from domain.host import Host
from domain.statuses import HostStatus, StorageDomainStatus
from domain.storage import StorageDomain
from domain.vm import Vm, disk_layers
from hostd import protocol as P
from hostd import tls

log = logging.getLogger("orrery.hostlink")

A = TypeVar("A", bound=Aggregate)

ACTOR = "system"
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


async def cancel_all(tasks: list[asyncio.Task[Any]], timeout: float = 10.0) -> list[str]:
    """Cancels the tasks, again while any is still running, until all are done or
    ``timeout`` passes; returns the names of those that would not stop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {t for t in tasks if not t.done()}
    while pending and loop.time() < deadline:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: a task that failed while stopping is not logged twice
    return sorted(t.get_name() for t in pending)


class Session:
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


class Core:
    def __init__(
        self, bus: CommandBus, secrets: HostSecrets, pki: ManagerPki | None = None
    ) -> None:
        self.bus = bus
        self.secrets = secrets
        # The Manager CA: hosts are reached over mutual TLS with its client certificate
        # (None: plain TCP, for tests of hosts started with --plain).
        self.pki = pki
        self.tls = None
        if pki is not None:
            mine = pki.client_certificate()
            self.tls = tls.client_context(mine.cert_path, mine.key_path, pki.ca_path)
        self.sessions: dict[UUID, Session] = {}
        self.errors: list[str] = []  # recent action failures, for tests and status pages
        # Where each disk's volumes live, so a removed disk's files can still be found:
        # disk id -> (storage domain id, volume ids, base first).
        self.volumes: dict[UUID, tuple[UUID, list[UUID]]] = {}
        self.actions: set[asyncio.Task[Any]] = set()

    # -- reading the Engine, under the bus's lock ----------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[Engine]:
        """The Engine, under the lock: for a few reads that belong together (no await)."""
        with self.bus.lock:
            yield self.bus.engine

    def find(self, cls: type[A], obj_id: UUID | None) -> A | None:
        with self.bus.lock:
            return self.bus.engine.find(cls, obj_id)

    def get(self, cls: type[A], obj_id: UUID) -> A:
        with self.bus.lock:
            return self.bus.engine.get(cls, obj_id)

    def all(self, cls: type[A]) -> list[A]:
        with self.bus.lock:
            return list(self.bus.engine.all(cls))

    # -- acting -------------------------------------------------------------------------
    async def run_command(self, cmd: Command) -> Any:
        """Executes a report command; a rule that says no is logged, not raised."""
        try:
            return (await self.bus.execute_async(cmd)).value
        except DomainError as e:
            log.debug("%s refused: %s", cmd.NAME, e)
            return None

    async def call(self, host_id: UUID | None, req: P.Request) -> Any:
        """Sends a request to a connected host; HostdError ("disconnected") if it is not."""
        s = self.sessions.get(host_id) if host_id is not None else None
        if s is None or s.client is None:
            raise P.HostdError("disconnected", f"host {host_id} is not connected")
        return await s.client.call(req)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Runs an action in the background; ``stop`` cancels those still running."""
        t = asyncio.create_task(coro)
        self.actions.add(t)
        t.add_done_callback(self.actions.discard)

    def note(self, text: str) -> None:
        """A failed action: logged, and kept among the last 100 in ``errors``."""
        log.warning("%s", text)
        self.errors.append(text)
        del self.errors[:-100]

    # -- the volume index -----------------------------------------------------------------
    def index_volumes(self) -> None:
        """Every disk's domain and volumes (base, then snapshot layers), from the engine."""
        with self.reading() as eng:
            self.volumes = {d.id: (d.storage_domain_id, [d.id]) for d in eng.all(Disk)}
            for vm in eng.all(Vm):
                covered = dict.fromkeys(
                    d for s in vm.snapshots if s.config for d in s.config.disk_ids
                )
                for disk_id in covered:
                    if disk_id in self.volumes:
                        self.volumes[disk_id][1].extend(disk_layers(vm, disk_id))

    # -- storage shared by the flows ------------------------------------------------------
    def storage_host(self, sd: StorageDomain | None) -> UUID | None:
        """The SPM of the domain's data center, else any connected up host there."""
        if sd is None or sd.data_center_id is None:
            return None
        with self.reading() as eng:
            dc = eng.find(DataCenter, sd.data_center_id)
            up = [h.id for h in eng.all(Host) if h.status == HostStatus.UP]
        candidates = []
        if dc is not None and dc.spm_host_id is not None:
            candidates.append(dc.spm_host_id)
        candidates += sorted(up, key=str)
        for hid in candidates:
            s = self.sessions.get(hid)
            if s is not None and s.client is not None:
                return hid
        return None

    def dc_storage(self, cluster_id: UUID) -> list[StorageDomain]:
        """The active (or activating) storage domains of the cluster's data center."""
        with self.reading() as eng:
            c = eng.find(Cluster, cluster_id)
            if c is None:
                return []
            return [
                sd
                for sd in eng.all(StorageDomain)
                if sd.data_center_id == c.data_center_id
                and sd.status in (StorageDomainStatus.ACTIVE, StorageDomainStatus.ACTIVATING)
            ]

    def dc_storage_of_host(self, host_id: UUID) -> list[StorageDomain]:
        host = self.find(Host, host_id)
        return self.dc_storage(host.cluster_id) if host is not None else []

    async def connect_storage(self, s: Session, sd: StorageDomain) -> None:
        """Connects the host to a file domain and records where it sees it; a host that
        cannot is reported (``ReportHostStorageUnreachable``)."""
        if s.client is None or sd.storage_type not in ("posixfs", "localfs", "nfs"):
            return
        path = f"{sd.address}:{sd.path}" if sd.storage_type == "nfs" else sd.path
        try:
            res: P.StorageConnected = await s.client.call(
                P.ConnectStorage(sd_id=str(sd.id), kind=str(sd.storage_type), path=path)  # type: ignore[arg-type]
            )
            s.storage[str(sd.id)] = res.path
        except P.HostdError as e:
            self.note(f"connect storage {sd.name}: {e}")
            await self.run_command(
                host_cmds.ReportHostStorageUnreachable(
                    host_id=s.host_id, storage_domain_id=sd.id, actor=ACTOR
                )
            )

    async def root(self, s: Session, sd: StorageDomain) -> str:
        """The domain's root as the session's host sees it (else as recorded), connecting
        the host to the domain first if it is not yet: hostd touches only files of the
        domains it has connected."""
        if str(sd.id) not in s.storage:
            await self.connect_storage(s, sd)
        return s.storage.get(str(sd.id)) or sd.path
