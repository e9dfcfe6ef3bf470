"""The interpreter of the collection table: turns a request (body, path ids, query) into
the command its ``Input`` names, and answers what a search key reads on an object.

The table itself is ``api.collections`` (one module per area, in the vocabulary of
``api.schema``); the renderer is ``api.render``. ``RESOURCES`` (collections by path) is
the table's registry, exported here for the modules that route by path.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.collections import BY_TAG, RESOURCES
from api.faults import bad_request
from api.http import BASE
from api.schema import MISSING, Input, Resource
from commands.messages import Command, parse_command
from domain.base import InvalidInput

__all__ = ["BASE", "BY_TAG", "RESOURCES", "build", "search_values"]


def build(
    inp: Input,
    body: Any,
    env: Any,
    *,
    obj_id: UUID | None = None,
    parent_id: UUID | None = None,
    item_id: UUID | None = None,
    query: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Command:
    """The command ``inp`` makes of the request; a bad field is a 400 fault naming the
    request's element (``cpu.topology.cores``), not the command's field."""
    if inp.choose is not None:
        other = inp.choose(body if isinstance(body, dict) else {})
        if other is not None:
            return build(
                other,
                body,
                env,
                obj_id=obj_id,
                parent_id=parent_id,
                item_id=item_id,
                query=query,
                extra=extra,
            )
    cls = inp.command
    known = set(cls.__struct_fields__)
    data: dict[str, Any] = {}
    for field, ex in inp.fields.items():
        if field not in known:
            continue
        v = ex(body if isinstance(body, dict) else {}, env)
        if v is not MISSING:
            data[field] = v
    for field, param in inp.query.items():
        if field in known and query and param in query:
            data[field] = query[param].lower() in ("true", "1")
    for field_name, v in (
        (inp.id_field, obj_id),
        (inp.parent_field, parent_id),
        (inp.item_field, item_id),
    ):
        if field_name and v is not None and field_name in known:
            data[field_name] = v
    for field, v in (extra or {}).items():
        if field in known:
            data[field] = v
    if "actor" in known:
        data["actor"] = env.user_name
        data["actor_id"] = env.user_id
        data["correlation_id"] = env.correlation_id
    try:
        return parse_command(cls, data)
    except InvalidInput as e:
        name = xml_name(inp, e.field)
        detail = e.message
        if name and e.field and name != e.field:
            detail = detail.replace(f"'{e.field}'", f"'{name}'").replace(
                f"`{e.field}`", f"`{name}`"
            )
        raise bad_request(detail, name) from None


def xml_name(inp: Input, field: str | None) -> str | None:
    """The request element a command field is read from."""
    if field is None:
        return None
    head = field.split(".", 1)[0]
    ex = inp.fields.get(head)
    return getattr(ex, "path", None) or field


def search_values(res: Resource, obj: Any, key: str, reads: Any) -> list[str]:
    """What search key ``key`` reads on ``obj``: the table's own reading, else the
    attribute of that name (an ``_id`` attribute matches the referenced object's id or
    name); an unknown key is a 400 fault."""
    fn = res.search.get(key)
    if fn is not None:
        return [str(v) for v in fn(obj, reads)]
    for cand in (key, f"{key}_id"):
        if hasattr(obj, cand):
            v = getattr(obj, cand)
            if cand.endswith("_id") and v is not None:
                target = reads.any(v)
                names = [str(v)]
                if target is not None and hasattr(target, "name"):
                    names.append(target.name)
                return names
            if isinstance(v, bool):
                return ["true" if v else "false"]
            if v is None:
                return []  # no value: matches no pattern (oVirt's NULL)
            if isinstance(v, tuple):
                return [str(x) for x in v]
            return [str(v)]
    raise bad_request(f"Invalid search key '{key}' for {res.tags}.", "search")
