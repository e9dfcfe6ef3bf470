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

from domain.base import AGGREGATE_TYPES, Aggregate, DomainError, Event, NotFound, Tx
from domain.role import BUILTIN_BY_NAME, SUPER_USER_ROLE_ID, Role
from domain.user import ADMIN_USER_NAME, Group, User, group_ids_of

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


def _kinds_to_classes(kind: str) -> list[type[Aggregate]]:
    return [c for c in AGGREGATE_TYPES.values() if kind == c.KIND]


def _objects_of_kind(engine: Engine, kind: str) -> Iterator[Aggregate]:
    seen: set[UUID] = set()
    for cls in _kinds_to_classes(kind):
        for obj in engine.all(cls):
            if obj.id not in seen and kind == obj.KIND:
                seen.add(obj.id)
                yield obj


def _attached_vm_ids(engine: Engine, disk_id: UUID) -> list[UUID]:
    out = []
    for vm in _objects_of_kind(engine, "vm"):
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


class _Walker:
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
    return _Walker(engine).ancestors(kind, obj_id)


# -- checks ----------------------------------------------------------------------------------


def principal_ids(engine: Engine, user_id: UUID) -> frozenset[UUID]:
    """The user and every group whose permissions apply to it."""
    return frozenset((user_id, *group_ids_of(engine, user_id)))


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


def _index(engine: Engine, *, fresh: bool = False) -> _Index:
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


def permissions_of(engine: Engine, user_id: UUID) -> list[Permission]:
    """Every permission that applies to the user directly or through a group."""
    if engine.find(User, user_id) is None:
        return []
    who = principal_ids(engine, user_id)
    for fresh in (False, True):
        idx = _index(engine, fresh=fresh)
        out = [p for pid in who for p in idx.by_principal.get(pid, ())]
        # An index entry must still be the live object (an undone batch leaves no event).
        if all(engine.objects.get(p.id) is p for p in out):
            return out
    return [p for p in engine.all(Permission) if p.principal_id in who]


def permits_on(engine: Engine, user_id: UUID, obj_kind: str, obj_id: UUID | None) -> set[str]:
    """All the permits the user holds on the object, directly or inherited."""
    above = ancestors(engine, obj_kind, obj_id)
    out: set[str] = set()
    for p in permissions_of(engine, user_id):
        if p.object_id in above:
            role = engine.find(Role, p.role_id)
            if role is not None:
                out.update(role.permits)
    return out


def _target(obj_kind: str | Aggregate | None, obj_id: UUID | None) -> tuple[str, UUID | None]:
    if obj_kind is None:
        return SYSTEM, None
    if isinstance(obj_kind, Aggregate):
        return obj_kind.KIND, obj_kind.id
    return obj_kind, obj_id


def is_permitted(
    engine: Engine,
    user_id: UUID,
    permit: str,
    obj_kind: str | Aggregate | None,
    obj_id: UUID | None = None,
) -> bool:
    """Whether the user holds ``permit`` on the object, on anything above it, or on system,
    directly or through one of its groups. The object is ``(kind, id)``; an aggregate in
    place of the kind, or None (the system object), is accepted too."""
    kind, oid = _target(obj_kind, obj_id)
    perms = permissions_of(engine, user_id)
    if not perms:
        return False
    above = ancestors(engine, kind, oid)
    for p in perms:
        if p.object_id in above:
            role = engine.find(Role, p.role_id)
            if role is not None and permit in role.permits:
                return True
    return False


def require_permit(
    engine: Engine,
    user_id: UUID,
    permit: str,
    obj_kind: str | Aggregate | None,
    obj_id: UUID | None = None,
) -> None:
    if not is_permitted(engine, user_id, permit, obj_kind, obj_id):
        raise Forbidden(NOT_AUTHORIZED)


def can_login(engine: Engine, user_id: UUID) -> bool:
    """oVirt lets a user in when any role it holds, on any object, has the login permit."""
    for p in permissions_of(engine, user_id):
        role = engine.find(Role, p.role_id)
        if role is not None and "login" in role.permits:
            return True
    return False


def is_admin(engine: Engine, user_id: UUID) -> bool:
    """Whether the user holds any administrative role (may use the administration API)."""
    for p in permissions_of(engine, user_id):
        role = engine.find(Role, p.role_id)
        if role is not None and role.administrative:
            return True
    return False


class Sight:
    """What one user may see in one engine state, in the user (``filter=true``) view: an
    object the user holds any permission on, directly, or one below an object on which it
    holds a role that shows children (creator roles such as PowerUserRole on a cluster do
    not show its VMs). Below means: under the object's containers as the engine has them
    (``parents``); an object the engine does not hold (a past one that was removed) is
    placed by the containers it names itself, so only permissions of this state count.
    """

    __slots__ = ("_above", "direct", "engine", "showing")

    def __init__(self, engine: Engine, user_id: UUID) -> None:
        self.engine = engine
        perms = permissions_of(engine, user_id)
        self.direct: set[UUID | None] = {p.object_id for p in perms}
        self.showing: set[UUID | None] = set()
        for p in perms:
            role = engine.find(Role, p.role_id)
            if role is not None and role.view_children:
                self.showing.add(p.object_id)
        self._above: dict[tuple[str, UUID | None], frozenset[UUID | None]] = {}

    def sees(self, kind: str, obj: Aggregate | UUID) -> bool:
        oid = obj if isinstance(obj, UUID) else obj.id
        if oid in self.direct:
            return True
        if not self.showing:
            return False
        if None in self.showing:  # a role that shows children, on the system
            return True
        ups = self._up(kind, obj)
        return any(not self.showing.isdisjoint(self._over(k, pid)) for k, pid in ups)

    def _up(self, kind: str, obj: Aggregate | UUID) -> list[tuple[str, UUID | None]]:
        oid = obj if isinstance(obj, UUID) else obj.id
        if oid in self.engine.objects:
            return parents(self.engine, kind, oid)
        if isinstance(obj, UUID):  # only the id of an object this state does not hold
            return []
        out: list[tuple[str, UUID | None]] = []
        for attr, parent_kind in PARENT_LINKS.get(kind, ()):
            pid = getattr(obj, attr, None)
            if isinstance(pid, UUID):
                out.append((parent_kind, pid))
        return out

    def _over(self, kind: str, oid: UUID | None) -> frozenset[UUID | None]:
        key = (kind, oid)
        got = self._above.get(key)
        if got is None:
            got = self._above[key] = ancestors(self.engine, kind, oid)
        return got


def visible_object_ids(engine: Engine, user_id: UUID, kind: str) -> set[UUID]:
    """The objects of ``kind`` the user may see in the user (``filter=true``) view
    (``Sight``)."""
    sight = Sight(engine, user_id)
    return {o.id for o in _objects_of_kind(engine, kind) if sight.sees(kind, o)}


# -- decisions -------------------------------------------------------------------------------


def _check_object(engine: Engine, kind: str, obj_id: UUID | None) -> tuple[str, UUID | None]:
    if kind == SYSTEM:
        return SYSTEM, None
    if obj_id is None:
        raise DomainError(f"Cannot add Permission. A {kind} needs an id.", field="object_id")
    obj = engine.objects.get(obj_id)
    if obj is None or kind != obj.KIND:
        label = _kinds_to_classes(kind)[0].LABEL if _kinds_to_classes(kind) else kind
        raise NotFound(f"{label} {obj_id} not found.", field="object_id")
    return kind, obj_id


def _same(
    engine: Engine,
    role_id: UUID,
    principal_id: UUID,
    obj_id: UUID | None,
) -> Permission | None:
    for p in engine.all(Permission):
        if p.role_id == role_id and p.principal_id == principal_id and p.object_id == obj_id:
            return p
    return None


def add_permission(
    tx: Tx,
    *,
    role_id: UUID,
    user_id: UUID | None = None,
    group_id: UUID | None = None,
    object_kind: str = SYSTEM,
    object_id: UUID | None = None,
    id: UUID | None = None,
    check_object: bool = True,
) -> UUID:
    """Gives a role to a user or a group on an object (``object_kind="system"``: everything)."""
    if (user_id is None) == (group_id is None):
        raise DomainError("Cannot add Permission. Give either a user or a group.", field="user")
    role = tx.engine.get(Role, role_id, field="role")
    if user_id is not None:
        tx.engine.get(User, user_id, field="user")
    if group_id is not None:
        tx.engine.get(Group, group_id, field="group")
    if check_object:
        object_kind, object_id = _check_object(tx.engine, object_kind, object_id)
    elif object_kind == SYSTEM:
        object_id = None
    principal = user_id if user_id is not None else group_id
    assert principal is not None
    if _same(tx.engine, role.id, principal, object_id) is not None:
        raise DomainError("Cannot add Permission. Permission already exists.")
    perm_id = tx.new_id(id)
    tx.emit(
        PermissionAdded,
        perm_id,
        role_id=role.id,
        user_id=user_id,
        group_id=group_id,
        object_kind=object_kind,
        object_id=object_id,
        created_at=tx.now.isoformat(),
    )
    return perm_id


def _is_last_admin_superuser(engine: Engine, perm: Permission) -> bool:
    if perm.role_id != SUPER_USER_ROLE_ID or perm.object_id is not None or perm.user_id is None:
        return False
    user = engine.find(User, perm.user_id)
    if user is None or user.user_name != ADMIN_USER_NAME:
        return False
    others = [
        p
        for p in engine.all(Permission)
        if p.id != perm.id
        and p.user_id == perm.user_id
        and p.role_id == SUPER_USER_ROLE_ID
        and p.object_id is None
    ]
    return not others


def remove_permission(tx: Tx, perm_id: UUID) -> None:
    perm = tx.engine.get(Permission, perm_id)
    if _is_last_admin_superuser(tx.engine, perm):
        raise DomainError(
            "Cannot remove Permission. The last SuperUser permission of admin@internal "
            "cannot be removed."
        )
    tx.emit(PermissionRemoved, perm_id)


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


def grant_owner(tx: Tx, user_id: UUID | None, kind: str, obj_id: UUID) -> UUID | None:
    """Makes the user who created an object its owner (UserVmManager on a VM, DiskOperator
    on a disk, TemplateOwner on a template). The object may be created in the same Tx, so
    it is not looked up. Returns the new permission's id, or None when there is no such
    user, no owner role for the kind, or the permission exists already."""
    role_name = OWNER_ROLES.get(kind)
    if user_id is None or role_name is None:
        return None
    if tx.engine.find(User, user_id) is None:
        return None
    role_id = BUILTIN_BY_NAME[role_name].id
    if tx.engine.find(Role, role_id) is None:
        return None  # before first start there are no roles
    if _same(tx.engine, role_id, user_id, obj_id) is not None:
        return None
    return add_permission(
        tx,
        role_id=role_id,
        user_id=user_id,
        object_kind=kind,
        object_id=obj_id,
        check_object=False,
    )


def record_permission_denied(
    tx: Tx,
    user_id: UUID,
    permit: str,
    *,
    action: str = "",
    object_kind: str = SYSTEM,
    object_id: UUID | None = None,
) -> bool:
    """Records that the user was refused; False (nothing recorded) for an unknown user."""
    if tx.engine.find(User, user_id) is None:
        return False
    tx.emit(
        UserPermissionDenied,
        user_id,
        permit=permit,
        action=action,
        object_kind=object_kind,
        object_id=object_id,
    )
    return True


def permissions_on(engine: Engine, obj_id: UUID | None) -> Iterable[Permission]:
    """The permissions given directly on one object (None: on system)."""
    return [p for p in engine.all(Permission) if p.object_id == obj_id]


__all__ = [
    "SYSTEM",
    "Forbidden",
    "Permission",
    "PermissionAdded",
    "PermissionRemoved",
    "Sight",
    "UserPermissionDenied",
    "add_permission",
    "ancestors",
    "can_login",
    "grant_owner",
    "is_admin",
    "is_permitted",
    "parents",
    "permissions_of",
    "permissions_on",
    "permit_for",
    "permits_on",
    "record_permission_denied",
    "remove_object_permissions",
    "remove_permission",
    "remove_permissions_of_principal",
    "require_permit",
    "visible_object_ids",
]
