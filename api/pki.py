"""oVirt's ``/ovirt-engine/services/pki-resource``: the Manager's CA certificate (and the
API's own certificate) for clients to pass as ``ca_file``. Public by design, as in oVirt:
a certificate is no secret, and a client needs the CA before it can log in over HTTPS.
The CA itself is ``commands.pki.ManagerPki``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from api.faults import bad_request, not_found
from api.http import not_allowed

PATH = "/ovirt-engine/services/pki-resource"
# format -> content type, as oVirt answers them
FORMATS = {
    "X509-PEM-CA": "application/x-x509-ca-cert",
    "X509-PEM": "application/x-x509-cert",
}
RESOURCES = ("ca-certificate", "engine-certificate")


def resource(pki: Any, server_cert: Any, request: web.Request) -> web.Response:
    """The certificate named by ``resource`` in the PEM ``format`` asked for."""
    if request.method not in ("GET", "HEAD"):
        raise not_allowed(request.method, "GET")
    name = request.query.get("resource", "")
    fmt = request.query.get("format", "X509-PEM")
    if name not in RESOURCES:
        raise bad_request(f"Unknown resource {name!r}; one of {', '.join(RESOURCES)}.", "resource")
    if fmt not in FORMATS:
        raise bad_request(f"Unknown format {fmt!r}; one of {', '.join(FORMATS)}.", "format")
    if name == "ca-certificate":
        cert = pki.ca_cert if pki is not None else None
    else:
        cert = server_cert
    if cert is None:
        raise not_found(f"This Manager has no {name}.")
    body = cert.public_bytes(serialization.Encoding.PEM)
    return web.Response(body=body, headers={"Content-Type": FORMATS[fmt]})
