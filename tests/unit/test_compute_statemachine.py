"""Random VM lifecycles: user commands, host reports and host failures, with invariants.

Every rule runs a command (or an infrastructure decision) that may be refused; a refused
one must leave the state exactly as it was. After every step the invariants hold and
replaying the event log gives the live engine's digest.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands import disk as disk_cmd
from commands import vm as c
from domain.base import DomainError
from domain.disk import Disk
from domain.host import Host
from domain.rules import host_rules
from domain.statuses import VM_ON_HOST, SnapshotStatus, VmStatus
from domain.values import SnapshotType
from domain.vm import Vm
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit

PICK = st.integers(min_value=0, max_value=1000)
STATUSES = st.sampled_from(list(VmStatus))


class VmLifecycle(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.w = ComputeWorld(hosts=3)
        self.host_ids = list(self.w.hosts)
        self.counter = 0
        self.refused = 0
        # A head start: a diskless VM up, a VM with a disk down, one being created.
        self.add_vm(0, True)
        self.start(0, 0, False)
        self.host_drives(0, 0)
        self.host_drives(0, 0)
        self.add_vm(1, True)
        self.add_vm(1, False)

    # -- helpers ----------------------------------------------------------------------------
    def vms(self) -> list[Vm]:
        return sorted(self.w.engine.all(Vm), key=lambda v: v.name)

    def pick_vm(self, i: int) -> Vm | None:
        vms = self.vms()
        return vms[i % len(vms)] if vms else None

    def pick_host(self, i: int) -> UUID:
        return self.host_ids[i % len(self.host_ids)]

    def attempt(self, fn: Any) -> None:
        """Runs fn; a DomainError must leave no trace."""
        before, n = self.w.engine.digest(), len(self.w.log)
        try:
            fn()
        except DomainError:
            self.refused += 1
            assert self.w.engine.digest() == before
            assert len(self.w.log) == n

    def cmd(self, command: Any) -> None:
        self.attempt(lambda: self.w.run(command))

    def decide(self, fn: Any, *args: Any, **kw: Any) -> None:
        self.attempt(lambda: self.w.do(fn, *args, **kw))

    # -- configuration --------------------------------------------------------------------------
    @rule(disks=st.integers(0, 2), ready=st.booleans())
    def add_vm(self, disks: int, ready: bool) -> None:
        self.counter += 1
        name = f"vm{self.counter}"
        self.cmd(c.AddVm(name=name, cluster_id=self.w.cluster, memory=GiB))
        vm_id = self.w.engine.by_name(("vm",), name)
        if vm_id is None:
            return
        for k in range(disks):
            self.cmd(
                c.AddVmDisk(
                    vm_id=vm_id,
                    name=f"{name}-d{k}",
                    provisioned_size=GiB,
                    storage_domain_id=self.w.sd,
                    bootable=k == 0,
                )
            )
        if ready:
            self.settle_disks()

    @rule()
    def settle_disks(self) -> None:
        for d in sorted(self.w.engine.all(Disk), key=lambda d: d.id):
            if d.operation:
                self.cmd(disk_cmd.ReportDiskOperation(disk_id=d.id))

    @rule(i=PICK, keep=st.booleans())
    def remove_vm(self, i: int, keep: bool) -> None:
        vm = self.pick_vm(i)
        if vm is not None:
            self.cmd(c.RemoveVm(vm_id=vm.id, detach_only=keep))

    @rule(i=PICK, j=PICK)
    def attach_floating(self, i: int, j: int) -> None:
        vm = self.pick_vm(i)
        disks = sorted(self.w.engine.all(Disk), key=lambda d: d.id)
        if vm is not None and disks:
            self.cmd(
                c.AttachDisk(vm_id=vm.id, disk_id=disks[j % len(disks)].id, bootable=j % 2 == 0)
            )

    @rule(i=PICK, j=PICK)
    def detach(self, i: int, j: int) -> None:
        vm = self.pick_vm(i)
        if vm is not None and vm.disk_attachments:
            att = vm.disk_attachments[j % len(vm.disk_attachments)]
            self.cmd(c.DetachDisk(vm_id=vm.id, disk_id=att.disk_id))

    @rule(i=PICK, mem=st.integers(1, 8))
    def update_memory(self, i: int, mem: int) -> None:
        vm = self.pick_vm(i)
        if vm is not None:
            self.cmd(c.UpdateVm(vm_id=vm.id, memory=mem * GiB))

    # -- the run flow ----------------------------------------------------------------------------
    @rule(i=PICK, h=PICK, explicit=st.booleans())
    def start(self, i: int, h: int, explicit: bool) -> None:
        vm = self.pick_vm(i)
        if vm is not None:
            self.cmd(c.StartVm(vm_id=vm.id, host_id=self.pick_host(h) if explicit else None))

    @rule(i=PICK, action=st.sampled_from(["shutdown", "stop", "reboot", "pause", "suspend"]))
    def user_action(self, i: int, action: str) -> None:
        vm = self.pick_vm(i)
        if vm is None:
            return
        cls = {
            "shutdown": c.ShutdownVm,
            "stop": c.StopVm,
            "reboot": c.RebootVm,
            "pause": c.PauseVm,
            "suspend": c.SuspendVm,
        }[action]
        self.cmd(cls(vm_id=vm.id))

    @rule(i=PICK, status=STATUSES, h=PICK, own=st.booleans())
    def host_reports(self, i: int, status: VmStatus, h: int, own: bool) -> None:
        vm = self.pick_vm(i)
        if vm is None:
            return
        host_id = vm.run_on_host_id if own and vm.run_on_host_id else self.pick_host(h)
        self.cmd(c.ReportVmStatus(vm_id=vm.id, host_id=host_id, status=status))

    @rule(i=PICK, ms=st.integers(0, 500))
    def host_drives(self, i: int, ms: int) -> None:
        """The host does what was asked: the natural next report for the VM's status."""
        vm = self.pick_vm(i)
        if vm is None or vm.run_on_host_id is None:
            return
        nxt = {
            VmStatus.WAIT_FOR_LAUNCH: VmStatus.POWERING_UP,
            VmStatus.POWERING_UP: VmStatus.UP,
            VmStatus.RESTORING_STATE: VmStatus.UP,
            VmStatus.REBOOT_IN_PROGRESS: VmStatus.UP,
            VmStatus.POWERING_DOWN: VmStatus.DOWN,
            VmStatus.SAVING_STATE: VmStatus.SUSPENDED,
            VmStatus.PAUSED: VmStatus.UP,
            VmStatus.NOT_RESPONDING: VmStatus.UP,
            VmStatus.UNKNOWN: VmStatus.UP,
        }.get(vm.status)
        if vm.status == VmStatus.MIGRATING and vm.migrating_to_host_id is not None:
            self.cmd(
                c.ReportVmStatus(
                    vm_id=vm.id, host_id=vm.migrating_to_host_id, status="up", downtime_ms=ms
                )
            )
        elif nxt is not None:
            self.cmd(c.ReportVmStatus(vm_id=vm.id, host_id=vm.run_on_host_id, status=nxt))

    @rule(i=PICK, h=PICK, explicit=st.booleans())
    def migrate(self, i: int, h: int, explicit: bool) -> None:
        vm = self.pick_vm(i)
        if vm is not None:
            self.cmd(c.MigrateVm(vm_id=vm.id, host_id=self.pick_host(h) if explicit else None))

    @rule(i=PICK, outcome=st.sampled_from(["done", "failed", "cancel"]), ms=st.integers(0, 500))
    def migration_outcome(self, i: int, outcome: str, ms: int) -> None:
        vm = self.pick_vm(i)
        if vm is None:
            return
        if outcome == "done":
            self.cmd(
                c.ReportVmMigrationDone(
                    vm_id=vm.id, host_id=vm.migrating_to_host_id or self.host_ids[0], downtime_ms=ms
                )
            )
        elif outcome == "failed":
            self.cmd(c.ReportVmMigrationFailed(vm_id=vm.id))
        else:
            self.cmd(c.CancelVmMigration(vm_id=vm.id))

    # -- snapshots --------------------------------------------------------------------------------
    @rule(
        i=PICK, j=PICK, op=st.sampled_from(["add", "report", "preview", "commit", "undo", "remove"])
    )
    def snapshot(self, i: int, j: int, op: str) -> None:
        vm = self.pick_vm(i)
        if vm is None:
            return
        snaps = vm.snapshots
        snap = snaps[j % len(snaps)].id
        command: Any = {
            "add": lambda: c.AddSnapshot(vm_id=vm.id, persist_memory=j % 2 == 0),
            "report": lambda: c.ReportSnapshot(vm_id=vm.id, snapshot_id=snap, ok=j % 3 != 0),
            "preview": lambda: c.PreviewSnapshot(vm_id=vm.id, snapshot_id=snap),
            "commit": lambda: c.CommitSnapshot(vm_id=vm.id),
            "undo": lambda: c.UndoSnapshot(vm_id=vm.id),
            "remove": lambda: c.RemoveSnapshot(vm_id=vm.id, snapshot_id=snap),
        }[op]()
        self.cmd(command)

    @rule(i=PICK, settle=st.booleans())
    def take_snapshot(self, i: int, settle: bool) -> None:
        vm = self.pick_vm(i)
        if vm is None:
            return
        self.cmd(c.AddSnapshot(vm_id=vm.id))
        locked = [s.id for s in self.w.vm(vm.id).snapshots if s.status == SnapshotStatus.LOCKED]
        if settle and locked:
            self.cmd(c.ReportSnapshot(vm_id=vm.id, snapshot_id=locked[0]))

    # -- hosts ----------------------------------------------------------------------
    @rule(h=PICK, now=st.integers(0, 2))
    def host_lost(self, h: int, now: int) -> None:
        if now:
            return
        host_id = self.pick_host(h)
        self.decide(host_rules.connection_lost, host_id)
        self.decide(host_rules.mark_non_responsive, host_id)

    @rule(h=PICK)
    def host_back(self, h: int) -> None:
        host_id = self.pick_host(h)
        self.decide(host_rules.connection_restored, host_id)
        self.capabilities(host_id)

    @rule(h=PICK)
    def host_confirmed_rebooted(self, h: int) -> None:
        self.decide(host_rules.confirm_rebooted, self.pick_host(h))

    @rule(h=PICK, now=st.integers(0, 4))
    def host_maintenance(self, h: int, now: int) -> None:
        if now:  # rarer than the other rules: a cluster without hosts runs nothing
            return
        host_id = self.pick_host(h)
        self.decide(host_rules.deactivate_host, host_id)
        self.decide(host_rules.finish_maintenance, host_id)

    @rule(h=PICK)
    def host_activate(self, h: int) -> None:
        host_id = self.pick_host(h)
        self.decide(host_rules.activate_host, host_id)
        self.capabilities(host_id)

    @rule(h=PICK, now=st.integers(0, 4))
    def host_remove(self, h: int, now: int) -> None:
        if now:
            return
        host_id = self.pick_host(h)
        before = self.w.engine.find(Host, host_id)
        self.decide(host_rules.remove_host, host_id)
        if before is not None and self.w.engine.find(Host, host_id) is None:
            self.host_ids.remove(host_id)
            if not self.host_ids:  # keep one around so the rules have something to pick
                self.host_ids.append(host_id)

    def capabilities(self, host_id: UUID) -> None:
        self.decide(
            host_rules.report_capabilities,
            host_id,
            cpu_model="Intel",
            cpu_cores=16,
            memory_total=64 * GiB,
            networks=("ovirtmgmt",),
        )

    # -- invariants -----------------------------------------------------------------
    @invariant()
    def vms_are_where_their_status_says(self) -> None:
        for vm in self.w.engine.all(Vm):
            if vm.status in VM_ON_HOST:
                assert vm.run_on_host_id is not None, vm
                assert self.w.engine.find(Host, vm.run_on_host_id) is not None, vm
            else:
                assert vm.run_on_host_id is None, vm
            if vm.status == VmStatus.MIGRATING:
                assert vm.migrating_to_host_id is not None
                assert vm.migrating_to_host_id != vm.run_on_host_id
                assert self.w.engine.find(Host, vm.migrating_to_host_id) is not None
            else:
                assert vm.migrating_to_host_id is None, vm

    @invariant()
    def snapshots_are_consistent(self) -> None:
        for vm in self.w.engine.all(Vm):
            types = [s.snapshot_type for s in vm.snapshots]
            assert types.count(SnapshotType.ACTIVE) == 1
            previews = [s for s in vm.snapshots if s.status == SnapshotStatus.IN_PREVIEW]
            assert len(previews) <= 1
            assert types.count(SnapshotType.PREVIEW) == len(previews)
            assert len({s.id for s in vm.snapshots}) == len(vm.snapshots)

    @invariant()
    def disks_are_attached_sensibly(self) -> None:
        holders: dict[UUID, int] = {}
        for vm in self.w.engine.all(Vm):
            ids = [a.disk_id for a in vm.disk_attachments]
            assert len(ids) == len(set(ids)), vm
            assert sum(a.bootable for a in vm.disk_attachments) <= 1
            for d in ids:
                assert self.w.engine.find(Disk, d) is not None
                holders[d] = holders.get(d, 0) + 1
        for d, n in holders.items():
            disk = self.w.engine.get(Disk, d)
            assert n == 1 or disk.shareable

    @invariant()
    def image_locked_only_while_disks_are_locked(self) -> None:
        for vm in self.w.engine.all(Vm):
            if vm.status == VmStatus.IMAGE_LOCKED:
                assert any(
                    self.w.engine.get(Disk, a.disk_id).operation for a in vm.disk_attachments
                )

    @invariant()
    def macs_are_unique(self) -> None:
        macs = [n.mac for vm in self.w.engine.all(Vm) for n in vm.nics]
        assert len(macs) == len(set(macs))

    @invariant()
    def replay_gives_the_same_state(self) -> None:
        assert self.w.replayed().digest() == self.w.engine.digest()


VmLifecycle.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestVmLifecycle = VmLifecycle.TestCase
