"""``orrery serve`` as a real process: HTTPS by default with a certificate of the Manager's
CA, whose certificate anyone may fetch from pki-resource (public by design, as in oVirt:
asked as anonymous, a user without permission, a UserRole user on one VM and the
superuser, all get it) and the unmodified SDK trusts as ``ca_file``; a client without it
is refused; --http for plain HTTP, where the first start prints the generated admin
password once; --tls-cert/--tls-key override the CA's certificate."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import ovirtsdk4 as sdk
import pytest
from cryptography import x509

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ORRERY_ADMIN_PASSWORD"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in {lines}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_plain_http_first_start_password_and_restart(tmp_path):
    port = _port()
    proc = _serve(tmp_path, port, "--http")
    try:
        lines = _read_until(proc, "Manager CA certificate")
        assert any(f"http://127.0.0.1:{port}/ovirt-engine/api" in x for x in lines)
        pw_lines = [x for x in lines if "admin@internal password:" in x]
        assert len(pw_lines) == 1
        password = pw_lines[0].split("admin@internal password:", 1)[1].split()[0]
        c = sdk.Connection(
            url=f"http://127.0.0.1:{port}/ovirt-engine/api",
            username="admin@internal",
            password=password,
        )
        assert c.test(raise_exception=True)
        c.close()
    finally:
        _stop(proc)
    proc = _serve(tmp_path, port, "--http")
    try:
        lines = _read_until(proc, "Orrery API on")
        assert not any("password" in x for x in lines)  # printed once only
    finally:
        _stop(proc)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_serve_https_with_the_operators_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = _port()
    proc = _serve(tmp_path / "data", port, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        lines = _read_until(proc, "Orrery API on")
        assert any("https://" in x for x in lines)
        password = next(
            x.split("admin@internal password:", 1)[1].split()[0]
            for x in lines
            if "admin@internal password:" in x
        )
        c = sdk.Connection(
            url=f"https://127.0.0.1:{port}/ovirt-engine/api",
            username="admin@internal",
            password=password,
            insecure=True,
        )
        assert c.test(raise_exception=True)
        c.close()
        # The operator's certificate is served, not one of the Manager's CA (which is
        # still made, and still published).
        served = x509.load_pem_x509_certificate(
            ssl.get_server_certificate(("127.0.0.1", port)).encode()
        )
        assert served == x509.load_pem_x509_certificate(cert.read_bytes())
        status, _, body = _get(port, PKI_CA, context=_UNVERIFIED)
        assert status == 200
        assert body == (tmp_path / "data" / "pki" / "ca.pem").read_bytes()
    finally:
        _stop(proc)


PKI_CA = "/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA"
API = "/ovirt-engine/api"
_UNVERIFIED = ssl._create_unverified_context()  # fetching the CA, as `curl -k` does in oVirt
VM_USER = ("vmuser@internal", "pw-vmuser-1")  # UserRole on one VM
NOBODY = ("nobody@internal", "pw-nobody-1")  # no permission anywhere


def _get(
    port: int,
    path: str,
    who: tuple[str, str] | None = None,
    *,
    context: ssl.SSLContext,
    method: str = "GET",
    body: dict | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Accept": "application/json", "Version": "4"}
    if who is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(who).encode()).decode()
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}", data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(req, context=context, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def https_serve(tmp_path_factory):
    """``orrery serve`` with no TLS option: (port, data dir, admin password, start lines)."""
    data = tmp_path_factory.mktemp("https-serve")
    port = _port()
    proc = _serve(data, port)
    try:
        lines = _read_until(proc, "Manager CA certificate")
        password = next(
            x.split("admin@internal password:", 1)[1].split()[0]
            for x in lines
            if "admin@internal password:" in x
        )
        yield port, data, password, lines
    finally:
        _stop(proc)


def test_serve_speaks_https_by_default_and_says_where_the_ca_is(https_serve):
    port, data, _, lines = https_serve
    assert any(f"https://127.0.0.1:{port}/ovirt-engine/api" in x for x in lines)
    ca_file = data / "pki" / "ca.pem"
    assert any(str(ca_file) in x for x in lines)
    assert (os.stat(data / "pki" / "private" / "ca.key").st_mode & 0o777) == 0o600
    # Plain HTTP on that port is no API.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /ovirt-engine/api HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        answer = s.recv(200)
    assert b"200 OK" not in answer and b"<api" not in answer


def test_pki_resource_gives_the_ca_that_signed_the_served_certificate(https_serve):
    port, data, _, _ = https_serve
    status, headers, body = _get(port, PKI_CA, context=_UNVERIFIED)  # anonymous
    assert status == 200
    assert headers["Content-Type"] == "application/x-x509-ca-cert"
    assert body == (data / "pki" / "ca.pem").read_bytes()
    ca = x509.load_pem_x509_certificate(body)
    served = x509.load_pem_x509_certificate(
        ssl.get_server_certificate(("127.0.0.1", port)).encode()
    )
    served.verify_directly_issued_by(ca)
    status, headers, same = _get(
        port,
        "/ovirt-engine/services/pki-resource?resource=engine-certificate&format=X509-PEM",
        context=_UNVERIFIED,
    )
    assert status == 200 and headers["Content-Type"] == "application/x-x509-cert"
    assert x509.load_pem_x509_certificate(same) == served


def test_the_sdk_trusts_the_fetched_ca_and_a_client_without_it_is_refused(https_serve, tmp_path):
    port, _, password, _ = https_serve
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(_get(port, PKI_CA, context=_UNVERIFIED)[2])
    url = f"https://127.0.0.1:{port}/ovirt-engine/api"
    c = sdk.Connection(
        url=url,
        username="admin@internal",
        password=password,
        ca_file=str(ca_file),
        insecure=False,
    )
    try:
        assert c.test(raise_exception=True)
        assert c.system_service().clusters_service().list(search="name=Default")[0].name == (
            "Default"
        )
    finally:
        c.close()
    # The same name through "localhost": in the certificate too.
    c = sdk.Connection(
        url=f"https://localhost:{port}/ovirt-engine/api",
        username="admin@internal",
        password=password,
        ca_file=str(ca_file),
    )
    try:
        assert c.test(raise_exception=True)
    finally:
        c.close()
    # Without the CA: the system's trust store does not know it.
    c = sdk.Connection(url=url, username="admin@internal", password=password, insecure=False)
    try:
        with pytest.raises(sdk.Error, match=r"(?i)certificate"):
            c.test(raise_exception=True)
    finally:
        c.close()
    with pytest.raises(urllib.error.URLError) as refused:
        _get(port, API, ("admin@internal", password), context=ssl.create_default_context())
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    # With another CA: refused as well.
    other = tmp_path / "other.pem"
    other.write_bytes(
        subprocess.run(
            [sys.executable, "-c", _OTHER_CA, str(tmp_path / "other-pki")],
            check=True,
            capture_output=True,
            cwd=ROOT,
        ).stdout
    )
    with pytest.raises(urllib.error.URLError) as refused:
        _get(
            port,
            API,
            ("admin@internal", password),
            context=ssl.create_default_context(cafile=str(other)),
        )
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


_OTHER_CA = (
    "import sys; from commands.pki import ManagerPki; "
    "sys.stdout.buffer.write(ManagerPki.open(sys.argv[1]).ca_pem)"
)


def test_pki_resource_is_public_to_every_kind_of_caller(https_serve, tmp_path):
    """Public by design, as in oVirt: a client needs the CA before it can log in."""
    port, data, password, _ = https_serve
    ca = (data / "pki" / "ca.pem").read_bytes()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca)
    ctx = ssl.create_default_context(cafile=str(ca_file))
    admin = ("admin@internal", password)

    def ok(method: str, path: str, body: dict) -> dict:
        status, _, data_ = _get(port, path, admin, context=ctx, method=method, body=body)
        assert status in (200, 201), (path, status, data_[:300])
        return json.loads(data_)

    vm = ok(
        "POST",
        f"{API}/vms",
        {"name": "held", "cluster": {"name": "Default"}, "template": {"name": "Blank"}},
    )
    ids = {}
    for who in (VM_USER, NOBODY):
        name = who[0].split("@")[0]
        ids[name] = ok(
            "POST",
            f"{API}/users",
            {"user_name": name, "domain": {"name": "internal"}, "password": who[1]},
        )["id"]
    ok(
        "POST",
        f"{API}/vms/{vm['id']}/permissions",
        {"role": {"name": "UserRole"}, "user": {"id": ids["vmuser"]}},
    )
    # The users are real: the API itself tells them apart (a user without any permission
    # may not even log in, as in oVirt).
    assert _get(port, f"{API}/vms/{vm['id']}", VM_USER, context=ctx)[0] == 200
    assert _get(port, f"{API}/vms/{vm['id']}", NOBODY, context=ctx)[0] == 401
    assert _get(port, f"{API}/vms/{vm['id']}", None, context=ctx)[0] == 401
    for who in (None, NOBODY, VM_USER, admin):
        status, headers, body = _get(port, PKI_CA, who, context=ctx)
        assert (status, body) == (200, ca), who
        assert headers["Content-Type"] == "application/x-x509-ca-cert"
        # Bad input is a fault naming the parameter, for everyone alike.
        status, _, body = _get(
            port,
            "/ovirt-engine/services/pki-resource?resource=ca-key&format=X509-PEM-CA",
            who,
            context=ctx,
        )
        assert status == 400 and "resource" in body.decode() and b"PRIVATE" not in body
        status, _, body = _get(
            port,
            "/ovirt-engine/services/pki-resource?resource=ca-certificate&format=PKCS12",
            who,
            context=ctx,
        )
        assert status == 400 and "format" in body.decode()
        status, _, _ = _get(port, PKI_CA, who, context=ctx, method="POST", body={})
        assert status == 405


def test_serve_refuses_http_together_with_a_certificate(tmp_path):
    proc = _serve(tmp_path, _port(), "--http", "--tls-cert", "c.pem", "--tls-key", "k.pem")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "--http" in out
