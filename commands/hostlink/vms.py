"""The VM run flow: committed VM events carried out on the VM's host.

``VmScheduled`` -> ``CreateVm`` on the chosen host from ``vm_spec`` (``restoring_state``:
``RestoreVm`` from the saved memory, else a fresh boot), at most ``launch_concurrency``
launches at once per host; ``VmShutdown/Stop/Reboot/Pause/Resume/SuspendRequested`` and
``VmMigrationCanceled`` -> the matching call on the host running the VM;
``VmMigrationStarted`` -> ``Migrate`` on the source, to the destination's libvirt. A call
that fails is a fact with its reason (the VM goes down, the migration fails).

May import ``.core`` and ``.volumes``; no other flow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands import vm as vm_cmds
from commands.hostlink.core import ACTOR, Core, MiB
from commands.hostlink.volumes import disk_leaf
from domain.base import DomainError
from domain.disk import Disk
from domain.network import LogicalNetwork, VnicProfile
from domain.statuses import VmStatus
from domain.storage import StorageDomain
from domain.vm import Vm
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")


class VmRuns:
    def __init__(
        self,
        core: Core,
        *,
        shutdown_timeout: float,
        launch_concurrency: int,
        libvirt_uris: dict[UUID, str],
    ) -> None:
        self.core = core
        self.shutdown_timeout = shutdown_timeout
        # At most this many VM launches (CreateVm) at once per host; 0: no limit.
        self.launch_concurrency = launch_concurrency
        self.libvirt_uris = libvirt_uris
        self._launch_slots: dict[UUID, asyncio.Semaphore] = {}

    async def vm_call(self, vm_id: UUID, make: Callable[[str], P.Request]) -> None:
        """A request about the VM to the host running it; a VM the host does not know is
        reported down."""
        vm = self.core.find(Vm, vm_id)
        if vm is None:
            return
        try:
            await self.core.call(vm.run_on_host_id, make(str(vm_id)))
        except P.HostdError as e:
            self.core.note(f"VM {vm.name}: {e}")
            if e.code == "not_found" and vm.run_on_host_id is not None:
                await self.core.run_command(
                    vm_cmds.ReportVmStatus(
                        vm_id=vm_id,
                        host_id=vm.run_on_host_id,
                        status=VmStatus.DOWN,
                        reason=e.message[:900],
                        actor=ACTOR,
                    )
                )

    async def shutdown(self, vm_id: UUID) -> None:
        await self.vm_call(vm_id, lambda i: P.ShutdownVm(vm_id=i, timeout_s=self.shutdown_timeout))

    async def run(self, vm_id: UUID, host_id: UUID, paused: bool) -> None:
        try:
            spec = self.vm_spec(vm_id, host_id)
            if self.launch_concurrency > 0:
                slot = self._launch_slots.setdefault(
                    host_id, asyncio.Semaphore(self.launch_concurrency)
                )
                async with slot:
                    await self.core.call(host_id, P.CreateVm(spec=spec, start=True, paused=paused))
            else:
                await self.core.call(host_id, P.CreateVm(spec=spec, start=True, paused=paused))
        except (P.HostdError, LookupError, DomainError) as e:
            # A failed launch is a fact with its reason; the VM must not stay launching.
            self.core.note(f"run VM {vm_id}: {e}")
            await self.core.run_command(
                vm_cmds.ReportVmStatus(
                    vm_id=vm_id,
                    host_id=host_id,
                    status=VmStatus.DOWN,
                    reason=f"Failed to run VM: {getattr(e, 'message', e)}"[:900],
                    exit_status="error",
                    actor=ACTOR,
                )
            )

    async def restore(self, vm_id: UUID, host_id: UUID, paused: bool) -> None:
        """A suspended VM runs again from its saved memory, which lives with the host that
        saved it (the scheduler sends it back there while that host can take it); on
        another host (or when the image is gone) it boots afresh."""
        try:
            await self.core.call(host_id, P.RestoreVm(vm_id=str(vm_id), paused=paused))
            return
        except P.HostdError as e:
            if e.code not in ("not_found", "invalid"):
                self.core.note(f"restore VM {vm_id}: {e}")
                await self.core.run_command(
                    vm_cmds.ReportVmStatus(
                        vm_id=vm_id,
                        host_id=host_id,
                        status=VmStatus.DOWN,
                        reason=f"Failed to restore VM: {e.message}"[:900],
                        exit_status="error",
                        actor=ACTOR,
                    )
                )
                return
            log.info("VM %s has no saved state on host %s: starting it afresh", vm_id, host_id)
        await self.run(vm_id, host_id, paused)

    async def migrate(self, vm_id: UUID, source: UUID, dest: UUID) -> None:
        try:
            uri = self.libvirt_uri(dest)
            await self.core.call(source, P.Migrate(vm_id=str(vm_id), dest_uri=uri, unsafe=True))
        except (P.HostdError, LookupError) as e:
            self.core.note(f"migrate VM {vm_id}: {e}")
            await self.core.run_command(
                vm_cmds.ReportVmMigrationFailed(vm_id=vm_id, reason=str(e)[:900], actor=ACTOR)
            )

    def libvirt_uri(self, host_id: UUID) -> str:
        """How another host's libvirt reaches this one, for migration."""
        if host_id in self.libvirt_uris:
            return self.libvirt_uris[host_id]
        s = self.core.sessions.get(host_id)
        uri = getattr(s.caps, "libvirt_uri", None) if s is not None else None
        if not uri:
            raise LookupError(f"the libvirt address of host {host_id} is not known")
        return str(uri)

    def vm_spec(self, vm_id: UUID, host_id: UUID) -> P.VmSpec:
        """The VM as hostd needs it: its disks' volume paths as that host sees them."""
        s = self.core.sessions.get(host_id)
        roots = s.storage if s is not None else {}
        disks = []
        nics = []
        with self.core.reading() as eng:
            vm = eng.get(Vm, vm_id)
            for att in vm.disk_attachments:
                if not att.active:
                    continue
                d = eng.get(Disk, att.disk_id)
                sd = eng.get(StorageDomain, d.storage_domain_id)
                root = roots.get(str(sd.id)) or sd.path
                disks.append(
                    P.DiskSpec(
                        path=disk_leaf(vm, d, root),
                        format="qcow2" if d.format == "cow" else "raw",
                        bus=_bus(str(att.interface)),
                        disk_id=str(d.id),
                        bootable=att.bootable,
                        serial=str(d.id)[:20],
                    )
                )
            for nic in vm.nics:
                if not nic.plugged:
                    continue
                network = "ovirtmgmt"
                if nic.vnic_profile_id is not None:
                    prof = eng.find(VnicProfile, nic.vnic_profile_id)
                    net = eng.find(LogicalNetwork, prof.network_id) if prof is not None else None
                    if net is not None:
                        network = net.name
                nics.append(
                    P.NicSpec(
                        mac=nic.mac,
                        network=network,
                        model="virtio" if str(nic.interface) == "virtio" else "e1000",
                        nic_id=str(nic.id),
                    )
                )
        return P.VmSpec(
            id=str(vm.id),
            name=vm.name,
            memory_mib=max(1, vm.memory // MiB),
            cpu=P.CpuTopology(sockets=vm.cpu_sockets, cores=vm.cpu_cores, threads=vm.cpu_threads),
            disks=disks,
            nics=nics,
            graphics=[P.GraphicsSpec(type="spice" if str(vm.graphics) == "spice" else "vnc")],
            custom_properties=dict(vm.custom_properties),
        )


def _bus(interface: str) -> Any:
    return {"virtio": "virtio", "virtio_scsi": "scsi", "ide": "ide", "sata": "sata"}.get(
        interface, "virtio"
    )
