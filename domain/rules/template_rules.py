"""Templates made from VMs and their disks: the Blank template, creating a
template from a down VM (its disks copied to active data domains), edits, and removal
refused while VMs or pools are based on it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET

from domain.base import DomainError, InvalidInput, Tx
from domain.disk import Disk, copy_disk_image
from domain.permission import remove_object_permissions
from domain.rules.cluster_rules import cluster_dc
from domain.rules.disk_rules import grant_creator, remove_disk_unchecked, require_active_data_domain
from domain.statuses import DiskStatus, TemplateStatus, VmStatus
from domain.tag import detach_everywhere
from domain.template import (
    BLANK_NAME,
    Template,
    TemplateAdded,
    TemplateRemoved,
    TemplateUpdated,
)
from domain.values import BLANK_TEMPLATE_ID, GiB, VmType
from domain.vm import (
    Vm,
    check_not_in_preview,
    check_not_snapshot_busy,
    check_numbers,
    check_vcpus,
    get_vm,
    locked_error,
)
from domain.vmpool import VmPool


def add_blank_template(tx: Tx) -> UUID:
    """Creates Blank unless it exists; returns its id."""
    if tx.engine.find(Template, BLANK_TEMPLATE_ID) is not None:
        return BLANK_TEMPLATE_ID
    tx.emit(
        TemplateAdded,
        BLANK_TEMPLATE_ID,
        name=BLANK_NAME,
        description="Blank template",
        base_template_id=BLANK_TEMPLATE_ID,
        memory=GiB,
        cpu_sockets=1,
        cpu_cores=1,
        cpu_threads=1,
        os_type="other",
        vm_type=VmType.SERVER,
        created_at=tx.now.isoformat(),
    )
    return BLANK_TEMPLATE_ID


def add_template(
    tx: Tx,
    *,
    vm_id: UUID,
    name: str | None = None,
    description: str = "",
    base_template_id: UUID | None = None,
    version_name: str = "",
    storage_domain_id: UUID | None = None,
    id: UUID | None = None,
) -> UUID:
    """A template from a down VM: its settings, NICs and copies of its disks."""
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("add", "Template")
    if vm.status != VmStatus.DOWN:
        raise DomainError("Cannot add Template. VM is running.")
    check_not_in_preview(vm, "add", "Template")
    check_not_snapshot_busy(vm, "add", "Template")
    dc_id = cluster_dc(tx, vm.cluster_id)
    version = 1
    if base_template_id is not None:
        base = tx.engine.get(Template, base_template_id, field="base_template")
        if base.id == BLANK_TEMPLATE_ID or base.version_number != 1:
            raise DomainError(
                "Cannot add Template. The base Template must be a base version.",
                field="base_template",
            )
        if base.data_center_id != dc_id:
            raise DomainError(
                "Cannot add Template. The base Template is in another Data Center.",
                field="base_template",
            )
        if name is not None and name != base.name:
            raise DomainError(
                "Cannot add Template. A Template version has its base Template's name.",
                field="name",
            )
        name = base.name
        version = 1 + max(
            t.version_number for t in tx.engine.all(Template) if t.base_template_id == base.id
        )
    else:
        if not name:
            raise InvalidInput("A Template needs a name.", field="name")
        tx.engine.require_unique_name(("template", dc_id), name, label="Template")
    disks = []
    for att in vm.disk_attachments:
        disk = tx.engine.get(Disk, att.disk_id)
        if disk.status != DiskStatus.OK:
            raise DomainError(
                f"Cannot add Template: The following disks are locked: {disk.name}. "
                "Please try again in a few minutes."
            )
        require_active_data_domain(
            tx.engine,
            storage_domain_id or disk.storage_domain_id,
            action="add",
            type_="Template",
            data_center_id=dc_id,
        )
        disks.append(disk)
    template_id = tx.new_id(id)
    disk_ids = tuple(
        copy_disk_image(
            tx, d, thin=False, storage_domain_id=storage_domain_id, template_id=template_id
        )
        for d in disks
    )
    tx.emit(
        TemplateAdded,
        template_id,
        name=name,
        description=description,
        cluster_id=vm.cluster_id,
        data_center_id=dc_id,
        base_template_id=base_template_id or template_id,
        version_number=version,
        version_name=version_name,
        memory=vm.memory,
        cpu_sockets=vm.cpu_sockets,
        cpu_cores=vm.cpu_cores,
        cpu_threads=vm.cpu_threads,
        os_type=vm.os_type,
        vm_type=vm.vm_type,
        stateless=vm.stateless,
        highly_available=vm.highly_available,
        ha_priority=vm.ha_priority,
        graphics=vm.graphics,
        nics=vm.nics,
        disk_ids=disk_ids,
        status=TemplateStatus.LOCKED if disk_ids else TemplateStatus.OK,
        source_vm_id=vm_id,
        created_at=tx.now.isoformat(),
    )
    grant_creator(tx, "template", template_id)
    return template_id


def update_template(tx: Tx, template_id: UUID, **changes: Any) -> None:
    template = tx.engine.get(Template, template_id, field="template")
    allowed = {f.name for f in msgspec.structs.fields(TemplateUpdated)[4:]}
    fields = {k: v for k, v in changes.items() if v is not UNSET}
    unknown = set(fields) - allowed
    if unknown:
        first = sorted(unknown)[0]
        raise InvalidInput(f"Unknown Template field {first}.", field=first)
    fields = {k: v for k, v in fields.items() if v != getattr(template, k)}
    if not fields:
        return
    if template.status == TemplateStatus.LOCKED:
        raise DomainError("Cannot update Template: Template is locked. Please try again later.")
    if "name" in fields:
        if template.version_number > 1:
            raise DomainError(
                "Cannot update the name of Sub-Templates, Only the Version name can be updated.",
                field="name",
            )
        if template.id == BLANK_TEMPLATE_ID:
            raise DomainError("Cannot update Template. Blank Template name cannot be changed.")
        tx.engine.require_unique_name(
            ("template", template.data_center_id),
            fields["name"],
            label="Template",
            own_id=template_id,
        )
    check_numbers(
        memory=fields.get("memory"),
        cpu_sockets=fields.get("cpu_sockets"),
        cpu_cores=fields.get("cpu_cores"),
        cpu_threads=fields.get("cpu_threads"),
        ha_priority=fields.get("ha_priority"),
    )
    check_vcpus(
        "update",
        fields.get("cpu_sockets", template.cpu_sockets),
        fields.get("cpu_cores", template.cpu_cores),
        fields.get("cpu_threads", template.cpu_threads),
    )
    tx.emit(TemplateUpdated, template_id, **fields)


def remove_template(tx: Tx, template_id: UUID) -> None:
    """Removes a template no VM or pool uses, and its disks."""

    template = tx.engine.get(Template, template_id, field="template")
    if template_id == BLANK_TEMPLATE_ID:
        raise DomainError("Cannot remove Template. The Blank Template cannot be removed.")
    if template.status == TemplateStatus.LOCKED:
        raise DomainError(
            "Cannot remove Template: Template is locked. Please try again in a few minutes."
        )
    users = sorted(v.name for v in tx.engine.all(Vm) if v.template_id == template_id)
    if users:
        raise DomainError(
            "Cannot remove Template. Template is being used by the following VMs: "
            f"{', '.join(users)}."
        )
    pools = sorted(p.name for p in tx.engine.all(VmPool) if p.template_id == template_id)
    if pools:
        raise DomainError(
            "Cannot remove Template. Template is being used by the following VM-Pools: "
            f"{', '.join(pools)}."
        )
    own = set(template.disk_ids)
    based = sorted(d.name for d in tx.engine.all(Disk) if d.base_disk_id in own and d.id not in own)
    if based:
        raise DomainError(
            f"Cannot remove Template. The following Disks are based on it: {', '.join(based)}."
        )
    if template.version_number == 1 and any(
        t.base_template_id == template_id and t.id != template_id for t in tx.engine.all(Template)
    ):
        raise DomainError("Cannot remove Template. The base Template has sub-versions.")
    for disk_id in template.disk_ids:
        if tx.engine.find(Disk, disk_id) is not None:
            remove_disk_unchecked(tx, disk_id)
    detach_everywhere(tx, template_id)
    remove_object_permissions(tx, template_id)
    tx.emit(TemplateRemoved, template_id)
