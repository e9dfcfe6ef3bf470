"""hostd's snapshot requests: ``SnapshotCreate`` (external qcow2 overlays, live through
libvirt with an optional memory image, or offline with qemu-img), ``SnapshotDelete``
(merging a snapshot's volumes into the ones under them: live block commit or offline
commit), ``SnapshotPreview``, ``SnapshotUndo`` and ``SnapshotCommit`` (a preview's
overlays made, dropped or kept). Each keeps the VM's persistent definition on the
volumes it now uses.

May import ``hostd.core``, ``hostd.protocol`` and the driver modules (images, domxml,
virt); no other request handler module.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import libvirt

from hostd import domxml, images, virt
from hostd import protocol as P
from hostd.core import Core, Fail, confined


def _snapshot_live(
    core: Core,
    dom: libvirt.virDomain,
    req: P.SnapshotCreate,
    plan: list[P.DiskChange],
    mem: str | None,
) -> None:
    chosen = {c.target for c in plan}
    xml = dom.XMLDesc(0)
    parts = []
    for d in domxml.disks(xml):
        if d.target in chosen:
            c = next(c for c in plan if c.target == d.target)
            parts.append(
                f"<disk name='{d.target}' snapshot='external' type='file'>"
                f"<driver type='qcow2'/><source file='{c.new_path}'/></disk>"
            )
        else:
            parts.append(f"<disk name='{d.target}' snapshot='no'/>")
    memory = f"<memory snapshot='external' file='{mem}'/>" if mem else "<memory snapshot='no'/>"
    sxml = (
        f"<domainsnapshot><name>{req.snapshot_id}</name>{memory}"
        f"<disks>{''.join(parts)}</disks></domainsnapshot>"
    )
    flags = (
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    )
    if not mem:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    if req.quiesce:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
    dom.snapshotCreateXML(sxml, flags)
    _persist_sources(core, dom, plan)


def _persist_sources(core: Core, dom: libvirt.virDomain, plan: list[P.DiskChange]) -> None:
    """Make the persistent definition use the new paths too (next start)."""
    if not dom.isPersistent():
        return
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    for c in plan:
        xml = domxml.set_disk_source(xml, c.target, c.new_path, "qcow2")
    core.c().defineXML(xml)


def _snapshot_offline(core: Core, dom: libvirt.virDomain, plan: list[P.DiskChange]) -> None:
    made = []
    try:
        for c in plan:
            fmt = images.info(c.old_path).format
            images.create(Path(c.new_path), 0, "qcow2", c.old_path, fmt)
            made.append(c.new_path)
        _persist_sources(core, dom, plan)
    except Exception:
        for p in made:
            with contextlib.suppress(OSError):
                os.unlink(p)
        raise


async def snapshot_create(core: Core, req: P.SnapshotCreate) -> P.SnapshotResult:
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        xml = await core.run(dom.XMLDesc, 0)
        current = {d.target: d for d in domxml.disks(xml)}
        by_path = {d.path: d for d in current.values()}
        wanted = req.disks or [P.SnapshotDisk(target=t) for t in current]
        plan = []
        for w in wanted:
            d = current.get(w.target) or by_path.get(w.target)
            if d is None:
                raise Fail("not_found", f"VM {dom.name()} has no disk {w.target}")
            new = w.new_path or str(Path(d.path).parent / str(uuid.uuid4()))
            confined(core, new, "snapshot volume")
            if os.path.exists(new):
                raise Fail("image", f"snapshot volume {new} already exists")
            plan.append(P.DiskChange(target=d.target, old_path=d.path, new_path=new))
        active = await core.run(dom.isActive)
        mem = None
        if req.memory and active:
            base = Path(plan[0].old_path).parent if plan else core.data_dir / "snapshots"
            base.mkdir(parents=True, exist_ok=True)
            mem = req.memory_path or str(base / f"{req.snapshot_id}.mem")
            if req.memory_path:
                confined(core, mem, "memory volume")
        await core.run(core.hooks.run, "before_vm_snapshot", xml, domxml.custom_properties(xml))
        if active:
            await core.run(_snapshot_live, core, dom, req, plan, mem)
        else:
            await core.run(_snapshot_offline, core, dom, plan)
        core.spawn(core.after_hook(dom, "after_vm_snapshot"))
        return P.SnapshotResult(snapshot_id=req.snapshot_id, changes=plan, memory_path=mem)


def _merge_layers(core: Core, dom: libvirt.virDomain, req: P.SnapshotDelete) -> list[P.DiskChange]:
    """Merges each of ``req.layers`` found in a disk's chain into the volume under it."""
    active = dom.isActive()
    changes = []
    seen = []
    for d in domxml.disks(dom.XMLDesc(0)):
        chain = images.info(d.path).chain
        seen.append(f"{d.target}: {' <- '.join(reversed(chain))}")
        for layer in req.layers:
            at = next((i for i, p in enumerate(chain) if images.same_path(p, layer)), None)
            if at is None:
                continue
            if at == len(chain) - 1:
                raise Fail("image", f"{layer} is the bottom of {d.target}'s chain")
            base = chain[at + 1]
            if at == 0:  # the active layer: what the older form does
                changes += _merge(
                    core, dom, P.SnapshotDelete(vm_id=req.vm_id, base_paths=[base]), only=d.target
                )
            else:
                if active:
                    virt.block_commit(dom, d.target, chain[at], base, req.timeout_s)
                    if any(images.same_path(p, layer) for p in images.info(d.path).chain):
                        raise Fail("image", f"block commit of {layer} on {d.target} failed")
                    images.delete(chain[at])
                else:
                    images.merge_layer(d.path, chain[at])
                changes.append(P.DiskChange(target=d.target, old_path=layer, new_path=base))
            chain = images.info(d.path if at else base).chain
    if not changes:
        raise Fail(
            "not_found",
            f"no disk of VM {dom.name()} has {sorted(req.layers)} ({'; '.join(seen)})",
        )
    _drop_memory(req)
    return changes


def _merge(
    core: Core, dom: libvirt.virDomain, req: P.SnapshotDelete, only: str | None = None
) -> list[P.DiskChange]:
    if req.layers:
        return _merge_layers(core, dom, req)
    active = dom.isActive()
    xml = dom.XMLDesc(0)
    bases = set(req.base_paths)
    changes = []
    seen = []
    for d in domxml.disks(xml):
        if only is not None and d.target != only:
            continue
        backing = images.info(d.path).backing
        seen.append(f"{d.target}: {d.path} on {backing}")
        if backing is None or backing not in bases:
            continue
        base_fmt = images.info(backing).format
        if active:
            virt.block_commit_active(dom, d.target, backing, req.timeout_s)
        else:
            images.commit(d.path)
        changes.append(P.DiskChange(target=d.target, old_path=d.path, new_path=backing))
        if dom.isPersistent():
            ixml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            core.c().defineXML(domxml.set_disk_source(ixml, d.target, backing, base_fmt))
        os.unlink(d.path)
    if not changes:
        raise Fail(
            "not_found",
            f"no disk of VM {dom.name()} sits on {sorted(bases)} ({'; '.join(seen)})",
        )
    _drop_memory(req)
    return changes


async def snapshot_delete(core: Core, req: P.SnapshotDelete) -> P.DiskChanges:
    if req.memory_path:
        confined(core, req.memory_path, "memory volume")
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        return P.DiskChanges(changes=await core.run(_merge, core, dom, req))


def _preview(core: Core, dom: libvirt.virDomain, req: P.SnapshotPreview) -> list[P.DiskChange]:
    if dom.isActive():
        raise Fail("invalid", f"VM {dom.name()} must be down to preview a snapshot")
    wanted = set(req.snapshot_paths)
    plan = []
    for d in domxml.disks(dom.XMLDesc(0)):
        chain = images.info(d.path).chain
        hit = next((p for p in chain if p in wanted), None)
        if hit is None:
            continue
        new = str(Path(d.path).parent / str(uuid.uuid4()))
        plan.append(P.DiskChange(target=d.target, old_path=d.path, new_path=new))
        images.create(Path(new), 0, "qcow2", hit, images.info(hit).format)
    if not plan:
        raise Fail("not_found", f"no disk of VM {dom.name()} has a volume in {sorted(wanted)}")
    _persist_sources(core, dom, plan)
    return plan


async def snapshot_preview(core: Core, req: P.SnapshotPreview) -> P.DiskChanges:
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        return P.DiskChanges(changes=await core.run(_preview, core, dom, req))


def _undo(core: Core, dom: libvirt.virDomain, changes: list[P.DiskChange]) -> None:
    if dom.isActive():
        raise Fail("invalid", f"VM {dom.name()} must be down to undo a preview")
    back = [
        P.DiskChange(target=c.target, old_path=c.new_path, new_path=c.old_path) for c in changes
    ]
    for b in back:
        b_fmt = images.info(b.new_path).format
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        core.c().defineXML(domxml.set_disk_source(xml, b.target, b.new_path, b_fmt))
    for c in changes:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(c.new_path)


def _confine_changes(core: Core, changes: list[P.DiskChange]) -> None:
    for c in changes:
        confined(core, c.old_path, "volume")
        confined(core, c.new_path, "volume")


async def snapshot_undo(core: Core, req: P.SnapshotUndo) -> P.Ok:
    _confine_changes(core, req.changes)
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        await core.run(_undo, core, dom, req.changes)
    return P.Ok()


async def snapshot_commit(core: Core, req: P.SnapshotCommit) -> P.Ok:
    _confine_changes(core, req.changes)
    dom = await core.dom(req.vm_id)
    async with core.lock(req.vm_id):
        inuse = {d.path for d in domxml.disks(await core.run(dom.XMLDesc, 0))}
        for c in req.changes:
            if c.old_path in inuse:
                raise Fail("invalid", f"{c.old_path} is still in use by VM {dom.name()}")
        for c in req.changes:
            with contextlib.suppress(FileNotFoundError):
                await core.run(os.unlink, c.old_path)
    return P.Ok()


def _drop_memory(req: P.SnapshotDelete) -> None:
    """The merged snapshot's memory image goes with it."""
    if req.memory_path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(req.memory_path)
