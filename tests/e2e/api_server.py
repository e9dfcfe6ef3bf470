"""A real Orrery API server on a loopback port for tests: bus + initialization + API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ADMIN_PASSWORD = "orrery-test-secret"


@contextmanager
def running_server(
    data_dir: Any,
    database_url: str | None = None,
    reads: str = "engine",
    hostlink_options: dict[str, Any] | None = None,
    warehouse: bool = False,
    sample_interval: float = 60.0,
    as_of_timeout: float | None = None,
    host: str = "127.0.0.1",
) -> Iterator[Any]:
    """``hostlink_options`` given: the server also runs a HostLink (real hosts);
    ``warehouse``: the history warehouse, fed from the log, behind /orrery/warehouse;
    ``as_of_timeout``: the API's limit on an as_of read (seconds); ``host``: the address
    it listens on (``0.0.0.0`` to be reached from another one)."""
    import asyncio
    from pathlib import Path

    from api.reads import open_reads
    from api.server import Api
    from api.serving import ServerThread, initialize
    from commands.bootstrap import open_bus
    from commands.hostlink import HostLink, HostSecrets
    from tests.integration.hostd_fixtures import harness_pki

    bus = open_bus(database_url, data_dir)
    old = os.environ.get("ORRERY_ADMIN_PASSWORD")
    os.environ["ORRERY_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    try:
        initialize(bus)
    finally:
        if old is None:
            os.environ.pop("ORRERY_ADMIN_PASSWORD", None)
        else:
            os.environ["ORRERY_ADMIN_PASSWORD"] = old
    view = open_reads(bus, reads, data_dir)
    secrets = HostSecrets(Path(data_dir) / "host-secrets.json")
    api = Api(bus, reads=view, host_secrets=secrets, as_of_timeout=as_of_timeout)
    from api.telemetry import TelemetrySink

    sink = TelemetrySink(bus)
    api.reads.telemetry = sink
    history_runner = None
    if warehouse:
        from history.runner import HistoryRunner
        from history.warehouse import Warehouse, path_in

        api.warehouse = Warehouse(path_in(data_dir))
        history_runner = HistoryRunner(
            api.warehouse, bus.log.read, interval=sample_interval, poll=min(5.0, sample_interval)
        )
        history_runner.start()
        sink.runner = history_runner
    srv = ServerThread(api, host=host).start()
    srv.bus = bus  # type: ignore[attr-defined]
    srv.history = history_runner  # type: ignore[attr-defined]
    link = None
    if hostlink_options is not None:
        link = asyncio.run_coroutine_threadsafe(
            HostLink(
                bus, secrets, telemetry=sink, **{"pki": harness_pki(), **hostlink_options}
            ).start(),
            srv._loop,
        ).result(10)
    srv.link = link  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        if link is not None:
            asyncio.run_coroutine_threadsafe(link.stop(), srv._loop).result(15)
        srv.stop()
        api.auth.close()
        if history_runner is not None:
            history_runner.stop()
            api.warehouse.close()
        read_side = getattr(view, "read", None)
        if read_side is not None:
            read_side.close()
        bus.stop()


def connection(srv: Any, user: str = "admin@internal", password: str = ADMIN_PASSWORD) -> Any:
    import ovirtsdk4 as sdk

    return sdk.Connection(url=srv.url, username=user, password=password, timeout=30)


def http(
    srv: Any,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    user: str | None = "admin@internal",
    password: str = ADMIN_PASSWORD,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    to: str = "127.0.0.1",
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to the server: (status, headers, body). ``path`` starts at the
    host (``/ovirt-engine/api/...``); Basic auth as ``user`` unless a bearer ``token`` is
    given or ``user`` is None (anonymous). ``to``: the server's address to connect to;
    ``source``: the client's own address (e.g. ``127.0.0.2``)."""
    import base64
    import http.client

    hdrs = {"Version": "4", "Accept": "application/xml", **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    elif user is not None:
        cred = base64.b64encode(f"{user}:{password}".encode()).decode()
        hdrs["Authorization"] = f"Basic {cred}"
    src = (source, 0) if source is not None else None
    conn = http.client.HTTPConnection(to, srv.port, timeout=60, source_address=src)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def sso_token(
    srv: Any, user: str, password: str, source: str = "127.0.0.1", to: str = "127.0.0.1"
) -> tuple[int, dict[str, Any]]:
    """oVirt's password grant at /ovirt-engine/sso/oauth/token: (status, JSON answer)."""
    import json
    import urllib.parse

    body = urllib.parse.urlencode(
        {"grant_type": "password", "scope": "ovirt-app-api", "username": user, "password": password}
    ).encode()
    status, _, answer = http(
        srv,
        "POST",
        "/ovirt-engine/sso/oauth/token",
        body,
        user=None,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        to=to,
        source=source,
    )
    return status, json.loads(answer)
