"""The portals' routes on the API's aiohttp app (``setup(app, api)``, called by ``Api.app``).

    /ovirt-engine/                      welcome page linking both portals
    /ovirt-engine/login, /logout        the login form (SSO) and logout
    /ovirt-engine/webadmin/{coll}[/id]  Admin Portal lists and detail views (administrators)
    /ovirt-engine/webadmin/events       the audit feed
    /ovirt-engine/web-ui/               VM Portal: the user's VMs and pools
    /ovirt-engine/portal/api/{tail}     the REST API for the cookie session (every change)
    /ovirt-engine/portal/stream         server-sent events the user may read (live updates)
    /ovirt-engine/portal/static|vendor  our CSS/script and the npm-vendored assets

Every page and fragment checks the session and the permission on the server; a page's
``?fragment=1`` form is the part the script swaps in when the stream says it changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote
from uuid import UUID

import jinja2
from aiohttp import web

from api import authz
from api.faults import ApiError
from api.feed import render_event
from api.portal import session as sess
from api.portal import views
from api.sso import LoginRefused
from domain.rules import access_rules as permission

log = logging.getLogger("orrery.api.portal")

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
LOGIN = "/ovirt-engine/login"
WEBADMIN = "/ovirt-engine/webadmin/"
WEBUI = "/ovirt-engine/web-ui/"
# The New VM dialog's operating systems (oVirt's os ids; the API takes any).
OS_TYPES = [
    ("other", "Other OS"),
    ("other_linux", "Linux"),
    ("rhel_8x64", "Red Hat Enterprise Linux 8.x x64"),
    ("rhel_9x64", "Red Hat Enterprise Linux 9.x x64"),
    ("debian_12", "Debian 12"),
    ("ubuntu_22_04", "Ubuntu 22.04"),
    ("windows_2022", "Windows Server 2022"),
    ("windows_11", "Windows 11"),
]
BAD_LOGIN = "Cannot authenticate user: the user name or password is incorrect."

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every string a template shows is escaped
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals["status_class"] = views.status_class


def setup(app: web.Application, api: Any) -> None:
    portal = Portal(api)
    r = app.router
    r.add_get("/ovirt-engine", portal.to("/ovirt-engine/"))
    r.add_get("/ovirt-engine/", portal.page(portal.welcome))
    r.add_route("GET", LOGIN, portal.page(portal.login_form))
    r.add_route("POST", LOGIN, portal.page(portal.login))
    r.add_post("/ovirt-engine/logout", portal.page(portal.logout))
    r.add_get("/ovirt-engine/webadmin", portal.to(WEBADMIN))
    r.add_get(WEBADMIN, portal.to(WEBADMIN + "vms"))
    r.add_get(WEBADMIN + "events", portal.page(portal.admin_events))
    r.add_get(WEBADMIN + "tree", portal.page(portal.admin_tree))
    r.add_get(WEBADMIN + "{path}", portal.page(portal.admin_list))
    r.add_get(WEBADMIN + "{path}/{id}", portal.page(portal.admin_detail))
    r.add_get("/ovirt-engine/web-ui", portal.to(WEBUI))
    r.add_get(WEBUI, portal.page(portal.webui))
    r.add_get(WEBUI + "vms/{id}", portal.page(portal.webui_vm))
    r.add_route("*", "/ovirt-engine/portal/api/{tail:.*}", portal.bridge)
    r.add_get("/ovirt-engine/portal/stream", portal.stream)
    r.add_get("/ovirt-engine/portal/static/{name}", portal.static)
    r.add_get("/ovirt-engine/portal/vendor/{tail:.+}", portal.vendor)


class _Login(Exception):
    """The page needs a session: go to the login form."""


class Portal:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.sessions = sess.Sessions(api.auth)

    # -- plumbing ------------------------------------------------------------------------
    def to(self, target: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(target)

        return handler

    def page(self, fn: Any) -> Any:
        """A page handler with the portal's headers and HTML errors (never a trace)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                resp = await fn(request)
            except _Login:
                target = quote(request.path_qs, safe="/?=&")
                resp = redirect(f"{LOGIN}?next={target}")
            except sess.Refused as e:
                resp = self.error_page(403, "Forbidden", e.detail)
            except ApiError as e:
                resp = self.error_page(e.status, e.reason, e.detail)
            except web.HTTPException as e:
                resp = web.Response(status=e.status, headers=e.headers, text=e.text)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception(
                    "unexpected %s on %s %s", type(e).__name__, request.method, request.path
                )
                resp = self.error_page(
                    500, "Internal Server Error", "An unexpected error occurred."
                )
            return sess.secure_headers(resp)

        return handler

    def render(self, template: str, status: int = 200, **ctx: Any) -> web.Response:
        html = _templates.get_template(template).render(**ctx)
        return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")

    def error_page(self, status: int, reason: str, detail: str) -> web.Response:
        return self.render("error.html", status=status, reason=reason, detail=detail)

    def user(self, request: web.Request, *, admin: bool, query: dict[str, str] | None = None):
        """(session, env) of the request; raises _Login without a session and Refused
        when the Admin Portal is asked for by a user with no administrative role."""
        session = self.sessions.current(request)
        if session is None:
            raise _Login()
        env = self.api.env_for(session.user_id, session.user_name, dict(query or {}))
        if admin and not is_admin(env):
            raise sess.Refused(
                f"User {session.user_name} is not authorized to use the Administration Portal."
            )
        return session, env

    def base(self, session: Any, portal: str, active: str = "") -> dict[str, Any]:
        return {
            "user_name": session.user_name,
            "csrf": self.sessions.csrf_for(session),
            "portal": portal,
            "nav": views.NAV,
            "active": active,
        }

    async def form(self, request: web.Request) -> dict[str, str]:
        raw = await request.read()
        try:
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            return {}

    # -- welcome, login, logout ------------------------------------------------------------
    async def welcome(self, request: web.Request) -> web.Response:
        session = self.sessions.current(request)
        ctx = self.base(session, "welcome") if session is not None else {"portal": "welcome"}
        return self.render("welcome.html", **ctx)

    async def login_form(
        self,
        request: web.Request,
        error: str | None = None,
        status: int = 200,
        user: str = "",
        target: str | None = None,
    ) -> web.Response:
        token = self.sessions.login_form_token(request)
        nxt = sess.safe_next(target or request.query.get("next"), WEBADMIN)
        resp = self.render(
            "login.html", status=status, csrf=token, next=nxt, error=error, username=user
        )
        self.sessions.set_cookie(resp, request, sess.LOGIN_COOKIE, token)
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        sess.check_origin(request)
        form = await self.form(request)
        self.sessions.check_login_csrf(request, form)
        user, password = form.get("username", "")[:255], form.get("password", "")
        source = request.remote or ""
        try:
            if not user or not password:
                raise LoginRefused(BAD_LOGIN)
            session = await asyncio.get_running_loop().run_in_executor(
                None, self.api.auth.login, user, password, source
            )
        except LoginRefused as refused:  # the same throttling, lockout and events as SSO
            return await self.login_form(request, str(refused), 401, user, form.get("next"))
        target = sess.safe_next(form.get("next"), WEBADMIN)
        if target.startswith(WEBADMIN):
            env = self.api.env_for(session.user_id, session.user_name, {})
            if not is_admin(env):
                target = WEBUI
        resp = redirect(target)
        self.sessions.set_cookie(resp, request, sess.COOKIE, session.token)
        resp.del_cookie(sess.LOGIN_COOKIE, path=sess.PATH)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        sess.check_origin(request)
        session = self.sessions.current(request)
        resp = redirect("/ovirt-engine/")
        if session is not None:
            self.sessions.check_csrf(request, session, await self.form(request))
            self.sessions.end(request, resp)
        return resp

    # -- Admin Portal ------------------------------------------------------------------
    async def admin_list(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        session, env = self.user(request, admin=True)
        res = views.resource(path)
        if res is None:
            raise ApiError(404, "Not Found", f"No list '{path[:40]}' in the Administration Portal.")
        data = views.main_list(env, path, request.query)
        ctx = {
            **self.base(session, "admin", path),
            "path": path,
            "title": views.TITLES.get(path, res.label),
            "kind": res.tag,
            "data": data,
            "keys": search_keys(res),
            "fragment_url": request.path_qs,
        }
        if path == "vms":
            ctx["choices"] = new_vm_choices(env)
            ctx["os_types"] = OS_TYPES
            ctx["hosts"] = migrate_targets(env)
        if request.query.get("fragment"):
            return self.render("list_rows.html", **ctx)
        return self.render("list.html", **ctx)

    async def admin_detail(self, request: web.Request) -> web.Response:
        path, raw_id = request.match_info["path"], request.match_info["id"]
        session, env = self.user(request, admin=True)
        res = views.resource(path)
        try:
            oid = UUID(raw_id)
        except ValueError:
            res = None
        if res is None:
            raise ApiError(404, "Not Found", f"No object at {path[:40]}/{raw_id[:40]}.")
        obj = env.reads.get(res.cls, oid)
        tabs = views.TABS.get(path, views.DEFAULT_TABS)
        tab = request.query.get("tab", "general")
        if tab not in tabs:
            tab = "general"
        if obj is not None and not authz.can_see(env, res, obj):
            obj = None
            raise ApiError(404, "Not Found", f"{res.label} {oid} not found.")
        if obj is None:
            tab = "history"  # a removed object still has its history
        ctx = {
            **self.base(session, "admin", path),
            "path": path,
            "title": views.TITLES.get(path, res.label),
            "label": res.label,
            "kind": res.tag,
            "obj": obj,
            "obj_id": str(oid),
            "name": getattr(obj, "name", None) or getattr(obj, "user_name", None) or str(oid),
            "tabs": [(t, views.TAB_TITLES[t]) for t in tabs] if obj is not None else [],
            "tab": tab,
            "fragment_url": request.path_qs,
        }
        reads = env.reads
        if obj is not None and path == "vms":
            ctx["vm_status"] = views.status_class(str(obj.status.value))
            ctx["status_text"] = str(obj.status.value)
            ctx["hosts"] = migrate_targets(env)
        if tab == "general" and obj is not None:
            ctx["fields"] = views.general(obj, reads)
        elif tab == "disks":
            ctx["disks"] = views.vm_disks(obj, reads)
        elif tab == "nics":
            ctx["nics"] = views.vm_nics(obj, reads)
        elif tab == "snapshots":
            ctx["snapshots"] = views.vm_snapshots(obj)
        elif tab == "permissions":
            ctx["permissions"] = views.permissions_of(oid, reads)
        elif tab == "events":
            await self.api.feed.until_ready()
            ctx["events"] = views.events_of(self.api, env, res.tag, str(oid))
        elif tab == "history":
            ctx["history"] = views.history_of(self.api, env, path, oid)
        if request.query.get("fragment"):
            return self.render("detail_pane.html", **ctx)
        return self.render("detail.html", **ctx)

    async def admin_events(self, request: web.Request) -> web.Response:
        session, env = self.user(request, admin=True)
        await self.api.feed.until_ready()
        ctx = {
            **self.base(session, "admin", "events"),
            "title": "Events",
            "events": views.events_of(self.api, env, None, None, limit=500),
            "fragment_url": request.path_qs,
        }
        if request.query.get("fragment"):
            return self.render("events_rows.html", **ctx)
        return self.render("events.html", **ctx)

    async def admin_tree(self, request: web.Request) -> web.Response:
        session, env = self.user(request, admin=True)
        ctx = {
            **self.base(session, "admin", "tree"),
            "title": "System",
            "tree": views.system_tree(env),
            "fragment_url": request.path_qs,
        }
        if request.query.get("fragment"):
            return self.render("tree_pane.html", **ctx)
        return self.render("tree.html", **ctx)

    # -- VM Portal ----------------------------------------------------------------------
    async def webui(self, request: web.Request) -> web.Response:
        # The user view: only what the user holds permissions on (filter=true).
        session, env = self.user(request, admin=False, query={"filter": "true"})
        reads = env.reads
        vms = authz.visible(env, views.resource("vms"), list(reads.list("Vm")))
        pools = authz.visible(env, views.resource("vmpools"), list(reads.list("VmPool")))
        # A pool's VMs show once taken (as oVirt's VM Portal): the pool card offers them.
        taken = {
            a.vm_id
            for p in reads.list("VmPool")
            for a in p.assignments
            if a.user_id == session.user_id
        }
        vms = [v for v in vms if v.pool_id is None or v.id in taken]
        vms.sort(key=lambda v: v.name.lower())
        pools.sort(key=lambda p: p.name.lower())
        ctx = {
            **self.base(session, "user"),
            "vms": [vm_card(v) for v in vms],
            "pools": [
                {"id": str(p.id), "name": p.name, "description": p.description} for p in pools
            ],
            "fragment_url": request.path_qs,
            "admin": is_admin(self.api.env_for(session.user_id, session.user_name, {})),
        }
        if request.query.get("fragment"):
            return self.render("webui_cards.html", **ctx)
        return self.render("webui.html", **ctx)

    async def webui_vm(self, request: web.Request) -> web.Response:
        """One of the user's VMs: its disks, NICs and snapshots."""
        session, env = self.user(request, admin=False, query={"filter": "true"})
        res = views.resource("vms")
        try:
            vm = env.reads.get(res.cls, UUID(request.match_info["id"]))
        except ValueError:
            vm = None
        if vm is None or not authz.can_see(env, res, vm):
            raise ApiError(404, "Not Found", "No such virtual machine of yours.")
        ctx = {
            **self.base(session, "user"),
            "admin": is_admin(self.api.env_for(session.user_id, session.user_name, {})),
            "vm": vm_card(vm),
            "disks": views.vm_disks(vm, env.reads),
            "nics": views.vm_nics(vm, env.reads),
            "snapshots": views.vm_snapshots(vm),
            "fragment_url": request.path_qs,
        }
        if request.query.get("fragment"):
            return self.render("webui_vm_pane.html", **ctx)
        return self.render("webui_vm.html", **ctx)

    # -- the REST API for the session, and the event stream -------------------------------
    async def bridge(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.current(request)
        if session is None:
            return _json_fault(401, "Unauthorized", "Your session has ended; log in again.")
        try:
            sess.check_origin(request)
            if request.method not in ("GET", "HEAD"):
                self.sessions.check_csrf(request, session, {})
        except sess.Refused as e:
            return _json_fault(403, "Forbidden", e.detail)
        env = self.api.env_for(session.user_id, session.user_name, dict(request.query))
        resp = await self.api.call(request, env, request.match_info["tail"])
        return sess.secure_headers(resp)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each new audit entry the session's user may read."""
        session = self.sessions.current(request)
        if session is None:
            return _json_fault(401, "Unauthorized", "Your session has ended; log in again.")
        try:
            sess.check_origin(request)
        except sess.Refused as e:
            return _json_fault(403, "Forbidden", e.detail)
        env = self.api.env_for(
            session.user_id, session.user_name, {"filter": request.query.get("filter", "")}
        )
        feed = self.api.feed
        try:
            await feed.until_ready()
        except ApiError as e:
            return _json_fault(e.status, e.reason, e.detail)
        q = feed.subscribe(asyncio.get_running_loop())
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        sent = 0
        getter: asyncio.Future[dict[str, Any]] | None = None
        try:
            # A reconnecting EventSource names the last entry it got: replay what followed.
            last = request.headers.get("Last-Event-ID", "")
            if last.isdigit():
                sent = int(last)
                for entry in reversed(feed.list(sent)):
                    if "id" in entry and entry["id"] > sent and authz.visible_events(env, [entry]):
                        await _send(resp, entry)
            await resp.write(b": connected\n\n")
            idle = 0.0
            while True:
                # One pending read of the queue, waited on a second at a time (no task
                # made and cancelled per second); cancelled below when the stream ends.
                if getter is None:
                    getter = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({getter}, timeout=1.0)
                if not done:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break  # the browser went away
                    idle += 1.0
                    if idle >= 15:
                        if self.sessions.current(request) is None:
                            break  # logged out or expired: the stream ends with the session
                        await resp.write(b": keep-alive\n\n")
                        idle = 0.0
                    continue
                entry, getter = getter.result(), None
                if entry["id"] <= sent or not authz.visible_events(env, [entry]):
                    continue
                await _send(resp, entry)
        except ConnectionResetError:
            pass
        finally:  # also when cancelled (the server stops): the cancellation goes on up
            if getter is not None:
                getter.cancel()
            feed.unsubscribe(q)
        return resp

    # -- files ---------------------------------------------------------------------------
    async def static(self, request: web.Request) -> web.StreamResponse:
        return _file(STATIC, request.match_info["name"])

    async def vendor(self, request: web.Request) -> web.StreamResponse:
        if not VENDOR.is_dir():
            return web.Response(status=404, text="Browser assets missing: run `make deps`.")
        return _file(VENDOR, request.match_info["tail"])


async def _send(resp: web.StreamResponse, e: dict[str, Any]) -> None:
    """One feed entry as a server-sent event (its API form, plus topic and object id)."""
    tree = {k: v for k, v in render_event(e).items() if v is not None}
    tree["topic"] = e.get("topic")
    tree["object_id"] = e.get("object_id")
    data = json.dumps(tree)
    await resp.write(f"id: {e['id']}\nevent: orrery\ndata: {data}\n\n".encode())


def redirect(location: str) -> web.Response:
    """303 See Other: after a form post or to the login form, the browser GETs it."""
    return web.Response(status=303, headers={"Location": location})


def _file(root: Path, rel: str) -> web.StreamResponse:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return web.Response(status=404, text="Not found.")
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    resp = web.FileResponse(
        path, headers={"Content-Type": ctype, "X-Content-Type-Options": "nosniff"}
    )
    return resp


def _json_fault(status: int, reason: str, detail: str) -> web.StreamResponse:
    resp = web.json_response({"reason": reason, "detail": detail}, status=status)
    return sess.secure_headers(resp)


def is_admin(env: Any) -> bool:
    """Whether the user may use the Administration Portal: any administrative role, as
    for the administration API (the one call site of ``domain.rules.access_rules.is_admin``)."""
    engine = getattr(env.reads, "engine", None)
    if env.user_id is None or engine is None:
        return True  # the bootstrap admin before the user area, as authz.check does
    with env.reads.lock:
        return bool(permission.is_admin(engine, env.user_id))


def search_keys(res: Any) -> list[str]:
    """Completion for the search bar: the object type prefix and the searchable keys."""
    keys = {"name", "description", "status", *res.search}
    return [f"{res.tags.replace('_', '').capitalize()}:", *(f"{k}=" for k in sorted(keys))]


def new_vm_choices(env: Any) -> dict[str, list[tuple[str, str]]]:
    """What the New VM dialog offers: the clusters, templates, storage domains and vNIC
    profiles the user may see."""

    def named(path: str, cls: str, keep: Any = None) -> list[tuple[str, str]]:
        objs = authz.visible(env, views.resource(path), list(env.reads.list(cls)))
        return sorted(
            ((str(o.id), o.name) for o in objs if keep is None or keep(o)), key=lambda t: t[1]
        )

    return {
        "clusters": named("clusters", "Cluster"),
        "templates": named("templates", "Template"),
        "domains": named(
            "storagedomains",
            "StorageDomain",
            lambda sd: str(sd.domain_type.value) == "data" and str(sd.status.value) == "active",
        ),
        "profiles": named("vnicprofiles", "VnicProfile"),
    }


def migrate_targets(env: Any) -> list[tuple[str, str]]:
    hosts = authz.visible(env, views.resource("hosts"), list(env.reads.list("Host")))
    return sorted(((str(h.id), h.name) for h in hosts), key=lambda t: t[1])


def vm_card(v: Any) -> dict[str, Any]:
    status = str(v.status.value)
    return {
        "id": str(v.id),
        "name": v.name,
        "description": v.description,
        "status": status,
        "status_class": views.status_class(status),
        "memory": v.memory // (1024 * 1024),
        "cpus": v.cpu_sockets * v.cpu_cores * v.cpu_threads,
    }
