"""Templates: a VM's configuration and disk images frozen for new VMs, with versions.

Blank (id 00000000-0000-0000-0000-000000000000) has no disks and belongs to no data
center; ``add_blank_template`` creates it at first start. A template made from a VM is
``locked`` while its disks are copied and ``ok`` once the host reports them all.
A sub-version shares its base template's name (``base_template_id``, ``version_number``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, Event
from domain.statuses import TemplateStatus
from domain.values import GiB, Graphics, Nic, VmType

BLANK_NAME = "Blank"


class Template(Aggregate, frozen=True, kw_only=True):
    KIND = "template"
    LABEL = "Template"

    name: str
    description: str = ""
    cluster_id: UUID | None = None
    data_center_id: UUID | None = None
    base_template_id: UUID | None = None
    version_number: int = 1
    version_name: str = ""
    memory: int = GiB
    cpu_sockets: int = 1
    cpu_cores: int = 1
    cpu_threads: int = 1
    os_type: str = "other"
    vm_type: VmType = VmType.SERVER
    stateless: bool = False
    highly_available: bool = False
    ha_priority: int = 0
    graphics: Graphics = Graphics.VNC
    nics: tuple[Nic, ...] = ()
    disk_ids: tuple[UUID, ...] = ()
    status: TemplateStatus = TemplateStatus.OK
    source_vm_id: UUID | None = None
    created_at: str = ""

    def name_scope(self) -> tuple[Any, ...] | None:
        # Sub-versions carry their base's name; only base templates own it.
        if self.version_number > 1:
            return None
        return ("template", self.data_center_id)


class TemplateAdded(Event, frozen=True, kw_only=True):
    CREATES = "Template"
    name: str
    description: str = ""
    cluster_id: UUID | None = None
    data_center_id: UUID | None = None
    base_template_id: UUID | None = None
    version_number: int = 1
    version_name: str = ""
    memory: int
    cpu_sockets: int
    cpu_cores: int
    cpu_threads: int
    os_type: str
    vm_type: VmType
    stateless: bool = False
    highly_available: bool = False
    ha_priority: int = 0
    graphics: Graphics = Graphics.VNC
    nics: tuple[Nic, ...] = ()
    disk_ids: tuple[UUID, ...] = ()
    status: TemplateStatus = TemplateStatus.OK
    source_vm_id: UUID | None = None
    created_at: str = ""


class TemplateUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    version_name: str | UnsetType = UNSET
    memory: int | UnsetType = UNSET
    cpu_sockets: int | UnsetType = UNSET
    cpu_cores: int | UnsetType = UNSET
    cpu_threads: int | UnsetType = UNSET
    os_type: str | UnsetType = UNSET
    vm_type: VmType | UnsetType = UNSET
    stateless: bool | UnsetType = UNSET
    highly_available: bool | UnsetType = UNSET
    ha_priority: int | UnsetType = UNSET


class TemplateImagesReady(Event, frozen=True, kw_only=True):
    """Every disk copy settled: ok, or illegal when one failed."""

    status: TemplateStatus = TemplateStatus.OK
    failed_disk_ids: tuple[UUID, ...] = ()

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(agg, version=self.originator_version, status=self.status)


class TemplateRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


__all__ = [
    "Template",
    "TemplateAdded",
    "TemplateRemoved",
]
