"""Quota commands."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain.base import Tx
from domain.quota import ClusterLimit, StorageLimit
from domain.rules import quota_rules

Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]


class AddQuota(Command, frozen=True, kw_only=True):
    name: Name
    data_center_id: UUID
    description: ShortText = ""
    cluster_limits: tuple[ClusterLimit, ...] = ()
    storage_limits: tuple[StorageLimit, ...] = ()
    threshold: Percent = 80
    grace: Percent = 20
    id: UUID | None = None


class UpdateQuota(Command, frozen=True, kw_only=True):
    quota_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    cluster_limits: tuple[ClusterLimit, ...] | UnsetType = UNSET
    storage_limits: tuple[StorageLimit, ...] | UnsetType = UNSET
    threshold: Percent | UnsetType = UNSET
    grace: Percent | UnsetType = UNSET


class RemoveQuota(Command, frozen=True, kw_only=True):
    quota_id: UUID


@handles(AddQuota)
def _add(tx: Tx, c: AddQuota) -> UUID:
    return quota_rules.add_quota(
        tx,
        name=c.name,
        data_center_id=c.data_center_id,
        description=c.description,
        cluster_limits=c.cluster_limits,
        storage_limits=c.storage_limits,
        threshold=c.threshold,
        grace=c.grace,
        id=c.id,
    )


@handles(UpdateQuota)
def _update(tx: Tx, c: UpdateQuota) -> None:
    quota_rules.update_quota(
        tx,
        c.quota_id,
        name=c.name,
        description=c.description,
        cluster_limits=c.cluster_limits,
        storage_limits=c.storage_limits,
        threshold=c.threshold,
        grace=c.grace,
    )


@handles(RemoveQuota)
def _remove(tx: Tx, c: RemoveQuota) -> None:
    quota_rules.remove_quota(tx, c.quota_id)
