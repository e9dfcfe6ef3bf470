"""The portals' browser session and what keeps it safe.

- The session cookie carries the SSO token that ``api.sso.Authenticator.login`` issued (the
  same users, password checks, throttling, lockout and expiry as the REST API's tokens):
  HttpOnly, SameSite=Strict, Secure when the request came over HTTPS. Logout revokes the
  token itself, so a copied cookie is dead too.
- Every state change carries a CSRF token: for a session, an HMAC of its token under a key
  this process drew at start (sent as the ``X-CSRF-Token`` header or a ``csrf_token`` form
  field); for the login form, a random value both in a cookie and in the form.
- Requests a cookie authenticates must come from the portal's own origin when the browser
  says where they come from (``Origin``, else ``Sec-Fetch-Site``): a page elsewhere can
  neither post nor open the event stream.
- Every portal response gets a Content-Security-Policy without inline script.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from aiohttp import web

COOKIE = "orrery_session"
LOGIN_COOKIE = "orrery_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
PATH = "/ovirt-engine"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the portal refuses before looking further (403)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Sessions:
    def __init__(self, auth: Any) -> None:
        self.auth = auth
        self._key = secrets.token_bytes(32)

    def current(self, request: web.Request) -> Any:
        """The live SSO session the cookie names, or None."""
        token = request.cookies.get(COOKIE, "")
        return self.auth.session(token) if token else None

    def csrf_for(self, session: Any) -> str:
        return hmac.new(self._key, b"csrf\0" + session.token.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: web.Request, session: Any, form: dict[str, str]) -> None:
        given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD, "")
        if not given or not hmac.compare_digest(given.encode(), self.csrf_for(session).encode()):
            raise Refused("The request has no valid CSRF token.")

    def login_form_token(self, request: web.Request) -> str:
        """The login form's CSRF value: the one the browser holds, else a new one."""
        return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)

    def check_login_csrf(self, request: web.Request, form: dict[str, str]) -> None:
        held, given = request.cookies.get(LOGIN_COOKIE, ""), form.get(CSRF_FIELD, "")
        if not held or not given or not hmac.compare_digest(held.encode(), given.encode()):
            raise Refused("The login form has no valid CSRF token; reload the page.")

    def set_cookie(self, resp: web.StreamResponse, request: web.Request, name: str, value: str):
        resp.set_cookie(
            name,
            value,
            path=PATH,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    def end(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Logout: the token is revoked, the cookie dropped."""
        token = request.cookies.get(COOKIE, "")
        if token:
            self.auth.logout(token)
        resp.del_cookie(COOKIE, path=PATH)


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request) -> None:
    """Refuses a request that the browser says comes from another origin."""
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin != own_origin(request):
            raise Refused("Requests from another origin are refused.")
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Refused("Requests from another site are refused.")


def safe_next(target: str | None, default: str) -> str:
    """Where to go after login: a path of this portal only (no open redirect)."""
    if not target or not target.startswith(PATH + "/"):
        return default
    if any(c in target for c in "\\\r\n"):
        return default
    return target


def secure_headers(resp: web.StreamResponse) -> web.StreamResponse:
    for k, v in HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp
