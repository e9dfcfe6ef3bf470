"""hostd's core: the daemon's configuration, its state and the plumbing every request
handler uses.

Owns ``Config``, the request failure ``Fail``, a connected Manager (``Client``) and
``Core``: the libvirt connection in use, the connected clients, the fact sequence, the
per-VM locks, the storage domains and networks this host has, the migrations under way,
the thread pool blocking libvirt/qemu-img calls run in, and the helpers to look a VM up,
describe it (``VmInfo``), emit facts, run hooks after an operation and sample statistics.

Holds no request handling of its own: the ``*_requests`` modules take a ``Core``.
May import ``hostd.protocol`` and the driver modules (domxml, virt, hooks, network,
stats); nothing above them (no handler module, no dispatch, no server).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import libvirt
import msgspec

from hostd import domxml, hooks, network, stats, virt
from hostd import protocol as P

VERSION = "0.1.0"
log = logging.getLogger("hostd")

T = TypeVar("T")


class Fail(Exception):
    """A request refused or failed for a reason the Manager is told (``code``, ``message``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Config(msgspec.Struct, kw_only=True):
    listen_host: str = "127.0.0.1"
    listen_port: int = P.DEFAULT_PORT
    libvirt_uri: str = "qemu:///system"
    public_libvirt_uri: str = ""  # reported in Capabilities for migrations to this host
    data_dir: str = "/var/lib/orrery-hostd"
    token: str = ""
    tls_dir: str = ""  # hostd.tls's directory; empty: plain TCP (tests, --plain)
    host_id: str | None = None
    stats_interval: float = 15.0
    heartbeat_interval: float = 10.0
    migration_port_min: int = 49152
    networks: list[str] = msgspec.field(default_factory=lambda: ["ovirtmgmt"])


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


class Client:
    """One authenticated connection of a Manager; ``facts``: it asked for the fact stream."""

    def __init__(self, writer: asyncio.StreamWriter, facts: bool) -> None:
        self.writer = writer
        self.facts = facts

    def send(self, msg: P.Msg) -> None:
        if self.writer.is_closing():
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() > 32 * 1024 * 1024:
            log.warning("dropping a client that does not read its facts")
            transport.abort()
            return
        self.writer.write(P.encode_frame(msg))


def confined(core: Core, path: str | os.PathLike[str], what: str = "image") -> str:
    """``path`` if it lies, symlinks resolved, inside a storage domain this host has
        connected (``<root>/<sd_id>/`` of ``Core.storage``) or in hostd's own snapshot
    directory; else ``forbidden``. Image and
        snapshot requests check every file they name with it before qemu-img or libvirt sees
        it, so a request cannot read, overwrite or delete a file of the host's own."""
    real = os.path.realpath(path)
    bases = [os.path.join(root, sd_id) for sd_id, root in core.storage.items()]
    bases.append(str(core.data_dir / "snapshots"))  # memory of a VM without disks
    if any(real.startswith(os.path.realpath(b) + os.sep) for b in bases):
        return str(path)
    raise Fail("forbidden", f"{what} {path} is not on a storage domain connected to this host")


class Core:
    """The state of one hostd and the plumbing its request handlers share."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.hooks = hooks.Hooks(self.data_dir / "hooks")
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="hostd")
        self.vms_running = 0  # as last read from libvirt, for heartbeats
        self.boot_id = str(uuid.uuid4())
        self.host_id = cfg.host_id or ""
        self.hostname = socket.gethostname()
        self.kvm = kvm_usable()
        self.conn: libvirt.virConnect | None = None
        self.callbacks: list[int] = []  # libvirt event callbacks registered on ``conn``
        self.clients: set[Client] = set()
        self.seq = 0
        self.sampler = stats.Sampler()
        self.storage: dict[str, str] = {}
        self.storage_kind: dict[str, str] = {}
        self.networks: set[str] = set(cfg.networks)
        # Bridges this hostd created (kept across restarts): the only ones it ever removes.
        self.created_bridges: set[str] = network.load_created(self.data_dir)
        self.migrations: dict[str, dict] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()
        self.last_status: dict[str, str] = {}
        # Set by the server when it starts on its event loop.
        self.loop: asyncio.AbstractEventLoop
        self.loop_thread: int

    # -- plumbing ---------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the thread pool (libvirt and qemu-img calls block)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Runs ``coro`` in the background; ``stop`` cancels what is still running."""
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t

    def emit(self, fact: P.Fact) -> None:
        self.seq += 1
        fact.host_id = self.host_id
        fact.boot_id = self.boot_id
        fact.seq = self.seq
        fact.ts = time.time()
        for c in list(self.clients):
            if c.facts:
                c.send(fact)

    def lock(self, vm_id: str) -> asyncio.Lock:
        lk = self.locks.get(vm_id)
        if lk is None:
            lk = self.locks[vm_id] = asyncio.Lock()
        return lk

    def c(self) -> libvirt.virConnect:
        if self.conn is None:
            raise Fail("libvirt_unreachable", f"not connected to {self.cfg.libvirt_uri}")
        return self.conn

    # -- VMs ----------------------------------------------------------------------------

    def _lookup(self, vm_id: str) -> libvirt.virDomain:
        try:
            return self.c().lookupByUUIDString(vm_id)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise Fail("not_found", f"no VM {vm_id} on this host") from e
            raise

    async def dom(self, vm_id: str) -> libvirt.virDomain:
        try:
            uuid.UUID(vm_id)
        except ValueError as e:
            raise Fail("invalid", f"{vm_id!r} is not a UUID") from e
        return await self.run(self._lookup, vm_id)

    def _info(self, dom: libvirt.virDomain, with_xml: bool = False) -> P.VmInfo:
        state, reason = dom.state()
        managed = bool(dom.hasManagedSaveImage(0)) if not dom.isActive() else False
        status, why = virt.state_status(state, reason, managed)
        vm_id = dom.UUIDString()
        if vm_id in self.migrations and status in ("up", "paused"):
            status = "migrating"
        xml = dom.XMLDesc(0)
        gtype, gport = domxml.graphics(xml)
        root = ET.fromstring(xml)
        mem = int(root.findtext("currentMemory", "0") or 0) // 1024
        return P.VmInfo(
            id=vm_id,
            name=dom.name(),
            status=status,
            reason=why,
            persistent=bool(dom.isPersistent()),
            managed_save=managed,
            memory_mib=mem,
            vcpus=int(root.findtext("vcpu", "0") or 0),
            display_type=gtype,
            display_port=gport,
            disks=domxml.disks(xml),
            xml=xml if with_xml else None,
        )

    async def info(self, dom: libvirt.virDomain, with_xml: bool = False) -> P.VmInfo:
        return await self.run(self._info, dom, with_xml)

    async def list_vms(self, with_xml: bool) -> P.VmList:
        doms = await self.run(self.c().listAllDomains, 0)
        out = []
        for d in doms:
            try:
                out.append(await self.info(d, with_xml))
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        return P.VmList(vms=out)

    def status_fact(self, dom: libvirt.virDomain, status: str, reason: str) -> None:
        """A status hostd itself gives the VM (libvirt has no event for it)."""
        self.emit(
            P.VmStatusChanged(
                vm_id=dom.UUIDString(), name=dom.name(), status=status, reason=reason, event="hostd"
            )
        )

    async def after_hook(self, dom: libvirt.virDomain, phase: str, xml: str | None = None) -> None:
        """Runs the ``phase`` hooks of an operation that happened; a failure is a fact."""
        if not self.hooks.scripts(phase):
            return
        try:
            text: str = xml if xml is not None else await self.run(dom.XMLDesc, 0)
            await self.run(self.hooks.run, phase, text, domxml.custom_properties(text))
        except (hooks.HookError, libvirt.libvirtError) as e:
            self.emit(P.HostError(code="hook", message=str(e), vm_id=dom.UUIDString()))

    # -- statistics ---------------------------------------------------------------------

    async def sample(self) -> P.StatsSample:
        conn = self.c()
        flags = (
            libvirt.VIR_DOMAIN_STATS_STATE
            | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
            | libvirt.VIR_DOMAIN_STATS_BALLOON
            | libvirt.VIR_DOMAIN_STATS_VCPU
            | libvirt.VIR_DOMAIN_STATS_INTERFACE
            | libvirt.VIR_DOMAIN_STATS_BLOCK
        )
        recs = await self.run(
            conn.getAllDomainStats, flags, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        )
        now = time.monotonic()
        vms = []
        for dom, rec in recs:
            status, _ = virt.state_status(
                int(rec.get("state.state", 0)), int(rec.get("state.reason", 0))
            )
            vms.append(self.sampler.vm(dom.UUIDString(), dom.name(), status, rec, now))
        self.sampler.forget({v.vm_id for v in vms})
        host = await self.run(self.sampler.host, len(vms))
        return P.StatsSample(interval_s=self.cfg.stats_interval, host=host, vms=vms)
