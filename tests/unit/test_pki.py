"""The Manager's CA (commands.pki): made once with its key mode 0600, the API's server
certificate signed by it with the names serve listens on, both kept across starts."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat

import pytest
from cryptography import x509

from api.serving import listen_names
from commands.pki import ManagerPki, subject_names, write_private

pytestmark = pytest.mark.unit


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_open_makes_a_ca_whose_key_only_its_owner_reads(tmp_path):
    pki = ManagerPki.open(tmp_path / "pki")
    assert _mode(tmp_path / "pki" / "private" / "ca.key") == 0o600
    assert _mode(tmp_path / "pki" / "private") == 0o700
    assert _mode(tmp_path / "pki" / "ca.pem") == 0o644
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.pem").read_bytes())
    assert ca == pki.ca_cert
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is True
    ca.verify_directly_issued_by(ca)  # self-signed
    assert b"PRIVATE KEY" not in (tmp_path / "pki" / "ca.pem").read_bytes()


def test_a_second_start_keeps_the_same_ca_and_server_certificate(tmp_path):
    first = ManagerPki.open(tmp_path / "pki")
    cert1 = first.server_certificate(["127.0.0.1"])
    key_bytes = (tmp_path / "pki" / "private" / "ca.key").read_bytes()
    second = ManagerPki.open(tmp_path / "pki")
    assert second.ca_cert.fingerprint(first.ca_cert.signature_hash_algorithm) == (
        first.ca_cert.fingerprint(first.ca_cert.signature_hash_algorithm)
    )
    assert (tmp_path / "pki" / "private" / "ca.key").read_bytes() == key_bytes
    assert second.server_certificate(["127.0.0.1"]).cert.serial_number == cert1.cert.serial_number


def test_the_server_certificate_verifies_against_the_ca_with_its_names(tmp_path):
    pki = ManagerPki.open(tmp_path / "pki")
    issued = pki.server_certificate(["manager.example", "192.0.2.7", "0.0.0.0"])
    assert _mode(issued.key_path) == 0o600
    issued.cert.verify_directly_issued_by(pki.ca_cert)
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"manager.example", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_address("127.0.0.1"),
    }
    # OpenSSL's own chain check, as a TLS client does it: the CA file alone suffices.
    assert _handshake(issued, str(pki.ca_path), "manager.example") is None
    assert _handshake(issued, str(pki.ca_path), "192.0.2.7") is None
    assert "mismatch" in str(_handshake(issued, str(pki.ca_path), "other.example"))
    stranger = ManagerPki.open(tmp_path / "other-pki")
    assert "verify failed" in str(_handshake(issued, str(stranger.ca_path), "localhost"))


def _handshake(issued, cafile: str, name: str) -> Exception | None:
    """A TLS handshake in memory between a server with ``issued`` and a client trusting
    ``cafile`` that asks for ``name``: None when it succeeds, else the client's error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(issued.cert_path), str(issued.key_path))
    client_ctx = ssl.create_default_context(cafile=cafile)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for side, obj in (("c", client), ("s", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                if side == "c":
                    return e
                return None if not done["c"] else e
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return None
    raise AssertionError("the handshake did not finish")


def test_other_names_or_another_ca_issue_a_new_server_certificate(tmp_path):
    pki = ManagerPki.open(tmp_path / "pki")
    old = pki.server_certificate(["127.0.0.1"]).cert
    wider = pki.server_certificate(["10.1.2.3"]).cert
    assert wider.serial_number != old.serial_number
    (tmp_path / "pki" / "ca.pem").unlink()
    (tmp_path / "pki" / "private" / "ca.key").unlink()
    rotated = ManagerPki.open(tmp_path / "pki")
    again = rotated.server_certificate(["10.1.2.3"]).cert
    assert again.serial_number != wider.serial_number
    again.verify_directly_issued_by(rotated.ca_cert)


def test_write_private_never_leaves_a_readable_file(tmp_path):
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(target, b"new")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_wildcard_listen_address_certifies_this_machines_names(tmp_path):
    names = listen_names("0.0.0.0")
    assert socket.gethostname() in names and "0.0.0.0" not in subject_names(names)
    assert listen_names("192.0.2.9") == ["192.0.2.9"]
    pki = ManagerPki.open(tmp_path / "pki")
    san = (
        pki.server_certificate(listen_names("::"))
        .cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert socket.gethostname() in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("::") not in san.get_values_for_type(x509.IPAddress)
