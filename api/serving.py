"""Running the Manager: ``serve`` (the API over HTTPS with a certificate of the Manager's
CA, the HostLink to every host's hostd, the history warehouse and its statistics feed,
optionally local harness hosts) until a signal; ``initialize`` on first start;
``ServerThread``, the API on its own event loop in a thread (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

from aiohttp import web

from api.http import BASE
from api.local_hosts import attach_local_storage, start_local_hosts
from api.server import Api
from api.telemetry import TelemetrySink
from commands.hostlink import HostLink, HostSecrets
from commands.pki import ManagerPki
from commands.system import ADMIN_PASSWORD_ENV, ensure_initialized
from history.runner import HistoryRunner
from history.warehouse import Warehouse, path_in


def initialize(bus: Any) -> None:
    """First start: the system's initial objects (``commands.system.ensure_initialized``).
    The admin@internal password is $ORRERY_ADMIN_PASSWORD, else generated and printed
    once (it is stored only as a hash)."""
    generated = ensure_initialized(bus, admin_password=os.environ.get(ADMIN_PASSWORD_ENV))
    if generated:
        print(f"admin@internal password: {generated}", flush=True)


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def listen_names(host: str) -> list[str]:
    """The names a client may reach a server listening on ``host`` by: that address or
    name; for a wildcard address also this machine's name and its addresses."""
    if host not in ("", "0.0.0.0", "::"):
        return [host]
    names = [socket.gethostname(), socket.getfqdn()]
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            names.append(str(info[4][0]))
    return names


class ServerThread:
    """Runs the API on its own event loop in a thread (tests, benchmarks)."""

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="orrery-api", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{BASE}"

    def stop(self) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(down(), self._loop)
        try:
            fut.result(10)
        finally:
            self.api.as_of.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


async def serve(
    bus: Any,
    host: str,
    port: int,
    *,
    ssl: Any = None,
    http: bool = False,
    reads: Any = None,
    data_dir: Any = None,
    hostlink_options: dict[str, Any] | None = None,
    local_hosts: int = 0,
    history: bool = True,
    as_of_timeout: float | None = None,
) -> None:
    """Runs the Manager until SIGTERM/SIGINT: the API; the HostLink that connects to
    every host's hostd and carries the log's decisions out to them; the history
    warehouse fed from the log and the hosts' statistics. The Manager's CA is made at
    the first start under ``data_dir/pki``; the API speaks HTTPS with a certificate it
    signs for ``host`` unless ``ssl`` (a context of the operator's certificate) or
    ``http`` (plain, for tests or behind a proxy) is given. Whatever was started is
    stopped again, also when starting fails half-way."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    data = Path(data_dir or "./data")
    secrets = HostSecrets(data / "host-secrets.json")
    options = dict(hostlink_options or {})
    pki = ManagerPki.open(data / "pki")
    server_cert = None
    if ssl is None and not http:
        issued = pki.server_certificate(listen_names(host))
        ssl = ssl_context(str(issued.cert_path), str(issued.key_path))
        server_cert = issued.cert
    warehouse = None
    async with contextlib.AsyncExitStack() as stack:
        if history and "telemetry" not in options:
            warehouse = Warehouse(path_in(data))
            stack.callback(warehouse.close)
            runner_ = HistoryRunner(warehouse, bus.log.read)
            runner_.start()
            stack.push_async_callback(loop.run_in_executor, None, runner_.stop)
            options["telemetry"] = TelemetrySink(bus, runner_)
        else:
            options.setdefault("telemetry", TelemetrySink(bus))
        uris: dict[UUID, str] = {}
        if local_hosts:
            harness, uris = await loop.run_in_executor(
                None, start_local_hosts, bus, secrets, data, local_hosts, pki
            )
            stack.push_async_callback(loop.run_in_executor, None, harness.stop)
            options["libvirt_uris"] = {**options.get("libvirt_uris", {}), **uris}
        options.setdefault("pki", pki)  # hosts over mutual TLS with the Manager CA
        link = await HostLink(bus, secrets, **options).start()
        stack.push_async_callback(link.stop)
        if uris:
            attaching = asyncio.create_task(attach_local_storage(bus, data, list(uris)))
            stack.callback(attaching.cancel)
        api = Api(bus, reads=reads, host_secrets=secrets, as_of_timeout=as_of_timeout)
        stack.callback(api.as_of.close)
        stack.callback(api.auth.close)  # records the failed logins still folded
        api.reads.telemetry = options["telemetry"]
        api.warehouse = warehouse
        api.pki, api.server_cert = pki, server_cert
        runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, host, port, ssl_context=ssl)
        await site.start()
        loop.run_in_executor(None, api.prewarm)
        scheme = "https" if ssl else "http"
        print(f"Orrery API on {scheme}://{host}:{port}{BASE}", flush=True)
        print(f"Manager CA certificate (clients' ca_file): {pki.ca_path}", flush=True)
        await stop.wait()
