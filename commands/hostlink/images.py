"""Image operations: committed disk events carried out on a host that reaches the disk's
storage domain (the data center's SPM, else any connected up host), each ended with
``ReportDiskOperation`` (which settles image-locked VMs and templates).

``DiskAdded`` -> ``CreateImage`` (blank, or thin over the template's volume) or, for a full
copy, ``CopyImage``; ``DiskExtendStarted`` -> ``ResizeImage`` (live on the VM's host);
``DiskMoveStarted`` -> ``CopyImage`` to the target, then ``DeleteImage`` of the source;
``DiskDiscardStarted`` -> ``DeleteImage`` of each volume, reported (a pool revert);
``DiskRemoved`` -> ``DeleteImage`` of its volumes (best effort). Operations a previous
Manager left unfinished (disks still locked) are carried out again once a host can reach
their storage (``resume_unfinished``, on the monitor's tick).

Keeps ``core.volumes`` (each disk's domain and volumes) current for its events.
May import ``.core`` and ``.volumes``; no other flow.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from commands import disk as disk_cmds
from commands.hostlink.core import ACTOR, Core, Session
from commands.hostlink.volumes import disk_leaf, image_format, volume_path
from domain.base import DomainError
from domain.disk import Disk, DiskAdded, DiskOperationCompleted, DiskRemoved
from domain.statuses import DiskStatus, VmStatus
from domain.storage import StorageDomain
from domain.template import Template
from domain.vm import Vm
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")

_FAILURES = (P.HostdError, LookupError, KeyError, DomainError)


class Images:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._unfinished: dict[UUID, str] = {}  # disk id -> image operation to resume

    # -- events -> operations ------------------------------------------------------------
    def added(self, ev: DiskAdded) -> None:
        oid = ev.originator_id
        self.core.volumes[oid] = (ev.storage_domain_id, [oid])
        if ev.operation == "copy" and ev.base_disk_id is None:
            self.core.spawn(self.copy(oid))
        else:
            self.core.spawn(self.create(oid))

    def completed(self, ev: DiskOperationCompleted) -> None:
        if ev.storage_domain_id is not None:  # a move flattens the chain
            self.core.volumes[ev.originator_id] = (ev.storage_domain_id, [ev.originator_id])

    def removed(self, ev: DiskRemoved) -> None:
        vols = self.core.volumes.pop(ev.originator_id, None)
        if vols is not None:
            self.core.spawn(self.delete_volumes(ev.originator_id, *vols))

    def load_unfinished(self) -> None:
        """Image operations left unfinished by a previous Manager: carried out again
        once a host can reach their storage."""
        self._unfinished = {
            d.id: d.operation
            for d in self.core.all(Disk)
            if d.status == DiskStatus.LOCKED and d.operation
        }

    def resume_unfinished(self) -> None:
        for disk_id in list(self._unfinished):
            disk = self.core.find(Disk, disk_id)
            if disk is None or disk.status != DiskStatus.LOCKED or not disk.operation:
                del self._unfinished[disk_id]
                continue
            sd = self.core.find(StorageDomain, disk.storage_domain_id)
            if self.core.storage_host(sd) is None:
                continue
            del self._unfinished[disk_id]
            log.info("resuming the %s of disk %s", disk.operation, disk_id)
            if disk.operation == "copy" and disk.base_disk_id is None:
                self.core.spawn(self.copy(disk_id))
            elif disk.operation in ("create", "copy"):
                self.core.spawn(self.create(disk_id))
            elif disk.operation == "extend":
                self.core.spawn(self.extend(disk_id))
            elif disk.operation == "move" and disk.move_target_id is not None:
                self.core.spawn(self.move(disk_id, disk.move_target_id))
            elif disk.operation == "remove":
                self.core.spawn(self.discard(disk_id))

    # -- helpers -------------------------------------------------------------------------
    def _image_host(self, sd_id: UUID | None) -> tuple[UUID, Session, StorageDomain]:
        sd = self.core.find(StorageDomain, sd_id) if sd_id is not None else None
        host_id = self.core.storage_host(sd)
        if sd is None or host_id is None:
            raise LookupError("no up host can reach the storage domain")
        return host_id, self.core.sessions[host_id], sd

    def _attached_vm(self, disk_id: UUID) -> Vm | None:
        with self.core.reading() as eng:
            return next((v for v in eng.all(Vm) if v.attachment(disk_id) is not None), None)

    def _leaf_of(self, disk: Disk, root: str) -> str:
        vm = self._attached_vm(disk.id)
        if vm is None:
            return volume_path(root, disk.storage_domain_id, disk.id)
        return disk_leaf(vm, disk, root)

    async def _report(
        self, disk_id: UUID, what: str, e: BaseException | None, info: Any = None
    ) -> None:
        if e is not None:
            self.core.note(f"{what} {disk_id}: {e}")
        await self.core.run_command(
            disk_cmds.ReportDiskOperation(
                disk_id=disk_id,
                ok=e is None,
                actual_size=getattr(info, "actual_size", None) if e is None else None,
                reason=str(e)[:900] if e is not None else "",
                actor=ACTOR,
            )
        )

    async def _call_new_volume(self, host_id: UUID, req: P.CreateImage | P.CopyImage) -> Any:
        """Creates a volume; one already there (made before a Manager restart) counts."""
        try:
            return await self.core.call(host_id, req)
        except P.HostdError as e:
            if "already exists" not in e.message:
                raise
            v = req.volume
            path = f"{v.sd_path}/{v.sd_id}/images/{v.disk_id}/{v.volume_id}"
            return await self.core.call(host_id, P.ImageInfo(path=path))

    async def _copy_to_volume(
        self, host_id: UUID, source: str, sd_root: str, sd_id: UUID, disk: Disk
    ) -> P.ImageInfoResult:
        """A flat copy of ``source`` as the disk's own base volume on domain ``sd_id``."""
        info: P.ImageInfoResult = await self._call_new_volume(
            host_id,
            P.CopyImage(
                source=source,
                volume=P.VolumeRef(
                    sd_path=sd_root,
                    sd_id=str(sd_id),
                    disk_id=str(disk.id),
                    volume_id=str(disk.id),
                ),
                format=image_format(disk.format),
            ),
        )
        return info

    def _copy_source(self, disk: Disk) -> tuple[Disk, Vm | None]:
        """The disk a full copy is made from: for a template's disk, the disk of the VM
        it is made from at the same position; for a cloned VM's disk, the template's."""
        owner = self._attached_vm(disk.id) if disk.template_id is None else None
        with self.core.reading() as eng:
            if disk.template_id is not None:
                t = eng.find(Template, disk.template_id)
                vm = eng.find(Vm, t.source_vm_id) if t is not None and t.source_vm_id else None
                if t is None or vm is None or disk.id not in t.disk_ids:
                    raise LookupError("the template's source VM is gone")
                att = vm.disk_attachments[t.disk_ids.index(disk.id)]
                return eng.get(Disk, att.disk_id), vm
            t = eng.find(Template, owner.template_id) if owner is not None else None
            if owner is None or t is None:
                raise LookupError("the disk copied is not known")
            idx = next(i for i, a in enumerate(owner.disk_attachments) if a.disk_id == disk.id)
            if idx >= len(t.disk_ids):
                raise LookupError("the template's disk copied is not known")
            return eng.get(Disk, t.disk_ids[idx]), None

    # -- operations ------------------------------------------------------------------------
    async def create(self, disk_id: UUID) -> None:
        """A blank volume, or a thin one over its base disk's volume (a VM's disk made
        from a template: ``base_disk_id`` is the template's disk, on the same domain)."""
        disk = self.core.find(Disk, disk_id)
        if disk is None or disk.operation not in ("create", "copy"):
            return
        try:
            host_id, s, sd = self._image_host(disk.storage_domain_id)
            root = await self.core.root(s, sd)
            base = self.core.find(Disk, disk.base_disk_id) if disk.base_disk_id else None
            if disk.base_disk_id is not None and base is None:
                raise LookupError(f"the base disk {disk.base_disk_id} is gone")
            backing = None
            if base is not None:
                base_sd = self.core.get(StorageDomain, base.storage_domain_id)
                backing = volume_path(
                    await self.core.root(s, base_sd), base.storage_domain_id, base.id
                )
            info: P.ImageInfoResult = await self._call_new_volume(
                host_id,
                P.CreateImage(
                    volume=P.VolumeRef(
                        sd_path=root, sd_id=str(sd.id), disk_id=str(disk_id), volume_id=str(disk_id)
                    ),
                    size_bytes=disk.provisioned_size,
                    format="qcow2" if disk.format == "cow" or base is not None else "raw",
                    backing=backing,
                    backing_format=image_format(base.format) if base is not None else "qcow2",
                    preallocate=not disk.sparse,
                ),
            )
        except _FAILURES as e:
            await self._report(disk_id, "create image", e)
            return
        await self._report(disk_id, "create image", None, info)

    async def copy(self, disk_id: UUID) -> None:
        """A full, independent copy (a template's disk, or a cloned VM's)."""
        disk = self.core.find(Disk, disk_id)
        if disk is None or disk.operation != "copy":
            return
        try:
            source, vm = self._copy_source(disk)
            host_id, s, sd = self._image_host(disk.storage_domain_id)
            src_sd = self.core.get(StorageDomain, source.storage_domain_id)
            src_root = await self.core.root(s, src_sd)
            src_path = (
                disk_leaf(vm, source, src_root)
                if vm is not None
                else volume_path(src_root, source.storage_domain_id, source.id)
            )
            info = await self._copy_to_volume(
                host_id, src_path, await self.core.root(s, sd), sd.id, disk
            )
        except _FAILURES as e:
            await self._report(disk_id, "copy image", e)
            return
        await self._report(disk_id, "copy image", None, info)

    async def extend(self, disk_id: UUID) -> None:
        """Grows the disk's active volume: live on the host running its VM (the guest
        sees the new size at once), else on any host that reaches the storage."""
        disk = self.core.find(Disk, disk_id)
        if disk is None or disk.operation != "extend":
            return
        try:
            vm = self._attached_vm(disk_id)
            live = vm is not None and vm.status in (VmStatus.UP, VmStatus.PAUSED)
            if vm is not None and not live and vm.status not in (VmStatus.DOWN, VmStatus.SUSPENDED):
                raise LookupError(f"the VM is {vm.status.value}: extend it when up or down")
            if live and vm is not None:
                if vm.run_on_host_id not in self.core.sessions:
                    raise LookupError("the host running the VM is not connected")
                host_id = vm.run_on_host_id
                s = self.core.sessions[host_id]
                sd = self.core.get(StorageDomain, disk.storage_domain_id)
            else:
                host_id, s, sd = self._image_host(disk.storage_domain_id)
            info: P.ImageInfoResult = await self.core.call(
                host_id,
                P.ResizeImage(
                    path=self._leaf_of(disk, await self.core.root(s, sd)),
                    size_bytes=disk.provisioned_size,
                    vm_id=str(vm.id) if live and vm is not None else None,
                ),
            )
        except _FAILURES as e:
            await self._report(disk_id, "extend image", e)
            return
        await self._report(disk_id, "extend image", None, info)

    async def move(self, disk_id: UUID, target_id: UUID) -> None:
        """Copies the disk to the target domain (flattening it), then deletes the source."""
        disk = self.core.find(Disk, disk_id)
        if disk is None or disk.operation != "move":
            return
        source_sd = disk.storage_domain_id
        try:
            vm = self._attached_vm(disk_id)
            if vm is not None and vm.status != VmStatus.DOWN:
                raise LookupError("moving the disk of a running VM is not supported yet")
            if len(self.core.volumes.get(disk_id, (None, [disk_id]))[1]) > 1:
                raise LookupError("moving a disk with snapshots is not supported yet")
            host_id, s, sd = self._image_host(source_sd)
            target = self.core.get(StorageDomain, target_id)
            if str(target.id) not in s.storage:
                await self.core.connect_storage(s, target)
            info = await self._copy_to_volume(
                host_id,
                self._leaf_of(disk, await self.core.root(s, sd)),
                await self.core.root(s, target),
                target.id,
                disk,
            )
        except _FAILURES as e:
            await self._report(disk_id, "move image", e)
            return
        await self._report(disk_id, "move image", None, info)
        await self.delete_volumes(disk_id, source_sd, [disk_id])

    async def discard(self, disk_id: UUID) -> None:
        """Deletes a discarded disk's volumes (newest first; one already gone counts) and
        reports it, which removes the disk; a failure is reported too (the disk is then
        illegal, for an administrator to remove)."""
        disk = self.core.find(Disk, disk_id)
        if disk is None or disk.operation != "remove":
            return
        try:
            host_id, s, sd = self._image_host(disk.storage_domain_id)
            images = f"{await self.core.root(s, sd)}/{sd.id}/images/{disk_id}"
            # The volumes the event names, and any this link knows of besides (a committed
            # preview's layer is no longer derivable from the snapshot list).
            known = self.core.volumes.get(disk_id, (sd.id, []))[1]
            volumes = list(dict.fromkeys([*known, *(disk.volume_ids or (disk_id,))]))
            for vol in reversed(volumes):
                try:
                    await self.core.call(host_id, P.DeleteImage(path=f"{images}/{vol}"))
                except P.HostdError as e:
                    if "no such image" not in e.message:
                        raise
        except _FAILURES as e:
            await self._report(disk_id, "discard image", e)
            return
        self.core.volumes.pop(disk_id, None)  # gone: nothing left for DiskRemoved to delete
        await self._report(disk_id, "discard image", None)

    async def delete_volumes(self, disk_id: UUID, sd_id: UUID, volumes: list[UUID]) -> None:
        """Deletes a disk's volumes, newest layer first; best effort (logged)."""
        try:
            host_id, s, sd = self._image_host(sd_id)
        except LookupError as e:
            self.core.note(f"delete image {disk_id}: {e}")
            return
        root = await self.core.root(s, sd)
        for vol in reversed(volumes):
            path = f"{root}/{sd_id}/images/{disk_id}/{vol}"
            try:
                await self.core.call(host_id, P.DeleteImage(path=path))
            except P.HostdError as e:
                if vol == disk_id or "no such image" not in e.message:
                    self.core.note(f"delete volume {path}: {e}")
