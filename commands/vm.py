"""VM commands: configuration, NICs, disk attachments, the run flow, host reports, snapshots."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.credentials import CONSOLE_TICKETS, new_console_password
from commands.messages import Command, ShortText
from commands.registry import handles
from domain import values, vm
from domain.base import Tx
from domain.disk import DiskFormat
from domain.rules import vm_rules, vm_run_rules
from domain.statuses import VmStatus
from domain.values import DiskInterface, Graphics, NicInterface, VmType

VmName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\w.\-]+$")]
NicName = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"^[\w.\-]+$")]
SnapshotDescription = Annotated[str, msgspec.Meta(max_length=4000)]
Memory = Annotated[int, msgspec.Meta(ge=vm.MIN_MEMORY, le=vm.MAX_MEMORY)]
CpuCount = Annotated[int, msgspec.Meta(ge=1, le=vm.MAX_CPU_COUNT)]
HaPriority = Annotated[int, msgspec.Meta(ge=0, le=vm.MAX_HA_PRIORITY)]
OsType = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
PropertyValue = Annotated[str, msgspec.Meta(max_length=1000)]
# Keys are checked by the domain (a bad key names the field ``custom_properties``).
CustomProperties = Annotated[dict[str, PropertyValue], msgspec.Meta(max_length=64)]
CdromFile = Annotated[str, msgspec.Meta(max_length=1024)]
Mac = Annotated[str, msgspec.Meta(pattern=r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")]
Reason = Annotated[str, msgspec.Meta(max_length=1000)]
DiskAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
DiskSize = Annotated[int, msgspec.Meta(gt=0, le=1 << 50)]


# -- configuration ------------------------------------------------------------------------


class AddVm(Command, frozen=True, kw_only=True):
    name: VmName
    cluster_id: UUID
    template_id: UUID = values.BLANK_TEMPLATE_ID
    description: ShortText = ""
    memory: Memory | None = None
    cpu_sockets: CpuCount | None = None
    cpu_cores: CpuCount | None = None
    cpu_threads: CpuCount | None = None
    os_type: OsType | None = None
    vm_type: VmType | None = None
    stateless: bool | None = None
    highly_available: bool | None = None
    ha_priority: HaPriority | None = None
    custom_properties: CustomProperties = {}
    cdrom_file: CdromFile | None = None
    graphics: Graphics | None = None
    placement_host_id: UUID | None = None
    clone: bool = False
    storage_domain_id: UUID | None = None
    id: UUID | None = None


class UpdateVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    name: VmName | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    cluster_id: UUID | UnsetType = UNSET
    memory: Memory | UnsetType = UNSET
    cpu_sockets: CpuCount | UnsetType = UNSET
    cpu_cores: CpuCount | UnsetType = UNSET
    cpu_threads: CpuCount | UnsetType = UNSET
    os_type: OsType | UnsetType = UNSET
    vm_type: VmType | UnsetType = UNSET
    stateless: bool | UnsetType = UNSET
    highly_available: bool | UnsetType = UNSET
    ha_priority: HaPriority | UnsetType = UNSET
    custom_properties: CustomProperties | UnsetType = UNSET
    cdrom_file: CdromFile | UnsetType | None = UNSET
    graphics: Graphics | UnsetType = UNSET
    placement_host_id: UUID | UnsetType | None = UNSET


class RemoveVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    detach_only: bool = False  # keep the disks (oVirt's detach_only)


class ReportVmImagesReady(Command, frozen=True, kw_only=True):
    vm_id: UUID


@handles(AddVm)
def _add_vm(tx: Tx, c: AddVm) -> UUID:
    return vm_rules.add_vm(
        tx,
        name=c.name,
        cluster_id=c.cluster_id,
        template_id=c.template_id,
        description=c.description,
        memory=c.memory,
        cpu_sockets=c.cpu_sockets,
        cpu_cores=c.cpu_cores,
        cpu_threads=c.cpu_threads,
        os_type=c.os_type,
        vm_type=c.vm_type,
        stateless=c.stateless,
        highly_available=c.highly_available,
        ha_priority=c.ha_priority,
        custom_properties=c.custom_properties,
        cdrom_file=c.cdrom_file,
        graphics=c.graphics,
        placement_host_id=c.placement_host_id,
        clone=c.clone,
        storage_domain_id=c.storage_domain_id,
        id=c.id,
    )


_UPDATE_FIELDS = [f for f in vm.VmUpdated.__struct_fields__ if f in UpdateVm.__struct_fields__]


@handles(UpdateVm)
def _update_vm(tx: Tx, c: UpdateVm) -> None:
    vm_rules.update_vm(tx, c.vm_id, **{f: getattr(c, f) for f in _UPDATE_FIELDS})


@handles(RemoveVm)
def _remove_vm(tx: Tx, c: RemoveVm) -> None:
    vm_rules.remove_vm(tx, c.vm_id, remove_disks=not c.detach_only)


@handles(ReportVmImagesReady)
def _images_ready(tx: Tx, c: ReportVmImagesReady) -> None:
    vm_rules.report_vm_images_ready(tx, c.vm_id)


# -- NICs ---------------------------------------------------------------------------------


class AddVmNic(Command, frozen=True, kw_only=True):
    vm_id: UUID
    name: NicName
    vnic_profile_id: UUID | None = None
    interface: NicInterface = NicInterface.VIRTIO
    mac: Mac | None = None
    linked: bool = True
    id: UUID | None = None


class UpdateVmNic(Command, frozen=True, kw_only=True):
    vm_id: UUID
    nic_id: UUID
    name: NicName | UnsetType = UNSET
    vnic_profile_id: UUID | UnsetType | None = UNSET
    interface: NicInterface | UnsetType = UNSET
    mac: Mac | UnsetType = UNSET
    linked: bool | UnsetType = UNSET


class RemoveVmNic(Command, frozen=True, kw_only=True):
    vm_id: UUID
    nic_id: UUID


@handles(AddVmNic)
def _add_nic(tx: Tx, c: AddVmNic) -> UUID:
    return vm_rules.add_nic(
        tx,
        c.vm_id,
        name=c.name,
        vnic_profile_id=c.vnic_profile_id,
        interface=c.interface,
        mac=c.mac,
        linked=c.linked,
        id=c.id,
    )


@handles(UpdateVmNic)
def _update_nic(tx: Tx, c: UpdateVmNic) -> None:
    vm_rules.update_nic(
        tx,
        c.vm_id,
        c.nic_id,
        name=c.name,
        vnic_profile_id=c.vnic_profile_id,
        interface=c.interface,
        mac=c.mac,
        linked=c.linked,
    )


@handles(RemoveVmNic)
def _remove_nic(tx: Tx, c: RemoveVmNic) -> None:
    vm.remove_nic(tx, c.vm_id, c.nic_id)


# -- disk attachments ---------------------------------------------------------------------


class AttachDisk(Command, frozen=True, kw_only=True):
    vm_id: UUID
    disk_id: UUID
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI
    bootable: bool = False
    active: bool = True


class AddVmDisk(Command, frozen=True, kw_only=True):
    """Creates a disk and attaches it (POST /vms/{id}/diskattachments with a new disk)."""

    vm_id: UUID
    name: DiskAlias
    provisioned_size: DiskSize
    storage_domain_id: UUID
    format: DiskFormat = DiskFormat.COW
    sparse: bool = True
    description: ShortText = ""
    shareable: bool = False
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI
    bootable: bool = False
    active: bool = True
    id: UUID | None = None


class UpdateDiskAttachment(Command, frozen=True, kw_only=True):
    vm_id: UUID
    disk_id: UUID
    interface: DiskInterface | UnsetType = UNSET
    bootable: bool | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class DetachDisk(Command, frozen=True, kw_only=True):
    vm_id: UUID
    disk_id: UUID


@handles(AttachDisk)
def _attach(tx: Tx, c: AttachDisk) -> None:
    vm_rules.attach_disk(
        tx, c.vm_id, c.disk_id, interface=c.interface, bootable=c.bootable, active=c.active
    )


@handles(AddVmDisk)
def _add_vm_disk(tx: Tx, c: AddVmDisk) -> UUID:
    return vm_rules.add_disk_to_vm(
        tx,
        c.vm_id,
        interface=c.interface,
        bootable=c.bootable,
        active=c.active,
        name=c.name,
        provisioned_size=c.provisioned_size,
        storage_domain_id=c.storage_domain_id,
        format=c.format,
        sparse=c.sparse,
        description=c.description,
        shareable=c.shareable,
        id=c.id,
    )


@handles(UpdateDiskAttachment)
def _update_attachment(tx: Tx, c: UpdateDiskAttachment) -> None:
    vm.update_disk_attachment(
        tx, c.vm_id, c.disk_id, interface=c.interface, bootable=c.bootable, active=c.active
    )


@handles(DetachDisk)
def _detach(tx: Tx, c: DetachDisk) -> None:
    vm.detach_disk(tx, c.vm_id, c.disk_id)


# -- the run flow -------------------------------------------------------------------------


class StartVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    host_id: UUID | None = None
    paused: bool = False


class ShutdownVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    reason: Reason = ""


class StopVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    reason: Reason = ""


class RebootVm(Command, frozen=True, kw_only=True):
    vm_id: UUID


class PauseVm(Command, frozen=True, kw_only=True):
    vm_id: UUID


class SuspendVm(Command, frozen=True, kw_only=True):
    vm_id: UUID


class ResumeVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    host_id: UUID | None = None


class MigrateVm(Command, frozen=True, kw_only=True):
    vm_id: UUID
    host_id: UUID | None = None


class CancelVmMigration(Command, frozen=True, kw_only=True):
    vm_id: UUID


class SetVmConsoleTicket(Command, frozen=True, kw_only=True):
    vm_id: UUID
    protocol: Graphics | None = None
    expiry: Annotated[int, msgspec.Meta(ge=1, le=86400)] = vm.CONSOLE_TICKET_SECONDS


@handles(StartVm)
def _start(tx: Tx, c: StartVm) -> UUID | None:
    return vm_run_rules.start_vm(tx, c.vm_id, host_id=c.host_id, paused=c.paused)


@handles(ShutdownVm)
def _shutdown(tx: Tx, c: ShutdownVm) -> None:
    vm.shutdown_vm(tx, c.vm_id, reason=c.reason)


@handles(StopVm)
def _stop(tx: Tx, c: StopVm) -> None:
    vm.stop_vm(tx, c.vm_id, reason=c.reason)


@handles(RebootVm)
def _reboot(tx: Tx, c: RebootVm) -> None:
    vm.reboot_vm(tx, c.vm_id)


@handles(PauseVm)
def _pause(tx: Tx, c: PauseVm) -> None:
    vm.pause_vm(tx, c.vm_id)


@handles(SuspendVm)
def _suspend(tx: Tx, c: SuspendVm) -> None:
    vm.suspend_vm(tx, c.vm_id)


@handles(ResumeVm)
def _resume(tx: Tx, c: ResumeVm) -> UUID | None:
    return vm_run_rules.resume_vm(tx, c.vm_id, host_id=c.host_id)


@handles(MigrateVm)
def _migrate(tx: Tx, c: MigrateVm) -> UUID:
    return vm_run_rules.migrate_vm(tx, c.vm_id, host_id=c.host_id)


@handles(CancelVmMigration)
def _cancel_migration(tx: Tx, c: CancelVmMigration) -> None:
    vm.cancel_migration(tx, c.vm_id)


@handles(SetVmConsoleTicket)
def _ticket(tx: Tx, c: SetVmConsoleTicket) -> dict[str, str]:
    """The password is made here and handed to the HostLink (which sets it on the host)
    and to the caller; the event records only protocol, host and expiry."""
    proto, _host, expires = vm.set_console_ticket(
        tx, c.vm_id, protocol=c.protocol, expiry_seconds=c.expiry
    )
    password = new_console_password(proto)
    CONSOLE_TICKETS.put(c.vm_id, tx.events[-1].originator_version, password, c.expiry)
    return {"ticket": password, "expires_at": expires}


# -- what hosts report --------------------------------------------------------------------


class ReportVmStatus(Command, frozen=True, kw_only=True):
    vm_id: UUID
    host_id: UUID
    status: VmStatus
    reason: Reason = ""
    exit_status: Annotated[str, msgspec.Meta(pattern=r"^(|normal|error)$")] = ""
    downtime_ms: Annotated[int, msgspec.Meta(ge=0)] = 0


class ReportVmMigrationDone(Command, frozen=True, kw_only=True):
    vm_id: UUID
    host_id: UUID
    downtime_ms: Annotated[int, msgspec.Meta(ge=0)] = 0


class ReportVmMigrationFailed(Command, frozen=True, kw_only=True):
    vm_id: UUID
    reason: Reason = ""


@handles(ReportVmStatus)
def _report_status(tx: Tx, c: ReportVmStatus) -> bool:
    return vm_run_rules.report_vm_status(
        tx,
        c.vm_id,
        c.status,
        c.host_id,
        reason=c.reason,
        exit_status=c.exit_status,
        downtime_ms=c.downtime_ms,
    )


@handles(ReportVmMigrationDone)
def _migration_done(tx: Tx, c: ReportVmMigrationDone) -> None:
    vm.report_migration_done(tx, c.vm_id, host_id=c.host_id, downtime_ms=c.downtime_ms)


@handles(ReportVmMigrationFailed)
def _migration_failed(tx: Tx, c: ReportVmMigrationFailed) -> None:
    vm.report_migration_failed(tx, c.vm_id, reason=c.reason)


# -- snapshots ----------------------------------------------------------------------------


class AddSnapshot(Command, frozen=True, kw_only=True):
    vm_id: UUID
    description: SnapshotDescription = ""
    persist_memory: bool = False
    id: UUID | None = None


class ReportSnapshot(Command, frozen=True, kw_only=True):
    vm_id: UUID
    snapshot_id: UUID
    ok: bool = True


class RemoveSnapshot(Command, frozen=True, kw_only=True):
    vm_id: UUID
    snapshot_id: UUID


class PreviewSnapshot(Command, frozen=True, kw_only=True):
    vm_id: UUID
    snapshot_id: UUID


class CommitSnapshot(Command, frozen=True, kw_only=True):
    vm_id: UUID


class UndoSnapshot(Command, frozen=True, kw_only=True):
    vm_id: UUID


@handles(AddSnapshot)
def _add_snapshot(tx: Tx, c: AddSnapshot) -> UUID:
    return vm_rules.create_snapshot(
        tx, c.vm_id, description=c.description, persist_memory=c.persist_memory, id=c.id
    )


@handles(ReportSnapshot)
def _report_snapshot(tx: Tx, c: ReportSnapshot) -> None:
    vm.report_snapshot(tx, c.vm_id, c.snapshot_id, ok=c.ok)


@handles(RemoveSnapshot)
def _remove_snapshot(tx: Tx, c: RemoveSnapshot) -> None:
    vm.remove_snapshot(tx, c.vm_id, c.snapshot_id)


@handles(PreviewSnapshot)
def _preview(tx: Tx, c: PreviewSnapshot) -> None:
    vm.preview_snapshot(tx, c.vm_id, c.snapshot_id)


@handles(CommitSnapshot)
def _commit(tx: Tx, c: CommitSnapshot) -> None:
    vm.commit_snapshot(tx, c.vm_id)


@handles(UndoSnapshot)
def _undo(tx: Tx, c: UndoSnapshot) -> None:
    vm.undo_snapshot(tx, c.vm_id)
