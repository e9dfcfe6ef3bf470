"""hostd: the asyncio server. Authenticates the Manager, runs its requests against libvirt,
and streams facts (VM status from libvirt lifecycle events, statistics, heartbeats,
migration progress) back. Keeps no state of its own: after a restart it re-reads libvirt.

Owns ``Hostd``: starting and stopping the daemon (the libvirt connection, the TCP server,
the periodic facts), a Manager's connection (with a TLS directory: the mutual TLS
handshake, a client certificate of the Manager CA not revoked; then the
``Hello``/``Welcome`` handshake, its frames bounded by ``PREAUTH_MAX_FRAME`` and both
steps by ``HELLO_TIMEOUT``; refused attempts are counted and logged without secrets; then
its calls, each answered by ``hostd.dispatch``) and the heartbeat and statistics loops.
The state it runs on is a ``hostd.core.Core``; the requests are the ``*_requests``
modules, reached only through ``hostd.dispatch``.

May import ``hostd.core``, ``hostd.connection``, ``hostd.dispatch``, ``hostd.tls`` and
``hostd.protocol``; no request handler module directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import ssl
import threading
from pathlib import Path

import libvirt
import libvirtaio
import msgspec

from hostd import connection, dispatch, tls
from hostd import protocol as P
from hostd.core import VERSION, Client, Config, Core, Fail

log = logging.getLogger("hostd")


class Hostd:
    """One host daemon: ``start``/``stop``, or ``serve_forever`` until SIGTERM/SIGINT."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.core = Core(cfg)
        self.server: asyncio.Server | None = None
        # Raises tls.TlsError for a TLS directory that cannot be used (a loose key).
        self.tls = tls.server_context(cfg.tls_dir) if cfg.tls_dir else None
        self.refused = 0  # connections refused before authentication

    async def start(self) -> None:
        core = self.core
        core.loop = asyncio.get_running_loop()
        core.loop_thread = threading.get_ident()
        libvirtaio.virEventRegisterAsyncIOImpl(loop=core.loop)
        # Errors reach callers as exceptions; keep libvirt from also printing them.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            await connection.connect(core)
        except libvirt.libvirtError as e:
            log.error("cannot connect to %s: %s (retrying)", self.cfg.libvirt_uri, e)
            core.spawn(connection.reconnect(core))
        self.server = await core.loop.create_server(
            lambda: _Accept(self), self.cfg.listen_host, self.cfg.listen_port
        )
        core.spawn(self._stats_loop())
        core.spawn(self._heartbeat_loop())
        log.info(
            "hostd %s listening on %s:%d (host %s, kvm=%s)",
            VERSION,
            self.cfg.listen_host,
            self.cfg.listen_port,
            core.host_id,
            core.kvm,
        )

    async def stop(self) -> None:
        core = self.core
        core.stopping.set()
        if self.server is not None:
            self.server.close()
        for c in list(core.clients):
            c.writer.close()
        for t in list(core.tasks):
            t.cancel()
        await connection.disconnect(core)
        core.pool.shutdown(wait=False, cancel_futures=True)

    async def serve_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.core.stopping.set)
        await self.core.stopping.wait()
        await self.stop()

    # -- a Manager's connection -----------------------------------------------------------

    async def accept(self, transport: asyncio.Transport) -> None:
        """A new connection (reading paused since it was made): the TLS handshake when
        hostd has a TLS directory, then the Manager's session over streams."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=P.MAX_FRAME)
        proto = asyncio.StreamReaderProtocol(reader)
        peer = transport.get_extra_info("peername")
        if self.tls is None:
            transport.set_protocol(proto)
            proto.connection_made(transport)
            transport.resume_reading()
        else:
            tls_transport, why = await self._tls_handshake(loop, transport, proto)
            if tls_transport is None:
                transport.abort()
                self._refuse(peer, why)
                return
            transport = tls_transport
        await self._handle(reader, asyncio.StreamWriter(transport, proto, reader, loop), peer)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        core = self.core
        client: Client | None = None
        try:
            try:
                hello = await asyncio.wait_for(
                    P.read_frame(reader, P.PREAUTH_MAX_FRAME), P.HELLO_TIMEOUT
                )
            except TimeoutError:
                self._refuse(peer, "no Hello in time")
                return
            except (asyncio.IncompleteReadError, ValueError, msgspec.DecodeError) as e:
                self._refuse(peer, f"bad first frame ({type(e).__name__})")
                return
            if not isinstance(hello, P.Hello) or not hmac.compare_digest(
                hello.token.encode(), self.cfg.token.encode()
            ):
                self._refuse(peer, "wrong or missing enrollment secret")
                return
            client = Client(writer, hello.facts)
            client.send(
                P.Welcome(
                    host_id=core.host_id,
                    boot_id=core.boot_id,
                    hostname=core.hostname,
                    hostd_version=VERSION,
                    kvm=core.kvm,
                )
            )
            core.clients.add(client)
            while True:
                try:
                    frame = await P.read_frame(reader)
                except (ValueError, msgspec.DecodeError) as e:
                    client.send(
                        P.Reply(id=0, ok=False, error=P.Error(code="invalid", message=str(e)))
                    )
                    continue
                if isinstance(frame, P.Call):
                    core.spawn(self._call(client, frame))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if client is not None:
                core.clients.discard(client)
            with contextlib.suppress(Exception):
                writer.close()

    async def _tls_handshake(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        proto: asyncio.BaseProtocol,
    ) -> tuple[asyncio.Transport | None, str]:
        """The mutual TLS handshake: the TLS transport, or None and why not (no secret)."""
        assert self.tls is not None
        try:
            new = await asyncio.wait_for(
                loop.start_tls(
                    transport,
                    proto,
                    self.tls,
                    server_side=True,
                    ssl_handshake_timeout=P.HELLO_TIMEOUT,
                ),
                P.HELLO_TIMEOUT + 1,
            )
        except (TimeoutError, ConnectionAbortedError):
            return None, "TLS handshake too slow"
        except ssl.SSLError as e:
            return None, f"TLS handshake failed: {e.reason or type(e).__name__}"
        except (ConnectionError, OSError) as e:
            return None, f"TLS handshake failed: {type(e).__name__}"
        if new is None:
            return None, "TLS handshake failed"
        serial = tls.peer_serial(new.get_extra_info("ssl_object"))
        why = ""
        if serial is None:
            why = "no client certificate"
        elif serial in tls.read_revoked(Path(self.cfg.tls_dir) / tls.REVOKED):
            why = f"revoked client certificate (serial {serial:x})"
        if why:
            new.abort()
            return None, why
        return new, ""

    def _refuse(self, peer: object, why: str) -> None:
        self.refused += 1
        log.warning(
            "refused a connection from %s before authentication: %s (%d refused)",
            peer,
            why,
            self.refused,
        )

    async def _call(self, client: Client, call: P.Call) -> None:
        client.send(await dispatch.answer(self.core, call))

    # -- periodic facts -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # A heartbeat says hostd is alive: it goes out on time even when libvirt is slow to
        # answer (it waits for domain jobs, e.g. during a block commit's pivot), carrying
        # the VM count last read; the count is refreshed beside it.
        core = self.core
        refresh: asyncio.Task | None = None
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            if core.conn is not None and (refresh is None or refresh.done()):
                refresh = core.spawn(self._count_vms())
            core.emit(P.Heartbeat(vms_running=core.vms_running))

    async def _count_vms(self) -> None:
        conn = self.core.conn
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.core.vms_running = await self.core.run(conn.numOfDomains)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.stats_interval)
            try:
                self.core.emit(await self.core.sample())
            except (libvirt.libvirtError, Fail, OSError) as e:
                log.warning("stats sample failed: %s", e)


class _Accept(asyncio.Protocol):
    """A connection just accepted: reading paused at once (so the peer's first bytes,
    a TLS ClientHello, wait for the TLS layer), then ``Hostd.accept`` takes it over."""

    def __init__(self, hostd: Hostd) -> None:
        self.hostd = hostd

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.hostd.core.spawn(self.hostd.accept(transport))
