"""VM pools: creation with VMs, resize, allocation per user, release, detach, removal."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands import vm as vm_cmd
from commands import vmpool as c
from commands.messages import parse_command
from commands.user import AddUser
from domain.base import InvalidInput
from domain.statuses import VmStatus
from domain.values import BLANK_TEMPLATE_ID
from domain.vm import Vm
from domain.vmpool import VmPool
from tests.unit.test_compute_setup import ComputeWorld

pytestmark = pytest.mark.unit

ALICE, BOB = UUID(int=0xA11CE), UUID(int=0xB0B)


@pytest.fixture
def w() -> ComputeWorld:
    world = ComputeWorld()
    world.run(AddUser(user_name="alice", id=ALICE))
    world.run(AddUser(user_name="bob", id=BOB))
    return world


def pool(w: ComputeWorld, pool_id: UUID) -> VmPool:
    return w.engine.get(VmPool, pool_id)


def names(w: ComputeWorld, pool_id: UUID) -> list[str]:
    return [w.vm(v).name for v in pool(w, pool_id).vm_ids]


def _pool(w: ComputeWorld, size: int = 3, **kw: object) -> UUID:
    return w.run(
        c.AddVmPool(
            name="desk", cluster_id=w.cluster, template_id=BLANK_TEMPLATE_ID, size=size, **kw
        )
    )


def test_creating_a_pool_creates_its_vms(w: ComputeWorld) -> None:
    p = _pool(w, 3, max_user_vms=2)
    assert names(w, p) == ["desk-1", "desk-2", "desk-3"]
    assert pool(w, p).size == 3
    for vm_id in pool(w, p).vm_ids:
        vm = w.vm(vm_id)
        assert (vm.pool_id, vm.stateless, vm.status) == (p, True, VmStatus.DOWN)
    w.rejects(
        c.AddVmPool(name="desk", cluster_id=w.cluster, template_id=BLANK_TEMPLATE_ID, size=1),
        "The VM-Pool name is already in use",
    )
    w.assert_replays()


def test_pool_vm_names_must_be_free(w: ComputeWorld) -> None:
    w.add_vm("desk-2")
    w.rejects(
        c.AddVmPool(name="desk", cluster_id=w.cluster, template_id=BLANK_TEMPLATE_ID, size=3),
        "The VM name desk-2 is already in use",
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [({"size": 0}, "size"), ({"max_user_vms": 0}, "max_user_vms"), ({"name": ""}, "name")],
)
def test_bad_pool_input_names_the_field(data: dict, field: str) -> None:
    base = {"name": "p", "cluster_id": str(UUID(int=1)), "template_id": str(UUID(int=0)), "size": 1}
    with pytest.raises(InvalidInput) as info:
        parse_command(c.AddVmPool, base | data)
    assert info.value.field == field


def test_prestarted_cannot_exceed_size(w: ComputeWorld) -> None:
    w.rejects(
        c.AddVmPool(
            name="p", cluster_id=w.cluster, template_id=BLANK_TEMPLATE_ID, size=2, prestarted_vms=3
        ),
        "Prestarted VMs cannot exceed",
        field="prestarted_vms",
    )


def test_resize_up_adds_vms_and_never_shrinks(w: ComputeWorld) -> None:
    p = _pool(w, 2)
    made = w.run(c.UpdateVmPool(vm_pool_id=p, size=4, prestarted_vms=1))
    assert len(made) == 2
    assert names(w, p) == ["desk-1", "desk-2", "desk-3", "desk-4"]
    assert (pool(w, p).size, pool(w, p).prestarted_vms) == (4, 1)
    w.rejects(c.UpdateVmPool(vm_pool_id=p, size=3), "Decreasing the number of VMs", field="size")
    w.assert_replays()


def test_allocation_per_user_up_to_max_user_vms(w: ComputeWorld) -> None:
    p = _pool(w, 3, max_user_vms=2)
    a1 = w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    assert w.vm(a1).status == VmStatus.WAIT_FOR_LAUNCH  # allocated and started
    a2 = w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    assert a1 != a2
    w.rejects(c.AllocateVm(vm_pool_id=p, user_id=ALICE), "reached the maximum number of VMs")
    b1 = w.run(c.AllocateVm(vm_pool_id=p, user_id=BOB, start=False))
    assert w.vm(b1).status == VmStatus.DOWN
    assert pool(w, p).assigned() == {a1: ALICE, a2: ALICE, b1: BOB}
    w.rejects(c.AllocateVm(vm_pool_id=p, user_id=BOB), "no available VMs")
    w.assert_replays()


def test_prestarted_vm_is_handed_out_first(w: ComputeWorld) -> None:
    p = _pool(w, 3)
    last = pool(w, p).vm_ids[-1]
    w.run(vm_cmd.StartVm(vm_id=last))
    w.report(last, VmStatus.UP)
    assert w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE)) == last


def test_automatic_pool_takes_the_vm_back_when_down(w: ComputeWorld) -> None:
    p = _pool(w, 1)
    vm_id = w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    w.report(vm_id, VmStatus.UP)
    n = len(w.log)
    w.report(vm_id, VmStatus.DOWN)
    assert w.topics(n) == ["VmStatusReported", "VmPoolVmReleased"]
    assert pool(w, p).assignments == ()
    w.assert_replays()


def test_manual_pool_keeps_the_assignment_until_returned(w: ComputeWorld) -> None:
    p = _pool(w, 1, pool_type="manual")
    vm_id = w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    w.rejects(c.ReturnVmToPool(vm_pool_id=p, vm_id=vm_id), "VM is running")
    w.power_off(vm_id)
    assert pool(w, p).assigned() == {vm_id: ALICE}
    w.run(c.ReturnVmToPool(vm_pool_id=p, vm_id=vm_id))
    assert pool(w, p).assignments == ()
    w.rejects(c.ReturnVmToPool(vm_pool_id=p, vm_id=vm_id), "not allocated")


def test_pool_vms_are_removed_only_with_the_pool(w: ComputeWorld) -> None:
    p = _pool(w, 2)
    vm_id = pool(w, p).vm_ids[0]
    w.rejects(vm_cmd.RemoveVm(vm_id=vm_id), "VM is attached to a VM-Pool")


def test_detach_only_down_vms(w: ComputeWorld) -> None:
    p = _pool(w, 2)
    first, second = pool(w, p).vm_ids
    w.run(vm_cmd.StartVm(vm_id=first))
    w.rejects(
        c.DetachVmFromPool(vm_pool_id=p, vm_id=first),
        "Cannot detach VM from VM-Pool. VM is running.",
    )
    w.run(c.DetachVmFromPool(vm_pool_id=p, vm_id=second))
    assert (pool(w, p).size, pool(w, p).vm_ids) == (1, (first,))
    assert w.vm(second).pool_id is None
    w.run(vm_cmd.RemoveVm(vm_id=second))  # an ordinary VM now
    w.assert_replays()


def test_remove_pool_needs_all_vms_down_and_removes_them(w: ComputeWorld) -> None:
    p = _pool(w, 2)
    vms = pool(w, p).vm_ids
    w.run(vm_cmd.StartVm(vm_id=vms[0]))
    w.rejects(c.RemoveVmPool(vm_pool_id=p), "Cannot remove VM-Pool. VM is running.")
    w.power_off(vms[0])
    w.run(c.RemoveVmPool(vm_pool_id=p))
    assert w.engine.objects.get(p) is None
    assert not any(w.engine.find(Vm, v) for v in vms)
    w.assert_replays()


def test_template_used_by_a_pool_cannot_be_removed(w: ComputeWorld) -> None:
    from commands.template import AddTemplate, RemoveTemplate

    src = w.add_vm("src")
    t = w.run(AddTemplate(vm_id=src, name="t"))
    w.run(
        c.AddVmPool(name="p", cluster_id=w.cluster, template_id=t, size=1),
    )
    w.rejects(RemoveTemplate(template_id=t), "Template is being used by the following VMs: p-1.")


def test_vms_to_prestart(w: ComputeWorld) -> None:
    from domain.rules.vmpool_rules import vms_to_prestart

    p = _pool(w, 4, prestarted_vms=2)
    vms = pool(w, p).vm_ids
    assert vms_to_prestart(w.engine, p) == list(vms[:2])
    w.run(vm_cmd.StartVm(vm_id=vms[0]))
    assert vms_to_prestart(w.engine, p) == [vms[1]]
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))  # takes the running one
    assert vms_to_prestart(w.engine, p) == list(vms[1:3])


# -- reverting a VM an automatic pool takes back ---------------------------------------------


def _settle(w: ComputeWorld) -> None:
    """The host side reports every locked disk's image operation done."""
    from commands.disk import ReportDiskOperation
    from domain.disk import Disk
    from domain.statuses import DiskStatus

    for d in sorted(w.engine.all(Disk), key=lambda d: d.id):
        if d.status == DiskStatus.LOCKED:
            w.run(ReportDiskOperation(disk_id=d.id))


def _disk_pool(w: ComputeWorld, **kw: object) -> tuple[UUID, UUID, UUID]:
    """A template with one disk and a one-VM pool from it, its disk created:
    (pool, VM, the template's disk)."""
    from commands.template import AddTemplate
    from domain.template import Template

    src = w.add_vm("src")
    w.add_vm_disk(src, name="system", bootable=True)
    t = w.run(AddTemplate(vm_id=src, name="gold"))
    _settle(w)
    p = w.run(c.AddVmPool(name="desk", cluster_id=w.cluster, template_id=t, size=1, **kw))
    _settle(w)
    (vm_id,) = pool(w, p).vm_ids
    assert w.vm(vm_id).status == VmStatus.DOWN
    return p, vm_id, w.engine.get(Template, t).disk_ids[0]


def _disk_of(w: ComputeWorld, vm_id: UUID) -> UUID:
    (att,) = w.vm(vm_id).disk_attachments
    return att.disk_id


def test_automatic_pool_reverts_the_vm_and_hands_it_out_only_once_reverted(
    w: ComputeWorld,
) -> None:
    from commands.disk import ReportDiskOperation
    from domain.disk import Disk
    from domain.rules.vmpool_rules import vms_to_prestart

    p, vm_id, tdisk = _disk_pool(w)
    used = _disk_of(w, vm_id)
    assert w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE)) == vm_id
    w.report(vm_id, VmStatus.UP)
    snap = w.run(vm_cmd.AddSnapshot(vm_id=vm_id, description="alice's"))
    w.run(vm_cmd.ReportSnapshot(vm_id=vm_id, snapshot_id=snap))
    n = len(w.log)
    w.report(vm_id, VmStatus.DOWN)  # alice shut it down
    topics = w.topics(n)
    assert topics[0] == "VmStatusReported" and "VmPoolVmReleased" in topics
    assert topics[-3:] == ["DiskDiscardStarted", "DiskAdded", "VmPoolRevertStarted"]
    # Her disk is discarded with its volumes (the base and her snapshot's layer); a fresh
    # thin layer over the template's disk takes its place, and the VM is image locked
    # until the host made it.
    vm = w.vm(vm_id)
    fresh = _disk_of(w, vm_id)
    assert fresh != used
    assert (w.disk(used).status, w.disk(used).operation) == ("locked", "remove")
    assert w.disk(used).volume_ids == (used, snap)
    assert (w.disk(fresh).base_disk_id, w.disk(fresh).status) == (tdisk, "locked")
    assert vm.status == VmStatus.IMAGE_LOCKED
    assert [s.snapshot_type for s in vm.snapshots] == ["active"]
    assert pool(w, p).assignments == ()
    # Nobody gets it meanwhile, and the prestart policy leaves it alone.
    w.rejects(c.AllocateVm(vm_pool_id=p, user_id=BOB), "There are no available VMs")
    assert vms_to_prestart(w.engine, p) == []
    n = len(w.log)
    w.run(ReportDiskOperation(disk_id=fresh))
    assert w.topics(n) == ["DiskOperationCompleted", "VmImagesReady"]
    assert w.vm(vm_id).status == VmStatus.DOWN
    assert w.run(c.AllocateVm(vm_pool_id=p, user_id=BOB)) == vm_id
    assert _disk_of(w, vm_id) == fresh
    # The host reports her volumes deleted: the disk goes.
    w.run(ReportDiskOperation(disk_id=used))
    assert w.engine.find(Disk, used) is None
    w.assert_replays()


def test_a_discard_that_failed_leaves_an_illegal_disk_to_remove(w: ComputeWorld) -> None:
    from commands.disk import RemoveDisk, ReportDiskOperation
    from domain.disk import Disk

    p, vm_id, _ = _disk_pool(w)
    used = _disk_of(w, vm_id)
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    w.power_off(vm_id)
    w.rejects(RemoveDisk(disk_id=used), "The following disks are locked")
    w.run(ReportDiskOperation(disk_id=used, ok=False, reason="host said no"))
    assert w.disk(used).status == "illegal"
    assert all(a.disk_id != used for a in w.vm(vm_id).disk_attachments)
    w.run(RemoveDisk(disk_id=used))
    assert w.engine.find(Disk, used) is None
    w.assert_replays()


def test_a_revert_whose_disk_failed_is_never_handed_out(w: ComputeWorld) -> None:
    from commands.disk import ReportDiskOperation

    p, vm_id, _ = _disk_pool(w)
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    w.power_off(vm_id)
    w.run(ReportDiskOperation(disk_id=_disk_of(w, vm_id), ok=False, reason="no space"))
    assert w.vm(vm_id).status == VmStatus.DOWN
    assert w.disk(_disk_of(w, vm_id)).status == "illegal"
    w.rejects(c.AllocateVm(vm_pool_id=p, user_id=BOB), "There are no available VMs")


def test_returning_a_vm_to_an_automatic_pool_reverts_it(w: ComputeWorld) -> None:
    from commands.disk import ExtendDisk

    p, vm_id, _ = _disk_pool(w)
    used = _disk_of(w, vm_id)
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE, start=False))
    w.run(ExtendDisk(disk_id=used, provisioned_size=20 << 30))
    w.rejects(c.ReturnVmToPool(vm_pool_id=p, vm_id=vm_id), "The following disks are locked")
    _settle(w)
    w.run(c.ReturnVmToPool(vm_pool_id=p, vm_id=vm_id))
    assert w.vm(vm_id).status == VmStatus.IMAGE_LOCKED
    assert _disk_of(w, vm_id) != used
    w.assert_replays()


@pytest.mark.parametrize("kw", [{"pool_type": "manual"}, {"stateless": False}])
def test_manual_and_stateful_pools_keep_the_users_disk(w: ComputeWorld, kw: dict) -> None:
    p, vm_id, _ = _disk_pool(w, **kw)
    used = _disk_of(w, vm_id)
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    n = len(w.log)
    w.power_off(vm_id)
    if kw.get("pool_type") == "manual":
        w.run(c.ReturnVmToPool(vm_pool_id=p, vm_id=vm_id))
    assert "VmPoolRevertStarted" not in w.topics(n)
    assert "DiskRemoved" not in w.topics(n) and "DiskAdded" not in w.topics(n)
    assert (w.vm(vm_id).status, _disk_of(w, vm_id)) == (VmStatus.DOWN, used)
    assert w.run(c.AllocateVm(vm_pool_id=p, user_id=BOB)) == vm_id
    assert _disk_of(w, vm_id) == used


def test_a_removed_users_running_pool_vm_is_shut_down_then_reverted(w: ComputeWorld) -> None:
    from commands.user import RemoveUser

    p, vm_id, _ = _disk_pool(w)
    used = _disk_of(w, vm_id)
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    w.report(vm_id, VmStatus.UP)
    n = len(w.log)
    w.run(RemoveUser(user_id=ALICE))
    assert "VmShutdownRequested" in w.topics(n)
    w.rejects(c.AllocateVm(vm_pool_id=p, user_id=BOB), "no available VMs")
    w.report(vm_id, VmStatus.DOWN)
    assert w.vm(vm_id).status == VmStatus.IMAGE_LOCKED and _disk_of(w, vm_id) != used
    w.assert_replays()


def test_a_launch_that_failed_before_anyone_had_the_vm_is_not_reverted(
    w: ComputeWorld,
) -> None:
    p, vm_id, _ = _disk_pool(w)
    used = _disk_of(w, vm_id)
    w.run(vm_cmd.StartVm(vm_id=vm_id))  # a prestart
    for _ in range(3):  # every host refuses it: no rerun left
        if w.vm(vm_id).status != VmStatus.WAIT_FOR_LAUNCH:
            break
        w.report(vm_id, VmStatus.DOWN, exit_status="error")
    assert (w.vm(vm_id).status, _disk_of(w, vm_id)) == (VmStatus.DOWN, used)
    assert pool(w, p).assignments == ()


def test_the_feed_says_the_vm_is_being_restored(w: ComputeWorld) -> None:
    from domain.engine import Engine
    from projections.feed import ORRERY_POOL_VM_REVERTED, describe
    from projections.runner import Change

    p, vm_id, _ = _disk_pool(w)
    w.run(c.AllocateVm(vm_pool_id=p, user_id=ALICE))
    n = len(w.log)
    w.power_off(vm_id)
    replay = Engine()
    replay.apply_all(w.log[:-1])
    before = replay.find(Vm, vm_id)
    (ev,) = [e for e in w.log[n:] if e.TOPIC == "VmPoolRevertStarted"]
    replay.apply(ev)
    entry = describe(Change(len(w.log), ev, before, replay.find(Vm, vm_id)), replay)
    assert entry is not None
    assert entry["code"] == ORRERY_POOL_VM_REVERTED
    assert entry["description"] == (
        "VM desk-1 was returned to VM-Pool desk; its disks are being restored to the state of "
        "Template gold."
    )
