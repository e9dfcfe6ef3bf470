"""Snapshot flows: committed snapshot events carried out on the hosts.

Each snapshot puts a qcow2 layer named after it on top of every disk it covers, so a
disk's active volume is the layer of its newest snapshot (or the disk's own base volume)
and is derived from the VM's snapshot list (``volumes.disk_leaf``), never stored apart.

- ``VmSnapshotAdded`` (create) -> ``SnapshotCreate`` on the host running the VM, else a
  ``CreateImage`` layer per disk on any host that reaches the storage; reported
  (``ReportSnapshot``).
- ``VmSnapshotRemoveStarted`` -> live merge (``SnapshotDelete``) on the running host, else
  cold merge (``MergeVolume``); reported.
- Preview / undo / commit of a down VM (no report: the domain locks nothing). While a
  snapshot S is in preview, every disk S covers runs on a preview layer named after the
  ``saved`` (preview-type) record, on top of S's content (the volume under S's layer);
  undo deletes it and the normal leaf is active again. Commit drops S's old layer (the
  state after S) and the later snapshots' layers, and puts a fresh empty layer named
  after S on top of the preview layer, so the plain derivation (newest snapshot covering
  the disk -> its layer) keeps pointing at the committed state:
  base ... <- under-S <- preview(saved id) <- S. The preview layer's name is then no
  longer derivable from the snapshot list; it stays in the qcow2 backing chain and in
  ``core.volumes``, which this flow keeps current for its events.

May import ``.core`` and ``.volumes``; no other flow.
"""

from __future__ import annotations

from uuid import UUID

from commands import vm as vm_cmds
from commands.hostlink.core import ACTOR, Core
from commands.hostlink.volumes import disk_leaf, image_format
from domain.disk import Disk
from domain.statuses import VmStatus
from domain.storage import StorageDomain
from domain.vm import Snapshot, Vm, VmSnapshotAdded
from hostd import protocol as P


class Snapshots:
    def __init__(self, core: Core) -> None:
        self.core = core

    # -- reading ------------------------------------------------------------------------
    def _roots(self, host_id: UUID | None) -> dict[str, str]:
        s = self.core.sessions.get(host_id) if host_id is not None else None
        return s.storage if s is not None else {}

    def _disk_paths(
        self, vm: Vm, snap: Snapshot, host_id: UUID | None
    ) -> list[tuple[Disk, str, str]]:
        """(disk, the volume under the snapshot's layer, the snapshot's layer) per disk."""
        roots = self._roots(host_id)
        out = []
        with self.core.reading() as eng:
            for disk_id in snap.config.disk_ids if snap.config else ():
                d = eng.find(Disk, disk_id)
                if d is None:
                    continue
                root = roots.get(str(d.storage_domain_id))
                if root is None:
                    root = eng.get(StorageDomain, d.storage_domain_id).path
                below = disk_leaf(vm, d, root, before=snap.id)
                layer = f"{root}/{d.storage_domain_id}/images/{d.id}/{snap.id}"
                out.append((d, below, layer))
        return out

    def _volume(self, d: Disk, host_id: UUID | None, volume: UUID) -> tuple[str, str]:
        """(the domain's root as the host sees it, the volume's path)."""
        root = self._roots(host_id).get(str(d.storage_domain_id))
        if root is None:
            root = self.core.get(StorageDomain, d.storage_domain_id).path
        return root, f"{root}/{d.storage_domain_id}/images/{d.id}/{volume}"

    def _covered(self, snap: Snapshot | None) -> list[Disk]:
        out = []
        with self.core.reading() as eng:
            for disk_id in snap.config.disk_ids if snap is not None and snap.config else ():
                d = eng.find(Disk, disk_id)
                if d is not None:
                    out.append(d)
        return out

    def _any_storage_host(self, vm: Vm) -> UUID | None:
        for att in vm.disk_attachments:
            with self.core.reading() as eng:
                d = eng.find(Disk, att.disk_id)
                sd = eng.find(StorageDomain, d.storage_domain_id) if d else None
            hid = self.core.storage_host(sd)
            if hid is not None:
                return hid
        return None

    def _vm_and_snapshot(self, vm_id: UUID, snapshot_id: UUID) -> tuple[Vm, Snapshot] | None:
        vm = self.core.find(Vm, vm_id)
        snap = vm.snapshot(snapshot_id) if vm is not None else None
        return (vm, snap) if vm is not None and snap is not None else None

    async def _new_layer(
        self, host_id: UUID | None, d: Disk, volume: UUID, backing: str, backing_fmt: str
    ) -> None:
        root, _ = self._volume(d, host_id, volume)
        await self.core.call(
            host_id,
            P.CreateImage(
                volume=P.VolumeRef(
                    sd_path=root,
                    sd_id=str(d.storage_domain_id),
                    disk_id=str(d.id),
                    volume_id=str(volume),
                ),
                backing=backing,
                backing_format="qcow2" if backing_fmt == "qcow2" else "raw",
            ),
        )

    # -- create / remove ------------------------------------------------------------------
    def added(self, ev: VmSnapshotAdded) -> None:
        if ev.snapshot.operation != "create":
            return
        for disk_id in ev.snapshot.config.disk_ids if ev.snapshot.config else ():
            if disk_id in self.core.volumes:
                self.core.volumes[disk_id][1].append(ev.snapshot.id)
        self.core.spawn(self.create(ev.originator_id, ev.snapshot))

    async def create(self, vm_id: UUID, snap: Snapshot) -> None:
        vm = self.core.find(Vm, vm_id)
        if vm is None:
            return
        running = vm.status in (VmStatus.UP, VmStatus.PAUSED) and vm.run_on_host_id is not None
        host_id = vm.run_on_host_id if running else self._any_storage_host(vm)
        ok = True
        try:
            paths = self._disk_paths(vm, snap, host_id)
            if running:
                await self.core.call(
                    host_id,
                    P.SnapshotCreate(
                        vm_id=str(vm_id),
                        snapshot_id=str(snap.id),
                        memory=snap.persist_memory,
                        disks=[
                            P.SnapshotDisk(target=below, new_path=layer)
                            for _, below, layer in paths
                        ],
                    ),
                )
            else:
                for d, below, _layer in paths:
                    sd_root = below.split(f"/{d.storage_domain_id}/images/")[0]
                    await self.core.call(
                        host_id,
                        P.CreateImage(
                            volume=P.VolumeRef(
                                sd_path=sd_root,
                                sd_id=str(d.storage_domain_id),
                                disk_id=str(d.id),
                                volume_id=str(snap.id),
                            ),
                            backing=below,
                            backing_format="qcow2" if d.format == "cow" else "raw",
                        ),
                    )
        except (P.HostdError, LookupError) as e:
            self.core.note(f"snapshot {snap.id} of VM {vm.name}: {e}")
            ok = False
        await self.core.run_command(
            vm_cmds.ReportSnapshot(vm_id=vm_id, snapshot_id=snap.id, ok=ok, actor=ACTOR)
        )

    async def remove(self, vm_id: UUID, snapshot_id: UUID) -> None:
        found = self._vm_and_snapshot(vm_id, snapshot_id)
        if found is None:
            return
        vm, snap = found
        ok = True
        try:
            running = vm.status in (VmStatus.UP, VmStatus.PAUSED) and vm.run_on_host_id
            if running:
                # Live merge, on the host running it: the snapshot's layer may be the
                # active one (commit + pivot) or one deeper in the chain.
                paths = self._disk_paths(vm, snap, vm.run_on_host_id)
                await self.core.call(
                    vm.run_on_host_id,
                    P.SnapshotDelete(vm_id=str(vm_id), layers=[layer for _, _, layer in paths]),
                )
            else:
                # Cold merge, on any up host that reaches the storage (oVirt's SPM role).
                host_id = self._any_storage_host(vm)
                if host_id is None:
                    raise LookupError("no up host can reach the VM's storage domains")
                for d, _below, layer in self._disk_paths(vm, snap, host_id):
                    root = layer.split(f"/{d.storage_domain_id}/images/")[0]
                    await self.core.call(
                        host_id, P.MergeVolume(leaf=disk_leaf(vm, d, root), layer=layer)
                    )
            for d in self._covered(snap):
                vols = self.core.volumes.get(d.id)
                if vols is not None and snapshot_id in vols[1]:
                    vols[1].remove(snapshot_id)
        except (P.HostdError, LookupError) as e:
            self.core.note(f"remove snapshot {snapshot_id} of VM {vm.name}: {e}")
            ok = False
        await self.core.run_command(
            vm_cmds.ReportSnapshot(vm_id=vm_id, snapshot_id=snapshot_id, ok=ok, actor=ACTOR)
        )

    # -- preview / undo / commit ----------------------------------------------------------
    async def preview(self, vm_id: UUID, snapshot_id: UUID, saved_id: UUID) -> None:
        found = self._vm_and_snapshot(vm_id, snapshot_id)
        if found is None:
            return
        vm, snap = found
        host_id = self._any_storage_host(vm)
        for d in self._covered(snap):
            vols = self.core.volumes.get(d.id)
            if vols is not None and saved_id not in vols[1]:
                vols[1].append(saved_id)
            root, _ = self._volume(d, host_id, saved_id)
            below = disk_leaf(vm, d, root, before=snap.id)
            fmt = image_format(d.format) if below.endswith(f"/{d.id}") else "qcow2"
            try:
                if host_id is None:
                    raise LookupError("no up host can reach the storage domain")
                await self._new_layer(host_id, d, saved_id, below, fmt)
            except (P.HostdError, LookupError) as e:
                self.core.note(f"preview snapshot {snapshot_id} of VM {vm.name}: {e}")

    async def undo(self, vm_id: UUID, snapshot_id: UUID, saved_id: UUID) -> None:
        found = self._vm_and_snapshot(vm_id, snapshot_id)
        if found is None:
            return
        vm, snap = found
        host_id = self._any_storage_host(vm)
        for d in self._covered(snap):
            vols = self.core.volumes.get(d.id)
            if vols is not None and saved_id in vols[1]:
                vols[1].remove(saved_id)
            _, path = self._volume(d, host_id, saved_id)
            try:
                if host_id is None:
                    raise LookupError("no up host can reach the storage domain")
                await self.core.call(host_id, P.DeleteImage(path=path))
            except (P.HostdError, LookupError) as e:
                self.core.note(f"undo preview of VM {vm.name}: delete {path}: {e}")

    async def commit(self, vm_id: UUID, snapshot_id: UUID, removed_ids: tuple[UUID, ...]) -> None:
        found = self._vm_and_snapshot(vm_id, snapshot_id)
        if found is None:
            return
        vm, snap = found
        # commit_snapshot lists the later snapshots, then the preview-type record.
        removed = set(removed_ids)
        saved_id = removed_ids[-1] if removed_ids else None
        host_id = self._any_storage_host(vm)
        covered = {d.id for d in self._covered(snap)}
        for att in vm.disk_attachments:
            d = self.core.find(Disk, att.disk_id)
            vols = self.core.volumes.get(att.disk_id)
            if d is None or vols is None:
                continue
            dropped = [v for v in vols[1] if v in removed]
            preview = saved_id if d.id in covered and saved_id in dropped else None
            if d.id in covered and preview is None:
                self.core.note(f"commit snapshot {snapshot_id} of VM {vm.name}: no preview layer")
            gone = [v for v in dropped if v != preview]
            if preview is not None:
                gone.append(snap.id)
            try:
                if host_id is None:
                    raise LookupError("no up host can reach the storage domain")
                for v in reversed(gone):
                    _, path = self._volume(d, host_id, v)
                    await self.core.call(host_id, P.DeleteImage(path=path))
                if preview is not None:
                    _, ppath = self._volume(d, host_id, preview)
                    await self._new_layer(host_id, d, snap.id, ppath, "qcow2")
            except (P.HostdError, LookupError) as e:
                self.core.note(f"commit snapshot {snapshot_id} of VM {vm.name}: {e}")
            # Volume list: ... under-S, preview, S (the later snapshots are gone).
            kept = [v for v in vols[1] if v not in removed and v != snap.id]
            if preview is not None:
                kept += [preview, snap.id]
            elif snap.id in vols[1]:
                kept.append(snap.id)
            vols[1][:] = kept
