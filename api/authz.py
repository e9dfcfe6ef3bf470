"""Who may do what: every request is checked with the built-in roles through
``domain.rules.access_rules.is_permitted``; a refusal is a 403 fault and a UserPermissionDenied
event (``RecordPermissionDenied``). Reads: one rule decides what a user may see
(``Viewer.sees`` over ``domain.rules.access_rules.Sight``, asked through ``can_see`` /
``visible`` for objects and ``event_visible`` / ``visible_events`` for audit entries),
on the permissions of the current state, also for past states (``as_of``) and object
histories: administrators see everything unless they ask ``filter=true``; other users see
what they hold permissions on, directly or through a container.

Until the permission area is present every authenticated user has full rights.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

from api.faults import forbidden
from commands.permission import RecordPermissionDenied
from domain.rules import access_rules as permission
from domain.user import User

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
    ("vms", "tags"): "tag_management",
    ("hosts", "tags"): "tag_management",
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


def _bootstrap_admin(env: Any, engine: Any) -> bool:
    """The one session without a user id: the Manager's administrator before any user
    exists (``api.sso``'s fallback password). Once a user exists it grants nothing."""
    return env.user_id is None and engine is not None and engine.count(User) == 0


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
    engine, lock = _decider(env)
    if engine is None:
        raise Denied(permit, kind, obj_id, action)  # nothing to decide on: fail closed
    with lock if lock is not None else contextlib.nullcontext():
        if _bootstrap_admin(env, engine):
            return
        ok = env.user_id is not None and permission.is_permitted(
            engine, env.user_id, permit, kind, obj_id
        )
    if not ok:
        raise Denied(permit, kind, obj_id, action)


async def deny(api: Any, env: Any, d: Denied) -> Exception:
    """Records the refusal as an event and returns the 403 fault to raise."""
    if env.user_id is not None:
        with contextlib.suppress(Exception):  # recording must not hide the refusal
            await api.bus.execute_async(
                RecordPermissionDenied(
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


def _decider(env: Any) -> tuple[Any, Any]:
    """The Engine (and its lock) that decides permissions: always the current state, also
    when the request reads a past one (``as_of``: the past reads name the live ones)."""
    reads = getattr(env.reads, "decider", env.reads)
    return getattr(reads, "engine", None), getattr(reads, "lock", None)


# Kinds every logged-in user sees (oVirt shows all tags to everyone; what a tag is attached
# to shows only on the objects the user sees).
SEEN_BY_ALL = frozenset({"tag"})


class Viewer:
    """What one user may see in one state of the deciding Engine: administrators
    everything unless they ask ``filter=true``; everyone else what
    ``domain.rules.access_rules.Sight`` shows them (permissions on the object or, through a role
    that shows children, on a container of it). A past object that the current state no
    longer holds is placed by the containers it names itself: it is visible through a
    permission held now, never through the permissions it had then."""

    __slots__ = ("everything", "sight")

    def __init__(self, everything: bool, sight: Any) -> None:
        self.everything = everything
        self.sight = sight  # None: nothing but what ``everything`` grants

    def sees(self, kind: str, obj: Any) -> bool:
        """THE visibility rule: whether the user may see the object (an aggregate, or
        only its id) of ``kind``."""
        return self.everything or (
            self.sight is not None and (kind in SEEN_BY_ALL or self.sight.sees(kind, obj))
        )


_NOTHING = Viewer(False, None)


def viewer(env: Any) -> Viewer:
    """The request's user's Viewer at the current state. Fails closed: a request with no
    deciding state, or without a user once users exist, sees nothing."""
    engine, _ = _decider(env)
    if engine is None:
        return _NOTHING
    if env.user_id is None:
        return Viewer(True, None) if _bootstrap_admin(env, engine) else _NOTHING
    filtered = env.query.get("filter", "").lower() in ("true", "1")
    user_id = env.user_id
    return _memo(
        ("viewer", user_id, filtered, id(engine), engine.position),
        lambda: Viewer(
            not filtered and permission.is_admin(engine, user_id),
            permission.Sight(engine, user_id),
        ),
    )


def sees_everything(env: Any) -> bool:
    """Whether nothing is hidden from the request's user (an unfiltered administrator)."""
    _, lock = _decider(env)
    with lock if lock is not None else contextlib.nullcontext():
        v = viewer(env)
        return v.everything


def _kind(res_or_kind: Any) -> str:
    return res_or_kind if isinstance(res_or_kind, str) else res_or_kind.tag


def can_see(env: Any, res_or_kind: Any, obj: Any) -> bool:
    """Whether the request's user may see one object (``res_or_kind``: a Resource or the
    permission kind, ``vm``). Every read path asks this (or ``visible`` /
    ``event_visible``, which ask it)."""
    _, lock = _decider(env)
    with lock if lock is not None else contextlib.nullcontext():
        v = viewer(env)
        return v.sees(_kind(res_or_kind), obj)


def visible(env: Any, res_or_kind: Any, objs: list[Any]) -> list[Any]:
    """The objects of a list the user may see (``can_see`` of each)."""
    _, lock = _decider(env)
    with lock if lock is not None else contextlib.nullcontext():
        v = viewer(env)
        if v.everything:
            return objs
        kind = _kind(res_or_kind)
        return [o for o in objs if v.sees(kind, o)]


# The object references an event entry carries, by the permission kind that governs them.
_EVENT_KINDS = (
    ("vm", "vm"),
    ("host", "host"),
    ("cluster", "cluster"),
    ("data_center", "data_center"),
    ("storage_domain", "storage_domain"),
    ("template", "template"),
)


def _sees_event(v: Viewer, me: str, e: dict[str, Any]) -> bool:
    if v.everything or (me and e.get("user") == me):
        return True
    for tag, kind in _EVENT_KINDS:
        ref = _as_uuid(e.get(tag)) if e.get(tag) else None
        if ref is not None and v.sees(kind, ref):
            return True
    return False


def event_visible(env: Any, e: dict[str, Any]) -> bool:
    """Whether the user may read one audit entry: administrators (unless ``filter=true``)
    all; others those about an object they may see (``can_see``), or their own actions.
    Asked per entry as it is read or sent, so a permission given or taken away applies
    to the next one."""
    _, lock = _decider(env)
    with lock if lock is not None else contextlib.nullcontext():
        v = viewer(env)
        return _sees_event(v, str(env.user_id or ""), e)


def visible_events(env: Any, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit entries of a list the user may read (``event_visible`` of each)."""
    _, lock = _decider(env)
    with lock if lock is not None else contextlib.nullcontext():
        v = viewer(env)
        if v.everything:
            return entries
        me = str(env.user_id or "")
        return [e for e in entries if _sees_event(v, me, e)]


def _as_uuid(text: Any) -> Any:
    try:
        return UUID(str(text))
    except ValueError:
        return None
