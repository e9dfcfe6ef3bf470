"""Roles: named sets of permits (oVirt's action groups), administrative or user, built-in or custom.

A permit is the lowercase name of one of oVirt's action groups (``create_vm``,
``vm_basic_operations``, ``manipulate_permissions``, ``login`` ...). Each permit is of the
administrative or the user kind; a user role may hold user permits only. The built-in
roles keep oVirt's well-known ids, are created at first start and can be neither changed
nor removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, InvalidInput, Tx

if TYPE_CHECKING:
    from domain.engine import Engine

# -- the permit catalogue --------------------------------------------------------------------
# permit name -> administrative (True) or user (False) kind, grouped by the object they act on.
_USER, _ADMIN = False, True

PERMITS: dict[str, bool] = {
    # virtual machines
    "create_vm": _USER,
    "delete_vm": _USER,
    "edit_vm_properties": _USER,
    "vm_basic_operations": _USER,
    "change_vm_cd": _USER,
    "migrate_vm": _USER,
    "connect_to_vm": _USER,
    "import_export_vm": _ADMIN,
    "configure_vm_network": _USER,
    "configure_vm_storage": _USER,
    "move_vm": _USER,
    "manipulate_vm_snapshots": _USER,
    "reconnect_to_vm": _USER,
    "change_vm_custom_properties": _ADMIN,
    "edit_admin_vm_properties": _ADMIN,
    "create_instance": _USER,
    # hosts
    "create_host": _ADMIN,
    "edit_host_configuration": _ADMIN,
    "delete_host": _ADMIN,
    "manipulate_host": _ADMIN,
    "configure_host_network": _ADMIN,
    # templates
    "create_template": _USER,
    "edit_template_properties": _USER,
    "delete_template": _USER,
    "copy_template": _USER,
    "configure_template_network": _USER,
    "edit_admin_template_properties": _ADMIN,
    # VM pools
    "create_vm_pool": _USER,
    "edit_vm_pool_configuration": _USER,
    "delete_vm_pool": _USER,
    "vm_pool_basic_operations": _USER,
    # clusters
    "create_cluster": _ADMIN,
    "edit_cluster_configuration": _ADMIN,
    "delete_cluster": _ADMIN,
    "configure_cluster_network": _ADMIN,
    "assign_cluster_network": _ADMIN,
    "manipulate_affinity_groups": _ADMIN,
    # users, roles and permissions
    "manipulate_users": _ADMIN,
    "manipulate_roles": _ADMIN,
    "manipulate_permissions": _USER,
    "add_users_and_groups_from_directory": _ADMIN,
    # storage domains
    "create_storage_domain": _ADMIN,
    "edit_storage_domain_configuration": _ADMIN,
    "delete_storage_domain": _ADMIN,
    "manipulate_storage_domain": _ADMIN,
    # data centers (oVirt's storage pools) and their networks
    "create_storage_pool": _ADMIN,
    "delete_storage_pool": _ADMIN,
    "edit_storage_pool_configuration": _ADMIN,
    "configure_storage_pool_network": _ADMIN,
    "create_storage_pool_network": _ADMIN,
    "delete_storage_pool_network": _ADMIN,
    # the engine itself
    "configure_engine": _ADMIN,
    # quotas
    "configure_quota": _ADMIN,
    "consume_quota": _USER,
    # disks
    "create_disk": _USER,
    "attach_disk": _USER,
    "edit_disk_properties": _USER,
    "configure_disk_storage": _USER,
    "delete_disk": _USER,
    "configure_scsi_generic_io": _ADMIN,
    "access_image_storage": _USER,
    "disk_live_storage_migration": _USER,
    # networks and vNIC profiles
    "port_mirroring": _ADMIN,
    "configure_network_vnic_profile": _USER,
    "create_network_vnic_profile": _ADMIN,
    "delete_network_vnic_profile": _ADMIN,
    # MAC pools
    "create_mac_pool": _ADMIN,
    "edit_mac_pool": _ADMIN,
    "delete_mac_pool": _ADMIN,
    "configure_mac_pool": _USER,
    # logging in, external events and tasks, misc management
    "login": _USER,
    "inject_external_events": _ADMIN,
    "inject_external_tasks": _ADMIN,
    "tag_management": _ADMIN,
    "bookmark_management": _ADMIN,
    "event_notification_management": _ADMIN,
    "audit_log_management": _ADMIN,
}

ALL_PERMITS: tuple[str, ...] = tuple(PERMITS)
ADMIN_PERMITS: frozenset[str] = frozenset(p for p, admin in PERMITS.items() if admin)


class Role(Aggregate, frozen=True, kw_only=True):
    KIND = "role"
    LABEL = "Role"

    name: str
    description: str = ""
    administrative: bool = False
    permits: tuple[str, ...] = ()
    builtin: bool = False
    # Whether holding this role on an object shows the objects below it (oVirt's
    # allows_viewing_children); creator roles such as PowerUserRole do not.
    view_children: bool = True

    @property
    def mutable(self) -> bool:
        return not self.builtin


class RoleAdded(Event, frozen=True, kw_only=True):
    CREATES = "Role"
    name: str
    description: str = ""
    administrative: bool = False
    permits: tuple[str, ...] = ()
    builtin: bool = False
    view_children: bool = True


class RoleUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    administrative: bool | UnsetType = UNSET
    permits: tuple[str, ...] | UnsetType = UNSET
    view_children: bool | UnsetType = UNSET


class RoleRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


# -- built-in roles --------------------------------------------------------------------------

_VM_USE = (
    "vm_basic_operations",
    "change_vm_cd",
    "connect_to_vm",
    "reconnect_to_vm",
)
_VM_OWN = (
    *_VM_USE,
    "delete_vm",
    "edit_vm_properties",
    "configure_vm_network",
    "configure_vm_storage",
    "manipulate_vm_snapshots",
)
_DISK_OWN = (
    "attach_disk",
    "edit_disk_properties",
    "configure_disk_storage",
    "delete_disk",
    "access_image_storage",
)
_TEMPLATE_OWN = (
    "edit_template_properties",
    "delete_template",
    "copy_template",
    "configure_template_network",
)
_POOL_ALL = (
    "create_vm_pool",
    "edit_vm_pool_configuration",
    "delete_vm_pool",
    "vm_pool_basic_operations",
)
_HOST_ALL = (
    "create_host",
    "edit_host_configuration",
    "delete_host",
    "manipulate_host",
    "configure_host_network",
)
_STORAGE_DOMAIN_ALL = (
    "create_storage_domain",
    "edit_storage_domain_configuration",
    "delete_storage_domain",
    "manipulate_storage_domain",
)
_CLUSTER_ADMIN = (
    "login",
    "manipulate_permissions",
    "consume_quota",
    # the cluster itself
    "edit_cluster_configuration",
    "delete_cluster",
    "configure_cluster_network",
    "assign_cluster_network",
    "manipulate_affinity_groups",
    # what runs in it
    *_HOST_ALL,
    "create_vm",
    "create_instance",
    *_VM_OWN,
    "migrate_vm",
    "move_vm",
    "import_export_vm",
    "change_vm_custom_properties",
    "edit_admin_vm_properties",
    "create_template",
    *_TEMPLATE_OWN,
    "edit_admin_template_properties",
    *_POOL_ALL,
    "create_disk",
    *_DISK_OWN,
    "configure_network_vnic_profile",
    "configure_mac_pool",
)
_DATA_CENTER_ADMIN = (
    *_CLUSTER_ADMIN,
    "create_cluster",
    "edit_storage_pool_configuration",
    "delete_storage_pool",
    "configure_storage_pool_network",
    "create_storage_pool_network",
    "delete_storage_pool_network",
    "create_network_vnic_profile",
    "delete_network_vnic_profile",
    "port_mirroring",
    "configure_quota",
    "disk_live_storage_migration",
)


class BuiltinRole:
    """The definition of one built-in role (not an aggregate: what first start creates)."""

    __slots__ = ("administrative", "description", "id", "name", "permits", "view_children")

    def __init__(
        self,
        name: str,
        id: str,
        description: str,
        *,
        administrative: bool,
        permits: tuple[str, ...],
        view_children: bool = True,
    ) -> None:
        self.name = name
        self.id = UUID(id)
        self.description = description
        self.administrative = administrative
        self.permits = tuple(dict.fromkeys(permits))  # de-duplicated, order kept
        self.view_children = view_children


# Ids are oVirt's well-known role ids, so scripts that refer to them keep working.
BUILTIN_ROLES: tuple[BuiltinRole, ...] = (
    BuiltinRole(
        "SuperUser",
        "00000000-0000-0000-0000-000000000001",
        "Roles management administrator",
        administrative=True,
        permits=ALL_PERMITS,
    ),
    BuiltinRole(
        "UserRole",
        "00000000-0000-0000-0001-000000000001",
        "Standard User Role",
        administrative=False,
        permits=("login", *_VM_USE, "vm_pool_basic_operations", "consume_quota"),
    ),
    BuiltinRole(
        "PowerUserRole",
        "00000000-0000-0000-0001-000000000002",
        "User Role, allowed to create VMs, Templates and Disks",
        administrative=False,
        permits=(
            "login",
            "create_vm",
            "create_instance",
            "create_template",
            "create_disk",
            "consume_quota",
        ),
        view_children=False,
    ),
    BuiltinRole(
        "ClusterAdmin",
        "def00001-0000-0000-0000-def000000001",
        "Administrator Role, permission for all the objects underneath a specific Cluster",
        administrative=True,
        permits=_CLUSTER_ADMIN,
    ),
    BuiltinRole(
        "DataCenterAdmin",
        "def00002-0000-0000-0000-def000000002",
        "Administrator Role, permission for all the objects underneath a specific Data Center, "
        "except Storage",
        administrative=True,
        permits=_DATA_CENTER_ADMIN,
    ),
    BuiltinRole(
        "StorageAdmin",
        "def00003-0000-0000-0000-def000000003",
        "Administrator Role, permission for all operations on a specific Storage Domain",
        administrative=True,
        permits=(
            "login",
            "manipulate_permissions",
            *_STORAGE_DOMAIN_ALL,
            "create_disk",
            *_DISK_OWN,
            "disk_live_storage_migration",
        ),
    ),
    BuiltinRole(
        "HostAdmin",
        "def00004-0000-0000-0000-def000000004",
        "Administrator Role, permission for all operations on a specific Host",
        administrative=True,
        permits=("login", "manipulate_permissions", *_HOST_ALL),
    ),
    BuiltinRole(
        "NetworkAdmin",
        "def00005-0000-0000-0000-def000000005",
        "Administrator Role, permission for all operations on a specific Logical Network",
        administrative=True,
        permits=(
            "login",
            "manipulate_permissions",
            "configure_storage_pool_network",
            "create_storage_pool_network",
            "delete_storage_pool_network",
            "configure_cluster_network",
            "assign_cluster_network",
            "configure_host_network",
            "configure_vm_network",
            "configure_template_network",
            "configure_network_vnic_profile",
            "create_network_vnic_profile",
            "delete_network_vnic_profile",
            "port_mirroring",
        ),
    ),
    BuiltinRole(
        "UserVmManager",
        "def00006-0000-0000-0000-def000000006",
        "User Role, with permission for any operation on Vms",
        administrative=False,
        permits=(
            "login",
            "manipulate_permissions",
            *_VM_OWN,
            "create_disk",
            *_DISK_OWN,
            "consume_quota",
            "configure_network_vnic_profile",
        ),
    ),
    BuiltinRole(
        "UserVmRunTimeManager",
        "def00006-0000-0000-0000-def000000011",
        "User Role, with permissions for any operations on VMs except snapshot manipulation",
        administrative=False,
        permits=(
            "login",
            *_VM_USE,
            "edit_vm_properties",
            "configure_vm_network",
            "configure_vm_storage",
            "consume_quota",
        ),
        view_children=False,
    ),
    BuiltinRole(
        "VmPoolAdmin",
        "def00007-0000-0000-0000-def000000007",
        "Administrator Role, permission for all operations on a specific VM Pool",
        administrative=True,
        permits=("login", "manipulate_permissions", *_POOL_ALL, *_VM_OWN, "consume_quota"),
    ),
    BuiltinRole(
        "TemplateAdmin",
        "def00008-0000-0000-0000-def000000008",
        "Administrator Role, permission for all operations on a specific Template",
        administrative=True,
        permits=(
            "login",
            "manipulate_permissions",
            "create_template",
            *_TEMPLATE_OWN,
            "edit_admin_template_properties",
        ),
    ),
    BuiltinRole(
        "QuotaConsumer",
        "def0000a-0000-0000-0000-def00000000a",
        "User Role, permissions to consume the Quota resources",
        administrative=False,
        permits=("login", "consume_quota"),
        view_children=False,
    ),
    BuiltinRole(
        "DiskOperator",
        "def0000a-0000-0000-0000-def00000000b",
        "User Role, permissions for all operations on a specific disk",
        administrative=False,
        permits=("login", "manipulate_permissions", *_DISK_OWN),
    ),
    BuiltinRole(
        "DiskCreator",
        "def0000a-0000-0000-0000-def00000000c",
        "User Role, permission to create Disks",
        administrative=False,
        permits=("login", "create_disk", "consume_quota"),
        view_children=False,
    ),
    BuiltinRole(
        "VmCreator",
        "def0000a-0000-0000-0000-def00000000d",
        "User Role, permission to create VMs",
        administrative=False,
        permits=("login", "create_vm", "consume_quota"),
        view_children=False,
    ),
    BuiltinRole(
        "TemplateCreator",
        "def0000a-0000-0000-0000-def00000000e",
        "User Role, permission to create Templates",
        administrative=False,
        permits=("login", "create_template", "consume_quota"),
        view_children=False,
    ),
    BuiltinRole(
        "TemplateOwner",
        "def0000a-0000-0000-0000-def00000000f",
        "User Role, permissions for all operations on Templates",
        administrative=False,
        permits=("login", "manipulate_permissions", *_TEMPLATE_OWN),
    ),
    BuiltinRole(
        "VnicProfileUser",
        "def0000a-0000-0000-0000-def000000010",
        "VM Network Interface Profile User",
        administrative=False,
        permits=("login", "configure_network_vnic_profile"),
        view_children=False,
    ),
    BuiltinRole(
        "ReadOnlyAdmin",
        "def0000c-0000-0000-0000-def00000000c",
        "Read Only Administrator Role",
        administrative=True,
        permits=("login",),
    ),
)

BUILTIN_BY_NAME: dict[str, BuiltinRole] = {r.name: r for r in BUILTIN_ROLES}
SUPER_USER_ROLE_ID = BUILTIN_BY_NAME["SuperUser"].id
USER_VM_MANAGER_ROLE_ID = BUILTIN_BY_NAME["UserVmManager"].id


# -- decisions -------------------------------------------------------------------------------


def check_permits(permits: tuple[str, ...] | list[str], *, administrative: bool) -> tuple[str, ...]:
    """Validates permit names; a user role may not hold administrative permits."""
    unknown = [p for p in permits if p not in PERMITS]
    if unknown:
        raise InvalidInput(f"Unknown permit {unknown[0]!r}.", field="permits")
    if not administrative:
        admin = [p for p in permits if PERMITS[p]]
        if admin:
            raise DomainError(
                f"Cannot add permit {admin[0]} to a user role: it is an administrative permit.",
                field="permits",
            )
    return tuple(dict.fromkeys(permits))


def add_builtin_roles(tx: Tx) -> list[UUID]:
    """Creates every built-in role that does not exist yet (first start, or a newer release)."""
    created = []
    for spec in BUILTIN_ROLES:
        if tx.engine.exists(spec.id):
            continue
        tx.emit(
            RoleAdded,
            spec.id,
            name=spec.name,
            description=spec.description,
            administrative=spec.administrative,
            permits=spec.permits,
            builtin=True,
            view_children=spec.view_children,
        )
        created.append(spec.id)
    return created


def add_role(
    tx: Tx,
    *,
    name: str,
    description: str = "",
    administrative: bool = False,
    permits: tuple[str, ...] | list[str] = (),
    view_children: bool = True,
    id: UUID | None = None,
) -> UUID:
    tx.engine.require_unique_name(("role",), name, label="Role")
    checked = check_permits(permits, administrative=administrative)
    role_id = tx.new_id(id)
    tx.emit(
        RoleAdded,
        role_id,
        name=name,
        description=description,
        administrative=administrative,
        permits=checked,
        builtin=False,
        view_children=view_children,
    )
    return role_id


def find_role(engine: Engine, name: str) -> Role | None:
    """The role called ``name``, or None."""
    return engine.find(Role, engine.by_name(("role",), name))


__all__ = [
    "ALL_PERMITS",
    "BUILTIN_ROLES",
    "PERMITS",
    "SUPER_USER_ROLE_ID",
    "USER_VM_MANAGER_ROLE_ID",
    "Role",
    "RoleAdded",
    "RoleRemoved",
    "RoleUpdated",
    "add_builtin_roles",
    "add_role",
    "find_role",
]
