"""A VM's definition across clusters, templates, disks, profiles and permissions:
adding (from a template, its disks copied), editing (placement and vNIC profiles
checked), removal (its disks, permissions, tags and affinity memberships go with it),
NICs, attaching and adding disks, snapshots, and the host's report that its images are
ready.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.affinity import drop_member
from domain.base import DomainError, InvalidInput, NotFound, Tx
from domain.disk import Disk
from domain.network import LogicalNetwork, VnicProfile
from domain.permission import remove_object_permissions
from domain.rules.access_rules import grant_owner, is_permitted
from domain.rules.cluster_rules import cluster_dc
from domain.rules.disk_rules import (
    add_disk,
    remove_disk_unchecked,
    require_active_data_domain,
    storage_domain_dc,
    template_disk_attachments,
)
from domain.rules.vm_run_rules import check_placement
from domain.statuses import DiskStatus, SnapshotStatus, TemplateStatus, VmStatus
from domain.tag import detach_everywhere
from domain.template import Template
from domain.values import (
    BLANK_TEMPLATE_ID,
    DiskAttachment,
    DiskInterface,
    Graphics,
    Nic,
    NicInterface,
    SnapshotType,
    VmType,
)
from domain.vm import (
    HOTPLUG_INTERFACES,
    Snapshot,
    Vm,
    VmAdded,
    VmDiskAttached,
    VmImagesReady,
    VmNicAdded,
    VmNicUpdated,
    VmRemoved,
    VmSnapshotAdded,
    VmUpdated,
    allocate_mac,
    check_custom_properties,
    check_not_in_preview,
    check_not_snapshot_busy,
    check_numbers,
    check_vcpus,
    get_nic,
    get_vm,
    locked_error,
    macs_in_use,
    snapshot_config_of,
    status_illegal_error,
)


def _check_profile(tx: Tx, action: str, profile_id: UUID | None, vm: Vm) -> None:
    if profile_id is None:
        return  # an empty profile: the NIC is not connected to any network
    profile = tx.engine.find(VnicProfile, profile_id)
    if profile is None:
        raise NotFound(f"VNIC Profile {profile_id} not found.", field="vnic_profile")
    net = tx.engine.find(LogicalNetwork, profile.network_id)
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
    check_vcpus("add", sockets, cores, threads)
    check_placement(tx, "add", cluster_id, placement_host_id)
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


def _grant_creator(tx: Tx, vm_id: UUID, cluster_id: UUID, pool_id: UUID | None) -> None:
    """The creator of a VM becomes its UserVmManager, as oVirt's AddVm does: unless the VM
    is a pool's (the pool hands it out) or the creator may manage permissions on it
    already (an administrator of its cluster or above, who needs no explicit grant)."""

    actor = tx.ctx.meta.actor_id
    if actor is None or pool_id is not None:
        return
    if is_permitted(tx.engine, actor, "manipulate_permissions", "cluster", cluster_id):
        return
    grant_owner(tx, actor, "vm", vm_id)


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
        raise locked_error("update")
    if vm.snapshot_locked():
        check_not_snapshot_busy(vm, "update")
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
    check_vcpus(
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
        check_placement(
            tx, "update", cluster_id, fields.get("placement_host_id", vm.placement_host_id)
        )
    tx.emit(VmUpdated, vm_id, **fields)


def remove_vm(tx: Tx, vm_id: UUID, *, remove_disks: bool = True, force: bool = False) -> None:
    """Removes a down VM and, unless ``remove_disks`` is false, its non-shareable disks.

    ``force`` lets the pool remove its own VMs.
    """
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("remove")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot remove VM. VM is running.")
    check_not_snapshot_busy(vm, "remove")
    check_not_in_preview(vm, "remove")
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

    drop_member(tx, vm_id)
    detach_everywhere(tx, vm_id)
    remove_object_permissions(tx, vm_id)


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
        raise locked_error("add", "Network Interface")
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
    nic = get_nic(vm, nic_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("update", "Network Interface")
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


def attach_disk(
    tx: Tx,
    vm_id: UUID,
    disk_id: UUID,
    *,
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI,
    bootable: bool = False,
    active: bool = True,
) -> None:

    vm = get_vm(tx, vm_id)
    disk = tx.engine.get(Disk, disk_id, field="disk")
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("attach", "Disk")
    check_not_in_preview(vm, "attach", "Disk")
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
    if vm.status != VmStatus.DOWN and active and interface not in HOTPLUG_INTERFACES:
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
    """Creates a disk (see ``disk_rules.add_disk``) and attaches it to the VM, as
    oVirt's POST /vms/{id}/diskattachments does; the disk is locked until created."""

    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("add", "Disk")
    check_not_in_preview(vm, "add", "Disk")
    if bootable and any(a.bootable for a in vm.disk_attachments):
        raise DomainError(
            "Cannot add Disk. Disk boot is already in use by another disk.", field="bootable"
        )
    if vm.status != VmStatus.DOWN and active and interface not in HOTPLUG_INTERFACES:
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
        raise locked_error("create", "Snapshot")
    check_not_in_preview(vm, "create", "Snapshot")
    check_not_snapshot_busy(vm, "create", "Snapshot")
    if vm.status not in (VmStatus.DOWN, VmStatus.UP, VmStatus.PAUSED):
        raise status_illegal_error("create", vm, "Snapshot")
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
        config=snapshot_config_of(vm),
    )
    tx.emit(VmSnapshotAdded, vm_id, snapshot=snap)
    return snap_id


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


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
