"""Who may do what: every request is checked with the built-in roles through
``domain.rules.access_rules.is_permitted``; a refusal is a 403 fault and a UserPermissionDenied
event (``RecordPermissionDenied``). Reads: administrators see everything unless they ask
``filter=true``; other users (and filter=true) see only what they hold permissions on.

Until the permission area is present every authenticated user has full rights.
"""

from __future__ import annotations

import contextlib
from typing import Any

from api.faults import forbidden

# path -> (create, edit, delete, default action permit)
PERMITS: dict[str, tuple[str, str, str, str]] = {
    "datacenters": (
        "create_storage_pool",
        "edit_storage_pool_configuration",
        "delete_storage_pool",
        "edit_storage_pool_configuration",
    ),
    "clusters": (
        "create_cluster",
        "edit_cluster_configuration",
        "delete_cluster",
        "edit_cluster_configuration",
    ),
    "hosts": ("create_host", "edit_host_configuration", "delete_host", "manipulate_host"),
    "storagedomains": (
        "create_storage_domain",
        "edit_storage_domain_configuration",
        "delete_storage_domain",
        "manipulate_storage_domain",
    ),
    "networks": (
        "create_storage_pool_network",
        "configure_storage_pool_network",
        "delete_storage_pool_network",
        "configure_storage_pool_network",
    ),
    "vnicprofiles": (
        "create_network_vnic_profile",
        "configure_network_vnic_profile",
        "delete_network_vnic_profile",
        "configure_network_vnic_profile",
    ),
    "vms": ("create_vm", "edit_vm_properties", "delete_vm", "vm_basic_operations"),
    "disks": ("create_disk", "edit_disk_properties", "delete_disk", "edit_disk_properties"),
    "templates": (
        "create_template",
        "edit_template_properties",
        "delete_template",
        "edit_template_properties",
    ),
    "vmpools": (
        "create_vm_pool",
        "edit_vm_pool_configuration",
        "delete_vm_pool",
        "vm_pool_basic_operations",
    ),
    "users": ("manipulate_users",) * 4,
    "groups": ("manipulate_users",) * 4,
    "roles": ("manipulate_roles",) * 4,
    "permissions": ("manipulate_permissions",) * 4,
    "tags": ("tag_management",) * 4,
    "quotas": ("configure_quota",) * 4,
    "affinitygroups": ("manipulate_affinity_groups",) * 4,
    "events": ("inject_external_events",) * 4,
}
ACTION_PERMITS = {
    ("vms", "migrate"): "migrate_vm",
    ("vms", "cancelmigration"): "migrate_vm",
    ("vms", "ticket"): "connect_to_vm",
    ("vms", "previewsnapshot"): "manipulate_vm_snapshots",
    ("vms", "commitsnapshot"): "manipulate_vm_snapshots",
    ("vms", "undosnapshot"): "manipulate_vm_snapshots",
}
SUB_PERMITS = {
    ("vms", "nics"): "configure_vm_network",
    ("vms", "diskattachments"): "configure_vm_storage",
    ("vms", "snapshots"): "manipulate_vm_snapshots",
    ("vms", "cdroms"): "change_vm_cd",
    ("datacenters", "storagedomains"): "manipulate_storage_domain",
    ("networks", "vnicprofiles"): "create_network_vnic_profile",
}
_WHAT = {"create": 0, "edit": 1, "delete": 2, "action": 3}
# Command fields naming where a new object goes, in the permission hierarchy's terms.
_SCOPES = (
    ("cluster_id", "cluster"),
    ("network_id", "network"),
    ("storage_domain_id", "storage_domain"),
    ("data_center_id", "data_center"),
    ("pool_id", "vm_pool"),
    ("vm_id", "vm"),
)


def _module() -> Any:
    try:
        from domain.rules import access_rules as permission
    except ImportError:
        return None
    return permission if hasattr(permission, "is_permitted") else None


def permit_for(path: str, what: str, verb: str | None = None, sub: str | None = None) -> str:
    if sub == "permissions":
        return "manipulate_permissions"
    if sub is not None and (path, sub) in SUB_PERMITS:
        return SUB_PERMITS[(path, sub)]
    if verb is not None and (path, verb) in ACTION_PERMITS:
        return ACTION_PERMITS[(path, verb)]
    row = PERMITS.get(path)
    if row is None:
        return "configure_engine"
    return row[_WHAT[what]]


def scope_of(cmd: Any) -> tuple[str, Any]:
    for field, kind in _SCOPES:
        v = getattr(cmd, field, None)
        if v is not None:
            return kind, v
    return "system", None


class Denied(Exception):
    def __init__(self, permit: str, kind: str, obj_id: Any, action: str) -> None:
        self.permit, self.kind, self.obj_id, self.action = permit, kind, obj_id, action


def check(env: Any, permit: str, kind: str, obj_id: Any, action: str) -> None:
    """Raises Denied when the user lacks ``permit`` on the object (kind, id)."""
    mod = _module()
    if mod is None or env.user_id is None:
        return
    engine = getattr(env.reads, "engine", None)
    if engine is None:
        return
    with env.reads.lock:
        ok = mod.is_permitted(engine, env.user_id, permit, kind, obj_id)
    if not ok:
        raise Denied(permit, kind, obj_id, action)


async def deny(api: Any, env: Any, d: Denied) -> Exception:
    """Records the refusal as an event and returns the 403 fault to raise."""
    import commands.all  # noqa: F401
    from commands.messages import COMMAND_TYPES

    cls = COMMAND_TYPES.get("RecordPermissionDenied")
    if cls is not None and env.user_id is not None:
        with contextlib.suppress(Exception):  # recording must not hide the refusal
            await api.bus.execute_async(
                cls(
                    user_id=env.user_id,
                    permit=d.permit,
                    action=d.action[:4000],
                    object_kind=d.kind,
                    object_id=d.obj_id,
                    actor=env.user_name,
                    actor_id=env.user_id,
                )
            )
    return forbidden(f"User {env.user_name} is not authorized to perform this action ({d.permit}).")


_MEMO: dict[tuple[Any, ...], Any] = {}


def _memo(key: tuple[Any, ...], fn: Any) -> Any:
    """Remembers an answer until the engine moves (the position is part of the key)."""
    hit = _MEMO.get(key, _MEMO)
    if hit is _MEMO:
        if len(_MEMO) > 1000:
            _MEMO.clear()
        hit = _MEMO[key] = fn()
    return hit


def visible(env: Any, res: Any, objs: list[Any]) -> list[Any]:
    mod = _module()
    if mod is None or env.user_id is None:
        return objs
    engine = getattr(env.reads, "engine", None)
    if engine is None:
        return objs
    want_filter = env.query.get("filter", "").lower() in ("true", "1")
    pos = (id(engine), engine.position)
    with env.reads.lock:
        if not want_filter and _memo(
            ("admin", env.user_id, *pos), lambda: mod.is_admin(engine, env.user_id)
        ):
            return objs
        ids = _memo(
            ("visible", env.user_id, res.tag, *pos),
            lambda: mod.visible_object_ids(engine, env.user_id, res.tag),
        )
    return [o for o in objs if o.id in ids]


# The object references an event entry carries, by the permission kind that governs them.
_EVENT_KINDS = (
    ("vm", "vm"),
    ("host", "host"),
    ("cluster", "cluster"),
    ("data_center", "data_center"),
    ("storage_domain", "storage_domain"),
    ("template", "template"),
)


def visible_events(env: Any, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit entries a user may read: all for administrators (unless ``filter=true``),
    else those about an object the user may see, or about the user's own actions."""
    mod = _module()
    if mod is None or env.user_id is None:
        return entries
    engine = getattr(env.reads, "engine", None)
    if engine is None:
        return entries
    want_filter = env.query.get("filter", "").lower() in ("true", "1")
    pos = (id(engine), engine.position)
    with env.reads.lock:
        if not want_filter and _memo(
            ("admin", env.user_id, *pos), lambda: mod.is_admin(engine, env.user_id)
        ):
            return entries
        seen = {
            tag: _memo(
                ("visible", env.user_id, kind, *pos),
                lambda kind=kind: mod.visible_object_ids(engine, env.user_id, kind),
            )
            for tag, kind in _EVENT_KINDS
        }
    me = str(env.user_id)
    return [
        e
        for e in entries
        if e.get("user") == me
        or any(e.get(tag) and _as_uuid(e[tag]) in seen[tag] for tag, _ in _EVENT_KINDS)
    ]


def _as_uuid(text: Any) -> Any:
    from uuid import UUID

    try:
        return UUID(str(text))
    except ValueError:
        return None


def can_see(env: Any, res: Any, obj: Any) -> bool:
    return bool(visible(env, res, [obj]))
