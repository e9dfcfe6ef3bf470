"""Who may do what: the built-in roles through ``domain.permission.is_permitted``.

Until the permission area lands every authenticated user acts with full rights (there
is only admin@internal then). ``filter=true`` shows a user only the objects they hold a
permission on; a refusal is a 403 fault.
"""

from __future__ import annotations

from typing import Any

from api.faults import forbidden

_ACTION_PERMITS = {"create": "create", "edit": "edit", "delete": "delete", "view": "login"}


def _module() -> Any:
    try:
        from domain import permission
    except ImportError:
        return None
    return permission if hasattr(permission, "is_permitted") else None


def _permitted(env: Any, action: str, res: Any, obj: Any, parent: Any = None) -> bool:
    mod = _module()
    if mod is None or env.user_id is None:
        return True
    engine = getattr(env.reads, "engine", None)
    target = obj
    if target is None and parent is not None:
        target = env.reads.any(parent[1])
    kind = getattr(res, "tag", None) if res is not None else None
    try:
        return bool(mod.is_permitted(engine, env.user_id, f"{action}_{kind}", target))
    except TypeError:
        return bool(mod.is_permitted(engine, env.user_id, action, target))


def check(env: Any, action: str, res: Any, obj: Any, parent: Any = None) -> None:
    if not _permitted(env, action, res, obj, parent):
        raise forbidden(
            f"User {env.user_name} is not permitted to {action} "
            f"{getattr(res, 'label', 'this object')}."
        )


def visible(env: Any, res: Any, objs: list[Any]) -> list[Any]:
    if env.query.get("filter", "").lower() not in ("true", "1"):
        return objs
    if _module() is None or env.user_id is None:
        return objs
    return [o for o in objs if _permitted(env, "view", res, o)]
