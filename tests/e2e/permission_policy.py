"""The policy the permission matrix (tests/e2e/test_permission_matrix.py) judges every
answer by: the callers, which world objects each may see, the public routes, the
operations UserRole grants, and ``judge`` / ``leaks``. Hand-written, one rule per class
of route, so a route the application adds is judged by its class, not by a list here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.portal import routes as portal_routes

API = "/ovirt-engine/api"
METHODS = ("GET", "POST", "PUT", "DELETE")  # tried on every path behind the catch-all
CALLERS = ("anonymous", "nop", "alice", "carol", "admin")

# -- the policy -------------------------------------------------------------------------
#
# Routes that anonymous may use, and why (oVirt's own public endpoints):
PUBLIC = {
    "/ovirt-engine/sso/oauth/token": "the SSO password grant: how a client logs in",
    "/ovirt-engine/services/sso-logout": "ends the token it is given (no token: nothing)",
    "/ovirt-engine/services/pki-resource": "the CA certificate, needed before logging in",
    "/orrery/openapi.json": "the description of the API (no data)",
    "/ovirt-engine": "a redirect to the welcome page",
    "/ovirt-engine/": "the welcome page linking the portals",
    "/ovirt-engine/login": "the portal login form and its post",
    "/ovirt-engine/logout": "ends the cookie session it is sent with",
    "/ovirt-engine/webadmin": "a redirect",
    "/ovirt-engine/webadmin/": "a redirect",
    "/ovirt-engine/web-ui": "a redirect",
    "/ovirt-engine/portal/static/{name}": "the portal's CSS and script",
    "/ovirt-engine/portal/vendor/{tail}": "the portal's npm-vendored assets",
}
# The other router routes, by class (one rule per class, in ``judge``):
PORTAL = {
    "/ovirt-engine/webadmin/events": "admin_page",
    "/ovirt-engine/webadmin/tree": "admin_page",
    "/ovirt-engine/webadmin/{path}": "admin_page",
    "/ovirt-engine/webadmin/{path}/{id}": "admin_page",
    "/ovirt-engine/web-ui/": "page",
    "/ovirt-engine/web-ui/vms/{id}": "page",
    "/ovirt-engine/portal/api/{tail}": "bridge",  # the API tree again, for the cookie
    "/ovirt-engine/portal/stream": "stream",
    "/{tail}": "catch-all",  # everything below
}
# /orrery paths (the openapi document's, and the ones it does not describe):
ORRERY = {
    "/orrery/events/stream": "stream",
    "/orrery/status": "read",
    "/orrery/history/{collection}/{id}": "read",
    "/orrery/warehouse/sql": "admin_read",  # superusers only, by design
    "/orrery/warehouse/reports/{name}": "read",
}
# What each caller may see of the world's objects (a GET of one: 200, else 404).
# An administrative role (carol's ClusterAdmin on the Default cluster) sees everything
# unless it asks filter=true, as oVirt's unfiltered administrator queries; what it may
# change stays its cluster: VM D, in the other cluster, is outside (``OUTSIDE``).
# (alice's permission on A is not said either way.)
_D = {"vm_d", "disk_d", "event_d"}  # VM D, its disk and an event about it
_ALL = {"vm_a", "vm_b", "disk_a", "disk_b", "perm_a", "perm_b", "event_a", "event_b"} | _D
SEES = {
    "nop": set(),
    "alice": {"vm_a", "disk_a", "event_a"},
    "carol": _ALL,
    "admin": _ALL,
}
HIDDEN = {
    "nop": _ALL,
    "alice": {"vm_b", "disk_b", "perm_b", "event_b"} | _D,
    "carol": set(),
    "admin": set(),
}
OUTSIDE = {"vm_d", "disk_d"}  # carol's writes on these: refused
# With filter=true (and in the VM Portal, which always filters) an administrative role
# sees what it holds permissions on, as everyone else: carol, the Default cluster's.
FILTERED_SEES = {**SEES, "carol": {"vm_a", "vm_b", "disk_a", "disk_b", "event_a", "event_b"}}
FILTERED_HIDDEN = {**HIDDEN, "carol": _D}
ADMINISTRATIVE = {"carol", "admin"}  # may use the Administration Portal
SUPER = {"admin"}  # SuperUser on the system
# What UserRole grants on a VM (oVirt's VM basic operations, console, CD): not refused.
USERROLE_ACTIONS = {"start", "stop", "shutdown", "reboot", "suspend", "ticket"}
USERROLE_SUB_WRITES = {("PUT", "cdroms")}
# A refused write: the permission (403), an object not there for the user (404), a body
# the request shape refuses before anything is decided (400), a wrong method (405).
REFUSED = {400, 403, 404, 405}


@dataclass
class Req:
    method: str
    path: str
    cls: str  # read | write | admin_read | page | admin_page | stream | public
    subject: str | None = None  # the world object the path names first (SEES/HIDDEN)
    action: str | None = None  # the action verb at the end of the path
    sub: str | None = None  # the sub-collection the path goes into
    via: str = "api"  # api | portal (the cookie session)
    logout: bool = False  # ends the caller's sessions
    fmt: str = "json"
    filtered: bool = False  # asks filter=true, or a VM Portal page
    parent: str | None = None  # for an item of another collection: its parent's key


# -- judging -----------------------------------------------------------------------------


def judge(req: Req, who: str, status: int, headers: dict[str, str]) -> str | None:
    """What is wrong with the answer ``status`` to ``req`` by ``who`` (None: as the
    policy says)."""
    if status >= 500:
        return "a server error"
    if req.cls == "public":
        if req.method in ("GET", "HEAD") and status == 401:
            return "a public route refused anonymous"
        return None
    if who == "anonymous":
        if req.cls in ("page", "admin_page"):
            loc = headers.get("Location", "")
            if status != 303 or not loc.startswith(portal_routes.LOGIN):
                return "a portal page without a session must go to the login form"
            return None
        return None if status == 401 else "anonymous must get 401"
    if status == 401:
        return "a logged-in user got 401"
    admin = who == "admin"
    if req.cls == "admin_read":
        if req.method not in ("GET", "HEAD"):
            return None if status == 405 else "expected 405 (GET only)"
        if who not in SUPER:
            return None if status == 403 else "a superusers' route must be 403"
        return None if status == 200 else "expected 200"
    if req.cls == "admin_page" and who not in ADMINISTRATIVE:
        return None if status == 403 else "an administrators' page must be 403"
    sees, hidden = (FILTERED_SEES, FILTERED_HIDDEN) if req.filtered else (SEES, HIDDEN)
    if req.cls in ("read", "page", "stream", "admin_page"):
        if req.subject is not None and req.subject in hidden[who]:
            return None if status == 404 else "what the user may not see must be 404"
        if (
            req.subject is not None
            and req.subject in sees[who]
            and (req.parent is None or req.parent in sees[who])
        ):
            want = 405 if req.action is not None else 200
            return None if status == want else f"expected {want}"
        ok = {200, 404} | ({405} if req.action is not None else set())
        if admin:
            return None if status in ok else "the superuser got a refusal"
        return None if status in ok else "a read must answer 200 or 404"
    # writes
    if admin:
        return "the superuser was refused" if status == 403 else None
    granted = (
        who == "alice"
        and req.subject == "vm_a"
        and (
            (req.action in USERROLE_ACTIONS and req.method == "POST" and req.sub is None)
            or ((req.method, req.sub) in USERROLE_SUB_WRITES and req.action is None)
        )
    )
    if granted:
        return "UserRole's own operation refused" if status == 403 else None
    if who == "carol" and req.subject not in OUTSIDE:
        return None  # what ClusterAdmin may do in its cluster: no rule but the above
    return None if status in REFUSED else f"an unprivileged write must be refused {sorted(REFUSED)}"


def leaks(w: dict[str, Any], who: str, req: Req, body: bytes) -> list[str]:
    """The strings of objects hidden from ``who`` that the body shows (but not the ones the
    caller put in the path itself)."""
    if who in ("anonymous", "admin"):
        return []
    text = body.decode(errors="replace")
    found = []
    for key in (FILTERED_HIDDEN if req.filtered else HIDDEN)[who]:
        for s in w["secret"].get(key, ()):
            if s and s in text and s not in req.path:
                found.append(f"{key}:{s}")
    return found
