"""The Admin Portal (/ovirt-engine/webadmin/) and the VM Portal (/ovirt-engine/web-ui/).

``routes`` wires the pages into the API's aiohttp app; ``session`` owns the cookie session
(the SSO token of ``api.sso``), CSRF tokens, Origin checks and security headers; ``views``
turns the read side into what the templates show (lists with the API's search language,
detail tabs); ``templates/`` are Jinja2 with autoescape, ``static/`` our CSS and script.
Third-party browser assets are vendored by ``make deps`` from npm into ``vendor/``.

The portals add no write path: every change is a request to ``/ovirt-engine/portal/api/``,
which runs the REST API's own routing, commands and permission checks (``Api.call``).
"""
