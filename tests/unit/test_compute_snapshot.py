"""Snapshots inside the Vm aggregate: create, preview, commit, undo, remove."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands import vm as c
from domain.statuses import SnapshotStatus, VmStatus
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit


@pytest.fixture
def w() -> ComputeWorld:
    return ComputeWorld()


def _vm_with_disk(w: ComputeWorld) -> UUID:
    vm_id = w.add_vm(memory=GiB)
    w.add_vm_disk(vm_id)
    return vm_id


def _snapshot(w: ComputeWorld, vm_id: UUID, description: str = "s") -> UUID:
    snap = w.run(c.AddSnapshot(vm_id=vm_id, description=description))
    w.run(c.ReportSnapshot(vm_id=vm_id, snapshot_id=snap))
    return snap


def test_create_is_locked_until_the_host_reports(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    snap = w.run(c.AddSnapshot(vm_id=vm_id, description="before upgrade"))
    s = w.vm(vm_id).snapshot(snap)
    assert s is not None
    assert (s.status, s.snapshot_type, s.description) == ("locked", "regular", "before upgrade")
    w.rejects(c.AddSnapshot(vm_id=vm_id), "performing an operation on a Snapshot")
    w.rejects(c.StartVm(vm_id=vm_id), "Cannot run VM. The VM is performing an operation")
    w.run(c.ReportSnapshot(vm_id=vm_id, snapshot_id=snap))
    assert w.vm(vm_id).snapshot(snap).status == SnapshotStatus.OK  # type: ignore[union-attr]
    w.assert_replays()


def test_failed_create_drops_the_snapshot(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    snap = w.run(c.AddSnapshot(vm_id=vm_id))
    w.run(c.ReportSnapshot(vm_id=vm_id, snapshot_id=snap, ok=False))
    assert w.vm(vm_id).snapshot(snap) is None


def test_diskless_snapshot_is_ok_at_once(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    snap = w.run(c.AddSnapshot(vm_id=vm_id))
    assert w.vm(vm_id).snapshot(snap).status == SnapshotStatus.OK  # type: ignore[union-attr]


def test_memory_is_kept_only_for_a_running_vm(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    down = w.run(c.AddSnapshot(vm_id=vm_id, persist_memory=True))
    w.run(c.ReportSnapshot(vm_id=vm_id, snapshot_id=down))
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.AddSnapshot(vm_id=vm_id), "because the VM is in WaitForLaunch status")
    w.report(vm_id, VmStatus.UP)
    up = w.run(c.AddSnapshot(vm_id=vm_id, persist_memory=True))
    assert w.vm(vm_id).snapshot(down).persist_memory is False  # type: ignore[union-attr]
    assert w.vm(vm_id).snapshot(up).persist_memory is True  # type: ignore[union-attr]


def test_preview_needs_a_down_vm_and_blocks_other_snapshot_work(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    snap = _snapshot(w, vm_id)
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(
        c.PreviewSnapshot(vm_id=vm_id, snapshot_id=snap), "At least one of the VMs is not down"
    )
    w.power_off(vm_id)
    w.run(c.PreviewSnapshot(vm_id=vm_id, snapshot_id=snap))
    vm = w.vm(vm_id)
    assert vm.snapshot(snap).status == SnapshotStatus.IN_PREVIEW  # type: ignore[union-attr]
    assert [s.snapshot_type for s in vm.snapshots] == ["active", "regular", "preview"]
    w.rejects(c.AddSnapshot(vm_id=vm_id), "Cannot create Snapshot. VM is previewing a Snapshot.")
    w.rejects(
        c.PreviewSnapshot(vm_id=vm_id, snapshot_id=snap),
        "Cannot preview Snapshot. VM is previewing a Snapshot.",
    )
    w.rejects(
        c.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap),
        "Cannot remove Snapshot. VM is previewing a Snapshot.",
    )
    w.rejects(c.RemoveVm(vm_id=vm_id), "Cannot remove VM. VM is previewing a Snapshot.")
    # A VM in preview may run (that is what previews are for).
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.CommitSnapshot(vm_id=vm_id), "At least one of the VMs is not down")
    w.assert_replays()


def test_commit_keeps_the_preview_and_drops_later_snapshots(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    first = _snapshot(w, vm_id, "first")
    w.run(c.UpdateVm(vm_id=vm_id, memory=2 * GiB))
    second = _snapshot(w, vm_id, "second")
    w.run(c.PreviewSnapshot(vm_id=vm_id, snapshot_id=first))
    assert w.vm(vm_id).memory == GiB  # the previewed configuration
    w.run(c.CommitSnapshot(vm_id=vm_id))
    vm = w.vm(vm_id)
    assert [s.id for s in vm.snapshots if s.snapshot_type == "regular"] == [first]
    assert vm.snapshot(second) is None
    assert not vm.in_preview()
    assert [s.snapshot_type for s in vm.snapshots] == ["active", "regular"]
    assert vm.memory == GiB
    w.assert_replays()


def test_undo_restores_the_state_before_the_preview(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    first = _snapshot(w, vm_id)
    w.run(c.UpdateVm(vm_id=vm_id, memory=2 * GiB, cpu_sockets=2))
    w.run(c.PreviewSnapshot(vm_id=vm_id, snapshot_id=first))
    assert (w.vm(vm_id).memory, w.vm(vm_id).cpu_sockets) == (GiB, 1)
    w.run(c.UndoSnapshot(vm_id=vm_id))
    vm = w.vm(vm_id)
    assert (vm.memory, vm.cpu_sockets) == (2 * GiB, 2)
    assert vm.snapshot(first).status == SnapshotStatus.OK  # type: ignore[union-attr]
    assert [s.snapshot_type for s in vm.snapshots] == ["active", "regular"]
    w.rejects(c.UndoSnapshot(vm_id=vm_id), "VM is not previewing a Snapshot")
    w.rejects(c.CommitSnapshot(vm_id=vm_id), "VM is not previewing a Snapshot")


def test_remove_snapshot_merges_then_drops_it(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    snap = _snapshot(w, vm_id)
    active = w.vm(vm_id).snapshots[0].id
    w.rejects(c.RemoveSnapshot(vm_id=vm_id, snapshot_id=active), "Active VM snapshot")
    w.run(c.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap))
    assert w.vm(vm_id).snapshot(snap).status == SnapshotStatus.LOCKED  # type: ignore[union-attr]
    w.rejects(c.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap), "performing an operation")
    w.run(c.ReportSnapshot(vm_id=vm_id, snapshot_id=snap))
    assert w.vm(vm_id).snapshot(snap) is None
    w.rejects(c.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap), "not found", field="snapshot")


def test_failed_merge_keeps_the_snapshot(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    snap = _snapshot(w, vm_id)
    w.run(c.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap))
    w.run(c.ReportSnapshot(vm_id=vm_id, snapshot_id=snap, ok=False))
    assert w.vm(vm_id).snapshot(snap).status == SnapshotStatus.OK  # type: ignore[union-attr]


def test_report_without_an_operation_is_refused(w: ComputeWorld) -> None:
    vm_id = _vm_with_disk(w)
    snap = _snapshot(w, vm_id)
    w.rejects(c.ReportSnapshot(vm_id=vm_id, snapshot_id=snap), "no operation in progress")
