"""Command messages refuse bad input naming the field, before any rule runs."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands.cluster import AddCluster, UpdateCluster
from commands.datacenter import AddDataCenter
from commands.host import AddHost, ReportHostCapabilities, UpdateHost
from commands.messages import parse_command
from commands.network import AddNetwork
from commands.quota import AddQuota
from commands.storage import AddStorageDomain
from domain.base import InvalidInput

pytestmark = pytest.mark.unit

ID = str(UUID(int=5))


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (AddDataCenter, {"name": ""}, "name"),
        (AddDataCenter, {"name": "x" * 256}, "name"),
        (AddDataCenter, {"name": "x", "version": "four"}, "version"),
        (AddDataCenter, {"name": "x", "quota_mode": "strict"}, "quota_mode"),
        (
            AddCluster,
            {"name": "c", "data_center_id": ID, "memory_overcommit": 99},
            "memory_overcommit",
        ),
        (
            AddCluster,
            {"name": "c", "data_center_id": ID, "memory_overcommit": 401},
            "memory_overcommit",
        ),
        (
            AddCluster,
            {"name": "c", "data_center_id": ID, "scheduling_policy": "x"},
            "scheduling_policy",
        ),
        (
            AddCluster,
            {"name": "c", "data_center_id": ID, "migration_policy": "x"},
            "migration_policy",
        ),
        (UpdateCluster, {"cluster_id": ID, "memory_overcommit": 50}, "memory_overcommit"),
        (
            AddHost,
            {"name": "h", "address": "a", "cluster_id": ID, "spm_priority": 11},
            "spm_priority",
        ),
        (
            AddHost,
            {"name": "h", "address": "a", "cluster_id": ID, "spm_priority": -2},
            "spm_priority",
        ),
        (AddHost, {"name": "h", "address": "a", "cluster_id": ID, "port": 0}, "port"),
        (AddHost, {"name": "h", "address": "", "cluster_id": ID}, "address"),
        (AddHost, {"name": "h", "address": "a"}, "cluster_id"),
        (UpdateHost, {"host_id": ID, "spm_priority": 42}, "spm_priority"),
        (
            ReportHostCapabilities,
            {"host_id": ID, "cpu_model": "x", "cpu_cores": 0, "memory_total": 1},
            "cpu_cores",
        ),
        (AddNetwork, {"name": "n", "data_center_id": ID, "vlan_id": 4095}, "vlan_id"),
        (AddNetwork, {"name": "n", "data_center_id": ID, "usages": ["web"]}, "usages[0]"),
        (AddNetwork, {"name": "n", "data_center_id": ID, "mtu": -1}, "mtu"),
        (AddStorageDomain, {"name": "s", "storage_type": "ceph"}, "storage_type"),
        (AddStorageDomain, {"name": "s", "domain_type": "image"}, "domain_type"),
        (AddStorageDomain, {"name": "s", "available": -1}, "available"),
        (AddQuota, {"name": "q", "data_center_id": ID, "threshold": 101}, "threshold"),
        (AddQuota, {"name": "q", "data_center_id": ID, "grace": -1}, "grace"),
        (AddDataCenter, {"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_names_the_field(cls, data, field) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_command(cls, data)
    assert e.value.field == field, e.value.message


def test_good_input_parses_with_defaults() -> None:
    h = parse_command(AddHost, {"name": "h", "address": "a", "cluster_id": ID})
    assert (h.port, h.spm_priority) == (54321, 5)
    c = parse_command(AddCluster, {"name": "c", "data_center_id": ID, "memory_overcommit": "150"})
    assert c.memory_overcommit == 150
    n = parse_command(AddNetwork, {"name": "n", "data_center_id": ID, "vlan_id": 0})
    assert n.vlan_id == 0 and n.usages == ("vm",)
