"""Compute events survive the log's codec, and the decoded log replays to the same state."""

from __future__ import annotations

import pytest

from commands import disk as disk_cmd
from commands import template as tpl_cmd
from commands import vm as c
from commands import vmpool as pool_cmd
from commands.store import decode_event, encode_event
from commands.user import AddUser
from domain import disk, template, values, vm, vmpool
from domain.base import EVENT_TYPES
from domain.engine import Engine
from domain.rules import disk_rules
from domain.statuses import VmStatus
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit

COMPUTE_MODULES = {vm.__name__, disk.__name__, template.__name__, vmpool.__name__}


def busy_world() -> ComputeWorld:
    """Touches every compute event type at least once."""
    w = ComputeWorld()
    src = w.add_vm("src", custom_properties={"k": "v"})
    d = w.add_vm_disk(src, bootable=True)
    nic = w.run(c.AddVmNic(vm_id=src, name="nic1", vnic_profile_id=w.profile))
    w.run(c.UpdateVmNic(vm_id=src, nic_id=nic, linked=False))
    w.run(c.UpdateDiskAttachment(vm_id=src, disk_id=d, interface="virtio"))
    w.run(disk_cmd.UpdateDisk(disk_id=d, description="root", provisioned_size=20 * GiB))
    w.run(disk_cmd.ReportDiskOperation(disk_id=d))
    w.run(disk_cmd.MoveDisk(disk_id=d, storage_domain_id=w.block))
    w.run(disk_cmd.ReportDiskOperation(disk_id=d))
    t = w.run(tpl_cmd.AddTemplate(vm_id=src, name="golden"))
    w.run(disk_cmd.ReportDiskOperation(disk_id=w.engine.get(template.Template, t).disk_ids[0]))
    w.run(tpl_cmd.UpdateTemplate(template_id=t, description="g"))
    thin = w.add_vm("thin", template_id=t)
    w.run(disk_cmd.ReportDiskOperation(disk_id=w.vm(thin).disk_attachments[0].disk_id))
    w.run(c.UpdateVm(vm_id=thin, memory=2 * GiB))
    w.run(c.StartVm(vm_id=thin))
    w.report(thin, VmStatus.UP)
    w.run(c.SetVmConsoleTicket(vm_id=thin))
    dest = w.run(c.MigrateVm(vm_id=thin))
    w.run(c.ReportVmMigrationDone(vm_id=thin, host_id=dest, downtime_ms=12))
    w.run(c.MigrateVm(vm_id=thin))
    w.run(c.CancelVmMigration(vm_id=thin))
    w.run(c.MigrateVm(vm_id=thin))
    w.run(c.ReportVmMigrationFailed(vm_id=thin, reason="x"))
    w.run(c.PauseVm(vm_id=thin))
    w.report(thin, VmStatus.PAUSED)
    w.run(c.ResumeVm(vm_id=thin))
    w.report(thin, VmStatus.UP)
    w.run(c.RebootVm(vm_id=thin))
    w.report(thin, VmStatus.UP)
    w.run(c.SuspendVm(vm_id=thin))
    w.report(thin, VmStatus.SUSPENDED)
    w.run(c.StopVm(vm_id=thin))
    w.run(c.StartVm(vm_id=thin))
    w.run(c.StopVm(vm_id=thin))
    w.report(thin, VmStatus.UP)
    w.run(c.ShutdownVm(vm_id=thin))
    w.report(thin, VmStatus.DOWN)
    s1 = w.run(c.AddSnapshot(vm_id=src, description="one"))
    w.run(c.ReportSnapshot(vm_id=src, snapshot_id=s1))
    w.run(c.PreviewSnapshot(vm_id=src, snapshot_id=s1))
    w.run(c.UndoSnapshot(vm_id=src))
    w.run(c.PreviewSnapshot(vm_id=src, snapshot_id=s1))
    w.run(c.CommitSnapshot(vm_id=src))
    w.run(c.RemoveSnapshot(vm_id=src, snapshot_id=s1))
    w.run(c.ReportSnapshot(vm_id=src, snapshot_id=s1))
    w.run(c.UpdateDiskAttachment(vm_id=src, disk_id=d, active=False))
    w.run(c.DetachDisk(vm_id=src, disk_id=d))
    w.run(c.RemoveVmNic(vm_id=src, nic_id=nic))
    bad = w.run(disk_cmd.AddDisk(name="bad", provisioned_size=GiB, storage_domain_id=w.sd))
    w.run(disk_cmd.ReportDiskOperation(disk_id=bad, ok=False))
    w.run(disk_cmd.RemoveDisk(disk_id=bad))
    p = w.run(
        pool_cmd.AddVmPool(
            name="p", cluster_id=w.cluster, template_id=values.BLANK_TEMPLATE_ID, size=2
        )
    )
    w.run(pool_cmd.UpdateVmPool(vm_pool_id=p, description="pool", size=3))
    user = w.run(AddUser(user_name="pooluser"))
    alloc = w.run(pool_cmd.AllocateVm(vm_pool_id=p, user_id=user))
    w.power_off(alloc)
    pool = w.engine.get(vmpool.VmPool, p)
    w.run(pool_cmd.DetachVmFromPool(vm_pool_id=p, vm_id=pool.vm_ids[-1]))
    w.run(pool_cmd.RemoveVmPool(vm_pool_id=p))
    tp = w.run(pool_cmd.AddVmPool(name="tp", cluster_id=w.cluster, template_id=t, size=1))
    (tvm,) = w.engine.get(vmpool.VmPool, tp).vm_ids
    w.run(disk_cmd.ReportDiskOperation(disk_id=w.vm(tvm).disk_attachments[0].disk_id))
    w.run(pool_cmd.AllocateVm(vm_pool_id=tp, user_id=user))
    w.power_off(tvm)  # reverted: a fresh thin disk
    w.run(disk_cmd.ReportDiskOperation(disk_id=w.vm(tvm).disk_attachments[0].disk_id))
    lost = w.running_vm("lost")
    h = w.vm(lost).run_on_host_id
    from domain.rules import host_rules

    w.do(host_rules.connection_lost, h)
    w.do(host_rules.mark_non_responsive, h)
    w.do(host_rules.confirm_rebooted, h)
    imaged = w.add_vm("imaged", template_id=t)
    w.do(disk_rules.report_disk_operation, w.vm(imaged).disk_attachments[0].disk_id)
    spare = w.run(tpl_cmd.AddTemplate(vm_id=w.add_vm("spare-src"), name="spare"))
    w.run(tpl_cmd.RemoveTemplate(template_id=spare))
    return w


def test_every_compute_event_round_trips_and_replays() -> None:
    w = busy_world()
    decoded = []
    for e in w.log:
        topic, state = encode_event(e)
        back = decode_event(topic, state)
        assert back == e, topic
        decoded.append(back)
    fresh = Engine()
    fresh.apply_all(decoded)
    assert fresh.digest() == w.engine.digest()
    seen = {e.TOPIC for e in w.log}
    ours = {t for t, cls in EVENT_TYPES.items() if cls.__module__ in COMPUTE_MODULES}
    assert ours - seen == set()
