"""Who may do what, across principals, roles and objects: permission checks
(``is_permitted``, ``visible_object_ids``, ``can_login``, ``is_admin``), granting and
removing permissions (a user or group, a role, an object; the last superuser of admin
stays), owner grants on creation, refused requests recorded, and role edits refused while
a permission uses the role.
"""

from __future__ import annotations

from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, NotFound, Tx
from domain.engine import Engine
from domain.permission import (
    NOT_AUTHORIZED,
    OWNER_ROLES,
    PARENT_LINKS,
    SYSTEM,
    Forbidden,
    Permission,
    PermissionAdded,
    PermissionRemoved,
    UserPermissionDenied,
    all_of_kind,
    ancestors,
    kinds_to_classes,
    parents,
    permissions_index,
)
from domain.role import (
    BUILTIN_BY_NAME,
    SUPER_USER_ROLE_ID,
    Role,
    RoleRemoved,
    RoleUpdated,
    check_permits,
)
from domain.user import ADMIN_USER_NAME, Group, User, group_ids_of


def principal_ids(engine: Engine, user_id: UUID) -> frozenset[UUID]:
    """The user and every group whose permissions apply to it."""
    return frozenset((user_id, *group_ids_of(engine, user_id)))


def permissions_of(engine: Engine, user_id: UUID) -> list[Permission]:
    """Every permission that applies to the user directly or through a group."""
    if engine.find(User, user_id) is None:
        return []
    who = principal_ids(engine, user_id)
    for fresh in (False, True):
        idx = permissions_index(engine, fresh=fresh)
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
    return {o.id for o in all_of_kind(engine, kind) if sight.sees(kind, o)}


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
    by: UUID | None = None,
) -> UUID:
    """Gives a role to a user or a group on an object (``object_kind="system"``: everything).
    ``by``: the user asking (None: the Manager itself); an administrative role only from a
    SuperUser of the whole system, as oVirt (else any holder of a VM's permissions could
    make itself an administrator, who sees everything)."""
    if (user_id is None) == (group_id is None):
        raise DomainError("Cannot add Permission. Give either a user or a group.", field="user")
    role = tx.engine.get(Role, role_id, field="role")
    if role.administrative and by is not None and not _system_superuser(tx.engine, by):
        raise Forbidden(
            "Cannot add Permission. Only a SuperUser of the whole system may give an "
            "administrative role."
        )
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


def _system_superuser(engine: Engine, user_id: UUID) -> bool:
    """Whether the user holds SuperUser on the system object (directly or by a group)."""
    return any(
        p.role_id == SUPER_USER_ROLE_ID and p.object_id is None
        for p in permissions_of(engine, user_id)
    )


def remove_permission(tx: Tx, perm_id: UUID, by: UUID | None = None) -> None:
    """``by`` as for ``add_permission``: an administrative role's permission is taken away
    only by a SuperUser of the whole system."""
    perm = tx.engine.get(Permission, perm_id)
    role = tx.engine.find(Role, perm.role_id)
    administrative = role is not None and role.administrative
    if administrative and by is not None and not _system_superuser(tx.engine, by):
        raise Forbidden(
            "Cannot remove Permission. Only a SuperUser of the whole system may take away "
            "an administrative role."
        )
    if _is_last_admin_superuser(tx.engine, perm):
        raise DomainError(
            "Cannot remove Permission. The last SuperUser permission of admin@internal "
            "cannot be removed."
        )
    tx.emit(PermissionRemoved, perm_id)


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


def update_role(
    tx: Tx,
    role_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    administrative: bool | UnsetType = UNSET,
    permits: tuple[str, ...] | list[str] | UnsetType = UNSET,
    view_children: bool | UnsetType = UNSET,
) -> None:
    role = tx.engine.get(Role, role_id)
    _require_mutable(role, "update")
    if name is not UNSET and name != role.name:
        tx.engine.require_unique_name(("role",), name, label="Role", own_id=role_id)
    admin = role.administrative if administrative is UNSET else administrative
    new_permits = role.permits if permits is UNSET else tuple(permits)
    if admin != role.administrative and _in_use(tx, role_id):
        raise DomainError("Cannot update Role. The Role type cannot be changed while in use.")
    checked = check_permits(new_permits, administrative=admin)
    changes = {
        k: v
        for k, v in dict(
            name=name,
            description=description,
            administrative=administrative,
            permits=checked if permits is not UNSET else UNSET,
            view_children=view_children,
        ).items()
        if v is not UNSET and v != getattr(role, k)
    }
    if changes:
        tx.emit(RoleUpdated, role_id, **changes)


def remove_role(tx: Tx, role_id: UUID) -> None:
    role = tx.engine.get(Role, role_id)
    _require_mutable(role, "remove")
    if _in_use(tx, role_id):
        raise DomainError("Cannot remove Role. The Role is in use by permissions.")
    tx.emit(RoleRemoved, role_id)


def _in_use(tx: Tx, role_id: UUID) -> bool:

    return any(p.role_id == role_id for p in tx.engine.all(Permission))


def _target(obj_kind: str | Aggregate | None, obj_id: UUID | None) -> tuple[str, UUID | None]:
    if obj_kind is None:
        return SYSTEM, None
    if isinstance(obj_kind, Aggregate):
        return obj_kind.KIND, obj_kind.id
    return obj_kind, obj_id


def _check_object(engine: Engine, kind: str, obj_id: UUID | None) -> tuple[str, UUID | None]:
    if kind == SYSTEM:
        return SYSTEM, None
    if obj_id is None:
        raise DomainError(f"Cannot add Permission. A {kind} needs an id.", field="object_id")
    obj = engine.objects.get(obj_id)
    if obj is None or kind != obj.KIND:
        label = kinds_to_classes(kind)[0].LABEL if kinds_to_classes(kind) else kind
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


def _require_mutable(role: Role, action: str) -> None:
    if role.builtin:
        raise DomainError(f"Cannot {action} Role. The Role is a built-in, read-only Role.")
