"""The renderer: an object of a collection as its XML/JSON value tree, the fast
pre-serialized XML of the same, sub-collection items, ``follow=`` inlining, and the cache
of serialized objects (kept per object version).

It reads the table (``api.collections``) and the field renderers each declaration holds;
it decides nothing about permissions (``api.authz``) or routing (``api.server``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from uuid import UUID

from api import jsonio, xmlio
from api.collections import RESOURCES
from api.http import BASE
from api.schema import Resource, Sub

# -- one object ---------------------------------------------------------------------


def tree(res: Resource, obj: Any) -> dict[str, Any]:
    """The value tree of ``obj``: href, id, actions, fields in order, sub-collection links."""
    href = res.href(obj)
    d: dict[str, Any] = {"href": href, "id": str(obj.id)}
    if res.actions:
        d["actions"] = {
            "link": [{"href": f"{href}/{verb}", "rel": verb} for verb in sorted(res.actions)]
        }
    for tag, fn in res.fields:
        v = fn(obj)
        if v is not None:
            if tag == "+":
                d.update(v)
            else:
                d[tag] = v
    if res.subs:
        d["link"] = [{"href": f"{href}/{p}", "rel": p} for p in res.subs]
    return d


@functools.cache
def _templates(res: Resource) -> tuple[str, str]:
    """The <actions> and sub-collection <link>s of ``res`` serialized once, with
    ``\\x00`` where an object's href goes."""
    actions = (
        "<actions>"
        + "".join(f'<link href="\x00/{v}" rel="{v}"/>' for v in sorted(res.actions))
        + "</actions>"
        if res.actions
        else ""
    )
    links = "".join(f'<link href="\x00/{p}" rel="{p}"/>' for p in res.subs)
    return actions, links


def xml(res: Resource, obj: Any) -> str:
    """The same as ``xmlio.element(res.tag, tree(res, obj))``, faster: the action and link
    lists are pre-serialized templates with the object's href spliced in."""
    href = f"{BASE}/{res.path}/{obj.id}"
    tag = res.tag
    actions, links = _templates(res)
    out = [f'<{tag} href="{href}" id="{obj.id}">']
    if actions:
        out.append(actions.replace("\x00", href))
    for ftag, fn in res.fields:
        v = fn(obj)
        if v is None:
            continue
        if ftag == "+":
            for k, vv in v.items():
                xmlio.write(k, vv, out)
        else:
            xmlio.write(ftag, v, out)
    if links:
        out.append(links.replace("\x00", href))
    out.append(f"</{tag}>")
    return "".join(out)


Sees = Callable[[Resource, Any], bool]


def followed(res: Resource, obj: Any, reads: Any, follow: str | None, sees: Sees) -> dict[str, Any]:
    """``tree`` with what ``follow`` names inlined, as far as ``sees(resource, object)``
    (the request's user's visibility) allows: what it may not see stays a link."""
    out = tree(res, obj)
    if follow:
        _follow(res, obj, out, follow, reads, sees)
    return out


# -- sub-collections ------------------------------------------------------------------


def child_resource(sub: Sub) -> Resource:
    """The collection a ``child`` sub-collection lists."""
    return RESOURCES[sub.resource or ""]


def sub_tags(sub: Sub) -> tuple[str, str]:
    """(item element, list element) of a sub-collection."""
    if sub.kind == "child":
        child = child_resource(sub)
        return child.tag, child.tags
    return sub.tag or sub.path.rstrip("s"), sub.tags


def sub_items(reads: Any, parent: Any, sub: Sub) -> list[Any]:
    """The items of ``parent``'s sub-collection ``sub``."""
    if sub.kind == "child":
        child = child_resource(sub)
        return [o for o in reads.list(child.cls) if _belongs(o, sub.attr, parent.id)]
    if sub.kind == "embedded" and sub.items is not None:
        return list(sub.items(parent, reads))
    return []


def sub_item(res: Resource, parent: Any, sub: Sub, item: Any) -> dict[str, Any]:
    """One item of a sub-collection: a child resource's own tree, or an embedded item
    with its fields and a reference to its parent."""
    if sub.kind == "child":
        return tree(child_resource(sub), item)
    href = f"{res.href(parent)}/{sub.path}/{item.id}"
    d: dict[str, Any] = {"href": href, "id": str(item.id)}
    if sub.actions:
        d["actions"] = {"link": [{"href": f"{href}/{v}", "rel": v} for v in sorted(sub.actions)]}
    for tag, fn in sub.fields:
        v = fn(item)
        if v is not None:
            d[tag] = v
    d[res.tag] = {"href": res.href(parent), "id": str(parent.id)}
    return d


def _belongs(obj: Any, attr: str | None, parent_id: UUID) -> bool:
    v = getattr(obj, attr, None) if attr else None
    if isinstance(v, (tuple, list, frozenset, set)):
        return parent_id in v
    return bool(v == parent_id)


# -- follow= --------------------------------------------------------------------------


def _follow(
    res: Resource, obj: Any, out: dict[str, Any], follow: str, reads: Any, sees: Sees
) -> None:
    """Inlines sub-collections (``nics``, ``disk_attachments``) and referenced objects
    (``cluster``, ``cluster.data_center``, ``disk_attachments.disk``)."""
    for path in follow.split(","):
        head, _, rest = path.strip().partition(".")
        if not head:
            continue
        sub = res.subs.get(head.replace("_", ""))
        if sub is not None:
            tag, _ = sub_tags(sub)
            subs = sub_items(reads, obj, sub)
            if sub.kind == "child":
                child = child_resource(sub)
                subs = [i for i in subs if sees(child, i)]
            items = [sub_item(res, obj, sub, i) for i in subs]
            if rest:
                for item in items:
                    _follow_ref(item, rest, reads, sees)
            out[sub.tags] = {tag: items}
            continue
        _follow_ref(out, path.strip(), reads, sees)


def _follow_ref(out: dict[str, Any], path: str, reads: Any, sees: Sees) -> None:
    head, _, rest = path.partition(".")
    ref = out.get(head)
    if not (isinstance(ref, dict) and ref.get("href") and ref.get("id")):
        return
    tres = RESOURCES.get(ref["href"][len(BASE) + 1 :].split("/")[0])
    if tres is None:
        return
    try:
        tobj = reads.get(tres.cls, UUID(ref["id"]))
    except ValueError:
        return
    if tobj is None or not sees(tres, tobj):
        return  # what the user may not see stays a link
    new = tree(tres, tobj)
    if rest:
        _follow(tres, tobj, new, rest, reads, sees)
    out[head] = new


# -- the cache --------------------------------------------------------------------------


class Renderings:
    """Objects' serialized forms; objects are immutable per version, so a rendering is
    kept by (collection, id, format) with the version it shows."""

    LIMIT = 300_000

    def __init__(self) -> None:
        self._cache: dict[tuple[str, UUID, str], tuple[int, bytes]] = {}

    def get(self, res: Resource, obj: Any, fmt: str) -> bytes:
        key = (res.path, obj.id, fmt)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == obj.version:
            return hit[1]
        data = jsonio.encode_value(tree(res, obj)) if fmt == "json" else xml(res, obj).encode()
        if len(self._cache) > self.LIMIT:
            self._cache.clear()
        self._cache[key] = (obj.version, data)
        return data

    def prewarm(self, reads: Any) -> int:
        """Renders every object once in both formats; returns how many objects."""
        n = 0
        for res in list(RESOURCES.values()):
            for obj in reads.list(res.cls):
                for fmt in ("xml", "json"):
                    self.get(res, obj, fmt)
                n += 1
        return n


def joined(res: Resource, fmt: str, parts: list[bytes]) -> bytes:
    """A collection's body from its objects' serialized forms."""
    if fmt == "json":
        return b'{"' + res.tag.encode() + b'":[' + b",".join(parts) + b"]}"
    return b"".join([f"<{res.tags}>".encode(), *parts, f"</{res.tags}>".encode()])
