"""The host protocol: the messages between the Manager and hostd, and a small client.

This is the hostd module the Manager imports (with ``hostd.tls``, the TLS contexts of
both ends). It depends on msgspec, asyncio and ``hostd.tls`` only.

Wire format
-----------
One TCP connection (default 127.0.0.1:54321) carries frames: a 4-byte big-endian length
followed by that many bytes of msgspec JSON of one ``Frame`` (a tagged union, tag field
``"t"``). Frames larger than ``MAX_FRAME`` close the connection; before the Hello is
accepted the bound is ``PREAUTH_MAX_FRAME``. With TLS (``hostd.tls``) the connection is
mutually authenticated first: hostd requires a client certificate from the Manager CA and
the Manager verifies hostd's against the CA and the host's address (``ssl`` and
``server_hostname`` of ``HostClient.connect``).

1. The client sends ``Hello(token=...)`` first. hostd compares the token with the host's
   enrollment secret in constant time; on mismatch (or anything but a Hello within
   ``HELLO_TIMEOUT`` seconds) it closes the connection without sending anything.
   Otherwise it answers ``Welcome`` (host id, versions, whether KVM works).
2. The client sends ``Call(id, req)``; ``req`` is one of the request structs below (a tagged
   union, tag field ``"op"``). hostd answers exactly one ``Reply(id, ok, result, error)``
   per Call, in completion order (calls run concurrently). ``result`` is the plain data of
   the request's result type (``RESULTS[type(req)]``, decode with ``msgspec.convert``);
   ``error`` is an ``Error`` with a stable ``code`` and libvirt's/qemu-img's/the hook's
   message.
3. Facts (``VmStatusChanged``, ``StatsSample``, ``Heartbeat``, ``MigrationProgress``,
   ``MigrationDone``, ``HostError``, ``NetworkStatus``) are pushed on every connection whose
   Hello asked for them (``facts=True``, default), interleaved with Replies. Each fact carries
   the host id and a per-process sequence number ``seq`` plus hostd's ``boot_id`` so a
   consumer can detect a hostd restart (then call ``ListVms`` to resynchronise: hostd is
   stateless and re-reads libvirt).

Statuses use oVirt's lowercase names: down, powering_up, up, powering_down, paused,
migrating, suspended, saving_state, restoring_state, reboot_in_progress, not_responding.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl as ssl_
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, cast

import msgspec

from hostd import tls

PROTOCOL_VERSION = 1
DEFAULT_PORT = 54321
MAX_FRAME = 64 * 1024 * 1024
PREAUTH_MAX_FRAME = 64 * 1024  # a Hello is a few hundred bytes
HELLO_TIMEOUT = 5.0  # the TLS handshake, then the Hello, each within this
_LEN = struct.Struct(">I")


class Msg(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=False):
    pass


# --------------------------------------------------------------------------- VM spec


class CpuTopology(Msg, kw_only=True):
    sockets: int = 1
    cores: int = 1
    threads: int = 1

    @property
    def vcpus(self) -> int:
        return self.sockets * self.cores * self.threads


class DiskSpec(Msg, kw_only=True):
    """One disk. ``path`` is the active (leaf) volume; qemu finds its backing chain itself."""

    path: str
    format: Literal["qcow2", "raw"] = "qcow2"
    bus: Literal["virtio", "scsi", "sata", "ide"] = "virtio"
    device: Literal["disk", "cdrom"] = "disk"
    disk_id: str | None = None
    backing: str | None = None  # informative: the volume this leaf is based on
    readonly: bool = False
    bootable: bool = False
    serial: str | None = None


class NicSpec(Msg, kw_only=True):
    mac: str
    network: str = "ovirtmgmt"  # logical network == Linux bridge name (like VDSM)
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"
    nic_id: str | None = None


class GraphicsSpec(Msg, kw_only=True):
    type: Literal["vnc", "spice"] = "vnc"
    listen: str = "127.0.0.1"
    port: int = -1  # -1: autoport


class VmSpec(Msg, kw_only=True):
    id: str  # UUID; also the libvirt domain UUID
    name: str
    memory_mib: int = 256
    cpu: CpuTopology = msgspec.field(default_factory=CpuTopology)
    disks: list[DiskSpec] = []
    nics: list[NicSpec] = []
    graphics: list[GraphicsSpec] = []
    serial_console: bool = True
    custom_properties: dict[str, str] = {}
    emulator: Literal["auto", "kvm", "tcg"] = "auto"  # auto: kvm when /dev/kvm works
    machine: str = "pc"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    boot: list[Literal["hd", "cdrom", "network"]] = msgspec.field(default_factory=lambda: ["hd"])
    # auto: SeaBIOS, except qboot (which halts at once) for a VM with nothing to boot: no
    # disk, NIC or kernel. See domxml.firmware().
    firmware: Literal["auto", "seabios", "qboot"] = "auto"


# --------------------------------------------------------------------------- requests


class Request(Msg, tag_field="op", kw_only=True):
    pass


class GetCapabilities(Request, tag="get_capabilities", kw_only=True):
    pass


class ListVms(Request, tag="list_vms", kw_only=True):
    with_xml: bool = False


class GetVm(Request, tag="get_vm", kw_only=True):
    vm_id: str
    with_xml: bool = False


class CreateVm(Request, tag="create_vm", kw_only=True):
    """Define the VM (persistent, its UUID is the spec id) and start it unless start=False.

    A defined but stopped VM with the same UUID is redefined from the spec; a running one
    answers ``already_running``."""

    spec: VmSpec
    start: bool = True
    paused: bool = False


class StartVm(Request, tag="start_vm", kw_only=True):
    """Start a defined VM (restores its managed-save image if it was suspended)."""

    vm_id: str
    paused: bool = False


class DestroyVm(Request, tag="destroy_vm", kw_only=True):
    """Power off at once; ``undefine`` also forgets the definition (and managed save)."""

    vm_id: str
    undefine: bool = False


class ShutdownVm(Request, tag="shutdown_vm", kw_only=True):
    """ACPI shutdown; power off after ``timeout_s`` unless ``force`` is False. Answers at
    once (status powering_down); the outcome arrives as a VmStatusChanged fact."""

    vm_id: str
    timeout_s: float = 30.0
    force: bool = True
    message: str | None = None


class RebootVm(Request, tag="reboot_vm", kw_only=True):
    """Guest reboot (ACPI); with ``hard`` (or after timeout) a reset."""

    vm_id: str
    hard: bool = False


class PauseVm(Request, tag="pause_vm", kw_only=True):
    vm_id: str


class ResumeVm(Request, tag="resume_vm", kw_only=True):
    """Continue a paused VM."""

    vm_id: str


class SuspendVm(Request, tag="suspend_vm", kw_only=True):
    """Managed save (oVirt 'suspend'): memory to disk, VM down with status suspended."""

    vm_id: str


class RestoreVm(Request, tag="restore_vm", kw_only=True):
    """Start a suspended VM from its managed-save image."""

    vm_id: str
    paused: bool = False


class SetTicket(Request, tag="set_ticket", kw_only=True):
    """Set the VNC/SPICE password valid for ``expiry_s`` seconds (0: no expiry)."""

    vm_id: str
    password: str
    expiry_s: int = 120
    protocol: Literal["vnc", "spice"] = "vnc"
    disconnect_action: Literal["keep", "disconnect", "fail"] = "keep"


class VolumeRef(Msg, kw_only=True):
    """A volume on a storage domain: <sd_path>/<sd_id>/images/<disk_id>/<volume_id>."""

    sd_path: str
    sd_id: str
    disk_id: str
    volume_id: str


class CreateImage(Request, tag="create_image", kw_only=True):
    """qemu-img create. With ``backing`` a thin clone / snapshot layer on that file."""

    volume: VolumeRef
    size_bytes: int = 0  # 0 with backing: the backing file's size
    format: Literal["qcow2", "raw"] = "qcow2"
    backing: str | None = None
    backing_format: Literal["qcow2", "raw"] = "qcow2"
    preallocate: bool = False


class CopyImage(Request, tag="copy_image", kw_only=True):
    """qemu-img convert: a full, independent copy (clone from template)."""

    source: str
    volume: VolumeRef
    format: Literal["qcow2", "raw"] = "qcow2"


class ResizeImage(Request, tag="resize_image", kw_only=True):
    """Grows a volume. With ``vm_id`` of a VM running here whose disk is ``path``, the
    running disk is grown live (the guest sees the new size at once); else qemu-img."""

    path: str
    size_bytes: int
    vm_id: str | None = None


class ImageInfo(Request, tag="image_info", kw_only=True):
    path: str


class DeleteImage(Request, tag="delete_image", kw_only=True):
    """Delete a volume file (and its image directory when it becomes empty)."""

    path: str


class SnapshotDisk(Msg, kw_only=True):
    target: str  # vda, vdb ... (or the disk's current path)
    new_path: str | None = None  # the new leaf volume; default: a new uuid beside the old


class SnapshotCreate(Request, tag="snapshot_create", kw_only=True):
    """External snapshot: every disk (or ``disks``) gets a new qcow2 leaf on top of the
    current one; with ``memory`` a running VM's RAM goes to ``memory_path`` too. Works on
    running and stopped VMs. hostd keeps no snapshot metadata: the result names the new
    leaves and the volumes they sit on, and the Manager records the chain."""

    vm_id: str
    snapshot_id: str
    memory: bool = False
    memory_path: str | None = None
    disks: list[SnapshotDisk] | None = None
    quiesce: bool = False


class SnapshotDelete(Request, tag="snapshot_delete", kw_only=True):
    """Merge the snapshot away. ``layers``: each volume named there, wherever it sits in
    a disk's chain, is committed into the volume under it (active layer: live block
    commit and pivot; deeper layer: live block commit of that layer, qemu rewrites the
    chain above it) and deleted. ``base_paths`` (older form): every disk whose leaf sits
    directly on one of them has its leaf merged down. qemu-img commit when the VM is down."""

    vm_id: str
    base_paths: list[str] = []
    layers: list[str] = []
    memory_path: str | None = None
    timeout_s: float = 120.0


class MergeVolume(Request, tag="merge_volume", kw_only=True):
    """Offline merge (cold merge), no VM involved: ``layer``, a volume in the backing
    chain of ``leaf`` but not its bottom, is committed into the volume under it; the
    volume above it (if any) is rebased onto that one; ``layer`` is deleted. Every step
    leaves a readable chain, so an interrupted merge loses nothing. Answers with the
    leaf's image info afterwards (the volume under ``layer`` when ``layer`` was the leaf)."""

    leaf: str
    layer: str


class SnapshotPreview(Request, tag="snapshot_preview", kw_only=True):
    """VM must be down. Each disk whose chain contains a path of ``snapshot_paths`` gets a
    new leaf on top of that volume (the current leaf is kept for undo). Returns the
    changes; ``SnapshotUndo`` with them goes back, ``SnapshotCommit`` keeps the preview."""

    vm_id: str
    snapshot_paths: list[str]


class DiskChange(Msg, kw_only=True):
    target: str
    old_path: str
    new_path: str


class SnapshotUndo(Request, tag="snapshot_undo", kw_only=True):
    """Point the disks back at ``old_path`` and delete the preview leaves (``new_path``)."""

    vm_id: str
    changes: list[DiskChange]


class SnapshotCommit(Request, tag="snapshot_commit", kw_only=True):
    """Keep the previewed state: the former leaves (``old_path``) are deleted."""

    vm_id: str
    changes: list[DiskChange]


class Migrate(Request, tag="migrate", kw_only=True):
    """Live migration, peer to peer, to another host's libvirt (``dest_uri``, e.g.
    qemu+tcp://10.0.0.2/system) over ``migration_uri`` (tcp://ADDR[:PORT]). Answers when
    the migration has started; progress and the outcome arrive as MigrationProgress and
    MigrationDone facts (with the measured downtime)."""

    vm_id: str
    dest_uri: str
    migration_uri: str | None = None
    max_downtime_ms: int = 300
    bandwidth_mibps: int = 0
    timeout_s: float = 300.0
    auto_converge: bool = True
    compressed: bool = False
    # libvirt refuses to migrate disks it cannot prove shared (local filesystems). hostd
    # allows it when every disk lies on a storage domain connected as posixfs/nfs (the
    # Manager says it is shared), or when this is set.
    unsafe: bool = False


class MigrateCancel(Request, tag="migrate_cancel", kw_only=True):
    vm_id: str


class MigrateStatus(Request, tag="migrate_status", kw_only=True):
    vm_id: str


class BridgeSpec(Msg, kw_only=True):
    network: str  # logical network name; the bridge is named the same
    nic: str | None = None  # enslave this host interface
    vlan: int | None = None
    mtu: int | None = None


class SetupNetworks(Request, tag="setup_networks", kw_only=True):
    bridges: list[BridgeSpec] = []
    remove: list[str] = []


class ConnectStorage(Request, tag="connect_storage", kw_only=True):
    """Make a storage domain reachable. posixfs/localfs: ``path`` is a directory; nfs:
    ``path`` is address:/export, mounted under <data-dir>/mnt. Answers the local path."""

    sd_id: str
    kind: Literal["localfs", "posixfs", "nfs"] = "posixfs"
    path: str
    mount_options: str | None = None


class StorageSpace(Request, tag="storage_space", kw_only=True):
    """The filesystem space of a connected storage domain (like VDSM's repoStats)."""

    sd_id: str


class DisconnectStorage(Request, tag="disconnect_storage", kw_only=True):
    sd_id: str


class GetStats(Request, tag="get_stats", kw_only=True):
    """Take a statistics sample now (also pushed every ``stats_interval`` seconds)."""


class Ping(Request, tag="ping", kw_only=True):
    pass


RequestT = (
    GetCapabilities
    | ListVms
    | GetVm
    | CreateVm
    | StartVm
    | DestroyVm
    | ShutdownVm
    | RebootVm
    | PauseVm
    | ResumeVm
    | SuspendVm
    | RestoreVm
    | SetTicket
    | CreateImage
    | CopyImage
    | ResizeImage
    | ImageInfo
    | DeleteImage
    | SnapshotCreate
    | SnapshotDelete
    | MergeVolume
    | SnapshotPreview
    | SnapshotUndo
    | SnapshotCommit
    | Migrate
    | MigrateCancel
    | MigrateStatus
    | SetupNetworks
    | ConnectStorage
    | DisconnectStorage
    | StorageSpace
    | GetStats
    | Ping
)


# --------------------------------------------------------------------------- results


class Ok(Msg, kw_only=True):
    detail: str = ""


class NetworkState(Msg, kw_only=True):
    network: str
    bridge: str
    ok: bool
    detail: str = ""


class Capabilities(Msg, kw_only=True):
    host_id: str
    hostname: str
    hostd_version: str
    libvirt_version: str
    qemu_version: str
    kvm: bool  # /dev/kvm usable: VMs get <domain type='kvm'>
    cpu_model: str
    cpu_vendor: str
    cpu_sockets: int
    cpu_cores: int
    cpu_threads: int
    cpus: int
    memory_mib: int
    emulated_machines: list[str]
    networks: list[NetworkState]
    storage: dict[str, str]  # sd_id -> local path
    hooks: dict[str, list[str]]
    migration_port_min: int
    libvirt_uri: str = ""  # how other hosts' libvirt reach this one (migration destination)


class VmDisk(Msg, kw_only=True):
    target: str
    path: str
    format: str


class VmInfo(Msg, kw_only=True):
    id: str
    name: str
    status: str
    reason: str = ""
    persistent: bool = True
    managed_save: bool = False
    memory_mib: int = 0
    vcpus: int = 0
    display_port: int | None = None
    display_type: str | None = None
    disks: list[VmDisk] = []
    xml: str | None = None
    # CreateVm only: where hostd spent the call (xml, hooks, define, create), in ms.
    timings_ms: dict[str, float] = {}


class VmList(Msg, kw_only=True):
    vms: list[VmInfo]


class ImageInfoResult(Msg, kw_only=True):
    path: str
    format: str
    virtual_size: int
    actual_size: int
    backing: str | None = None
    chain: list[str] = []


class SnapshotResult(Msg, kw_only=True):
    snapshot_id: str
    changes: list[DiskChange]
    memory_path: str | None = None


class DiskChanges(Msg, kw_only=True):
    changes: list[DiskChange]


class MigrationState(Msg, kw_only=True):
    vm_id: str
    active: bool
    progress: int = 0  # percent
    data_total: int = 0
    data_remaining: int = 0
    elapsed_ms: int = 0


class StorageConnected(Msg, kw_only=True):
    sd_id: str
    path: str


class StorageSpaceResult(Msg, kw_only=True):
    sd_id: str
    total: int  # bytes
    available: int
    used: int


class NetworksResult(Msg, kw_only=True):
    networks: list[NetworkState]


# --------------------------------------------------------------------------- facts


class Fact(Msg, tag_field="t", kw_only=True):
    host_id: str = ""
    boot_id: str = ""
    seq: int = 0
    ts: float = 0.0  # wall clock, seconds


class VmStatusChanged(Fact, tag="vm_status", kw_only=True):
    vm_id: str
    name: str
    status: str
    reason: str = ""  # libvirt's detail: booted, migrated, shutdown, destroyed, crashed ...
    event: str = ""  # the libvirt lifecycle event: started, stopped, suspended ...


class HostStats(Msg, kw_only=True):
    cpu_user: float  # percent of all CPUs
    cpu_sys: float
    cpu_idle: float
    cpu_load: float
    mem_total_mib: int
    mem_free_mib: int
    mem_used_percent: float
    swap_total_mib: int
    swap_free_mib: int
    nics: dict[str, dict[str, int]]  # name -> rx_bytes, tx_bytes, rx_packets, ...
    vms_running: int


class VmStats(Msg, kw_only=True):
    vm_id: str
    name: str
    status: str
    cpu_percent: float
    cpu_time_ns: int
    vcpus: int
    memory_mib: int
    memory_rss_mib: int | None = None
    disks: dict[str, dict[str, int]] = {}  # target -> rd_bytes, wr_bytes, rd_reqs, ...
    nics: dict[str, dict[str, int]] = {}  # tap -> rx_bytes, tx_bytes, ...


class StatsSample(Fact, tag="stats", kw_only=True):
    interval_s: float
    host: HostStats
    vms: list[VmStats]


class Heartbeat(Fact, tag="heartbeat", kw_only=True):
    vms_running: int = 0


class MigrationProgress(Fact, tag="migration_progress", kw_only=True):
    vm_id: str
    progress: int
    data_total: int = 0
    data_remaining: int = 0
    elapsed_ms: int = 0


class MigrationDone(Fact, tag="migration_done", kw_only=True):
    vm_id: str
    ok: bool
    dest_uri: str
    duration_ms: int = 0
    downtime_ms: int | None = None  # libvirt's measured downtime
    error: str | None = None
    cancelled: bool = False


class HostError(Fact, tag="error", kw_only=True):
    code: str
    message: str
    vm_id: str | None = None


class NetworkStatus(Fact, tag="network_status", kw_only=True):
    networks: list[NetworkState]


FactT = (
    VmStatusChanged
    | StatsSample
    | Heartbeat
    | MigrationProgress
    | MigrationDone
    | HostError
    | NetworkStatus
)


# --------------------------------------------------------------------------- frames


class Error(Msg, kw_only=True):
    """code: not_found, already_running, not_running, invalid, libvirt, hook, image,
    storage, network, migration, unauthorized, internal."""

    code: str
    message: str


class Hello(Msg, tag_field="t", tag="hello", kw_only=True):
    token: str
    client: str = "manager"
    protocol_version: int = PROTOCOL_VERSION
    facts: bool = True


class Welcome(Msg, tag_field="t", tag="welcome", kw_only=True):
    host_id: str
    boot_id: str
    hostname: str
    hostd_version: str
    protocol_version: int = PROTOCOL_VERSION
    kvm: bool = False


class Call(Msg, tag_field="t", tag="call", kw_only=True):
    id: int
    req: RequestT


class Reply(Msg, tag_field="t", tag="reply", kw_only=True):
    id: int
    ok: bool
    result: Any = None
    error: Error | None = None


Frame = (
    Hello
    | Welcome
    | Call
    | Reply
    | VmStatusChanged
    | StatsSample
    | Heartbeat
    | MigrationProgress
    | MigrationDone
    | HostError
    | NetworkStatus
)

RESULTS: dict[type, type] = {
    GetCapabilities: Capabilities,
    ListVms: VmList,
    GetVm: VmInfo,
    CreateVm: VmInfo,
    StartVm: VmInfo,
    DestroyVm: Ok,
    ShutdownVm: Ok,
    RebootVm: Ok,
    PauseVm: Ok,
    ResumeVm: Ok,
    SuspendVm: Ok,
    RestoreVm: VmInfo,
    SetTicket: Ok,
    CreateImage: ImageInfoResult,
    CopyImage: ImageInfoResult,
    ResizeImage: ImageInfoResult,
    ImageInfo: ImageInfoResult,
    DeleteImage: Ok,
    SnapshotCreate: SnapshotResult,
    SnapshotDelete: DiskChanges,
    MergeVolume: ImageInfoResult,
    SnapshotPreview: DiskChanges,
    SnapshotUndo: Ok,
    SnapshotCommit: Ok,
    Migrate: Ok,
    MigrateCancel: Ok,
    MigrateStatus: MigrationState,
    SetupNetworks: NetworksResult,
    ConnectStorage: StorageConnected,
    DisconnectStorage: Ok,
    StorageSpace: StorageSpaceResult,
    GetStats: StatsSample,
    Ping: Ok,
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Frame)


def encode_frame(msg: Msg) -> bytes:
    body = _encoder.encode(msg)
    return _LEN.pack(len(body)) + body


def decode_frame(body: bytes) -> Any:
    return _decoder.decode(body)


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> Any:
    head = await reader.readexactly(_LEN.size)
    (n,) = _LEN.unpack(head)
    if n > limit:
        raise ValueError(f"frame of {n} bytes is too large")
    return decode_frame(await reader.readexactly(n))


# --------------------------------------------------------------------------- client


class HostdError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HostClient:
    """asyncio client: ``await HostClient.connect(host, port, token)``, then
    ``await client.call(CreateVm(spec=...))`` -> the typed result (raises HostdError), and
    ``client.facts`` (an asyncio.Queue) or ``async for fact in client.stream()``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.facts: asyncio.Queue = asyncio.Queue()
        self.welcome: Welcome | None = None
        self.listeners: list[Callable[[Any], None]] = []
        self._task: asyncio.Task | None = None
        self.closed = asyncio.Event()
        self.peer_serial: int | None = None  # of hostd's verified certificate (TLS)

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str = "",
        facts: bool = True,
        timeout: float = 10.0,
        ssl: ssl_.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> HostClient:
        """``ssl``: the Manager's client context (``hostd.tls.client_context``); hostd's
        certificate must then name ``server_hostname`` (default ``host``)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                limit=MAX_FRAME,
                ssl=ssl,
                server_hostname=(server_hostname or host) if ssl is not None else None,
                ssl_handshake_timeout=timeout if ssl is not None else None,
            ),
            timeout,
        )
        self = cls(reader, writer)
        self.peer_serial = tls.peer_serial(writer.get_extra_info("ssl_object"))
        writer.write(encode_frame(Hello(token=token, facts=facts)))
        await writer.drain()
        try:
            first = await asyncio.wait_for(read_frame(reader), timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            writer.close()
            raise HostdError("unauthorized", "hostd closed the connection") from e
        if not isinstance(first, Welcome):
            writer.close()
            raise HostdError("protocol", f"expected welcome, got {type(first).__name__}")
        self.welcome = first
        self._task = asyncio.create_task(self._read_loop())
        return self

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await read_frame(self._reader)
                if isinstance(frame, Reply):
                    fut = self._pending.pop(frame.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                else:
                    for cb in self.listeners:
                        cb(frame)
                    self.facts.put_nowait(frame)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(HostdError("disconnected", "connection to hostd lost"))
            self._pending.clear()

    async def call(self, req: Request, timeout: float | None = 600.0) -> Any:
        if self.closed.is_set():
            raise HostdError("disconnected", "connection to hostd lost")
        cid = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        # Every Request struct is a member of RequestT (tests/unit/test_hostd_dispatch.py).
        self._writer.write(encode_frame(Call(id=cid, req=cast("RequestT", req))))
        await self._writer.drain()
        reply: Reply = await asyncio.wait_for(fut, timeout)
        if not reply.ok:
            err = reply.error or Error(code="internal", message="unknown error")
            raise HostdError(err.code, err.message)
        rtype = RESULTS.get(type(req))
        return msgspec.convert(reply.result, rtype) if rtype is not None else reply.result

    async def stream(self) -> AsyncIterator[Any]:
        while True:
            yield await self.facts.get()

    async def wait_fact(
        self, pred: Callable[[Any], bool], timeout: float = 30.0, drain_old: bool = False
    ) -> Any:
        """The next fact (from the queue, oldest first) for which pred(fact) is true."""

        async def _find() -> Any:
            while True:
                f = await self.facts.get()
                if pred(f):
                    return f

        return await asyncio.wait_for(_find(), timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
            await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
