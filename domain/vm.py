"""Virtual machines: configuration, NICs, disk attachments, snapshots and the run flow.

The engine side decides and records requests (start, shutdown, migrate ...); the host
side carries them out and reports what happened through ``report_vm_status`` and its
siblings, which accept only the transitions oVirt's VM monitoring would accept.

Statuses and where the VM is:
- ``image_locked`` while its disks are created from the template, then ``down``.
- start -> ``VmScheduled`` (host + scores), ``wait_for_launch``; the host reports
  ``powering_up`` / ``up`` / ``paused`` / ``down`` ...
- ``run_on_host_id`` is set in every status of ``VM_ON_HOST`` and None otherwise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, InvalidInput, NotFound, Tx, upcaster
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.disk import (
    Disk,
    DiskInterface,
    copy_disk_image,
    find_of_kind,
    get_of_kind,
    objects_of_kind,
    remove_disk_unchecked,
)
from domain.statuses import (
    VM_MIGRATABLE,
    VM_ON_HOST,
    DataCenterStatus,
    DiskStatus,
    HostStatus,
    SnapshotStatus,
    StorageDomainStatus,
    VmStatus,
)

BLANK_TEMPLATE_ID = UUID(int=0)
MiB = 1 << 20
GiB = 1 << 30
MIN_MEMORY = MiB
MAX_MEMORY = 16 << 40  # 16 TiB
MAX_VCPUS = 384
MAX_CPU_COUNT = 384
MAX_HA_PRIORITY = 100
CONSOLE_TICKET_SECONDS = 120
MAC_PREFIX = "56:6f"
MAX_RERUNS = 3  # oVirt's MaxRerunVmOnVdsCount
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class VmType(StrEnum):
    DESKTOP = "desktop"
    SERVER = "server"
    HIGH_PERFORMANCE = "high_performance"


class Graphics(StrEnum):
    VNC = "vnc"
    SPICE = "spice"
    NONE = "none"


class NicInterface(StrEnum):
    VIRTIO = "virtio"
    E1000 = "e1000"
    RTL8139 = "rtl8139"


class SnapshotType(StrEnum):
    ACTIVE = "active"
    REGULAR = "regular"
    PREVIEW = "preview"


class Nic(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    vnic_profile_id: UUID | None = None
    mac: str
    interface: NicInterface = NicInterface.VIRTIO
    plugged: bool = True
    linked: bool = True


class DiskAttachment(msgspec.Struct, frozen=True, kw_only=True):
    disk_id: UUID
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI
    bootable: bool = False
    active: bool = True


class SnapshotConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The VM configuration a snapshot keeps, restored by preview/undo."""

    memory: int
    cpu_sockets: int
    cpu_cores: int
    cpu_threads: int
    disk_ids: tuple[UUID, ...] = ()


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    description: str = ""
    snapshot_type: SnapshotType = SnapshotType.REGULAR
    status: SnapshotStatus = SnapshotStatus.OK
    persist_memory: bool = False
    created_at: str = ""
    # What the host side is doing with it: "", "create", "remove".
    operation: str = ""
    config: SnapshotConfig | None = None


class HostScoreRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One row of the scheduler's table: ``score`` (lower is better) or ``reason``."""

    host_id: UUID
    name: str = ""
    score: int | None = None
    reason: str = ""


class Vm(Aggregate, frozen=True, kw_only=True):
    KIND = "vm"
    LABEL = "VM"

    name: str
    description: str = ""
    cluster_id: UUID
    template_id: UUID = BLANK_TEMPLATE_ID
    memory: int = GiB
    cpu_sockets: int = 1
    cpu_cores: int = 1
    cpu_threads: int = 1
    os_type: str = "other"
    vm_type: VmType = VmType.SERVER
    stateless: bool = False
    highly_available: bool = False
    ha_priority: int = 0
    custom_properties: dict[str, str] = {}
    nics: tuple[Nic, ...] = ()
    disk_attachments: tuple[DiskAttachment, ...] = ()
    cdrom_file: str | None = None
    graphics: Graphics = Graphics.VNC
    placement_host_id: UUID | None = None
    status: VmStatus = VmStatus.DOWN
    run_on_host_id: UUID | None = None
    # A suspended VM's memory image lives with the host that saved it (managed save).
    saved_on_host_id: UUID | None = None
    migrating_to_host_id: UUID | None = None
    snapshots: tuple[Snapshot, ...] = ()
    pool_id: UUID | None = None
    created_at: str = ""
    exit_reason: str = ""
    exit_status: str = ""
    last_migration_downtime_ms: int | None = None
    # Hosts tried by the current start (oVirt reruns a failed launch elsewhere).
    run_attempts: tuple[UUID, ...] = ()

    @property
    def vcpus(self) -> int:
        return self.cpu_sockets * self.cpu_cores * self.cpu_threads

    def snapshot(self, snapshot_id: UUID) -> Snapshot | None:
        return next((s for s in self.snapshots if s.id == snapshot_id), None)

    def in_preview(self) -> bool:
        return any(s.status == SnapshotStatus.IN_PREVIEW for s in self.snapshots)

    def snapshot_locked(self) -> bool:
        return any(s.status == SnapshotStatus.LOCKED for s in self.snapshots)

    def attachment(self, disk_id: UUID) -> DiskAttachment | None:
        return next((a for a in self.disk_attachments if a.disk_id == disk_id), None)


# -- events -----------------------------------------------------------------------------


class VmAdded(Event, frozen=True, kw_only=True):
    CREATES = "Vm"
    name: str
    description: str = ""
    cluster_id: UUID
    template_id: UUID
    memory: int
    cpu_sockets: int
    cpu_cores: int
    cpu_threads: int
    os_type: str
    vm_type: VmType
    stateless: bool = False
    highly_available: bool = False
    ha_priority: int = 0
    custom_properties: dict[str, str] = {}
    nics: tuple[Nic, ...] = ()
    disk_attachments: tuple[DiskAttachment, ...] = ()
    cdrom_file: str | None = None
    graphics: Graphics = Graphics.VNC
    placement_host_id: UUID | None = None
    status: VmStatus
    snapshots: tuple[Snapshot, ...] = ()
    pool_id: UUID | None = None
    created_at: str = ""


class VmUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    cluster_id: UUID | UnsetType = UNSET
    memory: int | UnsetType = UNSET
    cpu_sockets: int | UnsetType = UNSET
    cpu_cores: int | UnsetType = UNSET
    cpu_threads: int | UnsetType = UNSET
    os_type: str | UnsetType = UNSET
    vm_type: VmType | UnsetType = UNSET
    stateless: bool | UnsetType = UNSET
    highly_available: bool | UnsetType = UNSET
    ha_priority: int | UnsetType = UNSET
    custom_properties: dict[str, str] | UnsetType = UNSET
    cdrom_file: str | UnsetType | None = UNSET
    graphics: Graphics | UnsetType = UNSET
    placement_host_id: UUID | UnsetType | None = UNSET
    pool_id: UUID | UnsetType | None = UNSET


class VmImagesReady(Event, frozen=True, kw_only=True):
    """Every disk created for the VM settled; ``failed_disk_ids`` are illegal."""

    failed_disk_ids: tuple[UUID, ...] = ()

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.DOWN)


class VmRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


class VmNicAdded(Event, frozen=True, kw_only=True):
    nic: Nic

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, nics=(*agg.nics, self.nic))


class VmNicUpdated(Event, frozen=True, kw_only=True):
    nic: Nic

    def evolve(self, agg: Any) -> Any:
        nics = tuple(self.nic if n.id == self.nic.id else n for n in agg.nics)
        return _set(self, agg, nics=nics)


class VmNicRemoved(Event, frozen=True, kw_only=True):
    nic_id: UUID

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, nics=tuple(n for n in agg.nics if n.id != self.nic_id))


class VmDiskAttached(Event, frozen=True, kw_only=True):
    attachment: DiskAttachment

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, disk_attachments=(*agg.disk_attachments, self.attachment))


class VmDiskAttachmentUpdated(Event, frozen=True, kw_only=True):
    attachment: DiskAttachment

    def evolve(self, agg: Any) -> Any:
        att = tuple(
            self.attachment if a.disk_id == self.attachment.disk_id else a
            for a in agg.disk_attachments
        )
        return _set(self, agg, disk_attachments=att)


class VmDiskDetached(Event, frozen=True, kw_only=True):
    disk_id: UUID

    def evolve(self, agg: Any) -> Any:
        att = tuple(a for a in agg.disk_attachments if a.disk_id != self.disk_id)
        return _set(self, agg, disk_attachments=att)


class VmStartRequested(Event, frozen=True, kw_only=True):
    """Someone asked to run the VM (the audit's USER_RUN_VM); no state changes yet."""

    requested_host_id: UUID | None = None
    start_paused: bool = False

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, run_attempts=())


class VmScheduled(Event, frozen=True, kw_only=True):
    """The scheduler chose ``host_id``; ``scores`` is its table (lower is better)."""

    host_id: UUID
    scores: tuple[HostScoreRow, ...] = ()
    status: VmStatus = VmStatus.WAIT_FOR_LAUNCH
    start_paused: bool = False
    rerun: bool = False  # a retry on another host after a failed launch

    def evolve(self, agg: Any) -> Any:
        return _set(
            self,
            agg,
            status=self.status,
            run_on_host_id=self.host_id,
            migrating_to_host_id=None,
            exit_reason="",
            exit_status="",
            run_attempts=(*agg.run_attempts, self.host_id),
        )


class VmStatusReported(Event, frozen=True, kw_only=True):
    """The host side reported the VM's status."""

    status: VmStatus
    host_id: UUID
    reason: str = ""
    exit_status: str = ""

    def evolve(self, agg: Any) -> Any:
        return _with_status(self, agg, self.status, self.reason, self.exit_status)


class VmShutdownRequested(Event, frozen=True, kw_only=True):
    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.POWERING_DOWN)


class VmStopRequested(Event, frozen=True, kw_only=True):
    """Power off: the host destroys the VM and reports it down."""

    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, run_attempts=())  # a stopped launch is not retried


class VmSavedStateDiscarded(Event, frozen=True, kw_only=True):
    """A suspended VM was stopped: its saved memory is dropped and it is down."""

    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        return _with_status(self, agg, VmStatus.DOWN, self.reason, "normal")


class VmRebootRequested(Event, frozen=True, kw_only=True):
    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.REBOOT_IN_PROGRESS)


class VmPauseRequested(Event, frozen=True, kw_only=True):
    def evolve(self, agg: Any) -> Any:
        return _set(self, agg)


class VmResumeRequested(Event, frozen=True, kw_only=True):
    def evolve(self, agg: Any) -> Any:
        return _set(self, agg)


class VmSuspendRequested(Event, frozen=True, kw_only=True):
    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.SAVING_STATE)


class VmMigrationStarted(Event, frozen=True, kw_only=True):
    source_host_id: UUID
    destination_host_id: UUID
    scores: tuple[HostScoreRow, ...] = ()

    def evolve(self, agg: Any) -> Any:
        return _set(
            self, agg, status=VmStatus.MIGRATING, migrating_to_host_id=self.destination_host_id
        )


class VmMigrated(Event, frozen=True, kw_only=True):
    source_host_id: UUID
    destination_host_id: UUID
    downtime_ms: int = 0

    def evolve(self, agg: Any) -> Any:
        return _set(
            self,
            agg,
            status=VmStatus.UP,
            run_on_host_id=self.destination_host_id,
            migrating_to_host_id=None,
            last_migration_downtime_ms=self.downtime_ms,
        )


class VmMigrationFailed(Event, frozen=True, kw_only=True):
    """The migration failed; the VM goes on running on its source host."""

    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.UP, migrating_to_host_id=None)


class VmMigrationCanceled(Event, frozen=True, kw_only=True):
    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.UP, migrating_to_host_id=None)


class VmConsoleTicketSet(Event, frozen=True, kw_only=True):
    """A console password was set on the VM's host, valid until ``expires_at``. The
    password itself is a secret: it goes to the host and to the caller, never to the log
    (version 1 carried it as ``ticket``; the upcaster drops it)."""

    VERSION = 2
    protocol: Graphics
    expires_at: str
    host_id: UUID

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg)


@upcaster("VmConsoleTicketSet", 1)
def _ticket_v1(data: dict[str, Any]) -> dict[str, Any]:
    data.pop("ticket", None)
    return data


class VmHostLost(Event, frozen=True, kw_only=True):
    """The VM's host stopped answering: its state is unknown."""

    host_id: UUID

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, status=VmStatus.UNKNOWN, migrating_to_host_id=None)


class VmMarkedDown(Event, frozen=True, kw_only=True):
    """The engine concluded the VM is down (its host was fenced or confirmed rebooted)."""

    host_id: UUID | None = None
    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        return _with_status(self, agg, VmStatus.DOWN, self.reason, "error")


class VmSnapshotAdded(Event, frozen=True, kw_only=True):
    snapshot: Snapshot

    def evolve(self, agg: Any) -> Any:
        return _set(self, agg, snapshots=(*agg.snapshots, self.snapshot))


class VmSnapshotSettled(Event, frozen=True, kw_only=True):
    """A locked snapshot's host operation finished: ok again, or removed."""

    snapshot_id: UUID
    removed: bool = False
    failed: bool = False

    def evolve(self, agg: Any) -> Any:
        if self.removed:
            snaps = tuple(s for s in agg.snapshots if s.id != self.snapshot_id)
        else:
            snaps = _snapshot_changed(agg, self.snapshot_id, status=SnapshotStatus.OK, operation="")
        return _set(self, agg, snapshots=snaps)


class VmSnapshotRemoveStarted(Event, frozen=True, kw_only=True):
    snapshot_id: UUID

    def evolve(self, agg: Any) -> Any:
        snaps = _snapshot_changed(
            agg, self.snapshot_id, status=SnapshotStatus.LOCKED, operation="remove"
        )
        return _set(self, agg, snapshots=snaps)


class VmSnapshotPreviewed(Event, frozen=True, kw_only=True):
    """``snapshot_id`` goes in preview; ``saved`` keeps the active state to undo to."""

    snapshot_id: UUID
    saved: Snapshot
    config: SnapshotConfig | None = None

    def evolve(self, agg: Any) -> Any:
        snaps = _snapshot_changed(agg, self.snapshot_id, status=SnapshotStatus.IN_PREVIEW)
        return _set(self, agg, snapshots=(*snaps, self.saved), **_config_fields(self.config))


class VmSnapshotCommitted(Event, frozen=True, kw_only=True):
    """The previewed snapshot becomes the VM's state; later snapshots are dropped."""

    snapshot_id: UUID
    removed_ids: tuple[UUID, ...] = ()

    def evolve(self, agg: Any) -> Any:
        snaps = _snapshot_changed(
            agg, self.snapshot_id, drop=set(self.removed_ids), status=SnapshotStatus.OK
        )
        return _set(self, agg, snapshots=snaps)


class VmSnapshotUndone(Event, frozen=True, kw_only=True):
    """The preview is undone: the VM returns to the state saved before it."""

    snapshot_id: UUID
    saved_id: UUID
    config: SnapshotConfig | None = None

    def evolve(self, agg: Any) -> Any:
        snaps = _snapshot_changed(
            agg, self.snapshot_id, drop={self.saved_id}, status=SnapshotStatus.OK
        )
        return _set(self, agg, snapshots=snaps, **_config_fields(self.config))


def _snapshot_changed(
    agg: Any, snapshot_id: UUID, *, drop: Collection[UUID] = (), **changes: Any
) -> tuple[Snapshot, ...]:
    """The VM's snapshots with ``changes`` on one of them and those in ``drop`` left out."""
    return tuple(
        msgspec.structs.replace(s, **changes) if s.id == snapshot_id else s
        for s in agg.snapshots
        if s.id not in drop
    )


def _set(event: Event, agg: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(agg, version=event.originator_version, **changes)


def _with_status(event: Event, agg: Any, status: VmStatus, reason: str, exit_status: str) -> Any:
    changes: dict[str, Any] = {"status": status}
    changes["saved_on_host_id"] = (
        (agg.run_on_host_id or agg.saved_on_host_id) if status == VmStatus.SUSPENDED else None
    )
    if status not in VM_ON_HOST:
        changes["run_on_host_id"] = None
    if status != VmStatus.MIGRATING:
        changes["migrating_to_host_id"] = None
    if status == VmStatus.DOWN:
        changes["exit_reason"] = reason
        changes["exit_status"] = exit_status or "error"
    return _set(event, agg, **changes)


def _config_fields(config: SnapshotConfig | None) -> dict[str, Any]:
    if config is None:
        return {}
    return {
        "memory": config.memory,
        "cpu_sockets": config.cpu_sockets,
        "cpu_cores": config.cpu_cores,
        "cpu_threads": config.cpu_threads,
    }


# -- reading helpers --------------------------------------------------------------------


def get_vm(tx: Tx, vm_id: UUID) -> Vm:
    return tx.engine.get(Vm, vm_id, field="vm")


def cluster_dc(tx: Tx, cluster_id: UUID) -> UUID:
    return tx.engine.get(Cluster, cluster_id, field="cluster").data_center_id


def up_hosts(engine: Any, cluster_id: UUID) -> list[Any]:
    """The cluster's hosts that are up, in a stable order (name, id)."""
    hosts = [
        h
        for h in objects_of_kind(engine, "host")
        if h.cluster_id == cluster_id and h.status == HostStatus.UP
    ]
    return sorted(hosts, key=lambda h: (h.name, str(h.id)))


def choose_host(
    tx: Tx,
    vm: Vm,
    *,
    action: str,
    requested: UUID | None = None,
    exclude: Iterable[UUID] = (),
) -> tuple[UUID, tuple[HostScoreRow, ...]]:
    """The scheduling call site: a host for ``vm`` and the score table behind the choice.

    An explicitly requested host must be up in the VM's cluster. The choice itself is
    domain/scheduling.py's (filters and weights by the cluster's policy), over the VMs as
    they stand after the events this command emitted so far (a pool allocation or a rerun
    schedules after earlier changes of the same command).
    """
    from domain import scheduling
    from domain.datacenter import current_vms

    excluded = set(exclude)
    if requested is not None:
        host = get_of_kind(tx.engine, "host", requested, label="Host", field="host")
        if host.cluster_id != vm.cluster_id:
            raise DomainError(
                f"Cannot {action} VM. The Host is not in the VM's Cluster.", field="host"
            )
        if requested in excluded:
            raise DomainError(
                f"Cannot {action} VM. Source and destination Hosts are the same.", field="host"
            )
        if host.status != HostStatus.UP:
            raise DomainError(f"Cannot {action} VM. The Host is not up.", field="host")
    candidates = [h for h in up_hosts(tx.engine, vm.cluster_id) if h.id not in excluded]
    if not candidates:
        if action == "migrate":
            raise DomainError(
                "Cannot migrate VM. There is no host that satisfies current scheduling "
                "constraints.",
                field="host",
            )
        raise DomainError(
            f"Cannot {action} VM. There are no available running Hosts in the Host Cluster.",
            field="host",
        )
    result = scheduling.schedule(
        tx.engine, vm, wanted_host_id=requested, exclude=excluded, vms=current_vms(tx)
    )
    if result.host_id is None:
        raise scheduling.no_host_error(result, action)
    rows = tuple(
        HostScoreRow(host_id=r.host_id, name=r.name, score=r.score, reason=r.reason)
        for r in result.scores
    )
    return result.host_id, rows


def _locked(action: str, type_: str = "VM") -> DomainError:
    return DomainError(f"Cannot {action} {type_}: VM is locked. Please try again in a few minutes.")


def _status_illegal(action: str, vm: Vm, type_: str = "VM") -> DomainError:
    return DomainError(
        f"Cannot {action} {type_} because the VM is in {_status_text(vm.status)} status."
    )


def _status_text(status: VmStatus) -> str:
    return status.value.replace("_", " ").title().replace(" ", "")


def _check_not_snapshot_busy(vm: Vm, action: str, type_: str = "VM") -> None:
    if vm.snapshot_locked():
        raise DomainError(
            f"Cannot {action} {type_}. The VM is performing an operation on a Snapshot. "
            "Please wait for the operation to finish, and try again."
        )


def _check_not_in_preview(vm: Vm, action: str, type_: str = "VM") -> None:
    if vm.in_preview():
        raise DomainError(f"Cannot {action} {type_}. VM is previewing a Snapshot.")


def check_numbers(
    *,
    memory: int | None = None,
    cpu_sockets: int | None = None,
    cpu_cores: int | None = None,
    cpu_threads: int | None = None,
    ha_priority: int | None = None,
) -> None:
    if memory is not None and not MIN_MEMORY <= memory <= MAX_MEMORY:
        raise InvalidInput("Memory must be between 1 MiB and 16 TiB.", field="memory")
    for field, value in (
        ("cpu_sockets", cpu_sockets),
        ("cpu_cores", cpu_cores),
        ("cpu_threads", cpu_threads),
    ):
        if value is not None and not 1 <= value <= MAX_CPU_COUNT:
            raise InvalidInput(f"{field} must be between 1 and {MAX_CPU_COUNT}.", field=field)
    if ha_priority is not None and not 0 <= ha_priority <= MAX_HA_PRIORITY:
        raise InvalidInput("ha_priority must be between 0 and 100.", field="ha_priority")


def check_custom_properties(props: Mapping[str, str] | None) -> None:
    for key in props or {}:
        if not _PROPERTY_KEY.match(key):
            raise InvalidInput(
                f"Invalid custom property name {key!r}: use letters, digits and _.",
                field="custom_properties",
            )


def _check_vcpus(action: str, sockets: int, cores: int, threads: int) -> None:
    if sockets * cores * threads > MAX_VCPUS:
        raise DomainError(
            f"Cannot {action} VM. Max number of CPUs exceeded ({MAX_VCPUS}).", field="cpu_sockets"
        )


def _check_placement(tx: Tx, action: str, cluster_id: UUID, host_id: UUID | None) -> None:
    if host_id is None:
        return
    host = get_of_kind(tx.engine, "host", host_id, label="Host", field="placement_host")
    if host.cluster_id != cluster_id:
        raise DomainError(
            f"Cannot {action} VM. The Host is not in the VM's Cluster.", field="placement_host"
        )


# -- MAC addresses --------------------------------------------------------------------


def macs_in_use(engine: Any) -> set[str]:
    return {n.mac for v in engine.all(Vm) for n in v.nics}


def allocate_mac(vm_id: UUID, index: int, taken: set[str]) -> str:
    """A locally administered unicast MAC derived from the VM id: the same id always
    gives the same MACs, and a clash moves on to the next candidate."""
    counter = index
    while True:
        digest = hashlib.sha256(vm_id.bytes + counter.to_bytes(4, "big")).digest()
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in digest[:4])
        if mac not in taken:
            taken.add(mac)
            return mac
        counter += 1 << 16


def _check_mac(mac: str, taken: set[str], action: str) -> str:
    mac = mac.lower()
    if not _MAC.match(mac):
        raise InvalidInput(f"Cannot {action} Network Interface. Invalid MAC address.", field="mac")
    if int(mac[:2], 16) & 1:
        raise InvalidInput(
            f"Cannot {action} Network Interface. The MAC address is a multicast address.",
            field="mac",
        )
    if mac in taken:
        raise DomainError(
            f"Cannot {action} Network Interface. MAC Address is already in use.", field="mac"
        )
    taken.add(mac)
    return mac


def _check_profile(tx: Tx, action: str, profile_id: UUID | None, vm: Vm) -> None:
    if profile_id is None:
        return  # an empty profile: the NIC is not connected to any network
    profile = get_of_kind(
        tx.engine, "vnic_profile", profile_id, label="VNIC Profile", field="vnic_profile"
    )
    net = find_of_kind(tx.engine, "network", profile.network_id)
    if net is None or net.data_center_id != cluster_dc(tx, vm.cluster_id):
        raise DomainError(
            f"Cannot {action} Network Interface. The vNIC profile's network is not in the "
            "VM's Data Center.",
            field="vnic_profile",
        )
    if vm.cluster_id not in getattr(net, "cluster_ids", (vm.cluster_id,)):
        raise DomainError(
            f"Cannot {action} Network Interface. The Network is not attached to the VM's Cluster.",
            field="vnic_profile",
        )


# -- add / update / remove --------------------------------------------------------------


def add_vm(
    tx: Tx,
    *,
    name: str,
    cluster_id: UUID,
    template_id: UUID = BLANK_TEMPLATE_ID,
    description: str = "",
    memory: int | None = None,
    cpu_sockets: int | None = None,
    cpu_cores: int | None = None,
    cpu_threads: int | None = None,
    os_type: str | None = None,
    vm_type: VmType | None = None,
    stateless: bool | None = None,
    highly_available: bool | None = None,
    ha_priority: int | None = None,
    custom_properties: Mapping[str, str] | None = None,
    cdrom_file: str | None = None,
    graphics: Graphics | None = None,
    placement_host_id: UUID | None = None,
    clone: bool = False,
    storage_domain_id: UUID | None = None,
    pool_id: UUID | None = None,
    id: UUID | None = None,
) -> UUID:
    """A VM from a template (Blank by default).

    The template's disks are created for it, thin (over the template's) or cloned; the
    VM is ``image_locked`` until the host reports them created, then ``down``. A VM with
    no disks to create is ``down`` at once.
    """
    from domain.disk import require_active_data_domain
    from domain.statuses import TemplateStatus
    from domain.template import Template

    tx.engine.require_unique_name(("vm",), name, label="VM")
    dc_id = cluster_dc(tx, cluster_id)
    template = tx.engine.get(Template, template_id, field="template")
    if template.data_center_id is not None and template.data_center_id != dc_id:
        raise DomainError(
            "Cannot add VM. The Template is not in the Cluster's Data Center.", field="template"
        )
    if template.status != TemplateStatus.OK:
        raise DomainError(
            "Cannot add VM: Template is locked. Please try again in a few minutes.",
            field="template",
        )
    check_numbers(
        memory=memory,
        cpu_sockets=cpu_sockets,
        cpu_cores=cpu_cores,
        cpu_threads=cpu_threads,
        ha_priority=ha_priority,
    )
    check_custom_properties(custom_properties)
    sockets = cpu_sockets or template.cpu_sockets
    cores = cpu_cores or template.cpu_cores
    threads = cpu_threads or template.cpu_threads
    _check_vcpus("add", sockets, cores, threads)
    _check_placement(tx, "add", cluster_id, placement_host_id)
    disks = [tx.engine.get(Disk, d) for d in template.disk_ids]
    for d in disks:
        if d.status != DiskStatus.OK:
            raise DomainError(
                f"Cannot add VM: The following disks are locked: {d.name}. "
                "Please try again in a few minutes."
            )
        target = d.storage_domain_id if not clone else storage_domain_id or d.storage_domain_id
        require_active_data_domain(
            tx.engine,
            target,
            action="add",
            type_="VM",
            data_center_id=dc_id,
            field="storage_domain",
        )
    vm_id = tx.new_id(id)
    taken = macs_in_use(tx.engine)
    nics = tuple(
        msgspec.structs.replace(n, id=tx.new_id(), mac=allocate_mac(vm_id, i, taken))
        for i, n in enumerate(template.nics)
    )
    attachments = template_disk_attachments(
        tx, disks, clone=clone, storage_domain_id=storage_domain_id
    )
    active = Snapshot(
        id=tx.new_id(),
        description="Active VM",
        snapshot_type=SnapshotType.ACTIVE,
        created_at=tx.now.isoformat(),
    )
    tx.emit(
        VmAdded,
        vm_id,
        name=name,
        description=description,
        cluster_id=cluster_id,
        template_id=template_id,
        memory=memory or template.memory,
        cpu_sockets=sockets,
        cpu_cores=cores,
        cpu_threads=threads,
        os_type=os_type or template.os_type,
        vm_type=vm_type or template.vm_type,
        stateless=template.stateless if stateless is None else stateless,
        highly_available=(
            template.highly_available if highly_available is None else highly_available
        ),
        ha_priority=template.ha_priority if ha_priority is None else ha_priority,
        custom_properties=dict(custom_properties or {}),
        nics=nics,
        disk_attachments=tuple(attachments),
        cdrom_file=cdrom_file,
        graphics=graphics or template.graphics,
        placement_host_id=placement_host_id,
        status=VmStatus.IMAGE_LOCKED if attachments else VmStatus.DOWN,
        snapshots=(active,),
        pool_id=pool_id,
        created_at=tx.now.isoformat(),
    )
    _grant_creator(tx, vm_id, cluster_id, pool_id)
    return vm_id


def template_disk_attachments(
    tx: Tx, disks: list[Disk], *, clone: bool = False, storage_domain_id: UUID | None = None
) -> list[DiskAttachment]:
    """A VM's own disks made from a template's ``disks`` (callers checked them): thin
    layers over them (``base_disk_id``) or full copies, locked until the host reports
    them created, attached as the template has them."""
    attachments = []
    for d in disks:
        new_disk = copy_disk_image(
            tx,
            d,
            thin=not clone,
            storage_domain_id=storage_domain_id if clone else None,
            name=d.name,
        )
        attachments.append(
            DiskAttachment(
                disk_id=new_disk, interface=DiskInterface.VIRTIO_SCSI, bootable=d.bootable
            )
        )
    return attachments


def _grant_creator(tx: Tx, vm_id: UUID, cluster_id: UUID, pool_id: UUID | None) -> None:
    """The creator of a VM becomes its UserVmManager, as oVirt's AddVm does: unless the VM
    is a pool's (the pool hands it out) or the creator may manage permissions on it
    already (an administrator of its cluster or above, who needs no explicit grant)."""
    from domain.permission import grant_owner, is_permitted

    actor = tx.ctx.meta.actor_id
    if actor is None or pool_id is not None:
        return
    if is_permitted(tx.engine, actor, "manipulate_permissions", "cluster", cluster_id):
        return
    grant_owner(tx, actor, "vm", vm_id)


# Fields that can change only while the VM is down (the rest apply at once).
_COLD_FIELDS = (
    "cluster_id",
    "memory",
    "cpu_sockets",
    "cpu_cores",
    "cpu_threads",
    "os_type",
    "vm_type",
    "stateless",
    "graphics",
)


def update_vm(tx: Tx, vm_id: UUID, **changes: Any) -> None:
    """Changes the VM's settings; those in ``_COLD_FIELDS`` only while it is down."""
    vm = get_vm(tx, vm_id)
    allowed = {f.name for f in msgspec.structs.fields(VmUpdated)[4:]} - {"pool_id"}
    fields = {k: v for k, v in changes.items() if v is not UNSET}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidInput(f"Unknown VM field {sorted(unknown)[0]}.", field=sorted(unknown)[0])
    fields = {k: v for k, v in fields.items() if v != getattr(vm, k)}
    if not fields:
        return
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("update")
    if vm.snapshot_locked():
        _check_not_snapshot_busy(vm, "update")
    for f in _COLD_FIELDS:
        if f in fields and vm.status != VmStatus.DOWN:
            raise DomainError("Cannot update VM. VM is running.", field=f)
    if "name" in fields:
        tx.engine.require_unique_name(("vm",), fields["name"], label="VM", own_id=vm_id)
    check_numbers(
        memory=fields.get("memory"),
        cpu_sockets=fields.get("cpu_sockets"),
        cpu_cores=fields.get("cpu_cores"),
        cpu_threads=fields.get("cpu_threads"),
        ha_priority=fields.get("ha_priority"),
    )
    check_custom_properties(fields.get("custom_properties"))
    _check_vcpus(
        "update",
        fields.get("cpu_sockets", vm.cpu_sockets),
        fields.get("cpu_cores", vm.cpu_cores),
        fields.get("cpu_threads", vm.cpu_threads),
    )
    cluster_id = fields.get("cluster_id", vm.cluster_id)
    if "cluster_id" in fields:
        new_dc = cluster_dc(tx, cluster_id)
        if new_dc != cluster_dc(tx, vm.cluster_id):
            raise DomainError(
                "Cannot update VM. The new Cluster is in another Data Center.", field="cluster"
            )
    if "placement_host_id" in fields or "cluster_id" in fields:
        _check_placement(
            tx, "update", cluster_id, fields.get("placement_host_id", vm.placement_host_id)
        )
    tx.emit(VmUpdated, vm_id, **fields)


def remove_vm(tx: Tx, vm_id: UUID, *, remove_disks: bool = True, force: bool = False) -> None:
    """Removes a down VM and, unless ``remove_disks`` is false, its non-shareable disks.

    ``force`` lets the pool remove its own VMs.
    """
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("remove")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot remove VM. VM is running.")
    _check_not_snapshot_busy(vm, "remove")
    _check_not_in_preview(vm, "remove")
    if vm.pool_id is not None and not force:
        raise DomainError("Cannot remove VM. VM is attached to a VM-Pool.")
    for att in vm.disk_attachments:
        disk = tx.engine.find(Disk, att.disk_id)
        if disk is None:
            continue
        if remove_disks and disk.status == DiskStatus.LOCKED:
            raise DomainError(
                f"Cannot remove VM: The following disks are locked: {disk.name}. "
                "Please try again in a few minutes."
            )
    if remove_disks:
        for att in vm.disk_attachments:
            disk = tx.engine.find(Disk, att.disk_id)
            if disk is None:
                continue
            others = [
                v
                for v in tx.engine.all(Vm)
                if v.id != vm_id and v.attachment(att.disk_id) is not None
            ]
            if not others:
                remove_disk_unchecked(tx, att.disk_id)
    _drop_references(tx, vm_id)
    tx.emit(VmRemoved, vm_id)


def _drop_references(tx: Tx, vm_id: UUID) -> None:
    """What points at a VM goes with it: affinity memberships, tags, permissions."""
    from domain.affinity import drop_member
    from domain.permission import remove_object_permissions
    from domain.tag import detach_everywhere

    drop_member(tx, vm_id)
    detach_everywhere(tx, vm_id)
    remove_object_permissions(tx, vm_id)


def vm_images_settled(tx: Tx, vm_id: UUID, *, changed: Mapping[UUID, bool]) -> None:
    """Called when a disk of an image-locked VM settles: once all have, the VM is down."""
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.IMAGE_LOCKED:
        return
    failed = []
    for att in vm.disk_attachments:
        if att.disk_id in changed:
            if not changed[att.disk_id]:
                failed.append(att.disk_id)
            continue
        disk = tx.engine.find(Disk, att.disk_id)
        if disk is None:
            continue
        if disk.status == DiskStatus.LOCKED:
            return
        if disk.status == DiskStatus.ILLEGAL:
            failed.append(att.disk_id)
    tx.emit(VmImagesReady, vm_id, failed_disk_ids=tuple(failed))


def report_vm_images_ready(tx: Tx, vm_id: UUID) -> None:
    """The host side confirms the VM's images: an image-locked VM becomes down."""
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.IMAGE_LOCKED:
        raise DomainError(f"VM {vm.name} is not image locked.")
    locked = [
        a.disk_id
        for a in vm.disk_attachments
        if (d := tx.engine.find(Disk, a.disk_id)) is not None and d.status == DiskStatus.LOCKED
    ]
    if locked:
        raise DomainError(f"VM {vm.name} still has locked disks.")
    tx.emit(VmImagesReady, vm_id)


# -- NICs -------------------------------------------------------------------------------


def add_nic(
    tx: Tx,
    vm_id: UUID,
    *,
    name: str,
    vnic_profile_id: UUID | None = None,
    interface: NicInterface = NicInterface.VIRTIO,
    mac: str | None = None,
    linked: bool = True,
    id: UUID | None = None,
) -> UUID:
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("add", "Network Interface")
    if any(n.name == name for n in vm.nics):
        raise DomainError(
            "Cannot add Network Interface. The VM Network Interface name is already in use.",
            field="name",
        )
    if vm.status != VmStatus.DOWN and interface != NicInterface.VIRTIO:
        raise DomainError(
            "Cannot add Network Interface. Hot plug is supported only for virtio interfaces.",
            field="interface",
        )
    _check_profile(tx, "add", vnic_profile_id, vm)
    taken = macs_in_use(tx.engine)
    if mac is not None:
        mac = _check_mac(mac, taken, "add")
    else:
        mac = allocate_mac(vm_id, len(vm.nics), taken)
    nic_id = tx.new_id(id)
    if any(n.id == nic_id for v in tx.engine.all(Vm) for n in v.nics):
        raise InvalidInput(f"Id {nic_id} is already in use.", field="id")
    nic = Nic(
        id=nic_id,
        name=name,
        vnic_profile_id=vnic_profile_id,
        mac=mac,
        interface=interface,
        linked=linked,
    )
    tx.emit(VmNicAdded, vm_id, nic=nic)
    return nic_id


def _get_nic(vm: Vm, nic_id: UUID) -> Nic:
    nic = next((n for n in vm.nics if n.id == nic_id), None)
    if nic is None:
        raise NotFound(f"Network Interface {nic_id} not found.", field="nic")
    return nic


def update_nic(
    tx: Tx,
    vm_id: UUID,
    nic_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    vnic_profile_id: UUID | UnsetType | None = UNSET,
    interface: NicInterface | UnsetType = UNSET,
    mac: str | UnsetType = UNSET,
    linked: bool | UnsetType = UNSET,
) -> None:
    vm = get_vm(tx, vm_id)
    nic = _get_nic(vm, nic_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("update", "Network Interface")
    changes: dict[str, Any] = {}
    if name is not UNSET and name != nic.name:
        if any(n.name == name and n.id != nic_id for n in vm.nics):
            raise DomainError(
                "Cannot update Network Interface. The VM Network Interface name is already in use.",
                field="name",
            )
        changes["name"] = name
    if interface is not UNSET and interface != nic.interface:
        if vm.status != VmStatus.DOWN:
            raise DomainError("Cannot update Network Interface. VM is running.", field="interface")
        changes["interface"] = interface
    if vnic_profile_id is not UNSET and vnic_profile_id != nic.vnic_profile_id:
        assert not isinstance(vnic_profile_id, UnsetType)
        _check_profile(tx, "update", vnic_profile_id, vm)
        changes["vnic_profile_id"] = vnic_profile_id
    if mac is not UNSET and mac.lower() != nic.mac:
        if vm.status != VmStatus.DOWN:
            raise DomainError("Cannot update Network Interface. VM is running.", field="mac")
        changes["mac"] = _check_mac(mac, macs_in_use(tx.engine), "update")
    if linked is not UNSET and linked != nic.linked:
        changes["linked"] = linked
    if changes:
        tx.emit(VmNicUpdated, vm_id, nic=msgspec.structs.replace(nic, **changes))


def remove_nic(tx: Tx, vm_id: UUID, nic_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    nic = _get_nic(vm, nic_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("remove", "Network Interface")
    if vm.status != VmStatus.DOWN and nic.interface != NicInterface.VIRTIO:
        raise DomainError("Cannot remove Network Interface. VM is running.")
    tx.emit(VmNicRemoved, vm_id, nic_id=nic_id)


# -- disk attachments -------------------------------------------------------------------

_HOTPLUG = frozenset({DiskInterface.VIRTIO, DiskInterface.VIRTIO_SCSI, DiskInterface.SATA})


def attach_disk(
    tx: Tx,
    vm_id: UUID,
    disk_id: UUID,
    *,
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI,
    bootable: bool = False,
    active: bool = True,
) -> None:
    from domain.disk import storage_domain_dc

    vm = get_vm(tx, vm_id)
    disk = tx.engine.get(Disk, disk_id, field="disk")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("attach", "Disk")
    _check_not_in_preview(vm, "attach", "Disk")
    if vm.attachment(disk_id) is not None:
        raise DomainError("Cannot attach Disk. The disk is already attached to the VM.")
    if disk.template_id is not None:
        raise DomainError("Cannot attach Disk. The disk belongs to a Template.")
    if disk.status == DiskStatus.LOCKED:
        raise DomainError(
            f"Cannot attach Disk: The following disks are locked: {disk.name}. "
            "Please try again in a few minutes."
        )
    if not disk.shareable and any(
        v.attachment(disk_id) is not None for v in tx.engine.all(Vm) if v.id != vm_id
    ):
        raise DomainError("Cannot attach Disk. The disk is not shareable and is attached to a VM.")
    if storage_domain_dc(tx.engine, disk.storage_domain_id) != cluster_dc(tx, vm.cluster_id):
        raise DomainError("Cannot attach Disk. The disk is not in the VM's Data Center.")
    if bootable and any(a.bootable for a in vm.disk_attachments):
        raise DomainError(
            "Cannot attach Disk. Disk boot is already in use by another disk.", field="bootable"
        )
    if vm.status != VmStatus.DOWN and active and interface not in _HOTPLUG:
        raise DomainError(
            "Cannot attach Disk. Hot plug is supported only for virtio, virtio_scsi and sata "
            "interfaces.",
            field="interface",
        )
    tx.emit(
        VmDiskAttached,
        vm_id,
        attachment=DiskAttachment(
            disk_id=disk_id, interface=interface, bootable=bootable, active=active
        ),
    )


def add_disk_to_vm(
    tx: Tx,
    vm_id: UUID,
    *,
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI,
    bootable: bool = False,
    active: bool = True,
    **disk: Any,
) -> UUID:
    """Creates a disk (see ``domain.disk.add_disk``) and attaches it to the VM, as
    oVirt's POST /vms/{id}/diskattachments does; the disk is locked until created."""
    from domain.disk import add_disk

    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("add", "Disk")
    _check_not_in_preview(vm, "add", "Disk")
    if bootable and any(a.bootable for a in vm.disk_attachments):
        raise DomainError(
            "Cannot add Disk. Disk boot is already in use by another disk.", field="bootable"
        )
    if vm.status != VmStatus.DOWN and active and interface not in _HOTPLUG:
        raise DomainError(
            "Cannot add Disk. Hot plug is supported only for virtio, virtio_scsi and sata "
            "interfaces.",
            field="interface",
        )
    disk_id = add_disk(tx, data_center_id=cluster_dc(tx, vm.cluster_id), bootable=bootable, **disk)
    tx.emit(
        VmDiskAttached,
        vm_id,
        attachment=DiskAttachment(
            disk_id=disk_id, interface=interface, bootable=bootable, active=active
        ),
    )
    return disk_id


def update_disk_attachment(
    tx: Tx,
    vm_id: UUID,
    disk_id: UUID,
    *,
    interface: DiskInterface | UnsetType = UNSET,
    bootable: bool | UnsetType = UNSET,
    active: bool | UnsetType = UNSET,
) -> None:
    vm = get_vm(tx, vm_id)
    att = vm.attachment(disk_id)
    if att is None:
        raise NotFound(f"Disk attachment {disk_id} not found.", field="disk")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("update", "Disk")
    changes: dict[str, Any] = {}
    if interface is not UNSET and interface != att.interface:
        if vm.status != VmStatus.DOWN:
            raise DomainError("Cannot update Disk. VM is running.", field="interface")
        changes["interface"] = interface
    if bootable is not UNSET and bootable != att.bootable:
        if vm.status != VmStatus.DOWN:
            raise DomainError("Cannot update Disk. VM is running.", field="bootable")
        if bootable and any(a.bootable for a in vm.disk_attachments if a.disk_id != disk_id):
            raise DomainError(
                "Cannot update Disk. Disk boot is already in use by another disk.",
                field="bootable",
            )
        changes["bootable"] = bootable
    if active is not UNSET and active != att.active:
        iface = changes.get("interface", att.interface)
        if vm.status != VmStatus.DOWN and iface not in _HOTPLUG:
            raise DomainError(
                "Cannot update Disk. Hot plug is supported only for virtio, virtio_scsi and "
                "sata interfaces.",
                field="active",
            )
        changes["active"] = active
    if changes:
        tx.emit(VmDiskAttachmentUpdated, vm_id, attachment=msgspec.structs.replace(att, **changes))


def detach_disk(tx: Tx, vm_id: UUID, disk_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    att = vm.attachment(disk_id)
    if att is None:
        raise NotFound(f"Disk attachment {disk_id} not found.", field="disk")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("detach", "Disk")
    _check_not_in_preview(vm, "detach", "Disk")
    _check_not_snapshot_busy(vm, "detach", "Disk")
    if vm.status != VmStatus.DOWN and att.active:
        raise DomainError("Cannot detach Disk. The disk is plugged into a running VM.")
    tx.emit(VmDiskDetached, vm_id, disk_id=disk_id)


def detach_disk_unchecked(tx: Tx, vm_id: UUID, disk_id: UUID) -> None:
    tx.emit(VmDiskDetached, vm_id, disk_id=disk_id)


# -- running ----------------------------------------------------------------------------


def start_vm(
    tx: Tx, vm_id: UUID, *, host_id: UUID | None = None, paused: bool = False
) -> UUID | None:
    """Asks for the VM to run; returns the host chosen (None when resuming in place).

    Down -> scheduled, ``wait_for_launch``; suspended -> scheduled, ``restoring_state``;
    paused -> resume on its host.
    """
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("run")
    if vm.status == VmStatus.PAUSED:
        tx.emit(VmResumeRequested, vm_id)
        return None
    if vm.status not in (VmStatus.DOWN, VmStatus.SUSPENDED):
        raise DomainError("Cannot run VM. VM is running.")
    _check_not_snapshot_busy(vm, "run")
    _check_run_disks(tx, vm)
    chosen, scores = _restore_host(tx, vm) if host_id is None else (None, ())
    if chosen is None:
        chosen, scores = choose_host(tx, vm, action="run", requested=host_id)
    tx.emit(VmStartRequested, vm_id, requested_host_id=host_id, start_paused=paused)
    status = (
        VmStatus.RESTORING_STATE if vm.status == VmStatus.SUSPENDED else VmStatus.WAIT_FOR_LAUNCH
    )
    tx.emit(VmScheduled, vm_id, host_id=chosen, scores=scores, status=status, start_paused=paused)
    return chosen


def _restore_host(tx: Tx, vm: Vm) -> tuple[UUID | None, tuple[HostScoreRow, ...]]:
    """A suspended VM resumes where its memory was saved when that host can take it;
    elsewhere it would boot afresh, which is what an administrator resuming does not want."""
    if vm.status != VmStatus.SUSPENDED or vm.saved_on_host_id is None:
        return None, ()
    try:
        return choose_host(tx, vm, action="run", requested=vm.saved_on_host_id)
    except DomainError:
        return None, ()


def _check_run_disks(tx: Tx, vm: Vm) -> None:
    disks = [d for a in vm.disk_attachments if a.active and (d := tx.engine.find(Disk, a.disk_id))]
    if not disks:
        return  # a diskless VM needs no storage, nor an up data center
    locked = [d.name for d in disks if d.status == DiskStatus.LOCKED]
    if locked:
        raise DomainError(
            f"Cannot run VM: The following disks are locked: {', '.join(locked)}. "
            "Please try again in a few minutes."
        )
    illegal = [d.name for d in disks if d.status == DiskStatus.ILLEGAL]
    if illegal:
        raise DomainError(f"Cannot run VM. The following disks are illegal: {', '.join(illegal)}.")
    dc = tx.engine.find(DataCenter, cluster_dc(tx, vm.cluster_id))
    if dc is None or dc.status != DataCenterStatus.UP:
        raise DomainError("Cannot run VM. The relevant Data Center is not up.")
    for d in disks:
        sd = find_of_kind(tx.engine, "storage_domain", d.storage_domain_id)
        if sd is None or getattr(sd, "status", None) != StorageDomainStatus.ACTIVE:
            raise DomainError("Cannot run VM. Storage Domain is not active.")


def shutdown_vm(tx: Tx, vm_id: UUID, *, reason: str = "") -> None:
    vm = get_vm(tx, vm_id)
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot shutdown VM. VM is not running.")
    if vm.status not in (
        VmStatus.UP,
        VmStatus.POWERING_UP,
        VmStatus.REBOOT_IN_PROGRESS,
        VmStatus.PAUSED,
    ):
        raise _status_illegal("shutdown", vm)
    tx.emit(VmShutdownRequested, vm_id, reason=reason)


def stop_vm(tx: Tx, vm_id: UUID, *, reason: str = "") -> None:
    """Power off. A suspended VM loses its saved state and is down at once."""
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.SUSPENDED:
        tx.emit(VmSavedStateDiscarded, vm_id, reason=reason)
        return
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("stop")
    if vm.status == VmStatus.DOWN:
        raise DomainError("Cannot stop VM. VM is not running.")
    tx.emit(VmStopRequested, vm_id, reason=reason)


def reboot_vm(tx: Tx, vm_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot reboot VM. VM is not running.")
    if vm.status not in (VmStatus.UP, VmStatus.POWERING_UP):
        raise DomainError("Cannot reboot VM. VM is not up.")
    tx.emit(VmRebootRequested, vm_id)


def pause_vm(tx: Tx, vm_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot pause VM. VM is not running.")
    if vm.status not in (VmStatus.UP, VmStatus.POWERING_UP, VmStatus.REBOOT_IN_PROGRESS):
        raise _status_illegal("pause", vm)
    tx.emit(VmPauseRequested, vm_id)


def suspend_vm(tx: Tx, vm_id: UUID) -> None:
    """Hibernate: ``saving_state`` until the host reports ``suspended``."""
    vm = get_vm(tx, vm_id)
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot suspend VM. VM is not running.")
    if vm.status != VmStatus.UP:
        raise DomainError("Cannot suspend VM. VM is not up.")
    _check_not_snapshot_busy(vm, "suspend")
    if vm.stateless:
        raise DomainError(
            "Cannot suspend VM. The VM is running as Stateless. Please try again when VM is "
            "not running as Stateless."
        )
    tx.emit(VmSuspendRequested, vm_id)


def resume_vm(tx: Tx, vm_id: UUID, *, host_id: UUID | None = None) -> UUID | None:
    """Paused -> the host resumes it; suspended -> restored on a chosen host."""
    vm = get_vm(tx, vm_id)
    if vm.status not in (VmStatus.PAUSED, VmStatus.SUSPENDED):
        raise DomainError("Cannot resume VM. VM is not paused or suspended.")
    return start_vm(tx, vm_id, host_id=host_id)


def migrate_vm(tx: Tx, vm_id: UUID, *, host_id: UUID | None = None) -> UUID:
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.MIGRATING:
        raise DomainError("Cannot migrate VM. Migration is in progress.")
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot migrate VM. VM is not running.")
    if vm.status not in VM_MIGRATABLE:
        raise _status_illegal("migrate", vm)
    _check_not_snapshot_busy(vm, "migrate")
    assert vm.run_on_host_id is not None
    dest, scores = choose_host(
        tx, vm, action="migrate", requested=host_id, exclude=(vm.run_on_host_id,)
    )
    tx.emit(
        VmMigrationStarted,
        vm_id,
        source_host_id=vm.run_on_host_id,
        destination_host_id=dest,
        scores=scores,
    )
    return dest


def cancel_migration(tx: Tx, vm_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.MIGRATING:
        raise DomainError("Cannot cancel migration for VM. VM is not being migrated.")
    tx.emit(VmMigrationCanceled, vm_id)


def report_migration_done(tx: Tx, vm_id: UUID, *, host_id: UUID, downtime_ms: int = 0) -> None:
    """The destination host reports the VM running there."""
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.MIGRATING or vm.migrating_to_host_id != host_id:
        raise DomainError(f"VM {vm.name} is not migrating to host {host_id}.")
    if downtime_ms < 0:
        raise InvalidInput("downtime_ms must not be negative.", field="downtime_ms")
    assert vm.run_on_host_id is not None
    tx.emit(
        VmMigrated,
        vm_id,
        source_host_id=vm.run_on_host_id,
        destination_host_id=host_id,
        downtime_ms=downtime_ms,
    )


def report_migration_failed(tx: Tx, vm_id: UUID, *, reason: str = "") -> None:
    vm = get_vm(tx, vm_id)
    if vm.status != VmStatus.MIGRATING:
        raise DomainError(f"VM {vm.name} is not migrating.")
    tx.emit(VmMigrationFailed, vm_id, reason=reason)


def set_console_ticket(
    tx: Tx,
    vm_id: UUID,
    *,
    protocol: Graphics | None = None,
    expiry_seconds: int = CONSOLE_TICKET_SECONDS,
) -> tuple[Graphics, UUID, str]:
    """Records that a console password is set for the VM's graphics; returns (protocol,
    host, expires_at). The password is made and delivered by the command layer."""
    vm = get_vm(tx, vm_id)
    proto = Graphics(protocol) if protocol else vm.graphics
    if vm.graphics == Graphics.NONE or proto != vm.graphics:
        raise DomainError(
            f"Cannot set ticket VM. The VM has no {proto.value} console.", field="protocol"
        )
    if vm.status not in VM_ON_HOST or vm.status in (VmStatus.UNKNOWN, VmStatus.NOT_RESPONDING):
        raise DomainError("Cannot set ticket VM. VM is not running.")
    if not 1 <= expiry_seconds <= 86400:
        raise InvalidInput("expiry must be between 1 and 86400 seconds.", field="expiry")
    assert vm.run_on_host_id is not None
    expires_at = (tx.now + timedelta(seconds=expiry_seconds)).isoformat()
    tx.emit(
        VmConsoleTicketSet,
        vm_id,
        protocol=proto,
        expires_at=expires_at,
        host_id=vm.run_on_host_id,
    )
    return proto, vm.run_on_host_id, expires_at


# -- what the hosts report ------------------------------------------------------------

_R = VmStatus
# For each status: the statuses a host report may move the VM to.
REPORTABLE: dict[VmStatus, frozenset[VmStatus]] = {
    _R.WAIT_FOR_LAUNCH: frozenset(
        {_R.POWERING_UP, _R.UP, _R.PAUSED, _R.DOWN, _R.NOT_RESPONDING, _R.UNKNOWN}
    ),
    _R.POWERING_UP: frozenset(
        {
            _R.UP,
            _R.PAUSED,
            _R.DOWN,
            _R.POWERING_DOWN,
            _R.REBOOT_IN_PROGRESS,
            _R.NOT_RESPONDING,
            _R.UNKNOWN,
        }
    ),
    _R.UP: frozenset(
        {_R.PAUSED, _R.DOWN, _R.POWERING_DOWN, _R.REBOOT_IN_PROGRESS, _R.NOT_RESPONDING, _R.UNKNOWN}
    ),
    _R.POWERING_DOWN: frozenset({_R.DOWN, _R.UP, _R.PAUSED, _R.NOT_RESPONDING, _R.UNKNOWN}),
    _R.REBOOT_IN_PROGRESS: frozenset(
        {
            _R.UP,
            _R.POWERING_UP,
            _R.POWERING_DOWN,
            _R.PAUSED,
            _R.DOWN,
            _R.NOT_RESPONDING,
            _R.UNKNOWN,
        }
    ),
    _R.PAUSED: frozenset({_R.UP, _R.DOWN, _R.POWERING_DOWN, _R.NOT_RESPONDING, _R.UNKNOWN}),
    _R.MIGRATING: frozenset({_R.UP, _R.DOWN, _R.PAUSED, _R.NOT_RESPONDING, _R.UNKNOWN}),
    _R.NOT_RESPONDING: frozenset(
        {
            _R.UP,
            _R.POWERING_UP,
            _R.POWERING_DOWN,
            _R.PAUSED,
            _R.REBOOT_IN_PROGRESS,
            _R.DOWN,
            _R.UNKNOWN,
        }
    ),
    _R.UNKNOWN: frozenset(
        {
            _R.UP,
            _R.POWERING_UP,
            _R.POWERING_DOWN,
            _R.PAUSED,
            _R.REBOOT_IN_PROGRESS,
            _R.NOT_RESPONDING,
            _R.DOWN,
        }
    ),
    _R.SAVING_STATE: frozenset(
        {_R.SUSPENDED, _R.UP, _R.PAUSED, _R.DOWN, _R.NOT_RESPONDING, _R.UNKNOWN}
    ),
    _R.RESTORING_STATE: frozenset(
        {_R.UP, _R.POWERING_UP, _R.PAUSED, _R.DOWN, _R.NOT_RESPONDING, _R.UNKNOWN}
    ),
    _R.DOWN: frozenset(),
    _R.SUSPENDED: frozenset(),
    _R.IMAGE_LOCKED: frozenset(),
}


def report_vm_status(
    tx: Tx,
    vm_id: UUID,
    status: VmStatus,
    host_id: UUID,
    *,
    reason: str = "",
    exit_status: str = "",
    downtime_ms: int = 0,
) -> bool:
    """A host reports the VM's status; returns whether anything changed.

    Only a report from the VM's host (or, while migrating, its destination) counts, and
    only along the transitions of ``REPORTABLE``. A repeat of the current status changes
    nothing. While migrating: ``up`` from the destination completes the migration, ``up``
    from the source or ``down`` from the destination fails it.
    """
    vm = get_vm(tx, vm_id)
    status = VmStatus(status)
    if vm.status == VmStatus.MIGRATING and host_id == vm.migrating_to_host_id:
        if status == VmStatus.UP:
            report_migration_done(tx, vm_id, host_id=host_id, downtime_ms=downtime_ms)
            return True
        if status == VmStatus.DOWN:
            tx.emit(VmMigrationFailed, vm_id, reason=reason or "VM is down on the destination")
            return True
        if status == VmStatus.MIGRATING:
            return False
        raise DomainError(
            f"Cannot report VM {vm.name} as {status.value} from its migration destination."
        )
    if vm.run_on_host_id != host_id:
        raise DomainError(f"VM {vm.name} is not running on host {host_id}.", field="host")
    if status == vm.status:
        return False
    if status not in REPORTABLE[vm.status]:
        raise DomainError(
            f"VM {vm.name} cannot go from {vm.status.value} to {status.value}.", field="status"
        )
    if vm.status == VmStatus.MIGRATING and status == VmStatus.UP:
        tx.emit(VmMigrationFailed, vm_id, reason=reason or "VM is up on the source")
        return True
    if status == VmStatus.DOWN and not exit_status:
        exit_status = "normal" if vm.status == VmStatus.POWERING_DOWN else "error"
    tx.emit(
        VmStatusReported,
        vm_id,
        status=status,
        host_id=host_id,
        reason=reason,
        exit_status=exit_status,
    )
    if status == VmStatus.DOWN and _rerun(tx, vm, exit_status):
        return True
    if status == VmStatus.DOWN and vm.pool_id is not None:
        from domain.vmpool import vm_went_down

        vm_went_down(tx, vm.pool_id, vm_id, was=vm.status)
    return True


def _rerun(tx: Tx, vm: Vm, exit_status: str) -> bool:
    """A launch that failed is retried on another host, up to ``MAX_RERUNS`` hosts."""
    if vm.status != VmStatus.WAIT_FOR_LAUNCH or exit_status == "normal":
        return False
    if not vm.run_attempts or len(vm.run_attempts) >= MAX_RERUNS:
        return False
    try:
        host_id, scores = choose_host(tx, vm, action="run", exclude=vm.run_attempts)
    except DomainError:
        return False
    tx.emit(VmScheduled, vm.id, host_id=host_id, scores=scores, rerun=True)
    return True


def vms_on_host_unknown(tx: Tx, host_id: UUID) -> list[UUID]:
    """The host stopped answering: its VMs become unknown, and migrations to it fail."""
    touched = []
    for vm in sorted(tx.engine.all(Vm), key=lambda v: str(v.id)):
        if vm.run_on_host_id == host_id and vm.status in VM_ON_HOST:
            if vm.status != VmStatus.UNKNOWN:
                tx.emit(VmHostLost, vm.id, host_id=host_id)
                touched.append(vm.id)
        elif vm.migrating_to_host_id == host_id and vm.status == VmStatus.MIGRATING:
            tx.emit(VmMigrationFailed, vm.id, reason="The destination host is not responding")
            touched.append(vm.id)
    return touched


def vms_on_host_down(tx: Tx, host_id: UUID, *, reason: str = "") -> list[UUID]:
    """The host was fenced or confirmed rebooted: every VM it ran is down."""
    touched = []
    for vm in sorted(tx.engine.all(Vm), key=lambda v: str(v.id)):
        if vm.run_on_host_id == host_id and vm.status in VM_ON_HOST:
            tx.emit(VmMarkedDown, vm.id, host_id=host_id, reason=reason or "Host was rebooted")
            touched.append(vm.id)
            if vm.pool_id is not None:
                from domain.vmpool import vm_went_down

                vm_went_down(tx, vm.pool_id, vm.id, was=vm.status)
        elif vm.migrating_to_host_id == host_id and vm.status == VmStatus.MIGRATING:
            tx.emit(VmMigrationFailed, vm.id, reason="The destination host went down")
            touched.append(vm.id)
    return touched


def ha_restart_candidates(engine: Any) -> list[Vm]:
    """Highly available VMs that went down abnormally, highest priority first (for the HA
    policy, which restarts them with ``start_vm``)."""
    vms = [
        v
        for v in engine.all(Vm)
        if v.highly_available and v.status == VmStatus.DOWN and v.exit_status == "error"
    ]
    return sorted(vms, key=lambda v: (-v.ha_priority, v.name, str(v.id)))


def vms_running_on(engine: Any, host_id: UUID) -> list[Vm]:
    """VMs holding resources on the host (running there or migrating to it)."""
    return [
        v
        for v in engine.all(Vm)
        if v.status in VM_ON_HOST and host_id in (v.run_on_host_id, v.migrating_to_host_id)
    ]


# -- snapshots ------------------------------------------------------------------------


def _config_of(vm: Vm) -> SnapshotConfig:
    return SnapshotConfig(
        memory=vm.memory,
        cpu_sockets=vm.cpu_sockets,
        cpu_cores=vm.cpu_cores,
        cpu_threads=vm.cpu_threads,
        disk_ids=tuple(a.disk_id for a in vm.disk_attachments),
    )


def disk_layers(vm: Vm, disk_id: UUID) -> list[UUID]:
    """The volumes the VM's snapshots put on top of the disk's base volume, oldest first:
    one named after each regular snapshot covering it, then, while a snapshot covering it
    is in preview, the preview layer (named after the preview-type record)."""
    layers = [
        s.id
        for s in vm.snapshots
        if s.snapshot_type == SnapshotType.REGULAR and s.config and disk_id in s.config.disk_ids
    ]
    saved = next((s for s in vm.snapshots if s.snapshot_type == SnapshotType.PREVIEW), None)
    previewed = next((s for s in vm.snapshots if s.status == SnapshotStatus.IN_PREVIEW), None)
    if (
        saved is not None
        and previewed
        and previewed.config
        and disk_id in previewed.config.disk_ids
    ):
        layers.append(saved.id)
    return layers


def _get_snapshot(vm: Vm, snapshot_id: UUID) -> Snapshot:
    snap = vm.snapshot(snapshot_id)
    if snap is None:
        raise NotFound(f"Snapshot {snapshot_id} not found.", field="snapshot")
    return snap


def create_snapshot(
    tx: Tx,
    vm_id: UUID,
    *,
    description: str = "",
    persist_memory: bool = False,
    id: UUID | None = None,
) -> UUID:
    """A regular snapshot; ``locked`` until the host reports it taken (a VM without
    disks has nothing to wait for). Memory is kept only for a running VM."""
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("create", "Snapshot")
    _check_not_in_preview(vm, "create", "Snapshot")
    _check_not_snapshot_busy(vm, "create", "Snapshot")
    if vm.status not in (VmStatus.DOWN, VmStatus.UP, VmStatus.PAUSED):
        raise _status_illegal("create", vm, "Snapshot")
    disks = [tx.engine.find(Disk, a.disk_id) for a in vm.disk_attachments]
    locked = [d.name for d in disks if d is not None and d.status != DiskStatus.OK]
    if locked:
        raise DomainError(
            f"Cannot create Snapshot: The following disks are locked: {', '.join(locked)}. "
            "Please try again in a few minutes."
        )
    snap_id = tx.new_id(id)
    if vm.snapshot(snap_id) is not None:
        raise InvalidInput(f"Id {snap_id} is already in use.", field="id")
    has_disks = bool(vm.disk_attachments)
    snap = Snapshot(
        id=snap_id,
        description=description,
        snapshot_type=SnapshotType.REGULAR,
        status=SnapshotStatus.LOCKED if has_disks else SnapshotStatus.OK,
        persist_memory=persist_memory and vm.status != VmStatus.DOWN,
        created_at=tx.now.isoformat(),
        operation="create" if has_disks else "",
        config=_config_of(vm),
    )
    tx.emit(VmSnapshotAdded, vm_id, snapshot=snap)
    return snap_id


def report_snapshot(tx: Tx, vm_id: UUID, snapshot_id: UUID, *, ok: bool = True) -> None:
    """The host finished the snapshot's operation (create or remove)."""
    vm = get_vm(tx, vm_id)
    snap = _get_snapshot(vm, snapshot_id)
    if snap.status != SnapshotStatus.LOCKED:
        raise DomainError(f"Snapshot {snapshot_id} has no operation in progress.")
    if snap.operation == "create":
        tx.emit(VmSnapshotSettled, vm_id, snapshot_id=snapshot_id, removed=not ok, failed=not ok)
    else:  # remove: a failed merge leaves the snapshot as it was
        tx.emit(VmSnapshotSettled, vm_id, snapshot_id=snapshot_id, removed=ok, failed=not ok)


def remove_snapshot(tx: Tx, vm_id: UUID, snapshot_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    snap = _get_snapshot(vm, snapshot_id)
    if snap.snapshot_type != SnapshotType.REGULAR:
        raise DomainError("Cannot remove Snapshot. The Active VM snapshot cannot be removed.")
    _check_not_in_preview(vm, "remove", "Snapshot")
    _check_not_snapshot_busy(vm, "remove", "Snapshot")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("remove", "Snapshot")
    if vm.status not in (VmStatus.DOWN, VmStatus.UP, VmStatus.PAUSED):
        raise _status_illegal("remove", vm, "Snapshot")
    if vm.disk_attachments:
        tx.emit(VmSnapshotRemoveStarted, vm_id, snapshot_id=snapshot_id)
    else:
        tx.emit(VmSnapshotSettled, vm_id, snapshot_id=snapshot_id, removed=True)


def preview_snapshot(tx: Tx, vm_id: UUID, snapshot_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    snap = _get_snapshot(vm, snapshot_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked("preview", "Snapshot")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot preview Snapshot. At least one of the VMs is not down.")
    _check_not_in_preview(vm, "preview", "Snapshot")
    _check_not_snapshot_busy(vm, "preview", "Snapshot")
    if snap.snapshot_type != SnapshotType.REGULAR:
        raise DomainError("Cannot preview Snapshot. The Active VM snapshot cannot be previewed.")
    saved = Snapshot(
        id=tx.new_id(),
        description="Active VM before the preview",
        snapshot_type=SnapshotType.PREVIEW,
        status=SnapshotStatus.OK,
        created_at=tx.now.isoformat(),
        config=_config_of(vm),
    )
    tx.emit(VmSnapshotPreviewed, vm_id, snapshot_id=snapshot_id, saved=saved, config=snap.config)


def _previewed(vm: Vm, action: str) -> tuple[Snapshot, Snapshot]:
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise _locked(action, "Snapshot")
    if vm.status != VmStatus.DOWN:
        raise DomainError(f"Cannot {action} Snapshot. At least one of the VMs is not down.")
    snap = next((s for s in vm.snapshots if s.status == SnapshotStatus.IN_PREVIEW), None)
    saved = next((s for s in vm.snapshots if s.snapshot_type == SnapshotType.PREVIEW), None)
    if snap is None or saved is None:
        raise DomainError(f"Cannot {action} Snapshot. VM is not previewing a Snapshot.")
    return snap, saved


def commit_snapshot(tx: Tx, vm_id: UUID) -> None:
    """Keeps the previewed state; the snapshots taken after the previewed one go."""
    vm = get_vm(tx, vm_id)
    snap, saved = _previewed(vm, "commit")
    regular = [s for s in vm.snapshots if s.snapshot_type == SnapshotType.REGULAR]
    later = [s.id for s in regular[regular.index(snap) + 1 :]]
    tx.emit(VmSnapshotCommitted, vm_id, snapshot_id=snap.id, removed_ids=(*later, saved.id))


def undo_snapshot(tx: Tx, vm_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    snap, saved = _previewed(vm, "undo")
    tx.emit(VmSnapshotUndone, vm_id, snapshot_id=snap.id, saved_id=saved.id, config=saved.config)


__all__ = [
    "BLANK_TEMPLATE_ID",
    "DiskAttachment",
    "Nic",
    "Snapshot",
    "Vm",
    "add_vm",
    "remove_vm",
    "report_vm_status",
    "start_vm",
    "update_vm",
    "vms_on_host_down",
    "vms_on_host_unknown",
]
