"""oVirt's SSO endpoints over the Authenticator (``api.sso``): the password grant
``/ovirt-engine/sso/oauth/token`` (JSON, errors as oVirt's ``error_code``/``error``)
and ``/ovirt-engine/services/sso-logout``. Imports only ``api.sso``."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from aiohttp import web

from api.sso import Authenticator, LoginRefused


async def _form(request: web.Request) -> dict[str, str]:
    data = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        raw = await request.read()
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = ""
        data.update(dict(parse_qsl(text, keep_blank_values=True)))
    return data


async def token(auth: Authenticator, request: web.Request) -> web.Response:
    if request.method != "POST":
        return web.json_response(
            {"error_code": "invalid_request", "error": "Use POST."}, status=405
        )
    form = await _form(request)
    if form.get("grant_type", "password") != "password":
        return web.json_response(
            {"error_code": "unsupported_grant_type", "error": "Only password is supported."},
            status=400,
        )
    user, password = form.get("username", ""), form.get("password", "")
    try:
        if not user or not password:
            raise LoginRefused("Cannot authenticate user: a user name and password are needed.")
        session = await asyncio.get_running_loop().run_in_executor(
            None, auth.login, user, password, request.remote or ""
        )
    except LoginRefused as refused:
        return web.json_response({"error_code": "access_denied", "error": str(refused)}, status=400)
    return web.json_response(
        {
            "access_token": session.token,
            "scope": form.get("scope", "ovirt-app-api"),
            "exp": str(int(session.expires * 1000)),
            "token_type": "bearer",
        }
    )


async def logout(auth: Authenticator, request: web.Request) -> web.Response:
    form = await _form(request)
    token = form.get("token", "")
    if not token:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
    if token:
        auth.logout(token)
    return web.json_response({})
