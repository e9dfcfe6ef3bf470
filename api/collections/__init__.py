"""The collection table: every REST collection the API serves, one module per area.

- ``infra``: data centers, clusters, hosts, networks, vNIC profiles, quotas, affinity
  groups
- ``storage``: storage domains, disks
- ``compute``: VMs, templates, VM pools
- ``admin``: users, groups, roles, permissions, tags

Each is written in the vocabulary of ``api.schema`` and names the command classes its
requests become. Adding a collection is adding one declaration to its area and listing it
below; ``api.resources`` interprets the table and ``api.render`` renders it.
"""

from __future__ import annotations

from api.collections import admin, compute, infra, storage
from api.schema import BY_TAG, RESOURCES, Resource, register

ALL: tuple[Resource, ...] = (
    infra.DC,
    infra.CLUSTER,
    infra.HOST,
    storage.SD,
    infra.NETWORK,
    infra.VNIC_PROFILE,
    compute.VM,
    storage.DISK,
    compute.TEMPLATE,
    compute.VMPOOL,
    admin.USER,
    admin.GROUP,
    admin.ROLE,
    admin.PERMISSION,
    admin.TAG,
    infra.QUOTA,
    infra.AFFINITY_GROUP,
)
register(*ALL)

__all__ = ["ALL", "BY_TAG", "RESOURCES"]
