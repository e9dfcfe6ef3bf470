"""The hostd server against libvirt's in-process test driver (test:///default): auth,
request/reply, facts from libvirt events. No libvirtd, no QEMU."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from hostd import protocol as P

pytestmark = pytest.mark.unit


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _with_hostd(tmp_path, body) -> None:
    from hostd.daemon import Config, Hostd

    port = _port()
    d = Hostd(
        Config(
            listen_port=port,
            libvirt_uri="test:///default",
            data_dir=str(tmp_path),
            token="s3cret",
            host_id="h-1",
            stats_interval=0.2,
            heartbeat_interval=0.2,
        )
    )
    await d.start()
    try:
        await body(port)
    finally:
        await d.stop()


def test_auth_and_requests(tmp_path) -> None:
    async def body(port: int) -> None:
        with pytest.raises(P.HostdError) as e:
            await P.HostClient.connect("127.0.0.1", port, token="guess")
        assert e.value.code == "unauthorized"
        # Not even a Hello: the connection is closed without a word.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(P.encode_frame(P.Call(id=1, req=P.ListVms())))
        assert await r.read() == b""
        w.close()

        c = await P.HostClient.connect("127.0.0.1", port, token="s3cret")
        assert c.welcome is not None and c.welcome.host_id == "h-1"
        assert (await c.call(P.Ping())).detail == "pong"
        vms = await c.call(P.ListVms())
        assert any(v.name == "test" for v in vms.vms)  # the test driver's sample domain
        spec = P.VmSpec(id=str(uuid.uuid4()), name="unit-vm", memory_mib=64, emulator="tcg")
        await c.call(P.CreateVm(spec=spec, start=False))
        got = await c.call(P.GetVm(vm_id=spec.id))
        assert got.status == "down" and got.memory_mib == 64
        with pytest.raises(P.HostdError) as e:
            await c.call(P.GetVm(vm_id="not-a-uuid"))
        assert e.value.code == "invalid"
        hb = await c.wait_fact(lambda f: isinstance(f, P.Heartbeat), 5)
        assert hb.host_id == "h-1" and hb.seq > 0
        await c.close()

    asyncio.run(_with_hostd(tmp_path, body))
