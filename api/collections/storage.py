"""The storage collections: storage domains and disks."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.collections.common import first_sd, ref_name
from api.schema import (
    MISSING,
    Input,
    Resource,
    attr,
    attrs,
    child,
    first_of,
    fixed,
    flags,
    links_to,
    nested,
    number,
    numbers,
    ref,
    text,
    texts,
)
from commands.disk import AddDisk, MoveDisk, RemoveDisk, UpdateDisk
from commands.storage import AddStorageDomain, RemoveStorageDomain, UpdateStorageDomain
from domain.disk import Disk
from domain.storage import StorageDomain


def _host_param(body: Any, env: Any) -> Any:
    """oVirt's ``host`` query parameter of a storage domain removal (the host that removes
    it), a host's name or id."""
    v = env.query.get("host", "")
    if not v:
        return MISSING
    try:
        spec = {"id": str(UUID(v))}
    except ValueError:
        spec = {"name": v}
    return ref("host", "hosts")({"host": spec}, env)


SD = Resource(
    "storagedomains",
    "storage_domain",
    StorageDomain,
    [
        *attrs("name", "description"),
        ("type", attr("domain_type")),
        *attrs("status", "master"),
        (
            "storage",
            nested(type=attr("storage_type"), address=attr("address"), path=attr("path")),
        ),
        *attrs("available", "used"),
        ("warning_low_space_indicator", attr("warning_low_space")),
        ("critical_space_action_blocker", attr("critical_space_blocker")),
        ("storage_format", fixed("v5")),
        (
            "data_centers",
            links_to("datacenters", "data_center", "data_center_id"),
        ),
    ],
    label="Storage Domain",
    add=Input(
        AddStorageDomain,
        {
            **texts("name", "description"),
            "domain_type": text("type"),
            "storage_type": text("storage.type"),
            "address": text("storage.address"),
            "path": text("storage.path"),
            "host_id": ref("host", "hosts"),
            **numbers("available", "used"),
            "warning_low_space": number("warning_low_space_indicator"),
            "critical_space_blocker": number("critical_space_action_blocker"),
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateStorageDomain,
        {
            **texts("name", "description"),
            "warning_low_space": number("warning_low_space_indicator"),
            "critical_space_blocker": number("critical_space_action_blocker"),
        },
        id_field="storage_domain_id",
    ),
    remove=Input(
        RemoveStorageDomain,
        {"host_id": _host_param},
        id_field="storage_domain_id",
        query={"force": "destroy"},
    ),
    search={"datacenter": ref_name("data_center_id")},
    subs=[
        child("disks", "storage_domain_id"),
        child("permissions", "object_id"),
    ],
)

DISK = Resource(
    "disks",
    "disk",
    Disk,
    [
        ("name", attr("name")),
        ("alias", attr("name")),
        *attrs(
            "description",
            "provisioned_size",
            "actual_size",
            "format",
            "sparse",
            "status",
            "shareable",
            "bootable",
        ),
        ("content_type", fixed("data")),
        ("storage_type", fixed("image")),
        (
            "storage_domains",
            links_to("storagedomains", "storage_domain", "storage_domain_id"),
        ),
    ],
    label="Disk",
    add=Input(
        AddDisk,
        {
            "name": first_of(text("alias"), text("name")),
            "description": text("description"),
            "provisioned_size": number("provisioned_size"),
            "format": text("format"),
            **flags("sparse", "shareable"),
            "storage_domain_id": first_sd,
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateDisk,
        {
            "name": first_of(text("alias"), text("name")),
            "description": text("description"),
            "provisioned_size": number("provisioned_size"),
            **flags("shareable", "bootable"),
        },
        id_field="disk_id",
    ),
    remove=Input(RemoveDisk, id_field="disk_id"),
    actions={
        "move": Input(
            MoveDisk,
            {"storage_domain_id": ref("storage_domain", "storagedomains")},
            id_field="disk_id",
        ),
    },
    search={
        "alias": lambda o, r: [getattr(o, "name", "")],
        "storage": ref_name("storage_domain_id"),
    },
    subs=[child("permissions", "object_id")],
)
