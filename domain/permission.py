"""Permissions: a role given to a user or group on an object (or on the whole system), and
the checks that decide what a user may do and see.

A permission on an object applies to everything below it (docs/model.md):
system > data center > cluster > (host, vm, vm_pool, affinity_group); data center >
storage domain > disk; data center > network > vnic_profile; data center > template;
data center > quota. A VM also inherits from its pool, a disk from the VMs it is attached
to. A group's permissions apply to its members; every user is in the Everyone group.

The walk upward only reads the contract attribute names (``cluster_id``,
``data_center_id``, ``storage_domain_id``, ``network_id``, ``pool_id``,
``disk_attachments``) with getattr, so it works for whatever aggregates exist.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from domain.base import AGGREGATE_TYPES, Aggregate, DomainError, Event, Tx

if TYPE_CHECKING:
    from domain.engine import Engine

SYSTEM = "system"

# kind -> (attribute, parent kind) links, read with getattr; no link set means "system".
PARENT_LINKS: dict[str, tuple[tuple[str, str], ...]] = {
    "data_center": (),
    "cluster": (("data_center_id", "data_center"),),
    "host": (("cluster_id", "cluster"),),
    "vm": (("cluster_id", "cluster"), ("pool_id", "vm_pool")),
    "vm_pool": (("cluster_id", "cluster"),),
    "affinity_group": (("cluster_id", "cluster"),),
    "storage_domain": (("data_center_id", "data_center"),),
    "disk": (("storage_domain_id", "storage_domain"),),
    "network": (("data_center_id", "data_center"),),
    "vnic_profile": (("network_id", "network"),),
    "template": (("data_center_id", "data_center"),),
    "quota": (("data_center_id", "data_center"),),
}


def _above_kinds(kind: str) -> frozenset[str]:
    """The kinds that can stand above ``kind`` in the hierarchy (system included)."""
    direct = {pk for _, pk in PARENT_LINKS.get(kind, ())}
    if kind == "disk":
        direct.add("vm")
    out = {SYSTEM}
    for pk in direct:
        out |= {pk, *_above_kinds(pk)}
    return frozenset(out)


ABOVE_KINDS: dict[str, frozenset[str]] = {k: _above_kinds(k) for k in PARENT_LINKS}

# The role that makes a creator the owner of what they created.
OWNER_ROLES: dict[str, str] = {
    "vm": "UserVmManager",
    "disk": "DiskOperator",
    "template": "TemplateOwner",
}

NOT_AUTHORIZED = "User is not authorized to perform this action."

# The permit a REST operation needs: (action, kind) -> permit. "create" is checked on the
# object that will contain the new one (a VM's cluster), the others on the object itself.
_CRUD: dict[str, tuple[str, str, str]] = {
    "vm": ("create_vm", "edit_vm_properties", "delete_vm"),
    "host": ("create_host", "edit_host_configuration", "delete_host"),
    "cluster": ("create_cluster", "edit_cluster_configuration", "delete_cluster"),
    "data_center": (
        "create_storage_pool",
        "edit_storage_pool_configuration",
        "delete_storage_pool",
    ),
    "storage_domain": (
        "create_storage_domain",
        "edit_storage_domain_configuration",
        "delete_storage_domain",
    ),
    "network": (
        "create_storage_pool_network",
        "configure_storage_pool_network",
        "delete_storage_pool_network",
    ),
    "vnic_profile": (
        "create_network_vnic_profile",
        "create_network_vnic_profile",
        "delete_network_vnic_profile",
    ),
    "template": ("create_template", "edit_template_properties", "delete_template"),
    "disk": ("create_disk", "edit_disk_properties", "delete_disk"),
    "vm_pool": ("create_vm_pool", "edit_vm_pool_configuration", "delete_vm_pool"),
    "user": ("manipulate_users",) * 3,
    "group": ("manipulate_users",) * 3,
    "role": ("manipulate_roles",) * 3,
    "permission": ("manipulate_permissions",) * 3,
    "quota": ("configure_quota",) * 3,
    "affinity_group": ("manipulate_affinity_groups",) * 3,
    "tag": ("tag_management",) * 3,
    "event": ("inject_external_events", "audit_log_management", "audit_log_management"),
}
_ACTIONS: dict[tuple[str, str], str] = {
    **{("migrate", "vm"): "migrate_vm", ("previewsnapshot", "vm"): "manipulate_vm_snapshots"},
    **{(a, "vm"): "manipulate_vm_snapshots" for a in ("commitsnapshot", "undosnapshot")},
    **{
        (a, "vm"): "vm_basic_operations"
        for a in ("start", "stop", "shutdown", "reboot", "suspend", "cancelmigration")
    },
    **{(a, "vm"): "change_vm_cd" for a in ("changecd", "ejectcd")},
    **{(a, "vm"): "connect_to_vm" for a in ("ticket", "console", "logon")},
    ("allocatevm", "vm_pool"): "vm_pool_basic_operations",
    ("createsnapshot", "vm"): "manipulate_vm_snapshots",
    ("export", "vm"): "import_export_vm",
    ("copy", "disk"): "configure_disk_storage",
    ("move", "disk"): "configure_disk_storage",
    ("export", "template"): "import_export_vm",
}


def permit_for(action: str, kind: str) -> str:
    """The permit oVirt requires for an operation on an object of ``kind``: ``create``,
    ``edit``, ``delete``, ``view`` or an action verb (``start``, ``migrate``, host
    ``activate`` ...). Anything unknown needs ``configure_engine`` (SuperUser only)."""
    if action == "view":
        return "login"
    crud = _CRUD.get(kind)
    if crud is not None and action in ("create", "edit", "delete"):
        return crud[("create", "edit", "delete").index(action)]
    got = _ACTIONS.get((action, kind))
    if got is not None:
        return got
    if kind == "host":
        return "manipulate_host"
    if kind == "storage_domain":
        return "manipulate_storage_domain"
    return "configure_engine"


class Forbidden(DomainError):
    """The user lacks the permit (HTTP 403)."""

    status = 403


class Permission(Aggregate, frozen=True, kw_only=True):
    KIND = "permission"
    LABEL = "Permission"

    role_id: UUID
    user_id: UUID | None = None
    group_id: UUID | None = None
    object_kind: str = SYSTEM
    object_id: UUID | None = None  # None: the system object
    created_at: str = ""

    @property
    def principal_id(self) -> UUID:
        pid = self.user_id if self.user_id is not None else self.group_id
        assert pid is not None
        return pid


# Bumped whenever any engine applies a permission event: the per-engine lookup index
# below is rebuilt on the next read. (A cache signal only; state is unaffected.)
_GENERATION = [0]


class PermissionAdded(Event, frozen=True, kw_only=True):
    CREATES = "Permission"
    role_id: UUID
    user_id: UUID | None = None
    group_id: UUID | None = None
    object_kind: str = SYSTEM
    object_id: UUID | None = None
    created_at: str = ""

    def evolve(self, agg: Any) -> Any:
        _GENERATION[0] += 1
        return super().evolve(agg)


class PermissionRemoved(Event, frozen=True, kw_only=True):
    DELETES = True

    def evolve(self, agg: Any) -> Any:
        _GENERATION[0] += 1
        return super().evolve(agg)


class UserPermissionDenied(Event, frozen=True, kw_only=True):
    """A user was refused an action: recorded on the user so the audit feed shows it."""

    permit: str
    action: str = ""
    object_kind: str = SYSTEM
    object_id: UUID | None = None

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(agg, version=self.originator_version)


# -- the object hierarchy --------------------------------------------------------------------


def kinds_to_classes(kind: str) -> list[type[Aggregate]]:
    return [c for c in AGGREGATE_TYPES.values() if kind == c.KIND]


def all_of_kind(engine: Engine, kind: str) -> Iterator[Aggregate]:
    seen: set[UUID] = set()
    for cls in kinds_to_classes(kind):
        for obj in engine.all(cls):
            if obj.id not in seen and kind == obj.KIND:
                seen.add(obj.id)
                yield obj


def _attached_vm_ids(engine: Engine, disk_id: UUID) -> list[UUID]:
    out = []
    for vm in all_of_kind(engine, "vm"):
        for att in getattr(vm, "disk_attachments", ()) or ():
            if getattr(att, "disk_id", None) == disk_id:
                out.append(vm.id)
                break
    return out


def parents(engine: Engine, kind: str, obj_id: UUID | None) -> list[tuple[str, UUID | None]]:
    """The objects directly above (kind, id): ``[("system", None)]`` at the top level; an
    empty list for the system object itself."""
    if kind == SYSTEM or obj_id is None:
        return []
    obj = engine.objects.get(obj_id)
    if obj is None:
        return [(SYSTEM, None)]
    kind = obj.KIND or kind
    out: list[tuple[str, UUID | None]] = []
    for attr, parent_kind in PARENT_LINKS.get(kind, ()):
        pid = getattr(obj, attr, None)
        if isinstance(pid, UUID):
            out.append((parent_kind, pid))
    if kind == "template" and not out:
        # A template that names only its cluster belongs to that cluster's data center.
        cluster = engine.objects.get(getattr(obj, "cluster_id", None))  # type: ignore[arg-type]
        dc_id = getattr(cluster, "data_center_id", None)
        if isinstance(dc_id, UUID):
            out.append(("data_center", dc_id))
    if kind == "disk":
        out.extend(("vm", vm_id) for vm_id in _attached_vm_ids(engine, obj_id))
    return out or [(SYSTEM, None)]


class AncestorWalker:
    """Memoized upward walks for one engine state (one check or one listing)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._memo: dict[UUID | None, frozenset[UUID | None]] = {}

    def ancestors(self, kind: str, obj_id: UUID | None) -> frozenset[UUID | None]:
        """Ids of the object itself and everything above it; None stands for system."""
        if obj_id is None:
            return frozenset((None,))
        got = self._memo.get(obj_id)
        if got is not None:
            return got
        self._memo[obj_id] = frozenset((obj_id, None))  # guards against cycles
        out: set[UUID | None] = {obj_id, None}
        for pkind, pid in parents(self.engine, kind, obj_id):
            out |= self.ancestors(pkind, pid)
        result = frozenset(out)
        self._memo[obj_id] = result
        return result


def ancestors(engine: Engine, kind: str, obj_id: UUID | None) -> frozenset[UUID | None]:
    return AncestorWalker(engine).ancestors(kind, obj_id)


# -- checks ----------------------------------------------------------------------------------


class _Index:
    """Permissions by principal for one engine, valid for one generation and count."""

    __slots__ = ("by_principal", "count", "generation")

    def __init__(self, engine: Engine) -> None:
        self.generation = _GENERATION[0]
        self.count = engine.count(Permission)
        by: dict[UUID, list[Permission]] = {}
        for p in list(engine.all(Permission)):
            by.setdefault(p.principal_id, []).append(p)
        self.by_principal = by


_INDEXES: weakref.WeakKeyDictionary[Engine, _Index] = weakref.WeakKeyDictionary()


# -- decisions -------------------------------------------------------------------------------


def remove_permissions_of_principal(tx: Tx, principal_id: UUID) -> int:
    """Drops every permission given to a user or group (when it is removed)."""
    doomed = [p.id for p in tx.engine.all(Permission) if p.principal_id == principal_id]
    for pid in doomed:
        tx.emit(PermissionRemoved, pid)
    return len(doomed)


def remove_object_permissions(tx: Tx, obj_id: UUID) -> int:
    """Drops every permission on an object; other areas call this when removing one."""
    doomed = [p.id for p in tx.engine.all(Permission) if p.object_id == obj_id]
    for pid in doomed:
        tx.emit(PermissionRemoved, pid)
    return len(doomed)


def permissions_on(engine: Engine, obj_id: UUID | None) -> Iterable[Permission]:
    """The permissions given directly on one object (None: on system)."""
    return [p for p in engine.all(Permission) if p.object_id == obj_id]


__all__ = [
    "SYSTEM",
    "Forbidden",
    "Permission",
    "PermissionAdded",
    "PermissionRemoved",
    "UserPermissionDenied",
    "ancestors",
    "parents",
    "permissions_on",
    "permit_for",
    "remove_object_permissions",
    "remove_permissions_of_principal",
]


def permissions_index(engine: Engine, *, fresh: bool = False) -> _Index:
    idx = _INDEXES.get(engine)
    if (
        fresh
        or idx is None
        or idx.generation != _GENERATION[0]
        or idx.count != engine.count(Permission)
    ):
        for attempt in range(3):
            try:
                idx = _Index(engine)
                break
            except RuntimeError:  # the writer changed the engine under us: read again
                if attempt == 2:
                    raise
        assert idx is not None
        _INDEXES[engine] = idx
    return idx
