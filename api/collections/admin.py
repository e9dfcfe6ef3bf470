"""The administration collections: users, groups, roles, permissions and tags."""

from __future__ import annotations

from typing import Any
from uuid import uuid5

from api.faults import bad_request
from api.http import BASE
from api.schema import (
    BY_TAG,
    MISSING,
    Input,
    Resource,
    Sub,
    attr,
    attrs,
    child,
    dig,
    flag,
    link_to,
    listed,
    nested,
    parse_id,
    ref,
    text,
    texts,
)
from commands.permission import AddPermission, AddRole, RemovePermission, RemoveRole, UpdateRole
from commands.tag import AddTag, RemoveTag, UpdateTag
from commands.user import AddGroup, AddUser, RemoveGroup, RemoveUser
from domain.permission import Permission
from domain.role import Role
from domain.tag import Tag
from domain.user import Group, User


def _user_name(body: Any, env: Any) -> Any:
    """user_name, else principal, with @domain when a <domain><name> is given; a
    <domain> other than the one the name already carries is a 400 naming it."""
    name = text("user_name")(body, env)
    if name is MISSING:
        name = text("principal")(body, env)
    if name is MISSING:
        return MISSING
    domain = text("domain.name")(body, env)
    if domain is not MISSING and "@" not in str(name):
        name = f"{name}@{domain}"
    elif domain is not MISSING and str(name).rsplit("@", 1)[1] != str(domain):
        raise bad_request(
            f"Element 'domain.name' ('{domain}') is not the domain of user '{name}'.",
            "domain.name",
        )
    return name


USER = Resource(
    "users",
    "user",
    User,
    [
        *attrs("name", "last_name", "user_name", "principal", "email"),
        ("domain", nested(name=attr("domain"))),
    ],
    label="User",
    add=Input(
        AddUser,
        {
            "user_name": _user_name,
            **texts("last_name", "name", "email"),
            **texts("password", "id"),
        },
    ),
    remove=Input(RemoveUser, id_field="user_id"),
    search={"usrname": lambda o, r: [getattr(o, "user_name", "")]},
    subs=[
        child("permissions", "user_id"),
        Sub("roles", "empty", tag="role"),
        Sub("tags", "empty", tag="tag"),
    ],
)

GROUP = Resource(
    "groups",
    "group",
    Group,
    [("name", attr("name")), ("domain", nested(name=attr("domain")))],
    label="Group",
    add=Input(
        AddGroup,
        {
            "name": text("name"),
            "domain": text("domain.name"),
            **texts("description", "id"),
        },
    ),
    remove=Input(RemoveGroup, id_field="group_id"),
    subs=[child("permissions", "group_id")],
)

ROLE = Resource(
    "roles",
    "role",
    Role,
    [
        *attrs("name", "description", "administrative"),
        ("mutable", lambda o: not getattr(o, "builtin", False)),
    ],
    label="Role",
    add=Input(
        AddRole,
        {
            **texts("name", "description"),
            "administrative": flag("administrative"),
            "permits": listed("permits", "permit", lambda v, env: dig(v, "name")),
            "id": text("id"),
        },
    ),
    update=Input(
        UpdateRole,
        {
            **texts("name", "description"),
            "administrative": flag("administrative"),
        },
        id_field="role_id",
    ),
    remove=Input(RemoveRole, id_field="role_id"),
    searchable=False,
    subs=[
        Sub(
            "permits",
            "embedded",
            tag="permit",
            items=lambda o, reads: [_Permit(o, p) for p in getattr(o, "permits", ())],
            fields=[("name", attr("name"))],
        )
    ],
)


class _Permit:
    def __init__(self, role: Any, name: str) -> None:
        self.id = uuid5(role.id, name)
        self.name = name


def _permission_object(o: Any) -> dict[str, Any] | None:
    kind = getattr(o, "object_kind", None)
    oid = getattr(o, "object_id", None)
    if oid is None or not kind:
        return None
    res = BY_TAG.get(kind)
    if res is None:
        return None
    return {kind: {"href": f"{BASE}/{res.path}/{oid}", "id": str(oid)}}


_PERM_KINDS = (
    "data_center",
    "cluster",
    "host",
    "vm",
    "vm_pool",
    "storage_domain",
    "disk",
    "template",
    "network",
    "vnic_profile",
    "quota",
    "affinity_group",
)


def _perm_target(body: Any) -> tuple[str, Any] | None:
    for kind in _PERM_KINDS:
        v = dig(body, kind)
        if isinstance(v, dict) and v.get("id"):
            return kind, v["id"]
    return None


def _perm_kind(body: Any, env: Any) -> Any:
    t = _perm_target(body)
    return t[0] if t else MISSING


def _perm_object_id(body: Any, env: Any) -> Any:
    t = _perm_target(body)
    return parse_id(t[1], t[0]) if t else MISSING


PERMISSION = Resource(
    "permissions",
    "permission",
    Permission,
    [
        ("role", link_to("roles", "role_id")),
        ("user", link_to("users", "user_id")),
        ("group", link_to("groups", "group_id")),
        ("+", _permission_object),
    ],
    label="Permission",
    add=Input(
        AddPermission,
        {
            "role_id": ref("role", "roles"),
            "user_id": ref("user", "users"),
            "group_id": ref("group", "groups"),
            "object_kind": _perm_kind,
            "object_id": _perm_object_id,
        },
    ),
    remove=Input(RemovePermission, id_field="permission_id"),
    searchable=False,
)

TAG = Resource(
    "tags",
    "tag",
    Tag,
    [
        *attrs("name", "description"),
        ("parent", link_to("tags", "parent_id")),
    ],
    label="Tag",
    add=Input(
        AddTag,
        {
            **texts("name", "description"),
            "parent_id": ref("parent", "tags"),
        },
    ),
    update=Input(
        UpdateTag,
        {
            "name": text("name"),
            "description": text("description"),
            "parent_id": ref("parent", "tags"),
        },
        id_field="tag_id",
    ),
    remove=Input(RemoveTag, id_field="tag_id"),
    searchable=False,
)
