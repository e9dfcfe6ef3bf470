"""The compute collections: VMs (with their disk attachments, nics, snapshots, CD-ROMs,
consoles and statistics), templates and VM pools."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from api.collections.common import (
    dc_of_cluster,
    first_sd,
    ref_name,
    statistics_sub,
    tag_names,
    tags_sub,
)
from api.http import BASE
from api.schema import (
    MISSING,
    Input,
    Resource,
    Shows,
    Sub,
    attr,
    attrs,
    child,
    current_user,
    dig,
    first_of,
    fixed,
    flag,
    flags,
    ident,
    link_to,
    nested,
    number,
    numbers,
    ref,
    text,
    texts,
    when,
    within,
)
from commands.template import AddTemplate, RemoveTemplate, UpdateTemplate
from commands.vm import (
    AddSnapshot,
    AddVm,
    AddVmDisk,
    AddVmNic,
    AttachDisk,
    CancelVmMigration,
    CommitSnapshot,
    DetachDisk,
    MigrateVm,
    PreviewSnapshot,
    RebootVm,
    RemoveSnapshot,
    RemoveVm,
    RemoveVmNic,
    SetVmConsoleTicket,
    ShutdownVm,
    StartVm,
    StopVm,
    SuspendVm,
    UndoSnapshot,
    UpdateDiskAttachment,
    UpdateVm,
    UpdateVmNic,
)
from commands.vmpool import AddVmPool, AllocateVm, RemoveVmPool, UpdateVmPool
from domain.template import Template
from domain.vm import Vm
from domain.vmpool import VmPool


def _vm_items(name: str) -> Callable[[Any, Any], Iterable[Any]]:
    return lambda o, reads: getattr(o, name, ()) or ()


def _disk_attachment_href(o: Any) -> Any:
    return {"href": f"{BASE}/disks/{o.disk_id}", "id": str(o.disk_id)}


_NIC_INPUT = {
    **texts("name", "interface"),
    "mac": text("mac.address"),
    "vnic_profile_id": ref("vnic_profile", "vnicprofiles"),
    "linked": flag("linked"),
}

VM_NICS = Sub(
    "nics",
    "embedded",
    tag="nic",
    items=_vm_items("nics"),
    fields=[
        *attrs("name", "interface"),
        ("mac", nested(address=attr("mac"))),
        ("vnic_profile", link_to("vnicprofiles", "vnic_profile_id")),
        *attrs("plugged", "linked"),
    ],
    add=Input(AddVmNic, _NIC_INPUT, parent_field="vm_id"),
    update=Input(UpdateVmNic, _NIC_INPUT, parent_field="vm_id", item_field="nic_id"),
    remove=Input(RemoveVmNic, parent_field="vm_id", item_field="nic_id"),
)

# How a disk is attached (given when attaching, creating-and-attaching, or updating).
_ATTACHMENT_INPUT = {"interface": text("interface"), **flags("bootable", "active")}

VM_DISK_ATTACHMENTS = Sub(
    "diskattachments",
    "embedded",
    tag="disk_attachment",
    tags="disk_attachments",
    items=lambda o, reads: [_Keyed(a, a.disk_id) for a in getattr(o, "disk_attachments", ())],
    fields=[
        ("disk", _disk_attachment_href),
        *attrs("interface", "bootable", "active"),
        ("pass_discard", fixed(False)),
        ("read_only", fixed(False)),
        ("uses_scsi_reservation", fixed(False)),
    ],
    add=Input(
        AttachDisk,
        {"disk_id": ref("disk", "disks"), **_ATTACHMENT_INPUT},
        parent_field="vm_id",
        choose=lambda body: (
            _ADD_VM_DISK
            if isinstance(dig(body, "disk"), dict) and not dig(body, "disk").get("id")
            else None
        ),
    ),
    update=Input(
        UpdateDiskAttachment,
        _ATTACHMENT_INPUT,
        parent_field="vm_id",
        item_field="disk_id",
    ),
    remove=Input(DetachDisk, parent_field="vm_id", item_field="disk_id"),
)


def _first_sd_of_disks(body: Any, env: Any) -> Any:
    """A VM's target storage domain: from its first disk attachment's disk."""
    das = dig(body, "disk_attachments.disk_attachment")
    if isinstance(das, list):
        das = das[0] if das else MISSING
    if not isinstance(das, dict):
        return MISSING
    return first_sd(das.get("disk", {}), env)


# A disk given inline (no id) in a disk attachment: created and attached in one command.
_ADD_VM_DISK: Input = Input(
    AddVmDisk,
    {
        "name": within("disk", first_of(text("alias"), text("name"))),
        "description": within("disk", text("description")),
        "provisioned_size": within("disk", number("provisioned_size")),
        "format": within("disk", text("format")),
        "sparse": within("disk", flag("sparse")),
        "shareable": within("disk", flag("shareable")),
        "storage_domain_id": lambda body, env: first_sd(dig(body, "disk"), env),
        **_ATTACHMENT_INPUT,
    },
    parent_field="vm_id",
)


class _Keyed:
    """An embedded item whose id is another field (disk attachments by disk id)."""

    __slots__ = ("id", "item")

    def __init__(self, item: Any, item_id: Any) -> None:
        self.item = item
        self.id = item_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.item, name)


VM_SNAPSHOTS = Sub(
    "snapshots",
    "embedded",
    tag="snapshot",
    items=_vm_items("snapshots"),
    fields=[
        *attrs("description", "snapshot_type"),
        ("snapshot_status", attr("status")),
        ("persist_memorystate", attr("persist_memory")),
        ("date", when("created_at")),
    ],
    add=Input(
        AddSnapshot,
        {"description": text("description"), "persist_memory": flag("persist_memorystate")},
        parent_field="vm_id",
    ),
    remove=Input(RemoveSnapshot, parent_field="vm_id", item_field="snapshot_id"),
)


def _ticket_result(v: Any) -> dict[str, Any]:
    """<ticket><value/><expiry/></ticket>: expiry in seconds from now, as oVirt gives it."""
    if not isinstance(v, dict):
        return {}
    expiry = None
    at = v.get("expires_at")
    if at:
        try:
            when = datetime.fromisoformat(str(at))
            expiry = max(0, int((when - datetime.now(UTC)).total_seconds()))
        except (TypeError, ValueError):
            expiry = None
    return {"ticket": {"value": v.get("ticket"), "expiry": expiry}}


# The CPU as VMs and templates show it.
_CPU = nested(
    mode=fixed("custom"),
    architecture=fixed("x86_64"),
    topology=nested(
        cores=attr("cpu_cores"), sockets=attr("cpu_sockets"), threads=attr("cpu_threads")
    ),
)

# What adding and updating a VM, and updating a template, read of its settings.
_VM_SETTINGS = {
    "memory": number("memory"),
    "cpu_sockets": number("cpu.topology.sockets"),
    "cpu_cores": number("cpu.topology.cores"),
    "cpu_threads": number("cpu.topology.threads"),
    "os_type": text("os.type"),
    "vm_type": text("type"),
    "stateless": flag("stateless"),
    "highly_available": flag("high_availability.enabled"),
    "ha_priority": number("high_availability.priority"),
}

_VM_FIELDS: list[tuple[str, Shows]] = [
    *attrs("name", "description"),
    ("cluster", link_to("clusters", "cluster_id")),
    ("template", link_to("templates", "template_id")),
    ("cpu", _CPU),
    ("memory", attr("memory")),
    ("os", nested(type=attr("os_type"))),
    ("type", attr("vm_type")),
    ("stateless", attr("stateless")),
    ("high_availability", nested(enabled=attr("highly_available"), priority=attr("ha_priority"))),
    ("status", attr("status")),
    ("creation_time", when("created_at")),
    ("host", link_to("hosts", "run_on_host_id")),
    ("vm_pool", link_to("vmpools", "pool_id")),
]

VM = Resource(
    "vms",
    "vm",
    Vm,
    _VM_FIELDS,
    label="VM",
    add=Input(
        AddVm,
        {
            **texts("name", "description"),
            "cluster_id": ref("cluster", "clusters"),
            "template_id": ref("template", "templates"),
            **_VM_SETTINGS,
            "placement_host_id": ref("placement_policy.hosts.host", "hosts"),
            "storage_domain_id": _first_sd_of_disks,
            "graphics": text("display.type"),
            "id": text("id"),
        },
        query={"clone": "clone"},
    ),
    update=Input(
        UpdateVm,
        {
            **texts("name", "description"),
            **_VM_SETTINGS,
            "cluster_id": ref("cluster", "clusters"),
            "placement_host_id": ref("placement_policy.hosts.host", "hosts"),
            "graphics": text("display.type"),
        },
        id_field="vm_id",
    ),
    remove=Input(RemoveVm, id_field="vm_id", query={"detach_only": "detach_only"}),
    actions={
        "start": Input(
            StartVm,
            {"host_id": ref("vm.placement_policy.hosts.host", "hosts"), "paused": flag("pause")},
            id_field="vm_id",
        ),
        "stop": Input(StopVm, {"reason": text("reason")}, id_field="vm_id"),
        "shutdown": Input(ShutdownVm, {"reason": text("reason")}, id_field="vm_id"),
        "reboot": Input(RebootVm, id_field="vm_id"),
        "suspend": Input(SuspendVm, id_field="vm_id"),
        "migrate": Input(MigrateVm, {"host_id": ref("host", "hosts")}, id_field="vm_id"),
        "cancelmigration": Input(CancelVmMigration, id_field="vm_id"),
        "ticket": Input(
            SetVmConsoleTicket,
            {"expiry": number("ticket.expiry")},
            id_field="vm_id",
            result=_ticket_result,
        ),
        "previewsnapshot": Input(
            PreviewSnapshot, {"snapshot_id": ident("snapshot")}, id_field="vm_id"
        ),
        "commitsnapshot": Input(CommitSnapshot, id_field="vm_id"),
        "undosnapshot": Input(UndoSnapshot, id_field="vm_id"),
    },
    search={
        "cluster": ref_name("cluster_id"),
        "host": ref_name("run_on_host_id"),
        "template": ref_name("template_id"),
        "datacenter": dc_of_cluster,
        "tag": tag_names,
    },
    subs=[
        VM_DISK_ATTACHMENTS,
        VM_NICS,
        VM_SNAPSHOTS,
        Sub(
            "cdroms",
            "embedded",
            tag="cdrom",
            items=lambda o, reads: [_Cdrom(o)],
            fields=[("file", nested(id=attr("file")))],
            update=Input(UpdateVm, {"cdrom_file": text("file.id")}, parent_field="vm_id"),
        ),
        Sub(
            "graphicsconsoles",
            "embedded",
            tag="graphics_console",
            tags="graphics_consoles",
            items=lambda o, reads: [_Console(o, p) for p in _graphics(o)],
            fields=[("protocol", attr("protocol"))],
        ),
        Sub("numanodes", "empty", tag="vm_numa_node", tags="vm_numa_nodes"),
        Sub("watchdogs", "empty", tag="watchdog"),
        statistics_sub(),
        tags_sub(),
        child("permissions", "object_id"),
    ],
)


class _Cdrom:
    def __init__(self, vm: Any) -> None:
        self.id = UUID(int=0)
        self.file = getattr(vm, "cdrom_file", None) or None


def _graphics(vm: Any) -> list[str]:
    g = getattr(vm, "graphics", None)
    if not g:
        return []
    if isinstance(g, str):
        return [g]
    return [str(x) for x in g]


class _Console:
    def __init__(self, vm: Any, protocol: str) -> None:
        self.id = uuid5(vm.id, protocol)
        self.protocol = protocol


TEMPLATE = Resource(
    "templates",
    "template",
    Template,
    [
        *attrs("name", "description"),
        ("cluster", link_to("clusters", "cluster_id")),
        ("memory", attr("memory")),
        ("cpu", _CPU),
        ("os", nested(type=attr("os_type"))),
        ("status", attr("status")),
        (
            "version",
            nested(
                version_number=attr("version_number"),
                version_name=attr("version_name"),
                base_template=link_to("templates", "base_template_id"),
            ),
        ),
        ("creation_time", when("created_at")),
    ],
    label="Template",
    add=Input(
        AddTemplate,
        {
            **texts("name", "description"),
            "vm_id": ref("vm", "vms"),
            "version_name": text("version.version_name"),
            "base_template_id": ref("version.base_template", "templates"),
            "storage_domain_id": ref("storage_domain", "storagedomains"),
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateTemplate,
        {
            **texts("name", "description"),
            "version_name": text("version.version_name"),
            **_VM_SETTINGS,
        },
        id_field="template_id",
    ),
    remove=Input(RemoveTemplate, id_field="template_id"),
    search={"cluster": ref_name("cluster_id"), "datacenter": dc_of_cluster},
    subs=[
        Sub("diskattachments", "empty", tag="disk_attachment", tags="disk_attachments"),
        Sub("nics", "empty", tag="nic"),
        child("permissions", "object_id"),
    ],
)

VMPOOL = Resource(
    "vmpools",
    "vm_pool",
    VmPool,
    [
        *attrs("name", "description"),
        ("cluster", link_to("clusters", "cluster_id")),
        ("template", link_to("templates", "template_id")),
        *attrs("size", "prestarted_vms", "max_user_vms", "stateless"),
        ("type", attr("pool_type")),
    ],
    label="VM Pool",
    add=Input(
        AddVmPool,
        {
            **texts("name", "description"),
            "cluster_id": ref("cluster", "clusters"),
            "template_id": ref("template", "templates"),
            **numbers("size", "prestarted_vms", "max_user_vms"),
            "pool_type": text("type"),
            "stateless": flag("stateless"),
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateVmPool,
        {
            **texts("name", "description"),
            **numbers("size", "prestarted_vms", "max_user_vms"),
        },
        id_field="vm_pool_id",
    ),
    remove=Input(RemoveVmPool, id_field="vm_pool_id"),
    actions={
        "allocatevm": Input(
            AllocateVm,
            {"user_id": current_user},
            id_field="vm_pool_id",
            result=lambda v: (
                {"vm": {"href": f"{BASE}/vms/{v}", "id": str(v)}} if isinstance(v, UUID) else {}
            ),
        )
    },
    subs=[child("permissions", "object_id")],
)
