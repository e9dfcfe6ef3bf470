"""Storage domains (data, iso, export), their attachment to a data center, and the SPM."""

from __future__ import annotations

from uuid import UUID

from domain.base import Aggregate


class StorageDomain(Aggregate, frozen=True, kw_only=True):
    KIND = "storage_domain"
    LABEL = "Storage Domain"

    name: str
    data_center_id: UUID | None = None
