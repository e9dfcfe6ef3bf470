"""VMs: add/update/remove, NICs, disk attachments, and the run flow with host reports."""

from __future__ import annotations

from uuid import UUID

import msgspec
import pytest

from commands import disk as disk_cmd
from commands import vm as c
from commands.messages import parse_command
from domain.base import InvalidInput
from domain.rules import host_rules, storage_rules
from domain.statuses import DiskStatus, VmStatus
from domain.values import BLANK_TEMPLATE_ID
from domain.vm import VmConsoleTicketSet, VmScheduled
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit

S = VmStatus


@pytest.fixture
def w() -> ComputeWorld:
    return ComputeWorld()


# -- add / update / remove ------------------------------------------------------------------


def test_add_from_blank_without_disks_is_down_at_once(w: ComputeWorld) -> None:
    vm_id = w.add_vm("web", memory=2 * GiB, cpu_sockets=2, cpu_cores=2, description="d")
    vm = w.vm(vm_id)
    assert vm.status == S.DOWN
    assert vm.template_id == BLANK_TEMPLATE_ID
    assert (vm.memory, vm.vcpus, vm.run_on_host_id) == (2 * GiB, 4, None)
    assert [s.snapshot_type for s in vm.snapshots] == ["active"]
    w.assert_replays()


def test_vm_names_are_unique(w: ComputeWorld) -> None:
    w.add_vm("web")
    w.rejects(
        c.AddVm(name="web", cluster_id=w.cluster), "The VM name is already in use", field="name"
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"memory": 1000}, "memory"),
        ({"memory": (16 << 40) + 1}, "memory"),
        ({"cpu_sockets": 0}, "cpu_sockets"),
        ({"cpu_cores": 385}, "cpu_cores"),
        ({"cpu_threads": -1}, "cpu_threads"),
        ({"ha_priority": 101}, "ha_priority"),
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "has space"}, "name"),
        ({"vm_type": "toaster"}, "vm_type"),
        ({"graphics": "rdp"}, "graphics"),
        ({"custom_properties": {"k": "v" * 1001}}, "custom_properties"),
    ],
)
def test_bad_input_names_the_field(data: dict, field: str) -> None:
    base = {"name": "ok", "cluster_id": str(UUID(int=1))}
    with pytest.raises(InvalidInput) as info:
        parse_command(c.AddVm, base | data)
    assert info.value.field is not None and info.value.field.startswith(field)


def test_too_many_vcpus_in_total(w: ComputeWorld) -> None:
    w.rejects(
        c.AddVm(name="big", cluster_id=w.cluster, cpu_sockets=200, cpu_cores=2),
        "Max number of CPUs exceeded",
        field="cpu_sockets",
    )


def test_add_needs_an_existing_cluster_and_template(w: ComputeWorld) -> None:
    w.rejects(c.AddVm(name="a", cluster_id=UUID(int=999)), "not found", field="cluster")
    w.rejects(
        c.AddVm(name="a", cluster_id=w.cluster, template_id=UUID(int=999)),
        "not found",
        field="template",
    )


def test_placement_host_must_be_in_the_cluster(w: ComputeWorld) -> None:
    w.rejects(
        c.AddVm(name="a", cluster_id=w.cluster, placement_host_id=UUID(int=999)),
        "Host",
        field="placement_host",
    )
    vm_id = w.add_vm("a", placement_host_id=w.hosts[1])
    assert w.run(c.StartVm(vm_id=vm_id)) == w.hosts[1]


def test_update_cold_fields_only_when_down(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    w.rejects(
        c.UpdateVm(vm_id=vm_id, memory=4 * GiB), "Cannot update VM. VM is running.", field="memory"
    )
    w.rejects(c.UpdateVm(vm_id=vm_id, cpu_sockets=2), "VM is running", field="cpu_sockets")
    w.run(c.UpdateVm(vm_id=vm_id, description="hot", highly_available=True, ha_priority=50))
    vm = w.vm(vm_id)
    assert (vm.description, vm.highly_available, vm.ha_priority) == ("hot", True, 50)
    w.report(vm_id, S.DOWN)
    w.run(c.UpdateVm(vm_id=vm_id, memory=4 * GiB, cdrom_file="boot.iso"))
    assert (w.vm(vm_id).memory, w.vm(vm_id).cdrom_file) == (4 * GiB, "boot.iso")
    n = len(w.log)
    w.run(c.UpdateVm(vm_id=vm_id, memory=4 * GiB))  # nothing changes, nothing written
    assert len(w.log) == n
    w.assert_replays()


def test_update_rename_keeps_names_unique(w: ComputeWorld) -> None:
    a = w.add_vm("a")
    w.add_vm("b")
    w.rejects(c.UpdateVm(vm_id=a, name="b"), "name is already in use", field="name")
    w.run(c.UpdateVm(vm_id=a, name="c"))
    assert w.engine.by_name(("vm",), "c") == a


def test_remove_only_when_down_and_with_disks(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    d = w.add_vm_disk(vm_id)
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.RemoveVm(vm_id=vm_id), "Cannot remove VM. VM is running.")
    w.power_off(vm_id)
    w.run(c.RemoveVm(vm_id=vm_id))
    assert not w.engine.objects.get(vm_id)
    assert not w.engine.objects.get(d)
    w.assert_replays()


def test_remove_detach_only_keeps_the_disks(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    d = w.add_vm_disk(vm_id)
    w.run(c.RemoveVm(vm_id=vm_id, detach_only=True))
    assert w.disk(d).status == DiskStatus.OK


# -- NICs -------------------------------------------------------------------------------------


def test_nic_mac_is_derived_from_the_vm_id(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    nic = w.run(c.AddVmNic(vm_id=vm_id, name="nic1", vnic_profile_id=w.profile))
    other = ComputeWorld()
    vm2 = other.add_vm()
    assert vm2 == vm_id  # same deterministic ids
    other.run(c.AddVmNic(vm_id=vm2, name="nic1", vnic_profile_id=other.profile))
    mac = w.vm(vm_id).nics[0].mac
    assert mac == other.vm(vm2).nics[0].mac
    assert mac.startswith("56:6f:") and len(mac) == 17
    assert w.vm(vm_id).nics[0].id == nic


def test_nic_rules(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.run(c.AddVmNic(vm_id=vm_id, name="nic1", vnic_profile_id=w.profile, mac="00:1A:4A:16:01:51"))
    assert w.vm(vm_id).nics[0].mac == "00:1a:4a:16:01:51"
    w.rejects(c.AddVmNic(vm_id=vm_id, name="nic1"), "name is already in use", field="name")
    w.rejects(
        c.AddVmNic(vm_id=vm_id, name="nic2", mac="00:1a:4a:16:01:51"),
        "MAC Address is already in use",
        field="mac",
    )
    w.rejects(
        c.AddVmNic(vm_id=vm_id, name="nic2", mac="01:1a:4a:16:01:51"), "multicast", field="mac"
    )
    w.rejects(
        c.AddVmNic(vm_id=vm_id, name="nic2", vnic_profile_id=UUID(int=999)),
        "not found",
        field="vnic_profile",
    )


def test_nic_profile_must_be_in_the_vms_data_center(w: ComputeWorld) -> None:
    from domain import network
    from domain.rules import datacenter_rules

    other_dc = w.do(datacenter_rules.add_data_center, name="dc2")
    profile = next(
        p.id
        for p in w.engine.all(network.VnicProfile)
        if w.engine.get(network.LogicalNetwork, p.network_id).data_center_id == other_dc
    )
    vm_id = w.add_vm()
    w.rejects(
        c.AddVmNic(vm_id=vm_id, name="nic1", vnic_profile_id=profile),
        "not in the VM's Data Center",
        field="vnic_profile",
    )


def test_nic_update_and_remove(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    nic = w.run(c.AddVmNic(vm_id=vm_id, name="nic1", interface="e1000"))
    w.run(c.UpdateVmNic(vm_id=vm_id, nic_id=nic, vnic_profile_id=w.profile, name="eth0"))
    assert (w.vm(vm_id).nics[0].name, w.vm(vm_id).nics[0].vnic_profile_id) == ("eth0", w.profile)
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.RemoveVmNic(vm_id=vm_id, nic_id=nic), "VM is running")
    w.rejects(c.UpdateVmNic(vm_id=vm_id, nic_id=nic, interface="virtio"), "VM is running")
    w.power_off(vm_id)
    w.run(c.RemoveVmNic(vm_id=vm_id, nic_id=nic))
    assert w.vm(vm_id).nics == ()
    w.assert_replays()


# -- disk attachments ------------------------------------------------------------


def test_one_bootable_disk_per_vm(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.add_vm_disk(vm_id, bootable=True)
    floating = w.run(disk_cmd.AddDisk(name="f", provisioned_size=GiB, storage_domain_id=w.sd))
    w.run(disk_cmd.ReportDiskOperation(disk_id=floating))
    w.rejects(
        c.AttachDisk(vm_id=vm_id, disk_id=floating, bootable=True),
        "Disk boot is already in use",
        field="bootable",
    )
    w.run(c.AttachDisk(vm_id=vm_id, disk_id=floating))
    w.rejects(
        c.UpdateDiskAttachment(vm_id=vm_id, disk_id=floating, bootable=True),
        "Disk boot is already in use",
    )
    assert sum(a.bootable for a in w.vm(vm_id).disk_attachments) == 1


def test_disk_attached_at_most_once(w: ComputeWorld) -> None:
    a, b = w.add_vm("a"), w.add_vm("b")
    d = w.add_vm_disk(a)
    w.rejects(c.AttachDisk(vm_id=a, disk_id=d), "already attached to the VM")
    w.rejects(c.AttachDisk(vm_id=b, disk_id=d), "not shareable")


def test_shareable_raw_disk_attaches_to_two_vms(w: ComputeWorld) -> None:
    a, b = w.add_vm("a"), w.add_vm("b")
    d = w.add_vm_disk(a, format="raw", sparse=False, shareable=True)
    w.run(c.AttachDisk(vm_id=b, disk_id=d))
    assert w.vm(b).attachment(d) is not None


def test_locked_disk_cannot_be_attached(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    d = w.run(disk_cmd.AddDisk(name="f", provisioned_size=GiB, storage_domain_id=w.sd))
    w.rejects(c.AttachDisk(vm_id=vm_id, disk_id=d), "The following disks are locked: f")


def test_hotplug_rules(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    w.rejects(
        c.AddVmDisk(
            vm_id=vm_id, name="d", provisioned_size=GiB, storage_domain_id=w.sd, interface="ide"
        ),
        "Hot plug is supported only",
        field="interface",
    )
    d = w.add_vm_disk(vm_id, interface="virtio")
    w.rejects(c.DetachDisk(vm_id=vm_id, disk_id=d), "plugged into a running VM")
    w.run(c.UpdateDiskAttachment(vm_id=vm_id, disk_id=d, active=False))
    w.run(c.DetachDisk(vm_id=vm_id, disk_id=d))
    assert w.vm(vm_id).disk_attachments == ()
    w.assert_replays()


# -- run ------------------------------------------------------------


def test_start_schedules_with_scores_and_waits_for_launch(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    n = len(w.log)
    chosen = w.run(c.StartVm(vm_id=vm_id))
    assert w.topics(n) == ["VmStartRequested", "VmScheduled"]
    ev = w.log[-1]
    assert isinstance(ev, VmScheduled)
    assert ev.host_id == chosen and chosen in w.hosts
    assert {r.host_id for r in ev.scores} == set(w.hosts)
    vm = w.vm(vm_id)
    assert (vm.status, vm.run_on_host_id) == (S.WAIT_FOR_LAUNCH, chosen)
    w.rejects(c.StartVm(vm_id=vm_id), "Cannot run VM. VM is running.")


def test_start_on_a_given_host(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    assert w.run(c.StartVm(vm_id=vm_id, host_id=w.hosts[1])) == w.hosts[1]


def test_start_needs_an_up_host(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    for h in w.hosts:
        w.do(host_rules.connection_lost, h)
    w.rejects(c.StartVm(vm_id=vm_id), "There are no available running Hosts in the Host Cluster")


def test_diskless_vm_runs_without_an_up_data_center() -> None:
    w = ComputeWorld()
    for sd in (w.block, w.sd):
        w.do(storage_rules.deactivate_storage_domain, sd)
    vm_id = w.add_vm()
    w.run(c.StartVm(vm_id=vm_id))
    assert w.vm(vm_id).status == S.WAIT_FOR_LAUNCH


def test_vm_with_disks_needs_ok_disks_and_active_storage(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    d = w.add_vm_disk(vm_id, ready=False, name="boot")
    w.rejects(c.StartVm(vm_id=vm_id), "The following disks are locked: boot")
    w.run(disk_cmd.ReportDiskOperation(disk_id=d, ok=False))
    w.rejects(c.StartVm(vm_id=vm_id), "The following disks are illegal: boot")
    vm2 = w.add_vm("vm2")
    w.add_vm_disk(vm2, storage_domain_id=w.block)
    w.do(storage_rules.deactivate_storage_domain, w.block)
    w.rejects(c.StartVm(vm_id=vm2), "Storage Domain is not active")


def test_image_locked_vm_cannot_run(w: ComputeWorld) -> None:
    from commands.template import AddTemplate

    src = w.add_vm("src")
    w.add_vm_disk(src)
    t = w.run(AddTemplate(vm_id=src, name="t1"))
    for d in list(w.engine.all(__import__("domain.disk").disk.Disk)):
        if d.status == DiskStatus.LOCKED:
            w.run(disk_cmd.ReportDiskOperation(disk_id=d.id))
    vm_id = w.add_vm("thin", template_id=t)
    assert w.vm(vm_id).status == S.IMAGE_LOCKED
    w.rejects(c.StartVm(vm_id=vm_id), "Cannot run VM: VM is locked.")
    w.rejects(c.RemoveVm(vm_id=vm_id), "VM is locked")


@pytest.mark.parametrize(
    "path",
    [
        [S.POWERING_UP, S.UP],
        [S.UP],
        [S.PAUSED, S.UP],
        [S.POWERING_UP, S.REBOOT_IN_PROGRESS, S.UP],
        [S.POWERING_UP, S.DOWN],
        [S.NOT_RESPONDING, S.UP],
    ],
)
def test_host_reports_follow_the_transitions(w: ComputeWorld, path: list[VmStatus]) -> None:
    vm_id = w.add_vm()
    h = w.run(c.StartVm(vm_id=vm_id))
    for status in path:
        assert w.report(vm_id, status, h) is True
        assert w.vm(vm_id).status == status
    w.assert_replays()


def test_failed_launch_is_rerun_on_other_hosts_up_to_three() -> None:
    w = ComputeWorld(hosts=4)
    vm_id = w.add_vm()
    tried = [w.run(c.StartVm(vm_id=vm_id))]
    for _ in range(2):
        n = len(w.log)
        w.report(vm_id, S.DOWN, reason="libvirt error")
        assert w.topics(n) == ["VmStatusReported", "VmScheduled"]
        assert w.log[-1].rerun is True
        vm = w.vm(vm_id)
        assert vm.status == S.WAIT_FOR_LAUNCH and vm.run_on_host_id not in tried
        tried.append(vm.run_on_host_id)
    w.report(vm_id, S.DOWN, reason="libvirt error")  # the third host failed too: down
    assert (w.vm(vm_id).status, w.vm(vm_id).exit_reason) == (S.DOWN, "libvirt error")
    assert len(set(tried)) == 3
    w.assert_replays()


def test_no_rerun_after_a_stop_or_without_another_host(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.run(c.StartVm(vm_id=vm_id))
    w.run(c.StopVm(vm_id=vm_id))
    w.report(vm_id, S.DOWN)
    assert w.vm(vm_id).status == S.DOWN
    w.do(host_rules.connection_lost, w.hosts[1])
    w.run(c.StartVm(vm_id=vm_id))
    w.report(vm_id, S.DOWN)
    assert w.vm(vm_id).status == S.DOWN


def test_nonsense_reports_are_refused(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    h = w.run(c.StartVm(vm_id=vm_id))
    other = next(x for x in w.hosts if x != h)
    w.rejects(c.ReportVmStatus(vm_id=vm_id, host_id=other, status="up"), "is not running on host")
    w.rejects(
        c.ReportVmStatus(vm_id=vm_id, host_id=h, status="suspended"),
        "cannot go from",
        field="status",
    )
    w.rejects(c.ReportVmStatus(vm_id=vm_id, host_id=h, status="image_locked"), "cannot go from")
    w.report(vm_id, S.UP)
    n = len(w.log)
    assert w.report(vm_id, S.UP) is False  # a repeat changes nothing
    assert len(w.log) == n
    w.rejects(c.ReportVmStatus(vm_id=vm_id, host_id=h, status="wait_for_launch"), "cannot go from")
    w.report(vm_id, S.DOWN)
    w.rejects(c.ReportVmStatus(vm_id=vm_id, host_id=h, status="up"), "is not running on host")


def test_down_clears_the_host_and_keeps_the_reason(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    w.report(vm_id, S.DOWN, reason="qemu crashed")
    vm = w.vm(vm_id)
    assert (vm.status, vm.run_on_host_id, vm.exit_reason, vm.exit_status) == (
        S.DOWN,
        None,
        "qemu crashed",
        "error",
    )


def test_shutdown_powers_down_then_down_is_normal(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.rejects(c.ShutdownVm(vm_id=vm_id), "Cannot shutdown VM. VM is not running.")
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.ShutdownVm(vm_id=vm_id), "because the VM is in WaitForLaunch status")
    w.report(vm_id, S.UP)
    w.run(c.ShutdownVm(vm_id=vm_id))
    assert w.vm(vm_id).status == S.POWERING_DOWN
    w.report(vm_id, S.DOWN)
    assert (w.vm(vm_id).status, w.vm(vm_id).exit_status) == (S.DOWN, "normal")


def test_stop_asks_the_host_and_discards_a_saved_state(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.rejects(c.StopVm(vm_id=vm_id), "Cannot stop VM. VM is not running.")
    w.run(c.StartVm(vm_id=vm_id))
    n = len(w.log)
    w.run(c.StopVm(vm_id=vm_id))
    assert w.topics(n) == ["VmStopRequested"]
    w.report(vm_id, S.UP)
    w.run(c.SuspendVm(vm_id=vm_id))
    w.report(vm_id, S.SUSPENDED)
    w.run(c.StopVm(vm_id=vm_id))
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.DOWN, None)


def test_reboot_pause_and_resume(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.rejects(c.RebootVm(vm_id=vm_id), "Cannot reboot VM. VM is not running.")
    w.rejects(c.PauseVm(vm_id=vm_id), "Cannot pause VM. VM is not running.")
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.RebootVm(vm_id=vm_id), "Cannot reboot VM. VM is not up.")
    w.report(vm_id, S.UP)
    w.run(c.RebootVm(vm_id=vm_id))
    assert w.vm(vm_id).status == S.REBOOT_IN_PROGRESS
    w.report(vm_id, S.UP)
    n = len(w.log)
    w.run(c.PauseVm(vm_id=vm_id))
    assert w.topics(n) == ["VmPauseRequested"]
    w.report(vm_id, S.PAUSED)
    assert w.run(c.StartVm(vm_id=vm_id)) is None  # start on a paused VM resumes it
    assert w.log[-1].TOPIC == "VmResumeRequested"
    w.report(vm_id, S.UP)
    assert w.vm(vm_id).status == S.UP


def test_suspend_saves_state_and_resume_restores_it(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    w.run(c.SuspendVm(vm_id=vm_id))
    assert w.vm(vm_id).status == S.SAVING_STATE
    w.rejects(c.SuspendVm(vm_id=vm_id), "Cannot suspend VM. VM is not up.")
    w.report(vm_id, S.SUSPENDED)
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.SUSPENDED, None)
    w.rejects(c.RemoveVm(vm_id=vm_id), "Cannot remove VM. VM is running.")
    h = w.run(c.ResumeVm(vm_id=vm_id))
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.RESTORING_STATE, h)
    w.report(vm_id, S.UP)
    assert w.vm(vm_id).status == S.UP
    w.assert_replays()


def test_resume_goes_back_to_the_host_holding_the_saved_memory(w: ComputeWorld) -> None:
    """The memory image of a suspended VM lives with the host that saved it: resuming
    schedules the VM there while that host can take it (even when the cluster's policy
    would pick another), and anywhere else once it cannot."""
    vm_id = w.running_vm()
    src = w.vm(vm_id).run_on_host_id
    other = next(h for h in w.hosts if h != src)
    busy = [w.add_vm(f"busy{i}") for i in range(3)]
    for b in busy:  # load the saving host so that plain scheduling would avoid it
        w.run(c.StartVm(vm_id=b, host_id=src))
        w.report(b, S.UP)
    w.run(c.SuspendVm(vm_id=vm_id))
    w.report(vm_id, S.SUSPENDED)
    assert w.vm(vm_id).saved_on_host_id == src
    assert w.run(c.ResumeVm(vm_id=vm_id)) == src
    w.report(vm_id, S.UP)
    assert (w.vm(vm_id).run_on_host_id, w.vm(vm_id).saved_on_host_id) == (src, None)

    # The saving host cannot take it any more: scheduled like any start.
    w.run(c.SuspendVm(vm_id=vm_id))
    w.report(vm_id, S.SUSPENDED)
    w.do(host_rules.connection_lost, src)
    w.do(host_rules.mark_non_responsive, src)
    assert w.run(c.ResumeVm(vm_id=vm_id)) == other
    w.assert_replays()


def test_stateless_vm_cannot_suspend(w: ComputeWorld) -> None:
    vm_id = w.running_vm(stateless=True)
    w.rejects(c.SuspendVm(vm_id=vm_id), "running as Stateless")


# -- migration ------------------------------------------------------------


def test_migration_moves_the_vm_and_records_downtime(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    src = w.vm(vm_id).run_on_host_id
    dest = w.run(c.MigrateVm(vm_id=vm_id))
    assert dest != src and dest in w.hosts
    vm = w.vm(vm_id)
    assert (vm.status, vm.run_on_host_id, vm.migrating_to_host_id) == (S.MIGRATING, src, dest)
    w.rejects(c.MigrateVm(vm_id=vm_id), "Migration is in progress")
    w.run(c.ReportVmMigrationDone(vm_id=vm_id, host_id=dest, downtime_ms=23))
    vm = w.vm(vm_id)
    assert (vm.status, vm.run_on_host_id, vm.migrating_to_host_id) == (S.UP, dest, None)
    assert vm.last_migration_downtime_ms == 23
    assert w.log[-1].downtime_ms == 23
    w.assert_replays()


def test_up_reported_by_the_destination_completes_the_migration(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    dest = w.run(c.MigrateVm(vm_id=vm_id))
    w.report(vm_id, S.UP, dest, downtime_ms=40)
    assert (w.vm(vm_id).run_on_host_id, w.vm(vm_id).last_migration_downtime_ms) == (dest, 40)


def test_migration_failure_and_cancel_return_to_the_source(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    src = w.vm(vm_id).run_on_host_id
    w.run(c.MigrateVm(vm_id=vm_id))
    w.run(c.ReportVmMigrationFailed(vm_id=vm_id, reason="timeout"))
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.UP, src)
    dest = w.run(c.MigrateVm(vm_id=vm_id))
    w.run(c.CancelVmMigration(vm_id=vm_id))
    assert (w.vm(vm_id).status, w.vm(vm_id).migrating_to_host_id) == (S.UP, None)
    w.rejects(c.CancelVmMigration(vm_id=vm_id), "VM is not being migrated")
    w.run(c.MigrateVm(vm_id=vm_id))
    w.report(vm_id, S.DOWN, dest)  # died on the destination: still up on the source
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.UP, src)


def test_migration_rules(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.rejects(c.MigrateVm(vm_id=vm_id), "Cannot migrate VM. VM is not running.")
    w.run(c.StartVm(vm_id=vm_id))
    w.rejects(c.MigrateVm(vm_id=vm_id), "because the VM is in WaitForLaunch status")
    w.report(vm_id, S.UP)
    src = w.vm(vm_id).run_on_host_id
    w.rejects(c.MigrateVm(vm_id=vm_id, host_id=src), "Source and destination Hosts are the same")
    other = next(h for h in w.hosts if h != src)
    w.do(host_rules.connection_lost, other)
    w.rejects(c.MigrateVm(vm_id=vm_id), "There is no host that satisfies current scheduling")


# -- console, host loss ------------------------------------------------------------


def test_console_ticket_is_an_event_with_an_expiry(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    w.rejects(c.SetVmConsoleTicket(vm_id=vm_id), "VM is not running")
    w.run(c.StartVm(vm_id=vm_id))
    w.report(vm_id, S.UP)
    out = w.run(c.SetVmConsoleTicket(vm_id=vm_id, expiry=300))
    ev = w.log[-1]
    assert isinstance(ev, VmConsoleTicketSet)
    assert ev.expires_at == "2026-01-01T00:05:00+00:00"
    assert out["ticket"] and out["ticket"] not in msgspec.json.encode(ev).decode()
    w.rejects(c.SetVmConsoleTicket(vm_id=vm_id, protocol="spice"), "no spice console")


def test_host_non_responsive_makes_its_vms_unknown(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    h = w.vm(vm_id).run_on_host_id
    stay = w.add_vm("elsewhere")
    other = next(x for x in w.hosts if x != h)
    w.run(c.StartVm(vm_id=stay, host_id=other))
    w.do(host_rules.connection_lost, h)
    w.do(host_rules.mark_non_responsive, h)
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.UNKNOWN, h)
    assert w.vm(stay).status == S.WAIT_FOR_LAUNCH
    w.rejects(c.MigrateVm(vm_id=vm_id), "because the VM is in Unknown status")
    w.do(host_rules.confirm_rebooted, h)
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.DOWN, None)
    w.assert_replays()


def test_host_comes_back_and_reports_the_vm_up(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    h = w.vm(vm_id).run_on_host_id
    w.do(host_rules.connection_lost, h)
    w.do(host_rules.mark_non_responsive, h)
    w.report(vm_id, S.UP, h)
    assert w.vm(vm_id).status == S.UP


def test_migration_to_a_lost_host_fails(w: ComputeWorld) -> None:
    vm_id = w.running_vm()
    src = w.vm(vm_id).run_on_host_id
    dest = w.run(c.MigrateVm(vm_id=vm_id))
    w.do(host_rules.connection_lost, dest)
    w.do(host_rules.mark_non_responsive, dest)
    assert (w.vm(vm_id).status, w.vm(vm_id).run_on_host_id) == (S.UP, src)


def test_custom_property_names_are_checked(w: ComputeWorld) -> None:
    with pytest.raises(InvalidInput) as info:
        w.run(c.AddVm(name="a", cluster_id=w.cluster, custom_properties={"bad key": "v"}))
    assert info.value.field == "custom_properties"
    vm_id = w.add_vm("a", custom_properties={"sap_agent": "true"})
    assert w.vm(vm_id).custom_properties == {"sap_agent": "true"}


def test_nic_network_must_be_attached_to_the_vms_cluster(w: ComputeWorld) -> None:
    from domain import network
    from domain.rules import network_rules

    net = w.do(network_rules.add_network, name="backend", data_center_id=w.dc)
    profile = next(p.id for p in w.engine.all(network.VnicProfile) if p.network_id == net)
    vm_id = w.add_vm()
    w.rejects(
        c.AddVmNic(vm_id=vm_id, name="nic1", vnic_profile_id=profile),
        "The Network is not attached to the VM's Cluster",
        field="vnic_profile",
    )
    w.do(network_rules.attach_network, net, w.cluster)
    w.run(c.AddVmNic(vm_id=vm_id, name="nic1", vnic_profile_id=profile))


def test_ha_restart_candidates_are_abnormally_down_ha_vms_by_priority(w: ComputeWorld) -> None:
    from domain.vm import ha_restart_candidates

    low = w.running_vm("low", highly_available=True, ha_priority=1)
    high = w.running_vm("high", highly_available=True, ha_priority=100)
    plain = w.running_vm("plain")
    clean = w.running_vm("clean", highly_available=True)
    for v in (low, high, plain):
        w.report(v, S.DOWN, reason="crashed")
    w.run(c.ShutdownVm(vm_id=clean))
    w.report(clean, S.DOWN)
    assert [v.id for v in ha_restart_candidates(w.engine)] == [high, low]
    w.run(c.StartVm(vm_id=high))
    assert [v.id for v in ha_restart_candidates(w.engine)] == [low]
