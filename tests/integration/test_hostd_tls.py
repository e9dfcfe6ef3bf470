"""The host link's mutual TLS against a real hostd (in process, libvirt's test driver)
and a real Manager CA: what hostd accepts and refuses before authentication, and what
the Manager's client refuses of hostd."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509

from commands import host as host_cmds
from commands.pki import ManagerPki
from domain.cluster import Cluster
from domain.host import Host
from domain.statuses import HostStatus
from hostd import network, tls
from hostd import protocol as P
from hostd.cli import main as hostd_main
from tests.integration.hostd_fixtures import harness_pki
from tests.integration.test_manager_hosts import Manager

pytestmark = pytest.mark.integration
ROOT = str(Path(__file__).resolve().parents[2])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client_tls(pki: ManagerPki) -> ssl.SSLContext:
    mine = pki.client_certificate()
    return tls.client_context(mine.cert_path, mine.key_path, pki.ca_path)


class Daemon:
    """A real hostd process on libvirt's test driver, serving mutual TLS from ``tls_dir``."""

    def __init__(self, tls_dir: Path, token: str = "s3cret") -> None:
        self.port = _port()
        self.log = tls_dir.parent / "hostd.log"
        self.data_dir = tls_dir.parent / "data"
        args = [
            sys.executable,
            "-m",
            "hostd",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--libvirt",
            "test:///default",
            "--data-dir",
            str(self.data_dir),
            "--tls-dir",
            str(tls_dir),
            "--host-id",
            "h-1",
        ]
        env = dict(os.environ, ORRERY_HOSTD_TOKEN=token)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while "listening on" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def refusals(self) -> list[str]:
        return [ln for ln in self.log.read_text().splitlines() if "refused a connection" in ln]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        # The bridges the Manager's handshake had it make (ovirtmgmt) go with it.
        if self.data_dir.is_dir():
            network.remove_created(self.data_dir)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def pki(tmp_path) -> ManagerPki:
    return ManagerPki.open(tmp_path / "pki")


def test_mutual_tls_accepts_the_managers_client_and_refuses_the_others(tmp_path, pki) -> None:
    tls_dir = tmp_path / "host" / "tls"
    cert = pki.enroll_host("h1", "127.0.0.1", tls_dir)
    assert (tls_dir / "host.key").stat().st_mode & 0o777 == 0o600
    other = ManagerPki.open(tmp_path / "other-pki")

    async def body(port: int) -> None:
        c = await P.HostClient.connect("127.0.0.1", port, token="s3cret", ssl=_client_tls(pki))
        assert (await c.call(P.Ping())).detail == "pong"
        assert c.peer_serial == cert.serial_number
        await c.close()
        # A plain-TCP client: no TLS, no Welcome.
        with pytest.raises(P.HostdError):
            await P.HostClient.connect("127.0.0.1", port, token="s3cret", timeout=8)
        # A client certificate from another CA (trusting ours for hostd's certificate).
        theirs = other.client_certificate()
        foreign = tls.client_context(theirs.cert_path, theirs.key_path, pki.ca_path)
        with pytest.raises((P.HostdError, ssl.SSLError, ConnectionError)):
            c = await P.HostClient.connect("127.0.0.1", port, token="s3cret", ssl=foreign)
            await c.call(P.Ping(), timeout=5)
        # No client certificate at all.
        bare = ssl.create_default_context(cafile=str(pki.ca_path))
        with pytest.raises((P.HostdError, ssl.SSLError, ConnectionError)):
            c = await P.HostClient.connect("127.0.0.1", port, token="s3cret", ssl=bare)
            await c.call(P.Ping(), timeout=5)
        # The right certificate but the wrong enrollment secret (the second factor).
        with pytest.raises(P.HostdError):
            await P.HostClient.connect("127.0.0.1", port, token="guess", ssl=_client_tls(pki))

    with Daemon(tls_dir) as d:
        asyncio.run(body(d.port))
        time.sleep(0.3)
        refusals = d.refusals()
    assert len(refusals) == 4 and refusals[-1].endswith("(4 refused)")
    assert sum("TLS handshake" in m for m in refusals) == 3
    assert "wrong or missing enrollment secret" in refusals[-1]
    log = d.log.read_text()
    assert "s3cret" not in log and "guess" not in log


def test_the_manager_refuses_a_hostd_of_another_ca_or_another_address(tmp_path, pki) -> None:
    other = ManagerPki.open(tmp_path / "other-pki")
    foreign_dir, elsewhere_dir = tmp_path / "a" / "tls", tmp_path / "b" / "tls"
    other.enroll_host("h1", "127.0.0.1", foreign_dir)
    pki.enroll_host("h2", "192.0.2.7", elsewhere_dir)

    async def refused(port: int) -> None:
        with pytest.raises(ssl.SSLCertVerificationError) as e:
            await P.HostClient.connect("127.0.0.1", port, token="s3cret", ssl=_client_tls(pki))
        refused.why = e.value.verify_message  # type: ignore[attr-defined]

    with Daemon(foreign_dir) as d:
        asyncio.run(refused(d.port))
    assert "self-signed" in refused.why or "unable to get local issuer" in refused.why  # type: ignore[attr-defined]
    with Daemon(elsewhere_dir) as d:
        asyncio.run(refused(d.port))
    assert "mismatch" in refused.why  # type: ignore[attr-defined]


def test_before_authentication_big_frames_and_slow_peers_are_cut_off(tmp_path, pki) -> None:
    tls_dir = tmp_path / "host" / "tls"
    pki.enroll_host("h1", "127.0.0.1", tls_dir)
    ctx = _client_tls(pki)

    async def body(port: int) -> None:
        # Authenticated by TLS, then a frame header announcing 1 MiB: closed at once,
        # without waiting for (or reading) the body.
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
        )
        t0 = time.monotonic()
        w.write((1 << 20).to_bytes(4, "big") + b"{")
        await w.drain()
        try:
            got = await asyncio.wait_for(r.read(), 10)
        except (ConnectionError, ssl.SSLError):
            got = b""
        assert got == b"" and time.monotonic() - t0 < P.HELLO_TIMEOUT - 1  # not the timeout
        w.close()
        # A peer that connects and says nothing: closed within HELLO_TIMEOUT.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        assert await asyncio.wait_for(r.read(), 20) == b""
        assert P.HELLO_TIMEOUT - 0.5 <= time.monotonic() - t0 < P.HELLO_TIMEOUT + 3
        w.close()

    with Daemon(tls_dir) as d:
        asyncio.run(body(d.port))
        refusals = d.refusals()
    assert len(refusals) == 2
    assert "bad first frame" in refusals[0] and "TLS handshake too slow" in refusals[1]


def test_hostd_refuses_a_revoked_manager_certificate(tmp_path, pki) -> None:
    tls_dir = tmp_path / "host" / "tls"
    mine = pki.client_certificate()
    pki.enroll_host("h1", "127.0.0.1", tls_dir)
    (tls_dir / tls.REVOKED).write_text(f"{mine.cert.serial_number:x}\n")

    async def body(port: int) -> None:
        with pytest.raises(P.HostdError):
            await P.HostClient.connect("127.0.0.1", port, token="s3cret", ssl=_client_tls(pki))

    with Daemon(tls_dir) as d:
        asyncio.run(body(d.port))
        time.sleep(0.3)
        refusals = d.refusals()
    assert len(refusals) == 1 and "revoked client certificate" in refusals[0]


def test_reenrolling_a_host_revokes_its_old_certificate(tmp_path, pki) -> None:
    first = pki.enroll_host("h1", "127.0.0.1", tmp_path / "one")
    assert not pki.is_revoked(first.serial_number)
    second = pki.enroll_host("h1", "127.0.0.1", tmp_path / "two")
    assert pki.is_revoked(first.serial_number) and not pki.is_revoked(second.serial_number)
    assert f"{first.serial_number:x}" in (tmp_path / "two" / tls.REVOKED).read_text()
    pki.host_seen("id-1", second.serial_number)
    assert pki.revoke_host("id-1") == 1 and pki.is_revoked(second.serial_number)


def test_hostd_refuses_to_start_with_a_loose_key_or_without_tls(tmp_path, pki, capsys) -> None:
    tls_dir = tmp_path / "tls"
    pki.enroll_host("h1", "127.0.0.1", tls_dir)
    (tls_dir / "host.key").chmod(0o640)
    args = ["--libvirt", "test:///default", "--data-dir", str(tmp_path / "d"), "--token", "x"]
    assert hostd_main([*args, "--tls-dir", str(tls_dir)]) == 2
    assert "host.key is readable by other users" in capsys.readouterr().err
    assert hostd_main(args) == 2  # no <data-dir>/tls and no --plain
    assert "tls" in capsys.readouterr().err
    with pytest.raises(tls.TlsError):
        tls.server_context(tls_dir)


def _as_harness_host(d: Daemon, name: str) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, hostd_port=d.port, uri="test:///default", log_tail=lambda: d.log.read_text()
    )


def test_the_link_marks_a_host_with_a_mismatched_certificate_at_once(tmp_path) -> None:
    tls_dir = tmp_path / "host" / "tls"
    harness_pki().enroll_host(f"elsewhere {tmp_path}", "192.0.2.7", tls_dir)
    m = Manager(tmp_path / "m")
    try:
        with Daemon(tls_dir) as d:
            cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
            hid = m.add_host(_as_harness_host(d, "wrongname"), "s3cret", cluster.id)
            t0 = time.monotonic()
            m.wait(lambda: m.get(Host, hid).status == HostStatus.INSTALL_FAILED, 20, "failed")
            assert time.monotonic() - t0 < 10
            detail = m.get(Host, hid).status_detail
            assert "cannot be trusted" in detail and "mismatch" in detail, detail
    finally:
        m.close()


def test_a_removed_hosts_certificate_is_revoked_and_refused_when_added_again(
    tmp_path,
) -> None:
    tls_dir = tmp_path / "host" / "tls"
    pki = harness_pki()
    cert = pki.enroll_host(f"h {tmp_path}", "127.0.0.1", tls_dir)
    m = Manager(tmp_path / "m")
    try:
        with Daemon(tls_dir) as d:
            cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
            host = _as_harness_host(d, "h1")
            hid = m.add_host(host, "s3cret", cluster.id)
            m.wait(
                lambda: (
                    m.get(Host, hid).status
                    not in (HostStatus.INSTALLING, HostStatus.INSTALL_FAILED)
                ),
                30,
                "installed",
            )
            assert not pki.is_revoked(cert.serial_number)
            # The Manager issued the host a certificate for its address when it was added.
            issued = x509.load_pem_x509_certificate((pki.host_dir(hid) / "host.crt").read_bytes())
            san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert [str(a) for a in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
            assert (pki.host_dir(hid) / "host.key").stat().st_mode & 0o777 == 0o600
            m.run(host_cmds.DeactivateHost(host_id=hid, actor="admin@internal"))
            m.wait(lambda: m.get(Host, hid).status == HostStatus.MAINTENANCE, 30, "maintenance")
            m.run(host_cmds.RemoveHost(host_id=hid, actor="admin@internal"))
            m.wait(lambda: pki.is_revoked(cert.serial_number), 10, "revoked")
            assert pki.is_revoked(issued.serial_number) and not pki.host_dir(hid).exists()
            again = m.add_host(host, "s3cret", cluster.id)
            m.wait(lambda: m.get(Host, again).status == HostStatus.INSTALL_FAILED, 20, "failed")
            detail = m.get(Host, again).status_detail
            assert "revoked" in detail and f"{cert.serial_number:x}" in detail, detail
    finally:
        m.close()
