"""Data centers and what they contain: the management network on creation,
edits checked against their clusters and hosts (version, storage type), removal refused
while clusters or active storage remain and taking networks, quotas and detached storage
with it.
"""

from __future__ import annotations

from uuid import UUID

from msgspec import UNSET, UnsetType

from domain import storage
from domain.base import DomainError, Tx
from domain.cluster import Cluster
from domain.current import name_order
from domain.datacenter import (
    DEFAULT_VERSION,
    DataCenter,
    DataCenterAdded,
    DataCenterRemoved,
    DataCenterUpdated,
    check_version,
    version_key,
)
from domain.host import Host
from domain.network import LogicalNetwork, add_management_network
from domain.permission import remove_object_permissions
from domain.quota import Quota, QuotaRemoved
from domain.rules.network_rules import remove_network_unchecked
from domain.statuses import StorageDomainStatus
from domain.storage import (
    StorageDomain,
    StorageDomainDetached,
)
from domain.values import QuotaMode


def add_data_center(
    tx: Tx,
    *,
    name: str,
    description: str = "",
    local: bool = False,
    compatibility_version: str = DEFAULT_VERSION,
    quota_mode: QuotaMode = QuotaMode.DISABLED,
    id: UUID | None = None,
    management_network_id: UUID | None = None,
) -> UUID:
    """Creates a data center and, as oVirt does, its ``ovirtmgmt`` network."""

    tx.engine.require_unique_name(("data_center",), name, label="Data Center")
    check_version(compatibility_version, "version")
    dc_id = tx.new_id(id)
    tx.emit(
        DataCenterAdded,
        dc_id,
        name=name,
        description=description,
        local=local,
        compatibility_version=compatibility_version,
        quota_mode=quota_mode,
        created_at=tx.now.isoformat(),
    )
    add_management_network(tx, dc_id, id=management_network_id)
    return dc_id


def update_data_center(
    tx: Tx,
    dc_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    local: bool | UnsetType = UNSET,
    compatibility_version: str | UnsetType = UNSET,
    quota_mode: QuotaMode | UnsetType = UNSET,
) -> None:
    dc = tx.engine.get(DataCenter, dc_id)
    if name is not UNSET and name != dc.name:
        other = tx.engine.by_name(("data_center",), name)
        if other is not None and other != dc_id:
            raise DomainError(
                "Cannot edit Data Center. The Data Center name is already in use.", field="name"
            )
    if compatibility_version is not UNSET:
        check_version(compatibility_version, "version")
        if version_key(compatibility_version) < version_key(dc.compatibility_version):
            raise DomainError(
                "Cannot update Data Center compatibility version to a lower version.",
                field="version",
            )

        for c in tx.engine.all(Cluster):
            if (
                c.data_center_id == dc_id
                and c.compatibility_version  # "" on clusters recorded before versions
                and version_key(c.compatibility_version) < version_key(compatibility_version)
            ):
                raise DomainError(
                    "Cannot update Data Center compatibility version to a value that is "
                    f"greater than its Cluster {c.name}'s version.",
                    field="version",
                )
    if local is not UNSET and local != dc.local and _has_storage(tx, dc_id):
        raise DomainError(
            "Cannot update Data Center storage type. The Data Center has storage domains.",
            field="local",
        )
    if local is True and not dc.local:
        clusters = [c.id for c in tx.engine.all(Cluster) if c.data_center_id == dc_id]
        hosts = [h for h in tx.engine.all(Host) if h.cluster_id in clusters]
        if len(clusters) > 1 or len(hosts) > 1:
            raise DomainError(
                "Cannot update Data Center storage type. A local Data Center can contain "
                "only one Cluster and one Host.",
                field="local",
            )
    changes = {
        k: v
        for k, v in dict(
            name=name,
            description=description,
            local=local,
            compatibility_version=compatibility_version,
            quota_mode=quota_mode,
        ).items()
        if v is not UNSET and v != getattr(dc, k)
    }
    if changes:
        tx.emit(DataCenterUpdated, dc_id, **changes)


def remove_data_center(tx: Tx, dc_id: UUID, *, force: bool = False) -> None:
    """Removes an empty data center; ``force`` also lets go of its storage domains."""

    dc = tx.engine.get(DataCenter, dc_id)
    if any(c.data_center_id == dc_id for c in tx.engine.all(Cluster)):
        raise DomainError("Cannot remove Data Center. The Data Center contains Clusters.")
    domains = sorted(
        (sd for sd in tx.engine.all(StorageDomain) if sd.data_center_id == dc_id),
        key=name_order,
    )
    if domains and not force:
        if any(sd.status == StorageDomainStatus.ACTIVE for sd in domains):
            raise DomainError(
                "Cannot remove Data Center. The Data Center has active Storage Domains. "
                "Deactivate and detach them first."
            )
        raise DomainError("Cannot remove Data Center. Detach or remove all Storage Domains first.")
    for sd in domains:
        tx.emit(
            StorageDomainDetached,
            sd.id,
            data_center_id=None,
            status=StorageDomainStatus.UNATTACHED,
            master=False,
        )
    for q in sorted(tx.engine.all(Quota), key=name_order):
        if q.data_center_id == dc_id:
            remove_object_permissions(tx, q.id)
            tx.emit(QuotaRemoved, q.id)
    for net in sorted(tx.engine.all(LogicalNetwork), key=name_order):
        if net.data_center_id == dc_id:
            remove_network_unchecked(tx, net.id)
    remove_object_permissions(tx, dc.id)
    tx.emit(DataCenterRemoved, dc.id)


def _has_storage(tx: Tx, dc_id: UUID) -> bool:

    return any(sd.data_center_id == dc_id for sd in tx.engine.all(storage.StorageDomain))
