"""The oVirt v4-compatible REST API on aiohttp: SSO, the table-driven collections of
``api.resources``, faults for every error, and Orrery's extensions (event stream,
as-of reads, per-object history, the OpenAPI description).

One catch-all route dispatches every path, so unknown routes and wrong methods answer
with a <fault> (XML) or a JSON error like every other failure, never aiohttp's text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from aiohttp import web

from api import jsonio, xmlio
from api.faults import ApiError, bad_request, from_domain, not_found, unauthorized
from api.feed import Feed
from api.portal import routes as portal_routes
from api.reads import EngineReads
from api.resources import BASE, BLANK_TEMPLATE_ID, RESOURCES, Input, Resource, Sub, parse_id
from api.search import compile_search
from api.sso import Authenticator, record_login_failure

log = logging.getLogger("orrery.api")

MAX_BODY = 64 * 1024 * 1024
VERSION = (4, 5, 0)
PRODUCT = "Orrery"
_JSON = "application/json"
API_KEY: web.AppKey[Any] = web.AppKey("orrery_api", object)
_XML = "application/xml"


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


def _fmt(request: web.Request) -> str:
    accept = request.headers.get("Accept", "")
    if "json" in accept and "xml" not in accept.split("json")[0]:
        return "json"
    return "xml"


def _body(fmt: str, tag: str, tree: Any) -> bytes:
    if fmt == "json":
        return jsonio.dumps(tree)
    return xmlio.dumps(tag, tree)


def respond(fmt: str, status: int, tag: str, tree: Any, headers: dict | None = None):
    return web.Response(
        status=status,
        body=_body(fmt, tag, tree),
        content_type=_JSON if fmt == "json" else _XML,
        headers=headers,
    )


def fault_response(fmt: str, err: ApiError, *, action: bool = False) -> web.Response:
    fault = {"reason": err.reason, "detail": err.detail}
    if fmt == "json":
        body: dict[str, Any] = {"reason": err.reason, "detail": err.detail}
        if action:
            body = {"fault": fault, "status": "failed"}
        return web.Response(status=err.status, body=jsonio.dumps(body), content_type=_JSON)
    if action:
        return respond(fmt, err.status, "action", {"fault": fault, "status": "failed"})
    return respond(fmt, err.status, "fault", fault)


def _bool(v: str | None) -> bool:
    return (v or "").strip().lower() in ("true", "1", "yes")


class Api:
    def __init__(
        self,
        bus: Any,
        *,
        auth: Authenticator | None = None,
        feed: Feed | None = None,
        reads: Any = None,
        admin_password: str | None = None,
        host_secrets: Any = None,
    ) -> None:
        self.bus = bus
        # Where a new host's root_password (its hostd enrollment secret) is kept: never
        # in the command, the log or a response.
        self.host_secrets = host_secrets
        self.reads = reads or EngineReads(bus)
        self.auth = auth or Authenticator(self.reads, bus=bus, fallback_password=admin_password)
        self.feed = feed or Feed(bus)
        self.started = datetime.now(UTC)
        self._cache: dict[tuple[str, UUID, str], tuple[int, bytes]] = {}
        self.prewarmed = False

    # -- the app -------------------------------------------------------------------
    def app(self) -> web.Application:
        # One catch-all route and no middleware: _handle turns every failure into a fault.
        app = web.Application(client_max_size=MAX_BODY)
        portal_routes.setup(app, self)  # the Admin Portal and VM Portal (api/portal)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
        app[API_KEY] = self
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await self._errors(request, self._dispatch)

    # -- for the portals, whose sessions are cookies (api/portal) ----------------------
    def env_for(self, user_id: UUID | None, user_name: str, query: dict[str, str]) -> Env:
        """The Env of a request whose user the caller has authenticated."""
        env = Env(self.reads, "json", query)
        env.user_id, env.user_name = user_id, user_name
        return env

    async def call(self, request: web.Request, env: Env, tail: str) -> web.StreamResponse:
        """The REST API under /ovirt-engine/api/``tail`` for ``env``'s user: the same
        routing, commands and permission checks as a bearer-token request, faults as JSON."""
        from api import authz

        async def route(request: web.Request) -> web.StreamResponse:
            try:
                return await self._route(request, env, tail)
            except authz.Denied as d:
                raise await authz.deny(self, env, d) from None

        return await self._errors(request, route)

    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fmt = _fmt(request)
        try:
            return await handler(request)
        except ApiError as e:
            return fault_response(fmt, e)
        except web.HTTPRequestEntityTooLarge:
            return fault_response(
                fmt,
                ApiError(413, "Request Entity Too Large", f"The body exceeds {MAX_BODY} bytes."),
            )
        except web.HTTPException as e:
            return fault_response(fmt, ApiError(e.status, e.reason, e.text or e.reason))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("unexpected %s on %s %s", type(e).__name__, request.method, request.path)
            return fault_response(
                fmt, ApiError(500, "Internal Server Error", "An unexpected error occurred.")
            )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(BASE) and (len(path) == len(BASE) or path[len(BASE)] == "/"):
            return await self._api(request, path[len(BASE) :])
        if path == "/ovirt-engine/sso/oauth/token":
            return await self._token(request)
        if path == "/ovirt-engine/services/sso-logout":
            return await self._logout(request)
        if path.startswith("/orrery/"):
            from api import extensions

            return await extensions.handle(self, request, path[len("/orrery/") :])
        raise not_found(f"No resource at {path}.")

    # -- SSO -----------------------------------------------------------------------
    async def _sso_form(self, request: web.Request) -> dict[str, str]:
        data = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            raw = await request.read()
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                text = ""
            data.update(dict(parse_qsl(text, keep_blank_values=True)))
        return data

    async def _token(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.json_response(
                {"error_code": "invalid_request", "error": "Use POST."}, status=405
            )
        form = await self._sso_form(request)
        if form.get("grant_type", "password") != "password":
            return web.json_response(
                {"error_code": "unsupported_grant_type", "error": "Only password is supported."},
                status=400,
            )
        user, password = form.get("username", ""), form.get("password", "")
        source = f"sso {request.remote or ''}"
        session = (
            await asyncio.get_running_loop().run_in_executor(
                None, self.auth.login, user, password, source
            )
            if user and password
            else None
        )
        if session is None:
            if not self.auth.records_failures:
                await record_login_failure(self.bus, user[:255], "wrong_password", source)
            return web.json_response(
                {
                    "error_code": "access_denied",
                    "error": "Cannot authenticate user: the user name or password is incorrect.",
                },
                status=400,
            )
        return web.json_response(
            {
                "access_token": session.token,
                "scope": form.get("scope", "ovirt-app-api"),
                "exp": str(int(session.expires * 1000)),
                "token_type": "bearer",
            }
        )

    async def _logout(self, request: web.Request) -> web.Response:
        form = await self._sso_form(request)
        token = form.get("token", "")
        if not token:
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                token = auth[7:].strip()
        if token:
            self.auth.logout(token)
        return web.json_response({})

    async def authenticate(self, request: web.Request, env: Env) -> None:
        auth = request.headers.get("Authorization", "")
        session = None
        if auth[:7].lower() == "bearer ":
            session = self.auth.session(auth[7:].strip())
        elif auth[:6].lower() == "basic ":
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except Exception:
                raise unauthorized("Malformed basic credentials.") from None
            session = await asyncio.get_running_loop().run_in_executor(
                None, self.auth.basic, user, pw, f"basic {request.remote or ''}"
            )
        if session is None:
            raise unauthorized()
        env.user_name = session.user_name
        env.user_id = session.user_id
        env.correlation_id = (
            env.query.get("correlation_id") or request.headers.get("Correlation-Id") or None
        )

    # -- the API ---------------------------------------------------------------------
    async def _api(self, request: web.Request, tail: str) -> web.StreamResponse:
        fmt = _fmt(request)
        query = dict(request.query)
        if "filter" not in query and request.headers.get("Filter", "").lower() == "true":
            query["filter"] = "true"  # oVirt's user API header
        reads = self.reads
        if query.get("as_of"):
            reads = await asyncio.get_running_loop().run_in_executor(
                None, self.reads.as_of, query["as_of"]
            )
        env = Env(reads, fmt, query)
        await self.authenticate(request, env)
        from api import authz

        try:
            return await self._route(request, env, tail)
        except authz.Denied as d:
            raise await authz.deny(self, env, d) from None

    async def _route(self, request: web.Request, env: Env, tail: str) -> web.StreamResponse:
        from api import authz

        fmt = env.fmt
        reads = env.reads
        segs = [s for s in tail.split("/") if s]
        method = request.method
        if not segs:
            if method not in ("GET", "HEAD"):
                raise _method(method, "GET")
            return respond(fmt, 200, "api", self.root(env))
        from api import specials

        special = specials.SPECIAL.get(segs[0])
        if special is not None:
            return await special(self, request, env, segs[1:])
        res = RESOURCES.get(segs[0])
        if res is None or not res.available():
            raise not_found(f"No collection '{segs[0]}'.")
        if len(segs) == 1:
            if method in ("GET", "HEAD"):
                return self.list(res, env, reads.list(res.cls))
            if method == "POST":
                return await self.add(request, env, res, res.add)
            raise _method(method, "GET, POST")
        obj = reads.get(res.cls, _id_or_404(segs[1]))
        if obj is None:
            raise not_found(f"{res.label} {segs[1]} not found.")
        if method in ("GET", "HEAD") and not authz.can_see(env, res, obj):
            # Writes go on to the permission check (403 and an event); reads of what the
            # user may not see answer as if it were not there.
            raise not_found(f"{res.label} {segs[1]} not found.")
        if len(segs) == 2:
            if method in ("GET", "HEAD"):
                if env.query.get("follow"):
                    return respond(fmt, 200, res.tag, self.render(res, obj, env))
                return web.Response(
                    body=self.cached(res, obj, fmt), content_type=_JSON if fmt == "json" else _XML
                )
            if method == "PUT":
                authz.check(env, authz.permit_for(res.path, "edit"), res.tag, obj.id, "update")
                return await self.update(request, env, res, obj)
            if method == "DELETE":
                authz.check(env, authz.permit_for(res.path, "delete"), res.tag, obj.id, "remove")
                return await self.remove(env, res.remove, obj_id=obj.id)
            raise _method(method, "GET, PUT, DELETE")
        verb = segs[2]
        if len(segs) == 3 and verb in res.actions:
            if method != "POST":
                raise _method(method, "POST")
            permit = authz.permit_for(res.path, "action", verb=verb)
            authz.check(env, permit, res.tag, obj.id, verb)
            return await self.action(request, env, res.actions[verb], obj_id=obj.id)
        sub = res.subs.get(verb)
        if sub is None:
            raise not_found(f"No sub-collection or action '{verb}' of {res.tags}.")
        if method not in ("GET", "HEAD"):
            permit = authz.permit_for(res.path, "edit", sub=verb)
            authz.check(env, permit, res.tag, obj.id, f"{method} {verb}")
        return await self.sub(request, env, res, obj, sub, segs[3:])

    # -- rendering --------------------------------------------------------------------
    def root(self, env: Env) -> dict[str, Any]:
        links = []
        for path in sorted(RESOURCES):
            r = RESOURCES[path]
            if not r.available():
                continue
            links.append({"href": f"{BASE}/{path}", "rel": path})
            if r.searchable:
                links.append({"href": f"{BASE}/{path}?search={{query}}", "rel": f"{path}/search"})
        from api import specials

        for path in sorted(specials.SPECIAL):
            links.append({"href": f"{BASE}/{path}", "rel": path})
        links.append(
            {"href": f"{BASE}/events?search={{query}}&from={{event_id}}", "rel": "events/search"}
        )
        reads = env.reads

        def count(cls: str, status: str | None = None, field: str = "status") -> dict[str, Any]:
            objs = reads.list(cls)
            out: dict[str, Any] = {"total": len(objs)}
            if status is not None:
                out["active"] = sum(1 for o in objs if str(getattr(o, field, "")) == status)
            return out

        major, minor, rev = VERSION
        return {
            "link": links,
            "product_info": {
                "instance_id": None,
                "name": PRODUCT,
                "vendor": "Orrery",
                "version": {
                    "build": "0",
                    "full_version": f"{major}.{minor}.{rev}-orrery",
                    "major": major,
                    "minor": minor,
                    "revision": rev,
                },
            },
            "special_objects": {
                "blank_template": {
                    "href": f"{BASE}/templates/{BLANK_TEMPLATE_ID}",
                    "id": BLANK_TEMPLATE_ID,
                },
                "root_tag": {
                    "href": f"{BASE}/tags/{BLANK_TEMPLATE_ID}",
                    "id": BLANK_TEMPLATE_ID,
                },
            },
            "summary": {
                "hosts": count("Host", "up"),
                "storage_domains": count("StorageDomain", "active"),
                "users": count("User", None) | {"active": len(reads.list("User"))},
                "vms": count("Vm", "up"),
            },
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "authenticated_user": {
                "href": f"{BASE}/users/{env.user_id}",
                "id": str(env.user_id),
            }
            if env.user_id
            else None,
            "effective_user": {"href": f"{BASE}/users/{env.user_id}", "id": str(env.user_id)}
            if env.user_id
            else None,
        }

    def render(self, res: Resource, obj: Any, env: Env) -> Any:
        tree = res.render(obj)
        follow = env.query.get("follow")
        if follow:
            self._follow(res, obj, tree, follow, env)
        return tree

    def cached(self, res: Resource, obj: Any, fmt: str) -> bytes:
        """One object's serialized form; objects are immutable per version, so the
        rendering is kept by (collection, id, format) with the version it shows."""
        key = (res.path, obj.id, fmt)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == obj.version:
            return hit[1]
        if fmt == "json":
            data = jsonio.encode_value(res.render(obj))
        else:
            data = res.render_xml(obj).encode()
        if len(self._cache) > 300_000:
            self._cache.clear()
        self._cache[key] = (obj.version, data)
        return data

    def prewarm(self) -> int:
        """Renders every object once (run in a thread at start) so the first big list is
        as fast as the next."""
        try:
            return self._prewarm()
        finally:
            self.prewarmed = True

    def _prewarm(self) -> int:
        n = 0
        for res in list(RESOURCES.values()):
            if not res.available():
                continue
            for obj in self.reads.list(res.cls):
                for fmt in ("xml", "json"):
                    self.cached(res, obj, fmt)
                n += 1
        return n

    def _follow(self, res: Resource, obj: Any, tree: dict, follow: str, env: Env) -> None:
        """Inlines sub-collections (``nics``, ``disk_attachments``) and referenced objects
        (``cluster``, ``cluster.data_center``, ``disk_attachments.disk``)."""
        for path in follow.split(","):
            head, _, rest = path.strip().partition(".")
            if not head:
                continue
            sub = res.subs.get(head.replace("_", ""))
            if sub is not None:
                tag, _ = self._sub_tags(sub)
                items = [
                    self.render_sub_item(res, obj, sub, i, env)
                    for i in self.sub_items(env, obj, sub)
                ]
                if rest:
                    for item in items:
                        self._follow_ref(item, rest, env)
                tree[sub.tags] = {tag: items}
                continue
            self._follow_ref(tree, path.strip(), env)

    def _follow_ref(self, tree: dict, path: str, env: Env) -> None:
        head, _, rest = path.partition(".")
        ref = tree.get(head)
        if not (isinstance(ref, dict) and ref.get("href") and ref.get("id")):
            return
        tres = RESOURCES.get(ref["href"][len(BASE) + 1 :].split("/")[0])
        if tres is None or not tres.available():
            return
        try:
            tobj = env.reads.get(tres.cls, UUID(ref["id"]))
        except ValueError:
            return
        if tobj is None:
            return
        new = tres.render(tobj)
        if rest:
            self._follow(tres, tobj, new, rest, env)
        tree[head] = new

    def list(self, res: Resource, env: Env, objs: list[Any]) -> web.Response:
        q = env.query
        search = q.get("search")
        reads = env.reads
        if search and search.strip():
            if not res.searchable:
                raise bad_request(f"The {res.tags} collection is not searchable.", "search")
            query = compile_search(search, _bool(q.get("case_sensitive")))
            objs = [o for o in objs if query.matches(lambda k, o=o: res.search_values(o, k, reads))]
            if query.sort_key:
                key = query.sort_key
                objs.sort(
                    key=lambda o: (res.search_values(o, key, reads) or [""])[0],
                    reverse=query.sort_desc,
                )
            if query.page is not None:
                size = _max(q) or 100
                objs = objs[(query.page - 1) * size : query.page * size]
        objs = self.visible(env, res, objs)
        limit = _max(q)
        if limit is not None:
            objs = objs[:limit]
        if q.get("follow"):
            items = [self.render(res, o, env) for o in objs]
            if env.fmt == "json":
                return web.Response(body=jsonio.collection(res.tag, items), content_type=_JSON)
            return web.Response(body=xmlio.collection(res.tags, res.tag, items), content_type=_XML)
        cached = self.cached
        fmt = env.fmt
        parts = [cached(res, o, fmt) for o in objs]
        if fmt == "json":
            body = b'{"' + res.tag.encode() + b'":[' + b",".join(parts) + b"]}"
            return web.Response(body=body, content_type=_JSON)
        open_, close = f"<{res.tags}>".encode(), f"</{res.tags}>".encode()
        return web.Response(body=b"".join([open_, *parts, close]), content_type=_XML)

    def visible(self, env: Env, res: Resource, objs: list[Any]) -> list[Any]:
        from api import authz

        return authz.visible(env, res, objs)

    # -- writing -----------------------------------------------------------------------
    async def read_body(self, request: web.Request, env: Env, root: str | None) -> Any:
        raw = await request.read()
        if not raw.strip():
            return {}
        ctype = request.headers.get("Content-Type", "")
        if "json" in ctype:
            return jsonio.loads(raw)
        tag, val = xmlio.loads(raw)
        if root is not None and tag != root:
            raise bad_request(f"Expected a <{root}> element, got <{tag}>.", root)
        return val if isinstance(val, dict) else {}

    async def run(self, cmd: Any) -> Any:
        from domain.base import DomainError

        if getattr(cmd, "password", None) is not None:
            # Hash off the writer thread and off the event loop (argon2 takes ~0.3 s).
            try:
                from commands.user import prehashed
            except ImportError:
                prehashed = None
            if prehashed is not None:
                cmd = await asyncio.get_running_loop().run_in_executor(None, prehashed, cmd)
        try:
            result = await self.bus.execute_async(cmd)
        except DomainError as e:
            raise from_domain(e) from None
        await self.feed.wait_for(result.position)
        wait = getattr(self.reads, "wait_for", None)
        if wait is not None:  # a projected view: read-your-writes
            await asyncio.get_running_loop().run_in_executor(None, wait, result.position)
        return result

    async def add(
        self,
        request: web.Request,
        env: Env,
        res: Resource,
        inp: Input | None,
        *,
        parent: tuple[str, UUID] | None = None,
        kind: str | None = None,
    ) -> web.Response:
        if inp is None:
            raise _method("POST", "GET")
        from api import authz

        body = await self.read_body(request, env, res.tag)
        cmd = inp.build(
            body,
            env,
            parent_id=parent[1] if parent else None,
            query=env.query,
            extra={parent[0]: parent[1], "object_kind": kind} if parent else None,
        )
        scope_kind, scope = authz.scope_of(cmd)
        authz.check(env, authz.permit_for(res.path, "create"), scope_kind, scope, f"add {res.tag}")
        cmd = self._enroll(cmd, inp, body, env)
        result = await self.run(cmd)
        new_id = _created(result)
        obj = self.reads.get(res.cls, new_id) if new_id is not None else None
        if obj is None:
            return respond(env.fmt, 202, "action", {"status": "complete"})
        href = res.href(obj)
        return respond(env.fmt, 201, res.tag, self.render(res, obj, env), {"Location": href})

    def _enroll(self, cmd: Any, inp: Input, body: Any, env: Env) -> Any:
        """A new host's root_password becomes its enrollment secret, stored apart under
        the host's id (decided here, so the secret is in place before the host is)."""
        if type(cmd).__name__ != "AddHost" or "root_password" not in inp.fields:
            return cmd
        secret = inp.fields["root_password"](body if isinstance(body, dict) else {}, env)
        if not isinstance(secret, str) or not secret:
            return cmd
        if self.host_secrets is None:
            raise ApiError(400, "Operation Failed", "This Manager does not manage host secrets.")
        import uuid

        import msgspec

        if cmd.id is None:
            cmd = msgspec.structs.replace(cmd, id=uuid.uuid4())
        self.host_secrets.put(cmd.id, secret)
        return cmd

    async def update(self, request: web.Request, env: Env, res: Resource, obj: Any):
        if res.update is None:
            raise _method("PUT", "GET, DELETE")
        body = await self.read_body(request, env, res.tag)
        cmd = res.update.build(body, env, obj_id=obj.id, query=env.query)
        await self.run(cmd)
        new = self.reads.get(res.cls, obj.id) or obj
        return respond(env.fmt, 200, res.tag, self.render(res, new, env))

    async def remove(
        self,
        env: Env,
        inp: Input | None,
        *,
        obj_id: UUID | None = None,
        parent_id: UUID | None = None,
        item_id: UUID | None = None,
        res: Resource | None = None,
        obj: Any = None,
    ) -> web.Response:
        if inp is None:
            raise _method("DELETE", "GET")
        cmd = inp.build(
            {}, env, obj_id=obj_id, parent_id=parent_id, item_id=item_id, query=env.query
        )
        await self.run(cmd)
        return respond(env.fmt, 200, "action", {"status": "complete"})

    async def action(
        self,
        request: web.Request,
        env: Env,
        inp: Input,
        *,
        obj_id: UUID | None = None,
        parent_id: UUID | None = None,
        item_id: UUID | None = None,
    ) -> web.Response:
        body = await self.read_body(request, env, "action")
        try:
            cmd = inp.build(
                body, env, obj_id=obj_id, parent_id=parent_id, item_id=item_id, query=env.query
            )
            result = await self.run(cmd) if cmd is not None else None
        except ApiError as e:
            return fault_response(env.fmt, e, action=True)
        out: dict[str, Any] = {}
        if inp.result is not None and result is not None:
            out.update(inp.result(result.value))
        out["status"] = "complete"
        return respond(env.fmt, 200, "action", out)

    # -- sub-collections --------------------------------------------------------------
    def _sub_tags(self, sub: Sub) -> tuple[str, str]:
        if sub.kind == "child":
            child = RESOURCES[sub.resource]  # type: ignore[index]
            return child.tag, child.tags
        return sub.tag or sub.path.rstrip("s"), sub.tags

    def sub_items(self, env: Env, parent: Any, sub: Sub) -> list[Any]:
        if sub.kind == "child":
            child = RESOURCES[sub.resource]  # type: ignore[index]
            return [o for o in env.reads.list(child.cls) if _belongs(o, sub.attr, parent.id)]
        if sub.kind == "embedded":
            return list(sub.items(parent, env.reads))  # type: ignore[misc]
        return []

    def render_sub_item(self, res: Resource, parent: Any, sub: Sub, item: Any, env: Env) -> Any:
        if sub.kind == "child":
            return RESOURCES[sub.resource].render(item)  # type: ignore[index]
        href = f"{res.href(parent)}/{sub.path}/{item.id}"
        d: dict[str, Any] = {"href": href, "id": str(item.id)}
        if sub.actions:
            d["actions"] = {
                "link": [{"href": f"{href}/{v}", "rel": v} for v in sorted(sub.actions)]
            }
        for tag, fn in sub.fields:
            v = fn(item)
            if v is not None:
                d[tag] = v
        d[res.tag] = {"href": res.href(parent), "id": str(parent.id)}
        return d

    async def sub(
        self, request: web.Request, env: Env, res: Resource, parent: Any, sub: Sub, rest: list[str]
    ) -> web.StreamResponse:
        method = request.method
        tag, tags = self._sub_tags(sub)
        if not rest:
            if method in ("GET", "HEAD"):
                items = self.sub_items(env, parent, sub)
                if sub.kind == "child":
                    child = RESOURCES[sub.resource]  # type: ignore[index]
                    items = self.visible(env, child, items)
                rendered = [self.render_sub_item(res, parent, sub, i, env) for i in items]
                limit = _max(env.query)
                if limit is not None:
                    rendered = rendered[:limit]
                if env.fmt == "json":
                    return web.Response(body=jsonio.collection(tag, rendered), content_type=_JSON)
                return web.Response(body=xmlio.collection(tags, tag, rendered), content_type=_XML)
            if method == "POST":
                if sub.kind == "child":
                    child = RESOURCES[sub.resource]  # type: ignore[index]
                    if sub.add is not None:
                        return await self._sub_add_existing(request, env, res, parent, sub, child)
                    return await self.add(
                        request, env, child, child.add, parent=(sub.attr, parent.id), kind=res.tag
                    )
                if sub.add is None:
                    raise _method(method, "GET")
                return await self._sub_add_embedded(request, env, res, parent, sub, tag)
            raise _method(method, "GET, POST")
        item_id = _id_or_404(rest[0])
        items = {i.id: i for i in self.sub_items(env, parent, sub)}
        item = items.get(item_id)
        if item is None:
            raise not_found(f"No {tag} {rest[0]} under {res.tag} {parent.id}.")
        if len(rest) == 1:
            if method in ("GET", "HEAD"):
                return respond(env.fmt, 200, tag, self.render_sub_item(res, parent, sub, item, env))
            if method == "DELETE":
                if sub.remove is None and sub.kind == "child":
                    child = RESOURCES[sub.resource]  # type: ignore[index]
                    return await self.remove(env, child.remove, obj_id=item.id, res=child, obj=item)
                return await self.remove(
                    env, sub.remove, parent_id=parent.id, item_id=item.id, res=res, obj=parent
                )
            if method == "PUT":
                if sub.update is None:
                    if sub.kind == "child":
                        child = RESOURCES[sub.resource]  # type: ignore[index]
                        return await self.update(request, env, child, item)
                    raise _method(method, "GET, DELETE")
                body = await self.read_body(request, env, tag)
                cmd = sub.update.build(
                    body, env, parent_id=parent.id, item_id=item.id, query=env.query
                )
                await self.run(cmd)
                fresh_parent = self.reads.get(res.cls, parent.id) or parent
                fresh = {i.id: i for i in self.sub_items(env, fresh_parent, sub)}.get(item.id, item)
                return respond(
                    env.fmt, 200, tag, self.render_sub_item(res, fresh_parent, sub, fresh, env)
                )
            raise _method(method, "GET, PUT, DELETE")
        if len(rest) == 2 and rest[1] in sub.actions:
            if method != "POST":
                raise _method(method, "POST")
            return await self.action(
                request, env, sub.actions[rest[1]], parent_id=parent.id, item_id=item.id
            )
        if len(rest) == 2 and sub.kind == "child":
            child = RESOURCES[sub.resource]  # type: ignore[index]
            if rest[1] in child.actions and method == "POST":
                return await self.action(request, env, child.actions[rest[1]], obj_id=item.id)
        raise not_found(f"No action '{rest[1]}' of {tag}.")

    async def _sub_add_existing(
        self, request: web.Request, env: Env, res: Resource, parent: Any, sub: Sub, child: Resource
    ) -> web.Response:
        body = await self.read_body(request, env, child.tag)
        cmd = sub.add.build({"": body}, env, parent_id=parent.id, query=env.query)  # type: ignore[union-attr]
        await self.run(cmd)
        target = getattr(cmd, f"{child.tag}_id", None)
        obj = self.reads.get(child.cls, target) if target else None
        if obj is None:
            return respond(env.fmt, 202, "action", {"status": "complete"})
        return respond(env.fmt, 201, child.tag, child.render(obj), {"Location": child.href(obj)})

    async def _sub_add_embedded(
        self, request: web.Request, env: Env, res: Resource, parent: Any, sub: Sub, tag: str
    ) -> web.Response:
        body = await self.read_body(request, env, tag)
        before = {i.id for i in self.sub_items(env, parent, sub)}
        cmd = sub.add.build(body, env, parent_id=parent.id, query=env.query)  # type: ignore[union-attr]
        await self.run(cmd)
        fresh_parent = self.reads.get(res.cls, parent.id) or parent
        new = [i for i in self.sub_items(env, fresh_parent, sub) if i.id not in before]
        if not new:
            return respond(env.fmt, 202, "action", {"status": "complete"})
        tree = self.render_sub_item(res, fresh_parent, sub, new[0], env)
        return respond(env.fmt, 201, tag, tree, {"Location": tree["href"]})


def _belongs(obj: Any, attr: str | None, parent_id: UUID) -> bool:
    v = getattr(obj, attr, None) if attr else None
    if isinstance(v, (tuple, list, frozenset, set)):
        return parent_id in v
    return v == parent_id


def _created(result: Any) -> UUID | None:
    if result.created:
        return result.created[0]
    v = result.value
    return v if isinstance(v, UUID) else None


def _id_or_404(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise not_found(f"No object with id '{text[:80]}'.") from None


def _max(q: dict[str, str]) -> int | None:
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


def _method(method: str, allowed: str) -> ApiError:
    return ApiError(405, "Method Not Allowed", f"{method} is not allowed here; use {allowed}.")


__all__ = ["Api", "Env", "fault_response", "parse_id", "respond"]


def make_app(bus: Any, **kw: Any) -> web.Application:
    return Api(bus, **kw).app()


# -- running ------------------------------------------------------------------------


def initialize(bus: Any, data_dir: Any = None) -> str | None:
    """First start: the system's initial objects through commands.system.ensure_initialized
    when the security area provides it. Returns the admin password to accept when the
    user area has not landed yet (ORRERY_ADMIN_PASSWORD, else generated, kept in
    DATA_DIR/admin-password and printed once)."""
    import inspect
    import os
    import secrets
    from pathlib import Path

    password = os.environ.get("ORRERY_ADMIN_PASSWORD") or None
    try:
        from commands import system  # type: ignore[attr-defined]
    except ImportError:
        system = None
    fn = getattr(system, "ensure_initialized", None) if system is not None else None
    if fn is not None:
        params = inspect.signature(fn).parameters
        kw: dict[str, Any] = {}
        for name in ("admin_password", "password"):
            if name in params:
                kw[name] = password
        out = fn(bus, **kw)
        generated = getattr(out, "admin_password", None) or (out if isinstance(out, str) else None)
        if generated and not password:
            print(f"admin@internal password: {generated}", flush=True)
        return None
    if password:
        return password
    path = Path(data_dir or "./data") / "admin-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    print(f"admin@internal password: {password} (saved in {path})", flush=True)
    return password


def ssl_context(cert: str | None, key: str | None) -> Any:
    if not cert:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class ServerThread:
    """Runs the API on its own event loop in a thread (tests, benchmarks)."""

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0) -> None:
        import threading

        self.api = api
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="orrery-api", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{BASE}"

    def stop(self) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(down(), self._loop)
        try:
            fut.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


async def serve(
    bus: Any,
    host: str,
    port: int,
    *,
    admin_password: str | None = None,
    ssl: Any = None,
    reads: Any = None,
    data_dir: Any = None,
    hostlink_options: dict[str, Any] | None = None,
    local_hosts: int = 0,
    history: bool = True,
) -> None:
    """Runs the Manager until SIGTERM/SIGINT: the API; the HostLink that connects to
    every host's hostd and carries the log's decisions out to them; the history
    warehouse fed from the log and the hosts' statistics. Whatever was started is
    stopped again, also when starting fails half-way."""
    import signal
    from pathlib import Path

    from commands.hostlink import HostLink, HostSecrets

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    data = Path(data_dir or "./data")
    secrets = HostSecrets(data / "host-secrets.json")
    options = dict(hostlink_options or {})
    warehouse = None
    async with contextlib.AsyncExitStack() as stack:
        if history and "telemetry" not in options:
            from api.telemetry import TelemetrySink
            from history.runner import HistoryRunner
            from history.warehouse import Warehouse, path_in

            warehouse = Warehouse(path_in(data))
            stack.callback(warehouse.close)
            runner_ = HistoryRunner(warehouse, bus.log.read)
            runner_.start()
            stack.push_async_callback(loop.run_in_executor, None, runner_.stop)
            options["telemetry"] = TelemetrySink(bus, runner_)
        else:
            from api.telemetry import TelemetrySink

            options.setdefault("telemetry", TelemetrySink(bus))
        uris: dict[UUID, str] = {}
        if local_hosts:
            from api.local_hosts import attach_local_storage, start_local_hosts

            harness, uris = await loop.run_in_executor(
                None, start_local_hosts, bus, secrets, data, local_hosts
            )
            stack.push_async_callback(loop.run_in_executor, None, harness.stop)
            options["libvirt_uris"] = {**options.get("libvirt_uris", {}), **uris}
        link = await HostLink(bus, secrets, **options).start()
        stack.push_async_callback(link.stop)
        if uris:
            attaching = asyncio.create_task(attach_local_storage(bus, data, list(uris)))
            stack.callback(attaching.cancel)
        api = Api(bus, admin_password=admin_password, reads=reads, host_secrets=secrets)
        api.reads.telemetry = options["telemetry"]
        api.warehouse = warehouse
        runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, host, port, ssl_context=ssl)
        await site.start()
        loop.run_in_executor(None, api.prewarm)
        scheme = "https" if ssl else "http"
        print(f"Orrery API on {scheme}://{host}:{port}{BASE}", flush=True)
        await stop.wait()
