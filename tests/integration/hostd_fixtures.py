"""Fixtures for hostd tests: a cluster of real hosts (libvirtd + hostd each) on this machine.

Import what you need into a test module: ``from tests.integration.hostd_fixtures import
cluster, sd_path, client_of, run`` (``cluster`` is module-scoped). With
ORRERY_REQUIRE_SERVICES=1 a machine where libvirt cannot be started fails the tests
instead of skipping them.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from commands.pki import ManagerPki
from hostd import protocol as P
from hostd import tls
from hostd.harness import Cluster, HarnessError, libvirt_available

REQUIRE = os.environ.get("ORRERY_REQUIRE_SERVICES") == "1"


def need_libvirt() -> None:
    reason = libvirt_available()
    if reason:
        if REQUIRE:
            pytest.fail(f"libvirt is required but cannot be started: {reason}")
        pytest.skip(f"no libvirt: {reason}")


_PKI: list[ManagerPki] = []


def harness_pki() -> ManagerPki:
    """The Manager CA the harness hosts of this test run are enrolled with (one per
    run, under a temporary directory); a HostLink reaching them passes it as ``pki``."""
    if not _PKI:
        d = Path(tempfile.mkdtemp(prefix="orrery-test-pki-"))
        atexit.register(shutil.rmtree, d, True)
        _PKI.append(ManagerPki.open(d))
    return _PKI[0]


def tls_of(pki: ManagerPki | None = None) -> ssl.SSLContext:
    """The Manager's client TLS context for harness hosts (of ``pki``, default the run's)."""
    pki = pki or harness_pki()
    mine = pki.client_certificate()
    return tls.client_context(mine.cert_path, mine.key_path, pki.ca_path)


@contextmanager
def running_hosts(
    n: int,
    hostd_args: list[str],
    bridges: tuple[str, ...] = (),
    *,
    tls_on: bool = True,
    stock: bool = False,
) -> Iterator[Cluster]:
    """N harness hosts for a test module: a machine that cannot start them fails the
    run under ORRERY_REQUIRE_SERVICES=1 and skips it elsewhere; they stop afterwards.
    Each is enrolled with ``harness_pki()`` and serves mutual TLS (``tls_on``).
    ``stock``: hosts on libvirt's default QEMU configuration (``Cluster(stock=True)``)."""
    need_libvirt()
    enroll = harness_pki().enroll_host if tls_on else None
    c = Cluster(n, bridges=bridges, hostd_args=hostd_args, enroll=enroll, stock=stock)
    try:
        c.start()
    except HarnessError as e:
        if REQUIRE:
            pytest.fail(f"cannot start hosts: {e}")
        pytest.skip(f"cannot start hosts: {e}")
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bridge = "ovt" + uuid.uuid4().hex[:8]
    with running_hosts(2, ["--stats-interval", "1"], bridges=(bridge,)) as c:
        c.test_bridge = bridge  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def sd_path() -> Iterator[Path]:
    """A posixfs-style storage directory shared by the hosts (same machine)."""
    d = Path(tempfile.mkdtemp(prefix="orrery-sd-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def client_of(cluster: Cluster, i: int = 0, token: str | None = None) -> P.HostClient:
    h = cluster.hosts[i]
    return await P.HostClient.connect(
        *h.address,
        token=cluster.token if token is None else token,
        ssl=tls_of() if h.enroll is not None else None,
    )


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 240))


def tiny_spec(name: str, disks=(), nics=(), memory_mib: int = 64, **kw) -> P.VmSpec:
    return P.VmSpec(
        id=str(uuid.uuid4()),
        name=name,
        memory_mib=memory_mib,
        disks=list(disks),
        nics=list(nics),
        graphics=[P.GraphicsSpec(type="vnc")],
        **kw,
    )
