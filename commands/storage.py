"""Storage domain commands: add, edit, attach/activate/deactivate/detach, remove, space."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText, refuse_unless_default
from commands.registry import handles
from domain import storage
from domain.base import Tx
from domain.rules import storage_rules
from domain.storage import StorageDomainType, StorageType

Size = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
Gb = Annotated[int, msgspec.Meta(ge=0)]
Path = Annotated[str, msgspec.Meta(max_length=4096)]
Address = Annotated[str, msgspec.Meta(max_length=255)]


class AddStorageDomain(Command, frozen=True, kw_only=True):
    name: Name
    domain_type: StorageDomainType = StorageDomainType.DATA
    storage_type: StorageType = StorageType.NFS
    address: Address = ""
    path: Path = ""
    description: ShortText = ""
    available: Size = 0
    used: Size = 0
    warning_low_space: Percent = 10
    critical_space_blocker: Gb = 5
    host_id: UUID | None = None
    data_center_id: UUID | None = None
    id: UUID | None = None


class UpdateStorageDomain(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    warning_low_space: Percent | UnsetType = UNSET
    critical_space_blocker: Gb | UnsetType = UNSET


class AttachStorageDomain(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    data_center_id: UUID
    activate: bool = True


class ActivateStorageDomain(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    data_center_id: UUID | None = None  # from the path: must be the domain's data center


class DeactivateStorageDomain(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    data_center_id: UUID | None = None  # from the path: must be the domain's data center
    # oVirt's force (skip the storage operations) is refused, not ignored.
    force: bool = False


class DetachStorageDomain(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    data_center_id: UUID | None = None  # from the path: must be the domain's data center
    # oVirt's force (skip the storage operations) is refused, not ignored.
    force: bool = False


class RemoveStorageDomain(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    force: bool = False
    host_id: UUID | None = None  # the host that removes it: must be up


class ReportStorageDomainSpace(Command, frozen=True, kw_only=True):
    storage_domain_id: UUID
    available: Size
    used: Size


@handles(AddStorageDomain)
def _add(tx: Tx, c: AddStorageDomain) -> UUID:
    return storage_rules.add_storage_domain(
        tx,
        name=c.name,
        domain_type=c.domain_type,
        storage_type=c.storage_type,
        address=c.address,
        path=c.path,
        description=c.description,
        available=c.available,
        used=c.used,
        warning_low_space=c.warning_low_space,
        critical_space_blocker=c.critical_space_blocker,
        host_id=c.host_id,
        data_center_id=c.data_center_id,
        id=c.id,
    )


@handles(UpdateStorageDomain)
def _update(tx: Tx, c: UpdateStorageDomain) -> None:
    storage.update_storage_domain(
        tx,
        c.storage_domain_id,
        name=c.name,
        description=c.description,
        warning_low_space=c.warning_low_space,
        critical_space_blocker=c.critical_space_blocker,
    )


@handles(AttachStorageDomain)
def _attach(tx: Tx, c: AttachStorageDomain) -> None:
    storage_rules.attach_storage_domain(
        tx, c.storage_domain_id, c.data_center_id, activate=c.activate
    )


@handles(ActivateStorageDomain)
def _activate(tx: Tx, c: ActivateStorageDomain) -> None:
    storage_rules.check_named_data_center(tx, c.storage_domain_id, c.data_center_id)
    storage_rules.activate_storage_domain(tx, c.storage_domain_id)


@handles(DeactivateStorageDomain)
def _deactivate(tx: Tx, c: DeactivateStorageDomain) -> None:
    storage_rules.check_named_data_center(tx, c.storage_domain_id, c.data_center_id)
    refuse_unless_default(c, "force", "deactivating without the storage operations")
    storage_rules.deactivate_storage_domain(tx, c.storage_domain_id)


@handles(DetachStorageDomain)
def _detach(tx: Tx, c: DetachStorageDomain) -> None:
    storage_rules.check_named_data_center(tx, c.storage_domain_id, c.data_center_id)
    refuse_unless_default(c, "force", "detaching without the storage operations")
    storage_rules.detach_storage_domain(tx, c.storage_domain_id)


@handles(RemoveStorageDomain)
def _remove(tx: Tx, c: RemoveStorageDomain) -> None:
    if c.host_id is not None:
        storage_rules.check_removing_host(tx, c.host_id, c.storage_domain_id)
    storage_rules.remove_storage_domain(tx, c.storage_domain_id, force=c.force)


@handles(ReportStorageDomainSpace)
def _space(tx: Tx, c: ReportStorageDomainSpace) -> None:
    storage.report_space(tx, c.storage_domain_id, available=c.available, used=c.used)
