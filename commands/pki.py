"""The Manager's PKI, as oVirt's engine has one: a certificate authority created at the
first start under ``DATA_DIR/pki`` and the certificates it signs (today the API's server
certificate, the Manager's client certificate for the host link, and each host's
certificate at its enrollment, ``enroll_host``), and the revocation of a host's
certificates (when it is removed or enrolled again). Private keys are written
atomically with mode 0600 from the start (``write_private``); nothing here is ever
logged.

Layout of ``DATA_DIR/pki`` (mode 0755; ``private/`` and ``keys/`` 0700)::

    ca.pem            the CA certificate, public (served at pki-resource)
    private/ca.key    the CA's private key
    certs/engine.cer  the API's server certificate
    keys/engine.key   its private key
    certs/manager.cer the Manager's client certificate for the host link
    keys/manager.key  its private key
    hosts/<host id>/  a host's TLS directory (hostd.tls), issued when it is added
    enrolled.json     serials issued per enrolled host (by name) and seen per host id
    revoked           revoked serial numbers, hex, one a line (hostd.tls.read_revoked)

Rotating the CA: stop the Manager, move ``DATA_DIR/pki`` away, start it; a new CA and a
new server certificate are made, and every client must fetch the new CA.

Imports nothing of ours: the API serves with it, the host link will sign with it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650  # oVirt's CA: ten years
SERVER_DAYS = 398  # what browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)  # a start this close to the end issues a new one
CA_FILE = "ca.pem"
CA_KEY = "private/ca.key"
SERVER_CERT = "certs/engine.cer"
SERVER_KEY = "keys/engine.key"
CLIENT_CERT = "certs/manager.cer"
CLIENT_KEY = "keys/manager.key"
ENROLLED = "enrolled.json"
REVOKED = "revoked"
HOST_DAYS = 1825  # oVirt signs hosts' certificates for five years


def write_private(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically, the file mode 0600 from its creation (a
    fresh temporary file beside it, then renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name)


def subject_names(names: Iterable[str]) -> list[str]:
    """The names a server certificate covers: ``names`` (host names or addresses the
    server listens on; the wildcard addresses left out) plus 127.0.0.1 and localhost."""
    out: list[str] = []
    for n in [*names, "127.0.0.1", "localhost"]:
        n = n.strip().strip("[]")
        if n and n not in ("0.0.0.0", "::") and n not in out:
            out.append(n)
    return out


@dataclass(frozen=True)
class Issued:
    """A certificate the CA signed and where it and its key are."""

    cert: x509.Certificate
    cert_path: Path
    key_path: Path


class ManagerPki:
    """The Manager's CA in ``directory``: made at the first ``open``, loaded after."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.directory = directory
        self.ca_cert = cert
        self._key = key
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path | str, *, common_name: str = "") -> ManagerPki:
        """The CA under ``directory``, created (key first, mode 0600) when it has none."""
        d = Path(directory)
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
        for sub in ("private", "keys"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
        key_path, cert_path = d / CA_KEY, d / CA_FILE
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC private key")
            return cls(d, x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Orrery"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME,
                    f"{common_name or 'orrery'}.{secrets.token_hex(3)} Manager CA",
                ),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(d, cert, key)

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        common_name: str,
        names: Iterable[str],
        *,
        days: int,
        server: bool,
    ) -> x509.Certificate:
        """A certificate for ``public_key`` signed by the CA: ``names`` as its subject
        alternative names, for a TLS server (``server``) or client."""
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        sans = [_general_name(n) for n in names]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(self._key, hashes.SHA256())

    def server_certificate(self, names: Iterable[str]) -> Issued:
        """The API's server certificate, covering ``subject_names(names)``: the one on
        disk while it is this CA's, covers those names and is not near its end; else a
        new one (new key, mode 0600)."""
        wanted = subject_names(names)
        cert_path, key_path = self.directory / SERVER_CERT, self.directory / SERVER_KEY
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if self._still_good(cert, wanted):
                return Issued(cert, cert_path, key_path)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key.public_key(), wanted[0], wanted, days=SERVER_DAYS, server=True)
        write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert, cert_path, key_path)

    def client_certificate(self) -> Issued:
        """The Manager's client certificate for the host link (hostd requires one from
        this CA): the one on disk while good, else a new one."""
        names = ["orrery-manager"]
        cert_path, key_path = self.directory / CLIENT_CERT, self.directory / CLIENT_KEY
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if self._still_good(cert, names) and not self.is_revoked(cert.serial_number):
                return Issued(cert, cert_path, key_path)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key.public_key(), names[0], names, days=SERVER_DAYS, server=False)
        write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert, cert_path, key_path)

    # -- hosts ----------------------------------------------------------------------------
    def enroll_host(self, name: str, address: str, directory: Path | str) -> x509.Certificate:
        """Enrolls the host ``name``: a new key and a certificate for ``address`` (its CN
        and subject alternative name), written with the CA certificate and the revoked
        list into ``directory`` (hostd's ``--tls-dir``: host.key mode 0600, host.crt,
        ca.crt, revoked). The certificates enrolled before under ``name`` are revoked."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key.public_key(), address, [address], days=HOST_DAYS, server=True)
        with self._lock:
            book = self._enrolled()
            self._revoke(book["names"].pop(name, []))
            book["names"][name] = [f"{cert.serial_number:x}"]
            self._save(book)
        write_private(d / "host.key", _key_pem(key))
        _write_public(d / "host.crt", cert.public_bytes(serialization.Encoding.PEM))
        _write_public(d / "ca.crt", self.ca_pem)
        _write_public(d / REVOKED, self._revoked_text())
        return cert

    def host_seen(self, host_id: object, serial: int) -> None:
        """Records the serial of the certificate the host ``host_id`` presented, so that
        removing the host revokes it."""
        with self._lock:
            book = self._enrolled()
            seen = book["seen"].setdefault(str(host_id), [])
            if f"{serial:x}" not in seen:
                seen.append(f"{serial:x}")
                self._save(book)

    def host_dir(self, host_id: object) -> Path:
        """Where the TLS directory the Manager issued to the host ``host_id`` is."""
        return self.directory / "hosts" / str(host_id)

    def revoke_host(self, host_id: object) -> int:
        """Revokes every certificate issued to (enrolled under its id) or presented by
        the host ``host_id`` (it was removed) and deletes its TLS directory; how many."""
        with self._lock:
            # The directory goes first: once a serial reads as revoked, nothing of the
            # host's enrollment is left to be handed out again.
            shutil.rmtree(self.host_dir(host_id), ignore_errors=True)
            book = self._enrolled()
            serials = set(book["seen"].pop(str(host_id), []))
            serials |= set(book["names"].pop(str(host_id), []))
            self._revoke(serials)
            self._save(book)
        return len(serials)

    def is_revoked(self, serial: int) -> bool:
        return f"{serial:x}" in self._revoked_set()

    def _enrolled(self) -> dict:
        try:
            book = json.loads((self.directory / ENROLLED).read_text())
        except FileNotFoundError:
            book = {}
        book.setdefault("names", {})
        book.setdefault("seen", {})
        return book

    def _save(self, book: dict) -> None:
        _write_public(self.directory / ENROLLED, json.dumps(book, sort_keys=True).encode())

    def _revoked_set(self) -> set[str]:
        try:
            return set((self.directory / REVOKED).read_text().split())
        except FileNotFoundError:
            return set()

    def _revoked_text(self) -> bytes:
        return "".join(f"{s}\n" for s in sorted(self._revoked_set())).encode()

    def _revoke(self, serials: Iterable[str]) -> None:
        have = self._revoked_set()
        new = [s for s in serials if s not in have]
        if new:
            text = "".join(f"{s}\n" for s in sorted(have | set(new)))
            _write_public(self.directory / REVOKED, text.encode())

    def _still_good(self, cert: x509.Certificate, wanted: list[str]) -> bool:
        if cert.issuer != self.ca_cert.subject:
            return False
        try:
            cert.verify_directly_issued_by(self.ca_cert)
        except (InvalidSignature, ValueError, TypeError):
            return False
        if cert.not_valid_after_utc - RENEW_BEFORE < dt.datetime.now(dt.UTC):
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = set(san)
        return all(_general_name(n) in have for n in wanted)


__all__ = ["CA_FILE", "Issued", "ManagerPki", "subject_names", "write_private"]
