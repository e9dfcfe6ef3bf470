"""The HTTP helpers every API module shares, below all of them: the API's base path, what
one request carries (``Env``), negotiating XML or JSON, answering with a body or a fault,
and reading the path's id and the ``max`` parameter.

Nothing here knows a collection; the routing (``api.server``), the extensions and the
special collections all answer through these.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from aiohttp import web

from api import jsonio, xmlio
from api.faults import ApiError, bad_request, not_found

BASE = "/ovirt-engine/api"
JSON = "application/json"
XML = "application/xml"


class Env:
    """What one request carries into input mapping and rendering."""

    __slots__ = ("correlation_id", "fmt", "query", "reads", "user_id", "user_name")

    def __init__(self, reads: Any, fmt: str, query: dict[str, str]) -> None:
        self.reads = reads
        self.fmt = fmt
        self.query = query
        self.user_name: str | None = None
        self.user_id: UUID | None = None
        self.correlation_id: str | None = None


def negotiate(request: web.Request) -> str:
    """``json`` when the client accepts JSON before XML, else ``xml``."""
    accept = request.headers.get("Accept", "")
    if "json" in accept and "xml" not in accept.split("json")[0]:
        return "json"
    return "xml"


def content_type(fmt: str) -> str:
    return JSON if fmt == "json" else XML


def respond(
    fmt: str, status: int, tag: str, tree: Any, headers: dict[str, str] | None = None
) -> web.Response:
    """One value tree as element ``tag`` (XML) or a JSON object."""
    body = jsonio.dumps(tree) if fmt == "json" else xmlio.dumps(tag, tree)
    return web.Response(status=status, body=body, content_type=content_type(fmt), headers=headers)


def collection(fmt: str, tags: str, tag: str, items: list[Any]) -> web.Response:
    """A list of value trees: ``<tags><tag/>...</tags>`` or ``{"tag": [...]}``."""
    if fmt == "json":
        return web.Response(body=jsonio.collection(tag, items), content_type=JSON)
    return web.Response(body=xmlio.collection(tags, tag, items), content_type=XML)


def fault_response(fmt: str, err: ApiError, *, action: bool = False) -> web.Response:
    """The <fault> (or JSON error) of ``err``; inside an <action> for actions."""
    fault = {"reason": err.reason, "detail": err.detail}
    if fmt == "json":
        body: dict[str, Any] = {"reason": err.reason, "detail": err.detail}
        if action:
            body = {"fault": fault, "status": "failed"}
        return web.Response(status=err.status, body=jsonio.dumps(body), content_type=JSON)
    if action:
        return respond(fmt, err.status, "action", {"fault": fault, "status": "failed"})
    return respond(fmt, err.status, "fault", fault)


def not_allowed(method: str, allowed: str) -> ApiError:
    """405 for a method the path does not take, naming those it does."""
    return ApiError(405, "Method Not Allowed", f"{method} is not allowed here; use {allowed}.")


def id_or_404(text: str) -> UUID:
    """An object id from the path; anything else is no object (404)."""
    try:
        return UUID(text)
    except ValueError:
        raise not_found(f"No object with id '{text[:80]}'.") from None


def max_param(q: dict[str, str]) -> int | None:
    """The ``max`` query parameter: None when absent or negative, 400 when not a number."""
    v = q.get("max")
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise bad_request(
            f"Invalid value '{v[:40]}' of 'max': expected an integer.", "max"
        ) from None
    return None if n < 0 else n


def flag_param(v: str | None) -> bool:
    """A boolean query parameter (``true``, ``1``, ``yes``)."""
    return (v or "").strip().lower() in ("true", "1", "yes")


def request_query(request: web.Request) -> dict[str, str]:
    """The query parameters, with oVirt's ``Filter: true`` header as ``filter=true``."""
    query = dict(request.query)
    if "filter" not in query and request.headers.get("Filter", "").lower() == "true":
        query["filter"] = "true"  # oVirt's user API header
    return query
