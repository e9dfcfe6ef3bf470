"""The TLS of the host link, shared by both ends: hostd's server context (its key and
certificate, the Manager CA it requires client certificates from) and the Manager's
client context (its client certificate, the CA it verifies hostd against, the host's
address as the name to match). Mutual authentication: neither side accepts a peer whose
certificate the CA did not sign.

A TLS directory (hostd's ``--tls-dir``, written by the Manager at enrollment) holds::

    host.key   hostd's private key (refused when group or others may read it)
    host.crt   its certificate, signed by the Manager CA (CN/SAN = the host's address)
    ca.crt     the Manager CA's certificate
    revoked    optional: revoked serial numbers (hex, one a line) hostd refuses

Imports nothing of ours (the protocol module and the Manager's PKI both use it).
"""

from __future__ import annotations

import ssl
from pathlib import Path

HOST_KEY = "host.key"
HOST_CERT = "host.crt"
CA_CERT = "ca.crt"
REVOKED = "revoked"


class TlsError(ValueError):
    """A TLS directory that cannot be used (a file missing, a key others can read)."""


def check_private(path: Path) -> None:
    """Refuses a private key file that is missing or that group or others may read."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise TlsError(f"cannot read {path}: {e.strerror}") from None
    if mode & 0o077:
        raise TlsError(
            f"{path} is readable by other users (mode {mode & 0o777:04o}): chmod 600 it first"
        )


def _context(purpose: ssl.Purpose, cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    check_private(key)
    for f in (cert, ca):
        if not f.is_file():
            raise TlsError(f"{f} is missing")
    ctx = ssl.create_default_context(purpose, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        raise TlsError(f"{cert}: cannot load the certificate and its key ({e})") from None
    return ctx


def server_context(tls_dir: Path | str) -> ssl.SSLContext:
    """hostd's context: its certificate; a client certificate from the CA required."""
    d = Path(tls_dir)
    ctx = _context(ssl.Purpose.CLIENT_AUTH, d / HOST_CERT, d / HOST_KEY, d / CA_CERT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Path | str, key: Path | str, ca: Path | str) -> ssl.SSLContext:
    """The Manager's context: its client certificate; hostd's certificate verified
    against the CA and the host's address (``server_hostname`` at connect)."""
    ctx = _context(ssl.Purpose.SERVER_AUTH, Path(cert), Path(key), Path(ca))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_serial(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> int | None:
    """The serial number of the peer's (verified) certificate, None without one."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert or "serialNumber" not in cert:
        return None
    return int(str(cert["serialNumber"]), 16)


def read_revoked(path: Path | str) -> frozenset[int]:
    """The serials in a revoked list (hex, one a line; a missing file: none)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return frozenset()
    return frozenset(int(line, 16) for line in text.split() if line)


__all__ = [
    "CA_CERT",
    "HOST_CERT",
    "HOST_KEY",
    "REVOKED",
    "TlsError",
    "check_private",
    "client_context",
    "peer_serial",
    "read_revoked",
    "server_context",
]
