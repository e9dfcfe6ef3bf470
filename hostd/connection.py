"""hostd's libvirt connection: opening it, noticing that it broke and reconnecting, and the
libvirt lifecycle events it delivers, which become ``VmStatusChanged`` facts (and run the
hooks of a VM that stopped or arrived by migration).

Owns ``connect``, ``disconnect`` and the callbacks it registers on the connection.
May import ``hostd.core``, ``hostd.protocol`` and the driver module ``virt``; no request
handler (the server calls it; ``hostd.dispatch`` is not its business).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid

import libvirt

from hostd import protocol as P
from hostd import virt
from hostd.core import Core

log = logging.getLogger("hostd")


async def connect(core: Core) -> None:
    """Opens the connection to ``cfg.libvirt_uri`` and registers for its events."""
    conn = await core.run(libvirt.open, core.cfg.libvirt_uri)
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(5, 3)
    conn.registerCloseCallback(_on_close, core)
    core.callbacks = [
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, _on_lifecycle, core
        )
    ]
    core.conn = conn
    if not core.host_id:
        caps = await core.run(virt.host_caps, conn)
        core.host_id = caps["uuid"] or str(uuid.uuid4())
    log.info("connected to %s", core.cfg.libvirt_uri)


async def disconnect(core: Core) -> None:
    """Deregisters the callbacks and closes the connection (hostd stops)."""
    if core.conn is None:
        return
    conn, core.conn = core.conn, None
    for cb in core.callbacks:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(cb)
    with contextlib.suppress(libvirt.libvirtError):
        conn.unregisterCloseCallback()
    with contextlib.suppress(libvirt.libvirtError):
        await core.run(conn.close)


async def reconnect(core: Core) -> None:
    """Retries ``connect`` each second until it works, then says each VM's status again."""
    while not core.stopping.is_set() and core.conn is None:
        await asyncio.sleep(1.0)
        try:
            await connect(core)
        except libvirt.libvirtError as e:
            log.warning("libvirt reconnect failed: %s", e)
            continue
        for vm in (await core.list_vms(False)).vms:
            core.emit(
                P.VmStatusChanged(
                    vm_id=vm.id,
                    name=vm.name,
                    status=vm.status,
                    reason=vm.reason,
                    event="recovered",
                )
            )


def _on_close(conn: libvirt.virConnect, reason: int, core: Core) -> None:
    # libvirt may call this from whichever thread noticed the broken connection.
    core.loop.call_soon_threadsafe(_connection_lost, core, conn)


def _connection_lost(core: Core, conn: libvirt.virConnect) -> None:
    if core.conn is conn:
        core.conn = None
        core.emit(P.HostError(code="libvirt_unreachable", message="libvirt connection lost"))
        core.spawn(reconnect(core))


def _on_lifecycle(
    conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, core: Core
) -> None:
    if threading.get_ident() != core.loop_thread:
        core.loop.call_soon_threadsafe(_on_lifecycle, conn, dom, event, detail, core)
        return
    mapped = virt.event_status(event, detail)
    if mapped is None:
        return
    status, reason = mapped
    vm_id = dom.UUIDString()
    if vm_id in core.migrations and status in ("paused", "up") and reason != "unpaused":
        status = "migrating"
    core.last_status[vm_id] = status
    core.emit(
        P.VmStatusChanged(
            vm_id=vm_id,
            name=dom.name(),
            status=status,
            reason=reason,
            event=virt.EVENT_NAMES.get(event, str(event)),
        )
    )
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and reason not in ("migrated", "saved"):
        core.spawn(core.after_hook(dom, "after_vm_destroy"))
    if event == libvirt.VIR_DOMAIN_EVENT_RESUMED and reason == "migrated":
        core.spawn(core.after_hook(dom, "after_vm_migrate_destination"))
