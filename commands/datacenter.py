"""Data center and cluster commands and their handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain import cluster, datacenter
from domain.base import Tx
from domain.datacenter import QuotaMode

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


class AddCluster(Command, frozen=True, kw_only=True):
    name: Name
    data_center_id: UUID
    description: ShortText = ""
    id: UUID | None = None


@handles(AddDataCenter)
def _add_dc(tx: Tx, c: AddDataCenter) -> UUID:
    return datacenter.add_data_center(
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
    datacenter.update_data_center(
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
    datacenter.remove_data_center(tx, c.data_center_id, force=c.force)


@handles(AddCluster)
def _add_cluster(tx: Tx, c: AddCluster) -> UUID:
    return cluster.add_cluster(
        tx, name=c.name, data_center_id=c.data_center_id, description=c.description, id=c.id
    )
