"""The vocabulary the collection tables (``api.collections``) are written in.

- ``Resource``: a REST collection: its path (``datacenters``), its XML/JSON element
  (``data_center``), the aggregate class it shows, how each field renders (``fields``),
  its sub-collections (``Sub``) and the ``Input`` of each add, update, remove and action.
- ``Input``: which command class a request becomes and where each command field is read
  in the request body (the readers: ``text``, ``flag``, ``number``, ``ref``...).
- field renderers (``attr``, ``link_to``, ``nested``...): how an object's field is shown.
- the registry ``RESOURCES`` (by path) and ``BY_TAG`` (by element), filled once by
  ``api.collections`` and read by references between collections (``ref``).

Nothing here turns a request into a command or renders an object: that is
``api.resources`` (the interpreter) and ``api.render`` (the renderer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from api.faults import bad_request, not_found
from api.http import BASE
from commands.messages import Command

MISSING: Any = msgspec.UNSET

# A reader: (request body, Env) -> a command field's value, or MISSING.
Reader = Callable[[Any, Any], Any]
# A field renderer: object -> the value tree of one field, or None to leave it out.
Shows = Callable[[Any], Any]

# -- reading request bodies ---------------------------------------------------------


def dig(body: Any, path: str) -> Any:
    cur = body
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def _named(get: Any, path: str) -> Reader:
    """Marks a reader with the XML path it reads (faults name that, not the field)."""
    get.path = path
    return get


def text(path: str) -> Reader:
    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if isinstance(v, dict):
            v = v.get("$text", MISSING)
        if isinstance(v, list):
            raise bad_request(f"Element '{path}' given more than once.", path)
        return v

    return _named(get, path)


def flag(path: str) -> Reader:
    def get(body: Any, env: Any) -> Any:
        v = text(path)(body, env)
        if v is MISSING:
            return v
        low = str(v).strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise bad_request(f"Invalid value '{v}' of '{path}': expected true or false.", path)

    return _named(get, path)


def number(path: str) -> Reader:
    def get(body: Any, env: Any) -> Any:
        v = text(path)(body, env)
        if v is MISSING:
            return v
        try:
            return int(str(v).strip())
        except ValueError:
            raise bad_request(
                f"Invalid value '{v}' of '{path}': expected an integer.", path
            ) from None

    return _named(get, path)


def ref(path: str, resource: str) -> Reader:
    """A reference given as <path id=".."/> or <path><name>..</name></path>."""

    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING or v == "":
            return MISSING
        if not isinstance(v, dict):
            raise bad_request(f"Element '{path}' must carry an id or a name.", path)
        res = RESOURCES[resource]
        if v.get("id"):
            oid = parse_id(v["id"], path)
            if env.reads.get(res.cls, oid) is None:
                raise not_found(f"Entity not found: {res.label}: id={oid}")
            return oid
        name = v.get("name")
        if isinstance(name, str) and name:
            obj = env.reads.by_name(res.cls, name)
            if obj is None:
                raise not_found(f"Entity not found: {res.label}: name={name}")
            return obj.id
        raise bad_request(f"Element '{path}' must carry an id or a name.", path)

    return _named(get, path)


def ident(path: str) -> Reader:
    """The id of <path id=".."/> (or <path><id>..</id></path>) as a UUID."""

    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING or v == "":
            return MISSING
        raw = v.get("id") if isinstance(v, dict) else v
        if not raw:
            raise bad_request(f"Element '{path}' must carry an id.", path)
        return parse_id(raw, path)

    return _named(get, path)


def first_of(*readers: Reader) -> Reader:
    """The first reader that finds something (``alias``, else ``name``)."""

    def get(body: Any, env: Any) -> Any:
        for ex in readers:
            v = ex(body, env)
            if v is not MISSING:
                return v
        return MISSING

    return _named(get, getattr(readers[0], "path", ""))


def within(outer: str, reader: Reader) -> Reader:
    """``reader`` applied to the element ``outer`` (a disk given inline: ``disk.name``)."""

    def get(body: Any, env: Any) -> Any:
        d = dig(body, outer)
        return reader(d, env) if isinstance(d, dict) else MISSING

    return _named(get, f"{outer}." + getattr(reader, "path", ""))


def current_user(body: Any, env: Any) -> Any:
    return env.user_id if env.user_id is not None else MISSING


def version_in(path: str) -> Reader:
    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING:
            return v
        if isinstance(v, dict):
            major, minor = v.get("major", ""), v.get("minor", "")
            if not all(str(v).isascii() and str(v).isdigit() for v in (major, minor)):
                raise bad_request(f"Element '{path}' needs integer major and minor.", path)
            return f"{int(major)}.{int(minor)}"
        return v

    return _named(get, path)


def listed(path: str, item: str, sub: Reader) -> Reader:
    """A list <path><item>..</item>...</path>, each item read by ``sub``."""

    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING:
            return v
        if not isinstance(v, dict):
            return []
        items = v.get(item, [])
        if not isinstance(items, list):
            items = [items]
        out = [sub(i, env) for i in items]
        if any(x is MISSING or x is None for x in out):
            raise bad_request(f"Every <{item}> of '{path}' needs a value.", path)
        return out

    return _named(get, path)


def const(value: Any) -> Reader:
    return lambda body, env: value


def texts(*paths: str) -> dict[str, Reader]:
    """Command fields read as text from the elements of the same names."""
    return {p: text(p) for p in paths}


def flags(*paths: str) -> dict[str, Reader]:
    return {p: flag(p) for p in paths}


def numbers(*paths: str) -> dict[str, Reader]:
    return {p: number(p) for p in paths}


def parse_id(v: Any, field: str = "id") -> UUID:
    try:
        return UUID(str(v))
    except ValueError:
        raise bad_request(f"Invalid id '{v}' of '{field}'.", field) from None


class Input:
    """Which command a request (body, path ids, query) becomes: ``command`` (a class;
    an action that made no command would be hollow, so there is none), ``fields``
    (command field -> reader), ``id_field`` (gets the object's id from the path),
    ``parent_field`` (the parent's id, in sub-collections), ``item_field`` (the
    sub-collection item's id), ``query`` (command field -> query parameter, ``force``...),
    ``result`` (how the command's value is shown in the <action>), ``choose`` (another
    Input for some bodies, e.g. a disk given inline).
    ``api.resources.build`` interprets it."""

    def __init__(
        self,
        command: type[Command],
        fields: dict[str, Reader] | None = None,
        *,
        id_field: str | None = None,
        parent_field: str | None = None,
        query: dict[str, str] | None = None,
        item_field: str | None = None,
        result: Callable[[Any], dict[str, Any]] | None = None,
        choose: Callable[[Any], Input | None] | None = None,
    ) -> None:
        self.command = command
        self.result = result
        self.choose = choose
        self.fields = fields or {}
        self.id_field = id_field
        self.parent_field = parent_field
        self.item_field = item_field
        self.query = query or {}


# -- showing fields -------------------------------------------------------------------


def attr(name: str) -> Shows:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if isinstance(v, UUID):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat()
        return v

    return get


def when(name: str) -> Shows:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if v is None or v == "":
            return None
        if isinstance(v, datetime):
            return v.isoformat()
        return str(v)

    return get


def link_to(resource: str, name: str) -> Shows:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if v is None:
            return None
        return {"href": f"{BASE}/{resource}/{v}", "id": str(v)}

    return get


def version_of(name: str) -> Shows:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if not v:
            return None
        major, _, minor = str(v).partition(".")
        return {"major": major, "minor": minor or "0"}

    return get


def nested(**parts: Shows) -> Shows:
    def get(o: Any) -> Any:
        d = {k: fn(o) for k, fn in parts.items()}
        d = {k: v for k, v in d.items() if v is not None}
        return d or None

    return get


def fixed(value: Any) -> Shows:
    return lambda o: value


def names_list(name: str, inner: str) -> Shows:
    """A list of names, ``{inner: [...]}`` (a network's usages)."""

    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if v is None:
            return None
        return {inner: [str(x) for x in v]}

    return get


def attrs(*names: str) -> list[tuple[str, Shows]]:
    """Fields shown as the object's attributes of the same names."""
    return [(n, attr(n)) for n in names]


def links_to(resource: str, tag: str, name: str) -> Shows:
    """A one-item list of references, ``{tag: [{href, id}]}``, while ``name`` is set."""
    one = link_to(resource, name)

    def get(o: Any) -> Any:
        return {tag: [one(o)]} if getattr(o, name, None) else None

    return get


# -- collections ----------------------------------------------------------------------


class Sub:
    """A sub-collection of an object.

    kind ``child``: another resource's objects whose ``attr`` is the parent's id
    (clusters of a data center); ``embedded``: items held inside the parent aggregate
    (a VM's nics); ``empty``: always an empty list (numanodes while there are none).
    """

    def __init__(
        self,
        path: str,
        kind: str,
        *,
        resource: str | None = None,
        attr: str | None = None,
        tag: str | None = None,
        tags: str | None = None,
        items: Callable[[Any, Any], Iterable[Any]] | None = None,
        fields: list[tuple[str, Shows]] | None = None,
        add: Input | None = None,
        update: Input | None = None,
        remove: Input | None = None,
        actions: dict[str, Input] | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.resource = resource
        self.attr = attr
        self.tag = tag
        self.tags = tags or path
        self.items = items
        self.fields = fields or []
        self.add = add
        self.update = update
        self.remove = remove
        self.actions = actions or {}


def child(path: str, attr_name: str, **kw: Any) -> Sub:
    """The objects of resource ``path`` whose ``attr_name`` is the parent's id."""
    return Sub(path, "child", resource=path, attr=attr_name, **kw)


class Resource:
    """A collection: ``fields`` are (element, renderer) pairs in order (element ``+``
    merges a dict of elements); ``search`` maps a search key to what it reads on an
    object when that is not simply the attribute of that name."""

    def __init__(
        self,
        path: str,
        tag: str,
        shows: type,
        fields: list[tuple[str, Shows]],
        *,
        tags: str | None = None,
        label: str | None = None,
        add: Input | None = None,
        update: Input | None = None,
        remove: Input | None = None,
        actions: dict[str, Input] | None = None,
        subs: list[Sub] | None = None,
        search: dict[str, Callable[[Any, Any], list[str]]] | None = None,
        searchable: bool = True,
    ) -> None:
        self.path = path
        self.tag = tag
        self.tags = tags or tag + "s"
        # The read side (api.reads) looks aggregates up by class name.
        self.cls = shows.__name__
        self.label = label or tag.replace("_", " ").title()
        self.fields = fields
        self.add = add
        self.update = update
        self.remove = remove
        self.actions = actions or {}
        self.subs = {s.path: s for s in subs or []}
        self.search = search or {}
        self.searchable = searchable

    def href(self, obj: Any) -> str:
        return f"{BASE}/{self.path}/{obj.id}"


RESOURCES: dict[str, Resource] = {}
BY_TAG: dict[str, Resource] = {}


def register(*resources: Resource) -> None:
    """Enters collections in the registry (``api.collections`` does, once)."""
    for r in resources:
        RESOURCES[r.path] = r
        BY_TAG[r.tag] = r
