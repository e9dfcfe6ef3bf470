"""hostd's VM lifecycle requests: ``ListVms``, ``GetVm``, ``CreateVm`` (define, and start
unless asked not to), ``StartVm``, ``RestoreVm`` (from a managed save), ``DestroyVm``,
``ShutdownVm`` (ACPI, then destroyed after the timeout if forced), ``RebootVm``,
``PauseVm``, ``ResumeVm`` and ``SuspendVm`` (managed save), each with its hooks and the
statuses hostd gives the VM itself (powering up, powering down, saving state...).

May import ``hostd.core``, ``hostd.protocol`` and the driver modules; no other request
handler module.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import libvirt

from hostd import domxml, network, virt
from hostd import protocol as P
from hostd.core import Core, Fail


def _check_networks(spec: P.VmSpec) -> None:
    for nic in spec.nics:
        if not network.bridge_exists(nic.network):
            raise Fail(
                "network",
                f"network {nic.network} is not available on this host "
                f"(bridge {nic.network} does not exist; NIC {nic.mac} cannot be plugged)",
            )


async def list_vms(core: Core, req: P.ListVms) -> P.VmList:
    return await core.list_vms(req.with_xml)


async def get_vm(core: Core, req: P.GetVm) -> P.VmInfo:
    return await core.info(await core.dom(req.vm_id), req.with_xml)


def _define_and_start(
    core: Core, xml: str, start: bool, paused: bool, existed: bool, timings: dict[str, float]
) -> libvirt.virDomain:
    conn = core.c()
    t0 = time.perf_counter()
    dom = conn.defineXML(xml)
    t1 = time.perf_counter()
    timings["define"] = round((t1 - t0) * 1000, 1)
    if start:
        try:
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
        except libvirt.libvirtError:
            if not existed:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            raise
        finally:
            timings["create"] = round((time.perf_counter() - t1) * 1000, 1)
    return dom


async def create_vm(core: Core, req: P.CreateVm) -> P.VmInfo:
    spec = req.spec
    try:
        spec.id = str(uuid.UUID(spec.id))
    except ValueError as e:
        raise Fail("invalid", f"VM id {spec.id!r} is not a UUID") from e
    async with core.lock(spec.id):
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        conn = core.c()
        existed = False
        try:
            old = await core.run(conn.lookupByUUIDString, spec.id)
            existed = True
            if await core.run(old.isActive):
                raise Fail("already_running", f"VM {spec.name} ({spec.id}) is already running")
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        try:
            other = await core.run(conn.lookupByName, spec.name)
            if other.UUIDString() != spec.id:
                raise Fail("invalid", f"a VM named {spec.name} with another id exists on this host")
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        t1 = time.perf_counter()
        if req.start:
            _check_networks(spec)
        xml = domxml.build(spec, core.kvm)
        t2 = time.perf_counter()
        timings.update(lookup=round((t1 - t0) * 1000, 1), xml=round((t2 - t1) * 1000, 1))
        if req.start:
            xml = await core.run(core.hooks.run, "before_vm_start", xml, spec.custom_properties)
            timings["hooks"] = round((time.perf_counter() - t2) * 1000, 1)
            # Accepted and launching QEMU: oVirt's powering_up; libvirt's start event
            # brings up once the guest's CPUs run (or down with the error).
            core.emit(
                P.VmStatusChanged(
                    vm_id=spec.id,
                    name=spec.name,
                    status="powering_up",
                    reason="launching",
                    event="hostd",
                )
            )
        dom = await core.run(_define_and_start, core, xml, req.start, req.paused, existed, timings)
        if req.start:
            core.spawn(core.after_hook(dom, "after_vm_start"))
        info = await core.info(dom)
        info.timings_ms = timings
        return info


async def start_vm(core: Core, req: P.StartVm) -> P.VmInfo:
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        return await _start_existing(core, dom, req.paused)


async def _start_existing(core: Core, dom: libvirt.virDomain, paused: bool) -> P.VmInfo:
    if await core.run(dom.isActive):
        raise Fail("already_running", f"VM {dom.name()} ({dom.UUIDString()}) is already running")
    restoring = bool(await core.run(dom.hasManagedSaveImage, 0))
    xml = await core.run(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
    props = domxml.custom_properties(xml)
    phase = "before_vm_dehibernate" if restoring else "before_vm_start"
    new = await core.run(core.hooks.run, phase, xml, props)
    if new != xml and not restoring:
        dom = await core.run(core.c().defineXML, new)
    core.status_fact(
        dom,
        *(("restoring_state", "managed_save") if restoring else ("powering_up", "launching")),
    )
    await core.run(dom.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
    core.spawn(core.after_hook(dom, "after_vm_dehibernate" if restoring else "after_vm_start"))
    return await core.info(dom)


async def restore_vm(core: Core, req: P.RestoreVm) -> P.VmInfo:
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        if not await core.run(dom.hasManagedSaveImage, 0):
            raise Fail("invalid", f"VM {dom.name()} has no saved state")
        return await _start_existing(core, dom, req.paused)


async def destroy_vm(core: Core, req: P.DestroyVm) -> P.Ok:
    dom = await core.dom(req.vm_id)
    active = await core.run(dom.isActive)
    if active:
        xml = await core.run(dom.XMLDesc, 0)
        await core.run(core.hooks.run, "before_vm_destroy", xml, domxml.custom_properties(xml))
        try:
            await core.run(dom.destroyFlags, libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
        except libvirt.libvirtError:
            if await core.run(dom.isActive):
                await core.run(dom.destroy)
    elif not req.undefine:
        raise Fail("not_running", f"VM {dom.name()} is not running")
    if req.undefine:
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )
        with contextlib.suppress(libvirt.libvirtError):
            await core.run(dom.undefineFlags, flags)
    return P.Ok()


async def shutdown_vm(core: Core, req: P.ShutdownVm) -> P.Ok:
    dom = await core.dom(req.vm_id)
    if not await core.run(dom.isActive):
        raise Fail("not_running", f"VM {dom.name()} is not running")
    await core.run(dom.shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    core.status_fact(dom, "powering_down", "acpi")
    core.spawn(_shutdown_watch(core, dom, req.timeout_s, req.force))
    return P.Ok(detail="powering down")


async def _shutdown_watch(core: Core, dom: libvirt.virDomain, timeout: float, force: bool) -> None:
    if await core.run(virt.wait_inactive, dom, timeout):
        return
    if not force:
        core.emit(
            P.HostError(
                code="shutdown_timeout",
                message=f"VM {dom.name()} did not shut down within {timeout:g}s",
                vm_id=dom.UUIDString(),
            )
        )
        return
    with contextlib.suppress(libvirt.libvirtError):
        await core.run(dom.destroy)


async def reboot_vm(core: Core, req: P.RebootVm) -> P.Ok:
    dom = await core.dom(req.vm_id)
    if not await core.run(dom.isActive):
        raise Fail("not_running", f"VM {dom.name()} is not running")
    if req.hard:
        await core.run(dom.reset, 0)
    else:
        await core.run(dom.reboot, libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
    core.status_fact(dom, "reboot_in_progress", "hard" if req.hard else "acpi")
    core.spawn(_reboot_done(core, dom))
    return P.Ok()


async def _reboot_done(core: Core, dom: libvirt.virDomain) -> None:
    await asyncio.sleep(1.0)
    with contextlib.suppress(libvirt.libvirtError):
        if await core.run(dom.isActive):
            state, reason = await core.run(dom.state)
            st, why = virt.state_status(state, reason)
            core.status_fact(dom, st, why)


async def pause_vm(core: Core, req: P.PauseVm) -> P.Ok:
    dom = await core.dom(req.vm_id)
    xml = await core.run(dom.XMLDesc, 0)
    props = domxml.custom_properties(xml)
    await core.run(core.hooks.run, "before_vm_pause", xml, props)
    await core.run(dom.suspend)
    core.spawn(core.after_hook(dom, "after_vm_pause", xml))
    return P.Ok()


async def resume_vm(core: Core, req: P.ResumeVm) -> P.Ok:
    dom = await core.dom(req.vm_id)
    xml = await core.run(dom.XMLDesc, 0)
    await core.run(core.hooks.run, "before_vm_cont", xml, domxml.custom_properties(xml))
    await core.run(dom.resume)
    core.spawn(core.after_hook(dom, "after_vm_cont", xml))
    return P.Ok()


async def suspend_vm(core: Core, req: P.SuspendVm) -> P.Ok:
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        if not await core.run(dom.isActive):
            raise Fail("not_running", f"VM {dom.name()} is not running")
        xml = await core.run(dom.XMLDesc, 0)
        await core.run(core.hooks.run, "before_vm_hibernate", xml, domxml.custom_properties(xml))
        core.status_fact(dom, "saving_state", "managed_save")
        try:
            await core.run(dom.managedSave, 0)
        except libvirt.libvirtError:
            with contextlib.suppress(libvirt.libvirtError):
                st = await core.run(dom.state)
                core.status_fact(dom, *virt.state_status(*st))
            raise
        core.spawn(core.after_hook(dom, "after_vm_hibernate", xml))
    return P.Ok()
