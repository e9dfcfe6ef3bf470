"""Data center commands and their handlers (AddCluster lives in ``commands.cluster``)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.cluster import AddCluster
from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain import datacenter
from domain.base import Tx
from domain.rules import datacenter_rules, datacenter_status_rules
from domain.values import QuotaMode

Version = Annotated[str, msgspec.Meta(pattern=r"^\d+\.\d+$")]


class AddDataCenter(Command, frozen=True, kw_only=True):
    name: Name
    description: ShortText = ""
    local: bool = False
    version: Version = datacenter.DEFAULT_VERSION
    quota_mode: QuotaMode = QuotaMode.DISABLED
    id: UUID | None = None


class UpdateDataCenter(Command, frozen=True, kw_only=True):
    data_center_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    local: bool | UnsetType = UNSET
    version: Version | UnsetType = UNSET
    quota_mode: QuotaMode | UnsetType = UNSET


class RemoveDataCenter(Command, frozen=True, kw_only=True):
    data_center_id: UUID
    force: bool = False


class SelectSpm(Command, frozen=True, kw_only=True):
    """The administrator moves the SPM role to an up host of the data center."""

    data_center_id: UUID
    host_id: UUID


@handles(AddDataCenter)
def _add_dc(tx: Tx, c: AddDataCenter) -> UUID:
    return datacenter_rules.add_data_center(
        tx,
        name=c.name,
        description=c.description,
        local=c.local,
        compatibility_version=c.version,
        quota_mode=c.quota_mode,
        id=c.id,
    )


@handles(UpdateDataCenter)
def _update_dc(tx: Tx, c: UpdateDataCenter) -> None:
    datacenter_rules.update_data_center(
        tx,
        c.data_center_id,
        name=c.name,
        description=c.description,
        local=c.local,
        compatibility_version=c.version,
        quota_mode=c.quota_mode,
    )


@handles(RemoveDataCenter)
def _remove_dc(tx: Tx, c: RemoveDataCenter) -> None:
    datacenter_rules.remove_data_center(tx, c.data_center_id, force=c.force)


@handles(SelectSpm)
def _select_spm(tx: Tx, c: SelectSpm) -> None:
    datacenter_status_rules.select_spm(tx, c.data_center_id, c.host_id)


__all__ = ["AddCluster", "AddDataCenter", "RemoveDataCenter", "SelectSpm", "UpdateDataCenter"]
