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
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, InvalidInput, NotFound, Tx, upcaster
from domain.statuses import (
    VM_ON_HOST,
    SnapshotStatus,
    VmStatus,
)
from domain.values import (
    BLANK_TEMPLATE_ID,
    DiskAttachment,
    DiskInterface,
    GiB,
    Graphics,
    MiB,
    Nic,
    NicInterface,
    SnapshotType,
    VmType,
)

MIN_MEMORY = MiB
MAX_MEMORY = 16 << 40  # 16 TiB
MAX_VCPUS = 384
MAX_CPU_COUNT = 384
MAX_HA_PRIORITY = 100
CONSOLE_TICKET_SECONDS = 120
MAC_PREFIX = "56:6f"
MAX_RERUNS = 3  # oVirt's MaxRerunVmOnVdsCount
_PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")


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


def locked_error(action: str, type_: str = "VM") -> DomainError:
    return DomainError(f"Cannot {action} {type_}: VM is locked. Please try again in a few minutes.")


def status_illegal_error(action: str, vm: Vm, type_: str = "VM") -> DomainError:
    return DomainError(
        f"Cannot {action} {type_} because the VM is in {_status_text(vm.status)} status."
    )


def _status_text(status: VmStatus) -> str:
    return status.value.replace("_", " ").title().replace(" ", "")


def check_not_snapshot_busy(vm: Vm, action: str, type_: str = "VM") -> None:
    if vm.snapshot_locked():
        raise DomainError(
            f"Cannot {action} {type_}. The VM is performing an operation on a Snapshot. "
            "Please wait for the operation to finish, and try again."
        )


def check_not_in_preview(vm: Vm, action: str, type_: str = "VM") -> None:
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


def check_vcpus(action: str, sockets: int, cores: int, threads: int) -> None:
    if sockets * cores * threads > MAX_VCPUS:
        raise DomainError(
            f"Cannot {action} VM. Max number of CPUs exceeded ({MAX_VCPUS}).", field="cpu_sockets"
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


# -- add / update / remove --------------------------------------------------------------


# -- NICs -------------------------------------------------------------------------------


def get_nic(vm: Vm, nic_id: UUID) -> Nic:
    nic = next((n for n in vm.nics if n.id == nic_id), None)
    if nic is None:
        raise NotFound(f"Network Interface {nic_id} not found.", field="nic")
    return nic


def remove_nic(tx: Tx, vm_id: UUID, nic_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    nic = get_nic(vm, nic_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("remove", "Network Interface")
    if vm.status != VmStatus.DOWN and nic.interface != NicInterface.VIRTIO:
        raise DomainError("Cannot remove Network Interface. VM is running.")
    tx.emit(VmNicRemoved, vm_id, nic_id=nic_id)


# -- disk attachments -------------------------------------------------------------------

HOTPLUG_INTERFACES = frozenset(
    {DiskInterface.VIRTIO, DiskInterface.VIRTIO_SCSI, DiskInterface.SATA}
)


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
        raise locked_error("update", "Disk")
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
        if vm.status != VmStatus.DOWN and iface not in HOTPLUG_INTERFACES:
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
        raise locked_error("detach", "Disk")
    check_not_in_preview(vm, "detach", "Disk")
    check_not_snapshot_busy(vm, "detach", "Disk")
    if vm.status != VmStatus.DOWN and att.active:
        raise DomainError("Cannot detach Disk. The disk is plugged into a running VM.")
    tx.emit(VmDiskDetached, vm_id, disk_id=disk_id)


def detach_disk_unchecked(tx: Tx, vm_id: UUID, disk_id: UUID) -> None:
    tx.emit(VmDiskDetached, vm_id, disk_id=disk_id)


# -- running ----------------------------------------------------------------------------


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
        raise status_illegal_error("shutdown", vm)
    tx.emit(VmShutdownRequested, vm_id, reason=reason)


def stop_vm(tx: Tx, vm_id: UUID, *, reason: str = "") -> None:
    """Power off. A suspended VM loses its saved state and is down at once."""
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.SUSPENDED:
        tx.emit(VmSavedStateDiscarded, vm_id, reason=reason)
        return
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("stop")
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
        raise status_illegal_error("pause", vm)
    tx.emit(VmPauseRequested, vm_id)


def suspend_vm(tx: Tx, vm_id: UUID) -> None:
    """Hibernate: ``saving_state`` until the host reports ``suspended``."""
    vm = get_vm(tx, vm_id)
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot suspend VM. VM is not running.")
    if vm.status != VmStatus.UP:
        raise DomainError("Cannot suspend VM. VM is not up.")
    check_not_snapshot_busy(vm, "suspend")
    if vm.stateless:
        raise DomainError(
            "Cannot suspend VM. The VM is running as Stateless. Please try again when VM is "
            "not running as Stateless."
        )
    tx.emit(VmSuspendRequested, vm_id)


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


def snapshot_config_of(vm: Vm) -> SnapshotConfig:
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
    check_not_in_preview(vm, "remove", "Snapshot")
    check_not_snapshot_busy(vm, "remove", "Snapshot")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("remove", "Snapshot")
    if vm.status not in (VmStatus.DOWN, VmStatus.UP, VmStatus.PAUSED):
        raise status_illegal_error("remove", vm, "Snapshot")
    if vm.disk_attachments:
        tx.emit(VmSnapshotRemoveStarted, vm_id, snapshot_id=snapshot_id)
    else:
        tx.emit(VmSnapshotSettled, vm_id, snapshot_id=snapshot_id, removed=True)


def preview_snapshot(tx: Tx, vm_id: UUID, snapshot_id: UUID) -> None:
    vm = get_vm(tx, vm_id)
    snap = _get_snapshot(vm, snapshot_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("preview", "Snapshot")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot preview Snapshot. At least one of the VMs is not down.")
    check_not_in_preview(vm, "preview", "Snapshot")
    check_not_snapshot_busy(vm, "preview", "Snapshot")
    if snap.snapshot_type != SnapshotType.REGULAR:
        raise DomainError("Cannot preview Snapshot. The Active VM snapshot cannot be previewed.")
    saved = Snapshot(
        id=tx.new_id(),
        description="Active VM before the preview",
        snapshot_type=SnapshotType.PREVIEW,
        status=SnapshotStatus.OK,
        created_at=tx.now.isoformat(),
        config=snapshot_config_of(vm),
    )
    tx.emit(VmSnapshotPreviewed, vm_id, snapshot_id=snapshot_id, saved=saved, config=snap.config)


def _previewed(vm: Vm, action: str) -> tuple[Snapshot, Snapshot]:
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error(action, "Snapshot")
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
    "vms_on_host_unknown",
]
