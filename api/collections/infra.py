"""The infrastructure collections: data centers, clusters, hosts, logical networks and
vNIC profiles, quotas and affinity groups."""

from __future__ import annotations

from typing import Any

from api.collections.common import dc_of_cluster, ref_name, statistics_sub, tag_names, tags_sub
from api.faults import bad_request
from api.http import BASE
from api.schema import (
    MISSING,
    Input,
    Resource,
    Sub,
    attr,
    attrs,
    child,
    const,
    dig,
    fixed,
    flag,
    link_to,
    listed,
    names_list,
    nested,
    number,
    ref,
    text,
    texts,
    version_in,
    version_of,
)
from api.telemetry import HOST_NIC_FIELDS, host_nic_items
from commands.affinity import AddAffinityGroup, RemoveAffinityGroup, UpdateAffinityGroup
from commands.cluster import AddCluster, RemoveCluster, UpdateCluster
from commands.datacenter import AddDataCenter, RemoveDataCenter, UpdateDataCenter
from commands.host import (
    ActivateHost,
    AddHost,
    CheckHostUpgrade,
    ConfirmHostRebooted,
    DeactivateHost,
    FenceHost,
    InstallHost,
    RefreshHost,
    RemoveHost,
    UpdateHost,
)
from commands.network import (
    AddNetwork,
    AddVnicProfile,
    AttachNetworkToCluster,
    DetachNetworkFromCluster,
    RemoveNetwork,
    RemoveVnicProfile,
    UpdateNetwork,
    UpdateVnicProfile,
)
from commands.storage import (
    ActivateStorageDomain,
    AttachStorageDomain,
    DeactivateStorageDomain,
    DetachStorageDomain,
)
from domain.affinity import AffinityGroup
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.host import Host
from domain.network import LogicalNetwork, VnicProfile
from domain.quota import Quota

# What adding and updating a data center read (adding also takes an "id").
_DC_INPUT = {
    **texts("name", "description"),
    "local": flag("local"),
    "version": version_in("version"),
    "quota_mode": text("quota_mode"),
}

DC = Resource(
    "datacenters",
    "data_center",
    DataCenter,
    [
        *attrs("name", "description", "local", "quota_mode", "status"),
        ("storage_format", fixed("v5")),
        ("version", version_of("compatibility_version")),
        (
            "supported_versions",
            fixed({"version": [{"major": "4", "minor": m} for m in "234567"]}),
        ),
    ],
    label="Data Center",
    add=Input(AddDataCenter, {**_DC_INPUT, "id": text("id")}),
    update=Input(UpdateDataCenter, _DC_INPUT, id_field="data_center_id"),
    remove=Input(RemoveDataCenter, id_field="data_center_id", query={"force": "force"}),
    subs=[
        child("clusters", "data_center_id"),
        child("networks", "data_center_id"),
        child(
            "storagedomains",
            "data_center_id",
            add=Input(
                AttachStorageDomain,
                {"storage_domain_id": ref("", "storagedomains"), "activate": const(True)},
                parent_field="data_center_id",
            ),
            remove=Input(
                DetachStorageDomain,
                parent_field="data_center_id",
                item_field="storage_domain_id",
                query={"force": "force"},
            ),
            actions={
                "activate": Input(
                    ActivateStorageDomain,
                    parent_field="data_center_id",
                    item_field="storage_domain_id",
                ),
                "deactivate": Input(
                    DeactivateStorageDomain,
                    {"force": flag("force")},
                    parent_field="data_center_id",
                    item_field="storage_domain_id",
                ),
            },
        ),
        child("quotas", "data_center_id"),
        child("permissions", "object_id"),
    ],
)

# What adding and updating a cluster read after its name and description.
_CLUSTER_SETTINGS = {
    "cpu_type": text("cpu.type"),
    "memory_overcommit": number("memory_policy.over_commit.percent"),
    "scheduling_policy": text("scheduling_policy.name"),
    "ha_reservation": flag("ha_reservation"),
    "migration_policy": text("migration.policy.id"),
    "version": version_in("version"),
}


def _rule_flag(rule: str, name: str, legacy: str | None) -> Any:
    """``<rule><name>`` (oVirt 4.4's vms_rule / hosts_rule), else the legacy element.
    An Orrery group always applies both rules: ``enabled`` false is refused."""
    inner, outer = flag(f"{rule}.{name}"), flag(legacy) if legacy else None
    enabled = flag(f"{rule}.enabled")

    def get(body: Any, env: Any) -> Any:
        if enabled(body, env) is False:
            raise bad_request(
                f"Orrery affinity groups always apply their {rule}; "
                f"'{rule}.enabled' false is not supported.",
                f"{rule}.enabled",
            )
        v = inner(body, env)
        return v if v is not MISSING or outer is None else outer(body, env)

    return get


def _members(path: str, item: str, labels: str) -> Any:
    """The ``<vms>``/``<hosts>`` of a group (by id or name); affinity labels are refused."""
    one = ref("", path)  # reads the element under the key "": each item wrapped so
    read = listed(path, item, lambda v, env: one({"": v}, env))

    def get(body: Any, env: Any) -> Any:
        if dig(body, labels) not in (MISSING, None, "", {}):
            raise bad_request(f"Affinity labels ('{labels}') are not supported.", labels)
        v = read(body, env)
        return v if v is MISSING else tuple(v)

    return get


def _links(resource: str, item: str, name: str) -> Any:
    def get(o: Any) -> Any:
        return {item: [{"href": f"{BASE}/{resource}/{i}", "id": str(i)} for i in getattr(o, name)]}

    return get


_AFFINITY_FIELDS = {
    **texts("name", "description"),
    "positive": _rule_flag("vms_rule", "positive", "positive"),
    "enforcing": _rule_flag("vms_rule", "enforcing", "enforcing"),
    "hosts_positive": _rule_flag("hosts_rule", "positive", None),
    "hosts_enforcing": _rule_flag("hosts_rule", "enforcing", None),
    "vm_ids": _members("vms", "vm", "vm_labels"),
    "host_ids": _members("hosts", "host", "host_labels"),
}

AFFINITY_GROUP = Resource(
    "affinitygroups",
    "affinity_group",
    AffinityGroup,
    [
        *attrs("name", "description"),
        ("cluster", link_to("clusters", "cluster_id")),
        *attrs("positive", "enforcing"),
        (
            "vms_rule",
            nested(enabled=fixed(True), positive=attr("positive"), enforcing=attr("enforcing")),
        ),
        (
            "hosts_rule",
            nested(
                enabled=fixed(True),
                positive=attr("hosts_positive"),
                enforcing=attr("hosts_enforcing"),
            ),
        ),
        ("vms", _links("vms", "vm", "vm_ids")),
        ("hosts", _links("hosts", "host", "host_ids")),
    ],
    label="Affinity Group",
    add=Input(AddAffinityGroup, {**_AFFINITY_FIELDS, "cluster_id": ref("cluster", "clusters")}),
    update=Input(UpdateAffinityGroup, _AFFINITY_FIELDS, id_field="affinity_group_id"),
    remove=Input(RemoveAffinityGroup, id_field="affinity_group_id"),
    searchable=False,
)

# /clusters/{id}/affinitygroups: where oVirt adds (the cluster from the path), edits and
# removes a cluster's groups.
AFFINITY_GROUPS_OF_CLUSTER = child("affinitygroups", "cluster_id")


CLUSTER = Resource(
    "clusters",
    "cluster",
    Cluster,
    [
        *attrs("name", "description"),
        ("data_center", link_to("datacenters", "data_center_id")),
        ("cpu", nested(type=attr("cpu_type"), architecture=fixed("x86_64"))),
        (
            "memory_policy",
            nested(
                over_commit=nested(percent=attr("memory_overcommit")),
            ),
        ),
        ("scheduling_policy", nested(name=attr("scheduling_policy"))),
        ("migration", nested(policy=nested(id=attr("migration_policy")))),
        ("ha_reservation", attr("ha_reservation")),
        ("version", version_of("compatibility_version")),
    ],
    label="Cluster",
    add=Input(
        AddCluster,
        {
            **texts("name", "description"),
            "data_center_id": ref("data_center", "datacenters"),
            **_CLUSTER_SETTINGS,
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateCluster,
        {**texts("name", "description"), **_CLUSTER_SETTINGS},
        id_field="cluster_id",
    ),
    remove=Input(RemoveCluster, id_field="cluster_id"),
    search={"datacenter": ref_name("data_center_id"), "data_center": ref_name("data_center_id")},
    subs=[
        child("hosts", "cluster_id"),
        child(
            "networks",
            "cluster_ids",
            add=Input(
                AttachNetworkToCluster,
                {"network_id": ref("", "networks")},
                parent_field="cluster_id",
            ),
            remove=Input(
                DetachNetworkFromCluster, parent_field="cluster_id", item_field="network_id"
            ),
        ),
        AFFINITY_GROUPS_OF_CLUSTER,
        child("permissions", "object_id"),
    ],
)

HOST = Resource(
    "hosts",
    "host",
    Host,
    [
        *attrs("name", "description", "address", "port"),
        ("cluster", link_to("clusters", "cluster_id")),
        *attrs("status", "status_detail"),
        ("spm", nested(priority=attr("spm_priority"))),
        (
            "cpu",
            nested(
                name=attr("cpu_model"),
                topology=nested(cores=attr("cpu_cores"), sockets=fixed(1), threads=fixed(1)),
            ),
        ),
        ("memory", attr("memory_total")),
        ("hardware_information", nested(uuid=attr("hardware_uuid"))),
        (
            "version",
            nested(full_version=attr("libvirt_version")),
        ),
        ("type", fixed("rhel")),
    ],
    label="Host",
    add=Input(
        AddHost,
        {
            **texts("name", "description", "address"),
            "port": number("port"),
            "cluster_id": ref("cluster", "clusters"),
            "root_password": text("root_password"),
            "spm_priority": number("spm.priority"),
            "id": text("id"),
        },
        query={"activate": "activate"},
    ),
    update=Input(
        UpdateHost,
        {
            **texts("name", "description", "address"),
            "spm_priority": number("spm.priority"),
            "port": number("port"),
            "cluster_id": ref("cluster", "clusters"),
        },
        id_field="host_id",
    ),
    remove=Input(RemoveHost, id_field="host_id", query={"force": "force"}),
    actions={
        "activate": Input(ActivateHost, id_field="host_id"),
        "deactivate": Input(DeactivateHost, {"reason": text("reason")}, id_field="host_id"),
        "install": Input(InstallHost, id_field="host_id"),
        "refresh": Input(RefreshHost, id_field="host_id"),
        "upgradecheck": Input(CheckHostUpgrade, id_field="host_id"),
        # Only manual fencing ("confirm the host has been rebooted") exists so far.
        "fence": Input(
            ConfirmHostRebooted,
            id_field="host_id",
            choose=lambda body: (
                None
                if str(dig(body, "fence_type")).lower() == "manual"
                else Input(FenceHost, texts("fence_type"), id_field="host_id")
            ),
        ),
    },
    search={"cluster": ref_name("cluster_id"), "datacenter": dc_of_cluster, "tag": tag_names},
    subs=[
        Sub("nics", "embedded", tag="host_nic", items=host_nic_items, fields=HOST_NIC_FIELDS),
        statistics_sub(),
        tags_sub(),
        child("permissions", "object_id"),
    ],
)

# What adding and updating a network read after its name and description.
_NETWORK_SETTINGS = {
    "vlan_id": number("vlan.id"),
    "mtu": number("mtu"),
    "required": flag("required"),
    "usages": listed("usages", "usage", lambda v, env: v),
}

NETWORK = Resource(
    "networks",
    "network",
    LogicalNetwork,
    [
        *attrs("name", "description"),
        ("data_center", link_to("datacenters", "data_center_id")),
        ("usages", names_list("usages", "usage")),
        ("vlan", nested(id=attr("vlan_id"))),
        *attrs("mtu", "required"),
    ],
    label="Network",
    add=Input(
        AddNetwork,
        {
            **texts("name", "description"),
            "data_center_id": ref("data_center", "datacenters"),
            **_NETWORK_SETTINGS,
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateNetwork,
        {**texts("name", "description"), **_NETWORK_SETTINGS},
        id_field="network_id",
    ),
    remove=Input(RemoveNetwork, id_field="network_id"),
    search={"datacenter": ref_name("data_center_id")},
    subs=[
        child(
            "vnicprofiles",
            "network_id",
            add=Input(
                AddVnicProfile,
                {"name": text("name"), "description": text("description")},
                parent_field="network_id",
            ),
        ),
        child("permissions", "object_id"),
    ],
)

VNIC_PROFILE = Resource(
    "vnicprofiles",
    "vnic_profile",
    VnicProfile,
    [
        *attrs("name", "description"),
        ("network", link_to("networks", "network_id")),
    ],
    label="VNIC Profile",
    add=Input(
        AddVnicProfile,
        {
            **texts("name", "description"),
            "network_id": ref("network", "networks"),
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateVnicProfile,
        {
            **texts("name", "description"),
            "port_mirroring": flag("port_mirroring"),
        },
        id_field="vnic_profile_id",
    ),
    remove=Input(RemoveVnicProfile, id_field="vnic_profile_id"),
    searchable=False,
)


QUOTA = Resource(
    "quotas",
    "quota",
    Quota,
    [
        *attrs("name", "description"),
        ("data_center", link_to("datacenters", "data_center_id")),
        ("cluster_hard_limit_pct", attr("grace")),
        ("cluster_soft_limit_pct", attr("threshold")),
    ],
    label="Quota",
    searchable=False,
)
