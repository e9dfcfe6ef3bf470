"""Template commands: from a VM (and new versions), update, remove, and Blank."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from commands.vm import CpuCount, HaPriority, Memory, OsType
from domain import template
from domain.base import Tx
from domain.rules import template_rules
from domain.values import VmType

VersionName = Annotated[str, msgspec.Meta(max_length=255)]


class AddTemplate(Command, frozen=True, kw_only=True):
    """A template from a down VM; with ``base_template_id`` a new version of that one."""

    vm_id: UUID
    name: Name | None = None
    description: ShortText = ""
    base_template_id: UUID | None = None
    version_name: VersionName = ""
    storage_domain_id: UUID | None = None
    id: UUID | None = None


class UpdateTemplate(Command, frozen=True, kw_only=True):
    template_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    version_name: VersionName | UnsetType = UNSET
    memory: Memory | UnsetType = UNSET
    cpu_sockets: CpuCount | UnsetType = UNSET
    cpu_cores: CpuCount | UnsetType = UNSET
    cpu_threads: CpuCount | UnsetType = UNSET
    os_type: OsType | UnsetType = UNSET
    vm_type: VmType | UnsetType = UNSET
    stateless: bool | UnsetType = UNSET
    highly_available: bool | UnsetType = UNSET
    ha_priority: HaPriority | UnsetType = UNSET


class RemoveTemplate(Command, frozen=True, kw_only=True):
    template_id: UUID


class AddBlankTemplate(Command, frozen=True, kw_only=True):
    """Creates Blank when it is missing (first start does this through InitializeSystem)."""


@handles(AddTemplate)
def _add(tx: Tx, c: AddTemplate) -> UUID:
    return template_rules.add_template(
        tx,
        vm_id=c.vm_id,
        name=c.name,
        description=c.description,
        base_template_id=c.base_template_id,
        version_name=c.version_name,
        storage_domain_id=c.storage_domain_id,
        id=c.id,
    )


_UPDATE_FIELDS = [
    f for f in template.TemplateUpdated.__struct_fields__ if f in UpdateTemplate.__struct_fields__
]


@handles(UpdateTemplate)
def _update(tx: Tx, c: UpdateTemplate) -> None:
    template_rules.update_template(tx, c.template_id, **{f: getattr(c, f) for f in _UPDATE_FIELDS})


@handles(RemoveTemplate)
def _remove(tx: Tx, c: RemoveTemplate) -> None:
    template_rules.remove_template(tx, c.template_id)


@handles(AddBlankTemplate)
def _blank(tx: Tx, c: AddBlankTemplate) -> UUID:
    return template_rules.add_blank_template(tx)
