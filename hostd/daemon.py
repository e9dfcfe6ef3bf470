"""hostd: the asyncio server. Authenticates the Manager, runs its requests against libvirt,
and streams facts (VM status from libvirt lifecycle events, statistics, heartbeats,
migration progress) back. Keeps no state of its own: after a restart it re-reads libvirt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import libvirt
import libvirtaio
import msgspec

from hostd import domxml, hooks, images, network, stats, virt
from hostd import protocol as P

VERSION = "0.1.0"
log = logging.getLogger("hostd")


class Fail(Exception):
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


class _Client:
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


class Hostd:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.hooks = hooks.Hooks(self.data_dir / "hooks")
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="hostd")
        self._vms_running = 0  # as last read from libvirt, for heartbeats
        self.boot_id = str(uuid.uuid4())
        self.host_id = cfg.host_id or ""
        self.hostname = socket.gethostname()
        self.kvm = kvm_usable()
        self.conn: libvirt.virConnect | None = None
        self.clients: set[_Client] = set()
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
        self.server: asyncio.base_events.Server | None = None
        self._stop = asyncio.Event()
        self._callbacks: list[int] = []
        self.last_status: dict[str, str] = {}

    # -- plumbing ---------------------------------------------------------------------

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def spawn(self, coro: Any) -> asyncio.Task:
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

    # -- libvirt connection -----------------------------------------------------------

    async def connect_libvirt(self) -> None:
        conn = await self.run(libvirt.open, self.cfg.libvirt_uri)
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(5, 3)
        conn.registerCloseCallback(self._on_close, None)
        self._callbacks = [
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
            )
        ]
        self.conn = conn
        if not self.host_id:
            caps = await self.run(virt.host_caps, conn)
            self.host_id = caps["uuid"] or str(uuid.uuid4())
        log.info("connected to %s", self.cfg.libvirt_uri)

    def _on_close(self, conn: libvirt.virConnect, reason: int, opaque: Any) -> None:
        # libvirt may call this from whichever thread noticed the broken connection.
        self.loop.call_soon_threadsafe(self._connection_lost, conn)

    def _connection_lost(self, conn: libvirt.virConnect) -> None:
        if self.conn is conn:
            self.conn = None
            self.emit(P.HostError(code="libvirt_unreachable", message="libvirt connection lost"))
            self.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._stop.is_set() and self.conn is None:
            await asyncio.sleep(1.0)
            try:
                await self.connect_libvirt()
            except libvirt.libvirtError as e:
                log.warning("libvirt reconnect failed: %s", e)
                continue
            for vm in (await self._list(False)).vms:
                self.emit(
                    P.VmStatusChanged(
                        vm_id=vm.id,
                        name=vm.name,
                        status=vm.status,
                        reason=vm.reason,
                        event="recovered",
                    )
                )

    def c(self) -> libvirt.virConnect:
        if self.conn is None:
            raise Fail("libvirt_unreachable", f"not connected to {self.cfg.libvirt_uri}")
        return self.conn

    def _on_lifecycle(
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, _: Any
    ) -> None:
        if threading.get_ident() != self.loop_thread:
            self.loop.call_soon_threadsafe(self._on_lifecycle, conn, dom, event, detail, _)
            return
        mapped = virt.event_status(event, detail)
        if mapped is None:
            return
        status, reason = mapped
        vm_id = dom.UUIDString()
        if vm_id in self.migrations and status in ("paused", "up") and reason != "unpaused":
            status = "migrating"
        self.last_status[vm_id] = status
        self.emit(
            P.VmStatusChanged(
                vm_id=vm_id,
                name=dom.name(),
                status=status,
                reason=reason,
                event=virt.EVENT_NAMES.get(event, str(event)),
            )
        )
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and reason not in ("migrated", "saved"):
            self.spawn(self._after_hook(dom, "after_vm_destroy"))
        if event == libvirt.VIR_DOMAIN_EVENT_RESUMED and reason == "migrated":
            self.spawn(self._after_hook(dom, "after_vm_migrate_destination"))

    async def _after_hook(self, dom: libvirt.virDomain, phase: str, xml: str | None = None) -> None:
        if not self.hooks.scripts(phase):
            return
        try:
            if xml is None:
                xml = await self.run(dom.XMLDesc, 0)
            await self.run(self.hooks.run, phase, xml, domxml.custom_properties(xml))
        except (hooks.HookError, libvirt.libvirtError) as e:
            self.emit(P.HostError(code="hook", message=str(e), vm_id=dom.UUIDString()))

    # -- server -----------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        libvirtaio.virEventRegisterAsyncIOImpl(loop=self.loop)
        # Errors reach callers as exceptions; keep libvirt from also printing them.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            await self.connect_libvirt()
        except libvirt.libvirtError as e:
            log.error("cannot connect to %s: %s (retrying)", self.cfg.libvirt_uri, e)
            self.spawn(self._reconnect())
        self.server = await asyncio.start_server(
            self._handle, self.cfg.listen_host, self.cfg.listen_port, limit=P.MAX_FRAME
        )
        self.spawn(self._stats_loop())
        self.spawn(self._heartbeat_loop())
        log.info(
            "hostd %s listening on %s:%d (host %s, kvm=%s)",
            VERSION,
            self.cfg.listen_host,
            self.cfg.listen_port,
            self.host_id,
            self.kvm,
        )

    async def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.close()
        for c in list(self.clients):
            c.writer.close()
        for t in list(self.tasks):
            t.cancel()
        if self.conn is not None:
            conn, self.conn = self.conn, None
            for cb in self._callbacks:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.domainEventDeregisterAny(cb)
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()
            with contextlib.suppress(libvirt.libvirtError):
                await self.run(conn.close)
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def serve_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client: _Client | None = None
        try:
            try:
                hello = await asyncio.wait_for(P.read_frame(reader), P.HELLO_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, ValueError, msgspec.DecodeError):
                return
            if not isinstance(hello, P.Hello) or not hmac.compare_digest(
                hello.token.encode(), self.cfg.token.encode()
            ):
                log.warning("refused an unauthenticated connection")
                return
            client = _Client(writer, hello.facts)
            client.send(
                P.Welcome(
                    host_id=self.host_id,
                    boot_id=self.boot_id,
                    hostname=self.hostname,
                    hostd_version=VERSION,
                    kvm=self.kvm,
                )
            )
            self.clients.add(client)
            while True:
                try:
                    frame = await P.read_frame(reader)
                except (ValueError, msgspec.DecodeError) as e:
                    client.send(
                        P.Reply(id=0, ok=False, error=P.Error(code="invalid", message=str(e)))
                    )
                    continue
                if isinstance(frame, P.Call):
                    self.spawn(self._call(client, frame))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if client is not None:
                self.clients.discard(client)
            with contextlib.suppress(Exception):
                writer.close()

    async def _call(self, client: _Client, call: P.Call) -> None:
        handler = getattr(self, "do_" + type(call.req).__name__, None)
        try:
            if handler is None:
                raise Fail("invalid", f"unsupported request {type(call.req).__name__}")
            result = await handler(call.req)
            reply = P.Reply(id=call.id, ok=True, result=result)
        except Fail as e:
            reply = P.Reply(id=call.id, ok=False, error=P.Error(code=e.code, message=e.message))
        except libvirt.libvirtError as e:
            reply = P.Reply(id=call.id, ok=False, error=virt.error_of(e))
        except hooks.HookError as e:
            reply = P.Reply(id=call.id, ok=False, error=P.Error(code="hook", message=str(e)))
        except images.ImageError as e:
            reply = P.Reply(id=call.id, ok=False, error=P.Error(code="image", message=str(e)))
        except Exception as e:
            log.exception("request %s failed", type(call.req).__name__)
            reply = P.Reply(
                id=call.id,
                ok=False,
                error=P.Error(code="internal", message=f"{type(e).__name__}: {e}"),
            )
        client.send(reply)

    # -- periodic facts -----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # A heartbeat says hostd is alive: it goes out on time even when libvirt is slow to
        # answer (it waits for domain jobs, e.g. during a block commit's pivot), carrying
        # the VM count last read; the count is refreshed beside it.
        refresh: asyncio.Task | None = None
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            if self.conn is not None and (refresh is None or refresh.done()):
                refresh = self.spawn(self._count_vms())
            self.emit(P.Heartbeat(vms_running=self._vms_running))

    async def _count_vms(self) -> None:
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._vms_running = await self.run(conn.numOfDomains)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.stats_interval)
            try:
                self.emit(await self.sample())
            except (libvirt.libvirtError, Fail, OSError) as e:
                log.warning("stats sample failed: %s", e)

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

    # -- helpers --------------------------------------------------------------------------

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

    async def _list(self, with_xml: bool) -> P.VmList:
        doms = await self.run(self.c().listAllDomains, 0)
        out = []
        for d in doms:
            try:
                out.append(await self.info(d, with_xml))
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        return P.VmList(vms=out)

    def _status_fact(self, dom: libvirt.virDomain, status: str, reason: str) -> None:
        self.emit(
            P.VmStatusChanged(
                vm_id=dom.UUIDString(), name=dom.name(), status=status, reason=reason, event="hostd"
            )
        )

    def _check_networks(self, spec: P.VmSpec) -> None:
        for nic in spec.nics:
            if not network.bridge_exists(nic.network):
                raise Fail(
                    "network",
                    f"network {nic.network} is not available on this host "
                    f"(bridge {nic.network} does not exist; NIC {nic.mac} cannot be plugged)",
                )

    # -- requests: host -----------------------------------------------------------------

    async def do_Ping(self, req: P.Ping) -> P.Ok:
        return P.Ok(detail="pong")

    async def do_GetCapabilities(self, req: P.GetCapabilities) -> P.Capabilities:
        conn = self.c()
        caps = await self.run(virt.host_caps, conn)
        info = await self.run(conn.getInfo)
        return P.Capabilities(
            host_id=self.host_id,
            hostname=self.hostname,
            hostd_version=VERSION,
            libvirt_version=virt.version_str(await self.run(conn.getLibVersion)),
            qemu_version=virt.version_str(await self.run(conn.getVersion)),
            kvm=self.kvm and caps["kvm_domain"],
            cpu_model=caps["cpu_model"],
            cpu_vendor=caps["cpu_vendor"],
            cpu_sockets=caps["sockets"],
            cpu_cores=caps["cores"],
            cpu_threads=caps["threads"],
            cpus=int(info[2]),
            memory_mib=int(info[1]),
            emulated_machines=caps["machines"],
            networks=[network.state(n) for n in sorted(self.networks)],
            storage=dict(self.storage),
            hooks=self.hooks.listing(),
            migration_port_min=self.cfg.migration_port_min,
            libvirt_uri=self.cfg.public_libvirt_uri,
        )

    async def do_GetStats(self, req: P.GetStats) -> P.StatsSample:
        s = await self.sample()
        s.host_id, s.boot_id, s.ts = self.host_id, self.boot_id, time.time()
        return s

    async def do_SetupNetworks(self, req: P.SetupNetworks) -> P.NetworksResult:
        out = []
        for name in req.remove:
            st = await self.run(network.remove, name, name in self.created_bridges)
            if st.ok:
                self.created_bridges.discard(name)
            self.networks.discard(name)
            out.append(st)
        for b in req.bridges:
            st, created = await self.run(network.setup, b)
            if created:
                self.created_bridges.add(b.network)
            self.networks.add(b.network)
            out.append(st)
        await self.run(network.save_created, self.data_dir, set(self.created_bridges))
        self.emit(P.NetworkStatus(networks=[network.state(n) for n in sorted(self.networks)]))
        return P.NetworksResult(networks=out)

    async def do_ConnectStorage(self, req: P.ConnectStorage) -> P.StorageConnected:
        if req.kind == "nfs":
            if ":" not in req.path:
                raise Fail("storage", f"NFS path must be address:/export, not {req.path!r}")
            target = self.data_dir / "mnt" / req.path.replace("/", "_").replace(":", "_")
            target.mkdir(parents=True, exist_ok=True)
            if not os.path.ismount(target):
                opts = req.mount_options or "soft,timeo=100,retrans=3,nosharecache"
                cmd = ["mount", "-t", "nfs", "-o", opts, req.path, str(target)]
                p = await self.run(
                    lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                )
                if p.returncode != 0:
                    raise Fail(
                        "storage", f"mount of {req.path} failed: {(p.stderr or p.stdout).strip()}"
                    )
            path = str(target)
        else:
            path = req.path
            if not os.path.isdir(path):
                raise Fail("storage", f"storage path {path} is not a directory")
            if not os.access(path, os.W_OK):
                raise Fail("storage", f"storage path {path} is not writable")
        Path(path, req.sd_id, "images").mkdir(parents=True, exist_ok=True)
        Path(path, req.sd_id, "dom_md").mkdir(parents=True, exist_ok=True)
        self.storage[req.sd_id] = path
        self.storage_kind[req.sd_id] = req.kind
        return P.StorageConnected(sd_id=req.sd_id, path=path)

    async def do_StorageSpace(self, req: P.StorageSpace) -> P.StorageSpaceResult:
        path = self.storage.get(req.sd_id)
        if path is None:
            raise Fail("not_found", f"storage domain {req.sd_id} is not connected on this host")
        st = await self.run(os.statvfs, path)
        total = st.f_blocks * st.f_frsize
        return P.StorageSpaceResult(
            sd_id=req.sd_id,
            total=total,
            available=st.f_bavail * st.f_frsize,
            used=total - st.f_bfree * st.f_frsize,
        )

    async def do_DisconnectStorage(self, req: P.DisconnectStorage) -> P.Ok:
        path = self.storage.pop(req.sd_id, None)
        if path is None:
            raise Fail("not_found", f"storage domain {req.sd_id} is not connected")
        if path.startswith(str(self.data_dir / "mnt")) and os.path.ismount(path):
            await self.run(lambda: subprocess.run(["umount", "-l", path], capture_output=True))
        return P.Ok()

    # -- requests: images -----------------------------------------------------------------

    async def do_CreateImage(self, req: P.CreateImage) -> P.ImageInfoResult:
        path = images.volume_path(req.volume)
        return await self.run(
            images.create,
            path,
            req.size_bytes,
            req.format,
            req.backing,
            req.backing_format,
            req.preallocate,
        )

    async def do_CopyImage(self, req: P.CopyImage) -> P.ImageInfoResult:
        return await self.run(images.copy, req.source, images.volume_path(req.volume), req.format)

    async def do_ResizeImage(self, req: P.ResizeImage) -> P.ImageInfoResult:
        if req.vm_id is not None:
            dom = await self.dom(req.vm_id)
            async with self.lock(req.vm_id):
                if await self.run(dom.isActive):
                    return await self.run(self._resize_live, dom, req)
        return await self.run(images.resize, req.path, req.size_bytes)

    def _resize_live(self, dom: libvirt.virDomain, req: P.ResizeImage) -> P.ImageInfoResult:
        disk = next((d for d in domxml.disks(dom.XMLDesc(0)) if d.path == req.path), None)
        if disk is None:
            raise Fail("not_found", f"VM {dom.name()} has no disk on {req.path}")
        current = images.info(req.path).virtual_size
        if req.size_bytes < current:
            raise Fail("image", "shrinking a disk is not supported")
        if req.size_bytes > current:
            dom.blockResize(disk.target, req.size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        return images.info(req.path)

    async def do_ImageInfo(self, req: P.ImageInfo) -> P.ImageInfoResult:
        return await self.run(images.info, req.path)

    async def do_DeleteImage(self, req: P.DeleteImage) -> P.Ok:
        await self.run(images.delete, req.path)
        return P.Ok()

    # -- requests: VM lifecycle -------------------------------------------------------------

    async def do_ListVms(self, req: P.ListVms) -> P.VmList:
        return await self._list(req.with_xml)

    async def do_GetVm(self, req: P.GetVm) -> P.VmInfo:
        return await self.info(await self.dom(req.vm_id), req.with_xml)

    def _define_and_start(
        self, xml: str, start: bool, paused: bool, existed: bool, timings: dict[str, float]
    ) -> Any:
        conn = self.c()
        t0 = time.perf_counter()
        dom = conn.defineXML(xml)
        t1 = time.perf_counter()
        timings["define"] = round((t1 - t0) * 1000, 1)
        if start:
            try:
                dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
            except libvirt.libvirtError:
                if not existed:
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                raise
            finally:
                timings["create"] = round((time.perf_counter() - t1) * 1000, 1)
        return dom

    async def do_CreateVm(self, req: P.CreateVm) -> P.VmInfo:
        spec = req.spec
        try:
            spec.id = str(uuid.UUID(spec.id))
        except ValueError as e:
            raise Fail("invalid", f"VM id {spec.id!r} is not a UUID") from e
        async with self.lock(spec.id):
            t0 = time.perf_counter()
            timings: dict[str, float] = {}
            conn = self.c()
            existed = False
            try:
                old = await self.run(conn.lookupByUUIDString, spec.id)
                existed = True
                if await self.run(old.isActive):
                    raise Fail("already_running", f"VM {spec.name} ({spec.id}) is already running")
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            try:
                other = await self.run(conn.lookupByName, spec.name)
                if other.UUIDString() != spec.id:
                    raise Fail(
                        "invalid", f"a VM named {spec.name} with another id exists on this host"
                    )
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            t1 = time.perf_counter()
            if req.start:
                self._check_networks(spec)
            xml = domxml.build(spec, self.kvm)
            t2 = time.perf_counter()
            timings.update(lookup=round((t1 - t0) * 1000, 1), xml=round((t2 - t1) * 1000, 1))
            if req.start:
                xml = await self.run(self.hooks.run, "before_vm_start", xml, spec.custom_properties)
                timings["hooks"] = round((time.perf_counter() - t2) * 1000, 1)
                # Accepted and launching QEMU: oVirt's powering_up; libvirt's start event
                # brings up once the guest's CPUs run (or down with the error).
                self.emit(
                    P.VmStatusChanged(
                        vm_id=spec.id,
                        name=spec.name,
                        status="powering_up",
                        reason="launching",
                        event="hostd",
                    )
                )
            dom = await self.run(
                self._define_and_start, xml, req.start, req.paused, existed, timings
            )
            if req.start:
                self.spawn(self._after_hook(dom, "after_vm_start"))
            info = await self.info(dom)
            info.timings_ms = timings
            return info

    async def do_StartVm(self, req: P.StartVm) -> P.VmInfo:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            return await self._start_existing(dom, req.paused)

    async def _start_existing(self, dom: libvirt.virDomain, paused: bool) -> P.VmInfo:
        if await self.run(dom.isActive):
            raise Fail(
                "already_running", f"VM {dom.name()} ({dom.UUIDString()}) is already running"
            )
        restoring = bool(await self.run(dom.hasManagedSaveImage, 0))
        xml = await self.run(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
        props = domxml.custom_properties(xml)
        phase = "before_vm_dehibernate" if restoring else "before_vm_start"
        new = await self.run(self.hooks.run, phase, xml, props)
        if new != xml and not restoring:
            dom = await self.run(self.c().defineXML, new)
        self._status_fact(
            dom,
            *(("restoring_state", "managed_save") if restoring else ("powering_up", "launching")),
        )
        await self.run(dom.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
        self.spawn(self._after_hook(dom, "after_vm_dehibernate" if restoring else "after_vm_start"))
        return await self.info(dom)

    async def do_RestoreVm(self, req: P.RestoreVm) -> P.VmInfo:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            if not await self.run(dom.hasManagedSaveImage, 0):
                raise Fail("invalid", f"VM {dom.name()} has no saved state")
            return await self._start_existing(dom, req.paused)

    async def do_DestroyVm(self, req: P.DestroyVm) -> P.Ok:
        dom = await self.dom(req.vm_id)
        active = await self.run(dom.isActive)
        if active:
            xml = await self.run(dom.XMLDesc, 0)
            await self.run(self.hooks.run, "before_vm_destroy", xml, domxml.custom_properties(xml))
            try:
                await self.run(dom.destroyFlags, libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
            except libvirt.libvirtError:
                if await self.run(dom.isActive):
                    await self.run(dom.destroy)
        elif not req.undefine:
            raise Fail("not_running", f"VM {dom.name()} is not running")
        if req.undefine:
            flags = (
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
            with contextlib.suppress(libvirt.libvirtError):
                await self.run(dom.undefineFlags, flags)
        return P.Ok()

    async def do_ShutdownVm(self, req: P.ShutdownVm) -> P.Ok:
        dom = await self.dom(req.vm_id)
        if not await self.run(dom.isActive):
            raise Fail("not_running", f"VM {dom.name()} is not running")
        await self.run(dom.shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        self._status_fact(dom, "powering_down", "acpi")
        self.spawn(self._shutdown_watch(dom, req.timeout_s, req.force))
        return P.Ok(detail="powering down")

    async def _shutdown_watch(self, dom: libvirt.virDomain, timeout: float, force: bool) -> None:
        if await self.run(virt.wait_inactive, dom, timeout):
            return
        if not force:
            self.emit(
                P.HostError(
                    code="shutdown_timeout",
                    message=f"VM {dom.name()} did not shut down within {timeout:g}s",
                    vm_id=dom.UUIDString(),
                )
            )
            return
        with contextlib.suppress(libvirt.libvirtError):
            await self.run(dom.destroy)

    async def do_RebootVm(self, req: P.RebootVm) -> P.Ok:
        dom = await self.dom(req.vm_id)
        if not await self.run(dom.isActive):
            raise Fail("not_running", f"VM {dom.name()} is not running")
        if req.hard:
            await self.run(dom.reset, 0)
        else:
            await self.run(dom.reboot, libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
        self._status_fact(dom, "reboot_in_progress", "hard" if req.hard else "acpi")
        self.spawn(self._reboot_done(dom))
        return P.Ok()

    async def _reboot_done(self, dom: libvirt.virDomain) -> None:
        await asyncio.sleep(1.0)
        with contextlib.suppress(libvirt.libvirtError):
            if await self.run(dom.isActive):
                state, reason = await self.run(dom.state)
                st, why = virt.state_status(state, reason)
                self._status_fact(dom, st, why)

    async def do_PauseVm(self, req: P.PauseVm) -> P.Ok:
        dom = await self.dom(req.vm_id)
        xml = await self.run(dom.XMLDesc, 0)
        props = domxml.custom_properties(xml)
        await self.run(self.hooks.run, "before_vm_pause", xml, props)
        await self.run(dom.suspend)
        self.spawn(self._after_hook(dom, "after_vm_pause", xml))
        return P.Ok()

    async def do_ResumeVm(self, req: P.ResumeVm) -> P.Ok:
        dom = await self.dom(req.vm_id)
        xml = await self.run(dom.XMLDesc, 0)
        await self.run(self.hooks.run, "before_vm_cont", xml, domxml.custom_properties(xml))
        await self.run(dom.resume)
        self.spawn(self._after_hook(dom, "after_vm_cont", xml))
        return P.Ok()

    async def do_SuspendVm(self, req: P.SuspendVm) -> P.Ok:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            if not await self.run(dom.isActive):
                raise Fail("not_running", f"VM {dom.name()} is not running")
            xml = await self.run(dom.XMLDesc, 0)
            await self.run(
                self.hooks.run, "before_vm_hibernate", xml, domxml.custom_properties(xml)
            )
            self._status_fact(dom, "saving_state", "managed_save")
            try:
                await self.run(dom.managedSave, 0)
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    st = await self.run(dom.state)
                    self._status_fact(dom, *virt.state_status(*st))
                raise
            self.spawn(self._after_hook(dom, "after_vm_hibernate", xml))
        return P.Ok()

    async def do_SetTicket(self, req: P.SetTicket) -> P.Ok:
        dom = await self.dom(req.vm_id)
        xml = await self.run(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_SECURE)
        g = domxml.graphics_xml(xml, req.protocol)
        if g is None:
            raise Fail("invalid", f"VM {dom.name()} has no {req.protocol} console")
        await self.run(self.hooks.run, "before_vm_set_ticket", xml, domxml.custom_properties(xml))
        g.set("passwd", req.password)
        if req.expiry_s > 0:
            until = datetime.now(UTC) + timedelta(seconds=req.expiry_s)
            g.set("passwdValidTo", until.strftime("%Y-%m-%dT%H:%M:%S"))
        elif "passwdValidTo" in g.attrib:
            del g.attrib["passwdValidTo"]
        g.set("connected", req.disconnect_action)
        for k in ("port", "tlsPort"):
            if g.get(k) == "-1":
                del g.attrib[k]
        await self.run(
            dom.updateDeviceFlags,
            ET.tostring(g, encoding="unicode"),
            libvirt.VIR_DOMAIN_AFFECT_LIVE,
        )
        return P.Ok()

    # -- requests: snapshots ----------------------------------------------------------------

    def _snapshot_live(
        self,
        dom: libvirt.virDomain,
        req: P.SnapshotCreate,
        plan: list[P.DiskChange],
        mem: str | None,
    ) -> None:
        chosen = {c.target for c in plan}
        xml = dom.XMLDesc(0)
        parts = []
        for d in domxml.disks(xml):
            if d.target in chosen:
                c = next(c for c in plan if c.target == d.target)
                parts.append(
                    f"<disk name='{d.target}' snapshot='external' type='file'>"
                    f"<driver type='qcow2'/><source file='{c.new_path}'/></disk>"
                )
            else:
                parts.append(f"<disk name='{d.target}' snapshot='no'/>")
        memory = f"<memory snapshot='external' file='{mem}'/>" if mem else "<memory snapshot='no'/>"
        sxml = (
            f"<domainsnapshot><name>{req.snapshot_id}</name>{memory}"
            f"<disks>{''.join(parts)}</disks></domainsnapshot>"
        )
        flags = (
            libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
            | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        )
        if not mem:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        if req.quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        dom.snapshotCreateXML(sxml, flags)
        self._persist_sources(dom, plan)

    def _persist_sources(self, dom: libvirt.virDomain, plan: list[P.DiskChange]) -> None:
        """Make the persistent definition use the new paths too (next start)."""
        if not dom.isPersistent():
            return
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        for c in plan:
            xml = domxml.set_disk_source(xml, c.target, c.new_path, "qcow2")
        self.c().defineXML(xml)

    def _snapshot_offline(self, dom: libvirt.virDomain, plan: list[P.DiskChange]) -> None:
        made = []
        try:
            for c in plan:
                fmt = images.info(c.old_path).format
                images.create(Path(c.new_path), 0, "qcow2", c.old_path, fmt)
                made.append(c.new_path)
            self._persist_sources(dom, plan)
        except Exception:
            for p in made:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            raise

    async def do_SnapshotCreate(self, req: P.SnapshotCreate) -> P.SnapshotResult:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            xml = await self.run(dom.XMLDesc, 0)
            current = {d.target: d for d in domxml.disks(xml)}
            by_path = {d.path: d for d in current.values()}
            wanted = req.disks or [P.SnapshotDisk(target=t) for t in current]
            plan = []
            for w in wanted:
                d = current.get(w.target) or by_path.get(w.target)
                if d is None:
                    raise Fail("not_found", f"VM {dom.name()} has no disk {w.target}")
                new = w.new_path or str(Path(d.path).parent / str(uuid.uuid4()))
                if os.path.exists(new):
                    raise Fail("image", f"snapshot volume {new} already exists")
                plan.append(P.DiskChange(target=d.target, old_path=d.path, new_path=new))
            active = await self.run(dom.isActive)
            mem = None
            if req.memory and active:
                base = Path(plan[0].old_path).parent if plan else self.data_dir / "snapshots"
                base.mkdir(parents=True, exist_ok=True)
                mem = req.memory_path or str(base / f"{req.snapshot_id}.mem")
            await self.run(self.hooks.run, "before_vm_snapshot", xml, domxml.custom_properties(xml))
            if active:
                await self.run(self._snapshot_live, dom, req, plan, mem)
            else:
                await self.run(self._snapshot_offline, dom, plan)
            self.spawn(self._after_hook(dom, "after_vm_snapshot"))
            return P.SnapshotResult(snapshot_id=req.snapshot_id, changes=plan, memory_path=mem)

    def _merge_layers(self, dom: libvirt.virDomain, req: P.SnapshotDelete) -> list[P.DiskChange]:
        """Merges each of ``req.layers`` found in a disk's chain into the volume under it."""
        active = dom.isActive()
        changes = []
        seen = []
        for d in domxml.disks(dom.XMLDesc(0)):
            chain = images.info(d.path).chain
            seen.append(f"{d.target}: {' <- '.join(reversed(chain))}")
            for layer in req.layers:
                at = next((i for i, p in enumerate(chain) if images._same(p, layer)), None)
                if at is None:
                    continue
                if at == len(chain) - 1:
                    raise Fail("image", f"{layer} is the bottom of {d.target}'s chain")
                base = chain[at + 1]
                if at == 0:  # the active layer: what the older form does
                    changes += self._merge(
                        dom, P.SnapshotDelete(vm_id=req.vm_id, base_paths=[base]), only=d.target
                    )
                else:
                    if active:
                        virt.block_commit(dom, d.target, chain[at], base, req.timeout_s)
                        if any(images._same(p, layer) for p in images.info(d.path).chain):
                            raise Fail("image", f"block commit of {layer} on {d.target} failed")
                        images.delete(chain[at])
                    else:
                        images.merge_layer(d.path, chain[at])
                    changes.append(P.DiskChange(target=d.target, old_path=layer, new_path=base))
                chain = images.info(d.path if at else base).chain
        if not changes:
            raise Fail(
                "not_found",
                f"no disk of VM {dom.name()} has {sorted(req.layers)} ({'; '.join(seen)})",
            )
        _drop_memory(req)
        return changes

    def _merge(
        self, dom: libvirt.virDomain, req: P.SnapshotDelete, only: str | None = None
    ) -> list[P.DiskChange]:
        if req.layers:
            return self._merge_layers(dom, req)
        active = dom.isActive()
        xml = dom.XMLDesc(0)
        bases = set(req.base_paths)
        changes = []
        seen = []
        for d in domxml.disks(xml):
            if only is not None and d.target != only:
                continue
            backing = images.info(d.path).backing
            seen.append(f"{d.target}: {d.path} on {backing}")
            if backing is None or backing not in bases:
                continue
            base_fmt = images.info(backing).format
            if active:
                virt.block_commit_active(dom, d.target, backing, req.timeout_s)
            else:
                images.commit(d.path)
            changes.append(P.DiskChange(target=d.target, old_path=d.path, new_path=backing))
            if dom.isPersistent():
                ixml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
                self.c().defineXML(domxml.set_disk_source(ixml, d.target, backing, base_fmt))
            os.unlink(d.path)
        if not changes:
            raise Fail(
                "not_found",
                f"no disk of VM {dom.name()} sits on {sorted(bases)} ({'; '.join(seen)})",
            )
        _drop_memory(req)
        return changes

    async def do_SnapshotDelete(self, req: P.SnapshotDelete) -> P.DiskChanges:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            return P.DiskChanges(changes=await self.run(self._merge, dom, req))

    async def do_MergeVolume(self, req: P.MergeVolume) -> P.ImageInfoResult:
        return await self.run(images.merge_layer, req.leaf, req.layer)

    def _preview(self, dom: libvirt.virDomain, req: P.SnapshotPreview) -> list[P.DiskChange]:
        if dom.isActive():
            raise Fail("invalid", f"VM {dom.name()} must be down to preview a snapshot")
        wanted = set(req.snapshot_paths)
        plan = []
        for d in domxml.disks(dom.XMLDesc(0)):
            chain = images.info(d.path).chain
            hit = next((p for p in chain if p in wanted), None)
            if hit is None:
                continue
            new = str(Path(d.path).parent / str(uuid.uuid4()))
            plan.append(P.DiskChange(target=d.target, old_path=d.path, new_path=new))
            images.create(Path(new), 0, "qcow2", hit, images.info(hit).format)
        if not plan:
            raise Fail("not_found", f"no disk of VM {dom.name()} has a volume in {sorted(wanted)}")
        self._persist_sources(dom, plan)
        return plan

    async def do_SnapshotPreview(self, req: P.SnapshotPreview) -> P.DiskChanges:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            return P.DiskChanges(changes=await self.run(self._preview, dom, req))

    def _undo(self, dom: libvirt.virDomain, changes: list[P.DiskChange]) -> None:
        if dom.isActive():
            raise Fail("invalid", f"VM {dom.name()} must be down to undo a preview")
        back = [
            P.DiskChange(target=c.target, old_path=c.new_path, new_path=c.old_path) for c in changes
        ]
        for b in back:
            b_fmt = images.info(b.new_path).format
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            self.c().defineXML(domxml.set_disk_source(xml, b.target, b.new_path, b_fmt))
        for c in changes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.new_path)

    async def do_SnapshotUndo(self, req: P.SnapshotUndo) -> P.Ok:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            await self.run(self._undo, dom, req.changes)
        return P.Ok()

    async def do_SnapshotCommit(self, req: P.SnapshotCommit) -> P.Ok:
        dom = await self.dom(req.vm_id)
        async with self.lock(req.vm_id):
            inuse = {d.path for d in domxml.disks(await self.run(dom.XMLDesc, 0))}
            for c in req.changes:
                if c.old_path in inuse:
                    raise Fail("invalid", f"{c.old_path} is still in use by VM {dom.name()}")
            for c in req.changes:
                with contextlib.suppress(FileNotFoundError):
                    await self.run(os.unlink, c.old_path)
        return P.Ok()

    # -- requests: migration ------------------------------------------------------------------

    async def do_Migrate(self, req: P.Migrate) -> P.Ok:
        dom = await self.dom(req.vm_id)
        if req.vm_id in self.migrations:
            raise Fail("migration", f"VM {dom.name()} is already migrating")
        if not await self.run(dom.isActive):
            raise Fail("not_running", f"VM {dom.name()} is not running")
        xml = await self.run(
            dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
        )
        new = await self.run(
            self.hooks.run,
            "before_vm_migrate_source",
            xml,
            domxml.custom_properties(xml),
            {"_hook_dest_uri": req.dest_uri},
        )
        params: dict[str, Any] = {}
        if req.migration_uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = req.migration_uri
        if req.bandwidth_mibps:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = req.bandwidth_mibps
        if new != xml:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = new
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
        )
        if req.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if req.compressed:
            flags |= libvirt.VIR_MIGRATE_COMPRESSED
        shared = [p for k, p in self.storage.items() if self.storage_kind.get(k) != "localfs"]
        paths = [d.path for d in domxml.disks(xml)]
        if req.unsafe or all(any(x.startswith(s_ + "/") for s_ in shared) for x in paths):
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        with contextlib.suppress(libvirt.libvirtError):
            await self.run(dom.migrateSetMaxDowntime, req.max_downtime_ms, 0)
        state = {"start": time.monotonic(), "cancelled": False, "dest": req.dest_uri}
        self.migrations[req.vm_id] = state
        self._status_fact(dom, "migrating", "migration_source")
        self.spawn(self._migrate(dom, req, params, flags, state, xml))
        return P.Ok(detail="migration started")

    def _migrate_blocking(
        self, dom: libvirt.virDomain, req: P.Migrate, params: dict, flags: int
    ) -> dict:
        dom.migrateToURI3(req.dest_uri, params, flags)
        stats_ = {}
        with contextlib.suppress(libvirt.libvirtError):
            stats_ = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isPersistent() and not dom.isActive():
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                )
        return stats_

    async def _migrate(
        self,
        dom: libvirt.virDomain,
        req: P.Migrate,
        params: dict,
        flags: int,
        state: dict,
        xml: str,
    ) -> None:
        vm_id = req.vm_id
        job = asyncio.ensure_future(self.run(self._migrate_blocking, dom, req, params, flags))
        progress = self.spawn(self._migration_progress(dom, vm_id, job, req))
        ok, err, downtime = False, None, None
        try:
            done = await asyncio.wait_for(asyncio.shield(job), req.timeout_s)
            ok = True
            if "downtime" in done:
                downtime = int(done["downtime"])
        except TimeoutError:
            with contextlib.suppress(libvirt.libvirtError):
                await self.run(dom.abortJob)
            err = f"migration did not finish within {req.timeout_s:g}s and was aborted"
            with contextlib.suppress(Exception):
                await job
        except libvirt.libvirtError as e:
            err = e.get_error_message() or str(e)
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
        finally:
            progress.cancel()
            self.migrations.pop(vm_id, None)
        duration = int((time.monotonic() - state["start"]) * 1000)
        self.emit(
            P.MigrationDone(
                vm_id=vm_id,
                ok=ok,
                dest_uri=req.dest_uri,
                duration_ms=duration,
                downtime_ms=downtime,
                error=err,
                cancelled=bool(state["cancelled"]) and not ok,
            )
        )
        if ok:
            self.spawn(self._after_hook(dom, "after_vm_migrate_source", xml))
        else:
            with contextlib.suppress(libvirt.libvirtError):
                st = await self.run(dom.state)
                self._status_fact(dom, *virt.state_status(*st))

    async def _migration_progress(
        self, dom: libvirt.virDomain, vm_id: str, job: asyncio.Future, req: P.Migrate
    ) -> None:
        downtime_set = False
        while not job.done():
            await asyncio.sleep(0.5)
            try:
                js = await self.run(dom.jobStats, 0)
            except libvirt.libvirtError:
                continue
            if js.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
                continue
            if not downtime_set:
                with contextlib.suppress(libvirt.libvirtError):
                    await self.run(dom.migrateSetMaxDowntime, req.max_downtime_ms, 0)
                downtime_set = True
            total = int(js.get("data_total", 0) or js.get("memory_total", 0))
            remaining = int(js.get("data_remaining", 0) or js.get("memory_remaining", 0))
            pct = int(100 * (total - remaining) / total) if total else 0
            self.migrations.get(vm_id, {})["last"] = (
                pct,
                total,
                remaining,
                int(js.get("time_elapsed", 0)),
            )
            self.emit(
                P.MigrationProgress(
                    vm_id=vm_id,
                    progress=max(0, min(pct, 99)),
                    data_total=total,
                    data_remaining=remaining,
                    elapsed_ms=int(js.get("time_elapsed", 0)),
                )
            )

    async def do_MigrateCancel(self, req: P.MigrateCancel) -> P.Ok:
        st = self.migrations.get(req.vm_id)
        if st is None:
            raise Fail("not_found", f"VM {req.vm_id} is not migrating from this host")
        st["cancelled"] = True
        dom = await self.dom(req.vm_id)
        deadline = time.monotonic() + 10.0
        while True:  # the job may not have begun yet (migrateToURI3 is still starting)
            try:
                await self.run(dom.abortJob)
                break
            except libvirt.libvirtError as e:
                if req.vm_id not in self.migrations:
                    break
                if e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        return P.Ok(detail="cancel requested")

    async def do_MigrateStatus(self, req: P.MigrateStatus) -> P.MigrationState:
        st = self.migrations.get(req.vm_id)
        if st is None:
            return P.MigrationState(vm_id=req.vm_id, active=False)
        pct, total, remaining, elapsed = st.get("last", (0, 0, 0, 0))
        return P.MigrationState(
            vm_id=req.vm_id,
            active=True,
            progress=pct,
            data_total=total,
            data_remaining=remaining,
            elapsed_ms=elapsed,
        )


# ----------------------------------------------------------------------------- entry point


def load_token(explicit: str | None, data_dir: Path) -> str:
    """--token, else $ORRERY_HOSTD_TOKEN, else <data-dir>/token (created, mode 0600)."""
    token = explicit or os.environ.get("ORRERY_HOSTD_TOKEN")
    if token:
        return token
    f = data_dir / "token"
    if f.exists():
        return f.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.warning("no token given: generated the enrollment secret in %s", f)
    return token


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default=f"127.0.0.1:{P.DEFAULT_PORT}", help="ADDR:PORT")
    p.add_argument("--libvirt", default="qemu:///system", help="libvirt URI")
    p.add_argument("--data-dir", default="/var/lib/orrery-hostd", help="hooks, token, mounts")
    p.add_argument("--token", default=None, help="enrollment secret (or $ORRERY_HOSTD_TOKEN)")
    p.add_argument("--host-id", default=None, help="host UUID (default: libvirt's host UUID)")
    p.add_argument("--stats-interval", type=float, default=15.0)
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--migration-port-min", type=int, default=49152)
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--public-libvirt-uri",
        default=None,
        help="libvirt URI other hosts migrate to (default: --libvirt when qemu+tcp://, "
        "else qemu+tcp://<listen address>/system)",
    )


def public_libvirt_uri(explicit: str | None, libvirt_uri: str, listen_host: str) -> str:
    if explicit:
        return explicit
    if libvirt_uri.startswith("qemu+tcp://"):
        return libvirt_uri
    host = listen_host or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = socket.getfqdn()
    return f"qemu+tcp://{host}/system"


def config_from_args(args: argparse.Namespace) -> Config:
    host, _, port = args.listen.rpartition(":")
    data_dir = Path(args.data_dir)
    return Config(
        listen_host=host or "127.0.0.1",
        listen_port=int(port),
        libvirt_uri=args.libvirt,
        public_libvirt_uri=public_libvirt_uri(
            getattr(args, "public_libvirt_uri", None), args.libvirt, host or "127.0.0.1"
        ),
        data_dir=str(data_dir),
        token=load_token(args.token, data_dir),
        host_id=args.host_id,
        stats_interval=args.stats_interval,
        heartbeat_interval=args.heartbeat_interval,
        migration_port_min=args.migration_port_min,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = config_from_args(args)
    asyncio.run(Hostd(cfg).serve_forever())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hostd", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


def _drop_memory(req: P.SnapshotDelete) -> None:
    """The merged snapshot's memory image goes with it."""
    if req.memory_path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(req.memory_path)
