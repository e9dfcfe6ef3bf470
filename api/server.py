"""The oVirt v4-compatible REST API on aiohttp (``Api``): SSO tokens, authentication,
and the routing of every request to the collection table of ``api.collections`` (its
requests made into commands by ``api.resources``, its objects rendered by ``api.render``),
to the special collections (``api.specials``) and to Orrery's extensions under /orrery/
(``api.extensions``). Running it is ``api.serving``.

One catch-all route dispatches every path, so unknown routes and wrong methods answer
with a <fault> (XML) or a JSON error like every other failure, never aiohttp's text.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import functools
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from api import authz, enrollment, extensions, jsonio, pki, render, specials, sso_routes, xmlio
from api.collections import RESOURCES
from api.faults import ApiError, bad_request, from_domain, not_found, unauthorized
from api.feed import Feed
from api.http import (
    BASE,
    Env,
    collection,
    content_type,
    fault_response,
    flag_param,
    id_or_404,
    max_param,
    negotiate,
    not_allowed,
    request_query,
    respond,
)
from api.portal import routes as portal_routes
from api.reads import AS_OF_TIMEOUT, AsOf, EngineReads
from api.resources import build, search_values
from api.schema import Input, Resource, Sub
from api.search import compile_search
from api.sso import Authenticator, LoginRefused
from commands.messages import Command
from commands.user import AddUser, ChangeUserPassword, prehashed
from domain.base import DomainError

log = logging.getLogger("orrery.api")

MAX_BODY = 64 * 1024 * 1024
API_KEY: web.AppKey[Any] = web.AppKey("orrery_api", object)


class Api:
    def __init__(
        self,
        bus: Any,
        *,
        auth: Authenticator | None = None,
        feed: Feed | None = None,
        reads: Any = None,
        host_secrets: Any = None,
        as_of_timeout: float | None = None,
    ) -> None:
        self.bus = bus
        # Where a new host's root_password (its hostd enrollment secret) is kept: never
        # in the command, the log or a response.
        self.host_secrets = host_secrets
        self.reads: Any = reads or EngineReads(bus)
        self.auth = auth or Authenticator(bus)
        # Before the feed: a write's answer waits for the feed, whose listener then runs
        # after as_of's, so as_of always knows the log's end without asking the log.
        self.as_of = AsOf(bus, as_of_timeout if as_of_timeout is not None else AS_OF_TIMEOUT)
        self.feed = feed or Feed(bus)
        self.streams: set[asyncio.Task[Any]] = set()  # the open /orrery/events/stream
        self.started = datetime.now(UTC)
        self.renderings = render.Renderings()
        self.prewarmed = False
        # The history warehouse behind /orrery/warehouse, when the Manager keeps one.
        self.warehouse: Any = None
        # The Manager's CA (commands.pki.ManagerPki) and the certificate the API serves
        # with, behind pki-resource, when serve has them.
        self.pki: Any = None
        self.server_cert: Any = None

    # -- the app -------------------------------------------------------------------
    def app(self) -> web.Application:
        # One catch-all route and no middleware: _handle turns every failure into a fault.
        app = web.Application(client_max_size=MAX_BODY)
        portal_routes.setup(app, self)  # the Admin Portal and VM Portal (api/portal)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
        app[API_KEY] = self
        app.on_shutdown.append(self._end_streams)
        return app

    async def _end_streams(self, app: web.Application) -> None:
        """Ends the open event streams when the server stops (they would wait forever)."""
        tasks = [t for t in self.streams if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

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

        async def route(request: web.Request) -> web.StreamResponse:
            try:
                return await self._route(request, env, tail)
            except authz.Denied as d:
                raise await authz.deny(self, env, d) from None

        return await self._errors(request, route)

    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fmt = negotiate(request)
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
            return await sso_routes.token(self.auth, request)
        if path == "/ovirt-engine/services/sso-logout":
            return await sso_routes.logout(self.auth, request)
        if path == pki.PATH:
            return pki.resource(self.pki, self.server_cert, request)
        if path.startswith("/orrery/"):
            return await extensions.handle(self, request, path[len("/orrery/") :])
        raise not_found(f"No resource at {path}.")

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
            try:
                session = await asyncio.get_running_loop().run_in_executor(
                    None, self.auth.basic, user, pw, request.remote or ""
                )
            except LoginRefused as refused:
                raise unauthorized(str(refused)) from None
        if session is None:
            raise unauthorized()
        env.user_name = session.user_name
        env.user_id = session.user_id
        env.correlation_id = (
            env.query.get("correlation_id") or request.headers.get("Correlation-Id") or None
        )

    # -- the API ---------------------------------------------------------------------
    async def _api(self, request: web.Request, tail: str) -> web.StreamResponse:
        env = Env(self.reads, negotiate(request), request_query(request))
        await self.authenticate(request, env)  # first: nothing is read for anonymous
        if "as_of" in env.query:
            if request.method not in ("GET", "HEAD"):
                raise bad_request(
                    f"as_of reads a past state; it cannot be given with {request.method}.",
                    "as_of",
                )
            # Permissions stay those of now: the past reads name the live ones (decider).
            who = env.user_id or env.user_name
            env.reads = await self.as_of.reads(self.reads, env.query["as_of"], who)
        try:
            return await self._route(request, env, tail)
        except authz.Denied as d:
            raise await authz.deny(self, env, d) from None

    async def _route(self, request: web.Request, env: Env, tail: str) -> web.StreamResponse:
        fmt = env.fmt
        reads = env.reads
        segs = [s for s in tail.split("/") if s]
        method = request.method
        if not segs:
            if method not in ("GET", "HEAD"):
                raise not_allowed(method, "GET")
            return respond(fmt, 200, "api", self.root(env))
        special = specials.SPECIAL.get(segs[0])
        if special is not None:
            return await special(self, request, env, segs[1:])
        res = RESOURCES.get(segs[0])
        if res is None:
            raise not_found(f"No collection '{segs[0]}'.")
        if len(segs) == 1:
            if method in ("GET", "HEAD"):
                return self.list(res, env, reads.list(res.cls))
            if method == "POST":
                return await self.add(request, env, res, res.add)
            raise not_allowed(method, "GET, POST")
        obj = reads.get(res.cls, id_or_404(segs[1]))
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
                    body=self.renderings.get(res, obj, fmt), content_type=content_type(fmt)
                )
            if method == "PUT":
                authz.check(env, authz.permit_for(res.path, "edit"), res.tag, obj.id, "update")
                return await self.update(request, env, res, obj)
            if method == "DELETE":
                authz.check(env, authz.permit_for(res.path, "delete"), res.tag, obj.id, "remove")
                return await self.remove(env, res.remove, obj_id=obj.id)
            raise not_allowed(method, "GET, PUT, DELETE")
        verb = segs[2]
        if len(segs) == 3 and verb in res.actions:
            if method != "POST":
                raise not_allowed(method, "POST")
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
        return specials.root(env)

    def render(self, res: Resource, obj: Any, env: Env) -> Any:
        return render.followed(
            res, obj, env.reads, env.query.get("follow"), lambda r, o: authz.can_see(env, r, o)
        )

    def prewarm(self) -> int:
        """Renders every object once (run in a thread at start) so the first big list is
        as fast as the next."""
        try:
            return self.renderings.prewarm(self.reads)
        finally:
            self.prewarmed = True

    def list(self, res: Resource, env: Env, objs: list[Any]) -> web.Response:
        q = env.query
        search = q.get("search")
        reads = env.reads
        if search and search.strip():
            if not res.searchable:
                raise bad_request(f"The {res.tags} collection is not searchable.", "search")
            query = compile_search(search, flag_param(q.get("case_sensitive")))
            objs = [
                o
                for o in objs
                if query.matches(functools.partial(search_values, res, o, reads=reads))
            ]
            objs = query.order(objs, lambda o, k: search_values(res, o, k, reads))
            objs = query.page_of(objs, max_param(q) or 100)
        objs = self.visible(env, res, objs)
        limit = max_param(q)
        if limit is not None:
            objs = objs[:limit]
        if q.get("follow"):
            items = [self.render(res, o, env) for o in objs]
            return collection(env.fmt, res.tags, res.tag, items)
        cached = self.renderings.get
        fmt = env.fmt
        parts = [cached(res, o, fmt) for o in objs]
        return web.Response(body=render.joined(res, fmt, parts), content_type=content_type(fmt))

    def visible(self, env: Env, res: Resource, objs: builtins.list[Any]) -> builtins.list[Any]:
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

    async def run(self, cmd: Command) -> Any:
        if isinstance(cmd, (AddUser, ChangeUserPassword)) and cmd.password is not None:
            # Hash off the writer thread and off the event loop (argon2 takes ~0.3 s).
            cmd = await asyncio.get_running_loop().run_in_executor(None, _hashed, cmd)
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
            raise not_allowed("POST", "GET")
        body = await self.read_body(request, env, res.tag)
        cmd = build(
            inp,
            body,
            env,
            parent_id=parent[1] if parent else None,
            query=env.query,
            extra={parent[0]: parent[1], "object_kind": kind} if parent else None,
        )
        scope_kind, scope = authz.scope_of(cmd)
        authz.check(env, authz.permit_for(res.path, "create"), scope_kind, scope, f"add {res.tag}")
        secret = enrollment.secret_of(cmd, inp, body, env, self.host_secrets)
        result = await self.run(cmd)
        new_id = _created(result)
        if secret is not None and new_id is not None:
            await enrollment.keep(self.host_secrets, self.run, new_id, secret)
        obj = self.reads.get(res.cls, new_id) if new_id is not None else None
        if obj is None:
            return respond(env.fmt, 202, "action", {"status": "complete"})
        href = res.href(obj)
        return respond(env.fmt, 201, res.tag, self.render(res, obj, env), {"Location": href})

    async def update(self, request: web.Request, env: Env, res: Resource, obj: Any):
        if res.update is None:
            raise not_allowed("PUT", "GET, DELETE")
        body = await self.read_body(request, env, res.tag)
        cmd = build(res.update, body, env, obj_id=obj.id, query=env.query)
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
            raise not_allowed("DELETE", "GET")
        cmd = build(
            inp, {}, env, obj_id=obj_id, parent_id=parent_id, item_id=item_id, query=env.query
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
        result = None
        try:
            cmd = build(
                inp,
                body,
                env,
                obj_id=obj_id,
                parent_id=parent_id,
                item_id=item_id,
                query=env.query,
            )
            result = await self.run(cmd)
        except ApiError as e:
            return fault_response(env.fmt, e, action=True)
        out: dict[str, Any] = {}
        if inp.result is not None and result is not None:
            out.update(inp.result(result.value))
        out["status"] = "complete"
        return respond(env.fmt, 200, "action", out)

    # -- sub-collections --------------------------------------------------------------
    async def sub(
        self,
        request: web.Request,
        env: Env,
        res: Resource,
        parent: Any,
        sub: Sub,
        rest: builtins.list[str],
    ) -> web.StreamResponse:
        method = request.method
        tag, tags = render.sub_tags(sub)
        if not rest:
            if method in ("GET", "HEAD"):
                items = render.sub_items(env.reads, parent, sub)
                if sub.kind == "child":
                    child = render.child_resource(sub)
                    items = self.visible(env, child, items)
                rendered = [render.sub_item(res, parent, sub, i) for i in items]
                limit = max_param(env.query)
                if limit is not None:
                    rendered = rendered[:limit]
                return collection(env.fmt, tags, tag, rendered)
            if method == "POST":
                if sub.kind == "child":
                    child = render.child_resource(sub)
                    if sub.add is not None:
                        return await self._sub_add_existing(request, env, parent, sub.add, child)
                    return await self.add(
                        request,
                        env,
                        child,
                        child.add,
                        parent=(sub.attr or "", parent.id),
                        kind=res.tag,
                    )
                if sub.add is None:
                    raise not_allowed(method, "GET")
                return await self._sub_add_embedded(request, env, res, parent, sub, sub.add, tag)
            raise not_allowed(method, "GET, POST")
        item_id = id_or_404(rest[0])
        by_id = {i.id: i for i in render.sub_items(env.reads, parent, sub)}
        item = by_id.get(item_id)
        hidden = (
            item is not None
            and sub.kind == "child"
            and method in ("GET", "HEAD")
            and not self.visible(env, render.child_resource(sub), [item])
        )
        if item is None or hidden:
            raise not_found(f"No {tag} {rest[0]} under {res.tag} {parent.id}.")
        if len(rest) == 1:
            if method in ("GET", "HEAD"):
                return respond(env.fmt, 200, tag, render.sub_item(res, parent, sub, item))
            if method == "DELETE":
                if sub.remove is None and sub.kind == "child":
                    child = render.child_resource(sub)
                    return await self.remove(env, child.remove, obj_id=item.id, res=child, obj=item)
                return await self.remove(
                    env, sub.remove, parent_id=parent.id, item_id=item.id, res=res, obj=parent
                )
            if method == "PUT":
                if sub.update is None:
                    if sub.kind == "child":
                        child = render.child_resource(sub)
                        return await self.update(request, env, child, item)
                    raise not_allowed(method, "GET, DELETE")
                body = await self.read_body(request, env, tag)
                cmd = build(
                    sub.update, body, env, parent_id=parent.id, item_id=item.id, query=env.query
                )
                await self.run(cmd)
                fresh_parent = self.reads.get(res.cls, parent.id) or parent
                fresh = {i.id: i for i in render.sub_items(env.reads, fresh_parent, sub)}.get(
                    item.id, item
                )
                return respond(env.fmt, 200, tag, render.sub_item(res, fresh_parent, sub, fresh))
            raise not_allowed(method, "GET, PUT, DELETE")
        if len(rest) == 2 and rest[1] in sub.actions:
            if method != "POST":
                raise not_allowed(method, "POST")
            return await self.action(
                request, env, sub.actions[rest[1]], parent_id=parent.id, item_id=item.id
            )
        if len(rest) == 2 and sub.kind == "child":
            child = render.child_resource(sub)
            if rest[1] in child.actions and method == "POST":
                return await self.action(request, env, child.actions[rest[1]], obj_id=item.id)
        raise not_found(f"No action '{rest[1]}' of {tag}.")

    async def _sub_add_existing(
        self, request: web.Request, env: Env, parent: Any, inp: Input, child: Resource
    ) -> web.Response:
        """Adds an existing object to a sub-collection (attaching a storage domain)."""
        body = await self.read_body(request, env, child.tag)
        cmd = build(inp, {"": body}, env, parent_id=parent.id, query=env.query)
        await self.run(cmd)
        target = getattr(cmd, f"{child.tag}_id", None)
        obj = self.reads.get(child.cls, target) if target else None
        if obj is None:
            return respond(env.fmt, 202, "action", {"status": "complete"})
        return respond(
            env.fmt, 201, child.tag, render.tree(child, obj), {"Location": child.href(obj)}
        )

    async def _sub_add_embedded(
        self,
        request: web.Request,
        env: Env,
        res: Resource,
        parent: Any,
        sub: Sub,
        inp: Input,
        tag: str,
    ) -> web.Response:
        """Adds an item held in the parent (a VM's nic) and answers with the new item."""
        body = await self.read_body(request, env, tag)
        before = {i.id for i in render.sub_items(env.reads, parent, sub)}
        cmd = build(inp, body, env, parent_id=parent.id, query=env.query)
        await self.run(cmd)
        fresh_parent = self.reads.get(res.cls, parent.id) or parent
        new = [i for i in render.sub_items(env.reads, fresh_parent, sub) if i.id not in before]
        if not new:
            return respond(env.fmt, 202, "action", {"status": "complete"})
        tree = render.sub_item(res, fresh_parent, sub, new[0])
        return respond(env.fmt, 201, tag, tree, {"Location": tree["href"]})


def _hashed(cmd: Command) -> Command:
    """``cmd`` with its plain password replaced by the hash (``commands.user.prehashed``)."""
    if isinstance(cmd, AddUser):
        return prehashed(cmd)
    if isinstance(cmd, ChangeUserPassword):
        return prehashed(cmd)
    return cmd


def _created(result: Any) -> UUID | None:
    if result.created:
        return result.created[0]
    v = result.value
    return v if isinstance(v, UUID) else None
