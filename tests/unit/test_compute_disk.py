"""Disks: add (floating or on a VM), formats per storage, resize, move, remove, reports."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands import disk as c
from commands import vm as vm_cmd
from commands.messages import parse_command
from domain import storage
from domain.base import InvalidInput
from domain.rules import storage_rules
from domain.statuses import DiskStatus, VmStatus
from domain.vm import VmImagesReady
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit


@pytest.fixture
def w() -> ComputeWorld:
    return ComputeWorld()


def test_floating_disk_is_locked_until_created(w: ComputeWorld) -> None:
    d = w.run(c.AddDisk(name="data", provisioned_size=5 * GiB, storage_domain_id=w.sd))
    disk = w.disk(d)
    assert (disk.status, disk.operation, disk.format, disk.sparse) == (
        "locked",
        "create",
        "cow",
        True,
    )
    w.run(c.ReportDiskOperation(disk_id=d, actual_size=GiB))
    disk = w.disk(d)
    assert (disk.status, disk.operation, disk.actual_size) == ("ok", "", GiB)
    w.rejects(c.ReportDiskOperation(disk_id=d), "no image operation in progress")
    w.assert_replays()


def test_failed_create_leaves_the_disk_illegal(w: ComputeWorld) -> None:
    d = w.run(c.AddDisk(name="data", provisioned_size=GiB, storage_domain_id=w.sd))
    w.run(c.ReportDiskOperation(disk_id=d, ok=False, reason="no space"))
    assert w.disk(d).status == DiskStatus.ILLEGAL


@pytest.mark.parametrize(("size", "field"), [(0, "provisioned_size"), (-1, "provisioned_size")])
def test_size_must_be_positive(size: int, field: str) -> None:
    data = {"name": "d", "provisioned_size": size, "storage_domain_id": str(UUID(int=5))}
    with pytest.raises(InvalidInput) as info:
        parse_command(c.AddDisk, data)
    assert info.value.field == field


def test_storage_domain_must_be_an_active_data_domain(w: ComputeWorld) -> None:
    w.do(storage_rules.deactivate_storage_domain, w.block)
    w.rejects(
        c.AddDisk(name="d", provisioned_size=GiB, storage_domain_id=w.block),
        "Cannot add Disk. Storage Domain is not active.",
        field="storage_domain",
    )
    iso = w.do(
        storage_rules.add_storage_domain,
        name="iso",
        domain_type="iso",
        address="nfs.example",
        path="/iso",
        data_center_id=w.dc,
    )
    w.rejects(
        c.AddDisk(name="d", provisioned_size=GiB, storage_domain_id=iso),
        "not a data domain",
        field="storage_domain",
    )


def test_storage_domain_must_be_in_the_vms_data_center(w: ComputeWorld) -> None:
    other = w.do(
        storage_rules.add_storage_domain, name="loose", address="nfs.example", path="/loose"
    )
    vm_id = w.add_vm()
    w.rejects(
        vm_cmd.AddVmDisk(vm_id=vm_id, name="d", provisioned_size=GiB, storage_domain_id=other),
        "not in the VM's Data Center",
    )


def test_raw_sparse_only_on_file_storage(w: ComputeWorld) -> None:
    w.rejects(
        c.AddDisk(
            name="d", provisioned_size=GiB, storage_domain_id=w.block, format="raw", sparse=True
        ),
        "RAW Sparse",
        field="sparse",
    )
    w.run(c.AddDisk(name="nfs-raw", provisioned_size=GiB, storage_domain_id=w.sd, format="raw"))
    w.run(c.AddDisk(name="thin", provisioned_size=GiB, storage_domain_id=w.block, format="cow"))
    w.run(
        c.AddDisk(
            name="pre", provisioned_size=GiB, storage_domain_id=w.block, format="raw", sparse=False
        )
    )


def test_shareable_disks_are_raw(w: ComputeWorld) -> None:
    w.rejects(
        c.AddDisk(name="d", provisioned_size=GiB, storage_domain_id=w.sd, shareable=True),
        "Shareable disks must use the raw format",
        field="shareable",
    )


def test_resize_only_grows_and_locks_until_done(w: ComputeWorld) -> None:
    d = w.run(c.AddDisk(name="d", provisioned_size=2 * GiB, storage_domain_id=w.sd))
    w.rejects(c.ExtendDisk(disk_id=d, provisioned_size=4 * GiB), "disks are locked: d")
    w.run(c.ReportDiskOperation(disk_id=d))
    w.rejects(
        c.ExtendDisk(disk_id=d, provisioned_size=GiB),
        "smaller than the current size",
        field="provisioned_size",
    )
    w.run(c.UpdateDisk(disk_id=d, provisioned_size=4 * GiB, name="bigger"))
    disk = w.disk(d)
    assert (disk.provisioned_size, disk.status, disk.operation, disk.name) == (
        4 * GiB,
        "locked",
        "extend",
        "bigger",
    )
    w.run(c.ReportDiskOperation(disk_id=d))
    assert w.disk(d).status == DiskStatus.OK
    w.assert_replays()


def test_move_between_domains(w: ComputeWorld) -> None:
    d = w.run(
        c.AddDisk(
            name="d", provisioned_size=GiB, storage_domain_id=w.sd, format="raw", sparse=False
        )
    )
    w.run(c.ReportDiskOperation(disk_id=d))
    w.rejects(c.MoveDisk(disk_id=d, storage_domain_id=w.sd), "source and target storage domains")
    w.run(c.MoveDisk(disk_id=d, storage_domain_id=w.block))
    disk = w.disk(d)
    assert (disk.status, disk.storage_domain_id, disk.move_target_id) == ("locked", w.sd, w.block)
    w.run(c.ReportDiskOperation(disk_id=d))
    disk = w.disk(d)
    assert (disk.status, disk.storage_domain_id, disk.move_target_id) == ("ok", w.block, None)
    # A failed move leaves the disk where it was.
    w.run(c.MoveDisk(disk_id=d, storage_domain_id=w.sd))
    w.run(c.ReportDiskOperation(disk_id=d, ok=False))
    assert (w.disk(d).status, w.disk(d).storage_domain_id) == ("ok", w.block)
    w.assert_replays()


def test_raw_sparse_cannot_move_to_block(w: ComputeWorld) -> None:
    d = w.run(c.AddDisk(name="d", provisioned_size=GiB, storage_domain_id=w.sd, format="raw"))
    w.run(c.ReportDiskOperation(disk_id=d))
    w.rejects(c.MoveDisk(disk_id=d, storage_domain_id=w.block), "RAW Sparse")


def test_remove_not_while_attached_to_a_running_vm(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    d = w.add_vm_disk(vm_id)
    w.run(vm_cmd.StartVm(vm_id=vm_id))
    w.rejects(c.RemoveDisk(disk_id=d), "attached to a running VM")
    w.power_off(vm_id)
    w.run(c.RemoveDisk(disk_id=d))
    assert w.vm(vm_id).disk_attachments == ()
    assert w.engine.objects.get(d) is None
    w.assert_replays()


def test_locked_disk_cannot_be_removed(w: ComputeWorld) -> None:
    d = w.run(c.AddDisk(name="d", provisioned_size=GiB, storage_domain_id=w.sd))
    w.rejects(c.RemoveDisk(disk_id=d), "Cannot remove Disk: The following disks are locked: d.")


def test_disk_on_a_vm_is_attached_and_created(w: ComputeWorld) -> None:
    vm_id = w.add_vm()
    n = len(w.log)
    d = w.add_vm_disk(vm_id, ready=False, bootable=True, interface="virtio")
    assert w.topics(n) == ["DiskAdded", "VmDiskAttached"]
    att = w.vm(vm_id).attachment(d)
    assert att is not None and (att.bootable, att.interface, att.active) == (True, "virtio", True)
    # A VM that is down stays down while a new disk is created.
    assert w.vm(vm_id).status == VmStatus.DOWN
    w.run(c.ReportDiskOperation(disk_id=d))
    assert not any(isinstance(e, VmImagesReady) for e in w.log[n:])


def test_low_space_rules_once_space_is_known(w: ComputeWorld) -> None:
    # Not reported yet: anything goes.
    w.run(c.AddDisk(name="a", provisioned_size=GiB, storage_domain_id=w.sd, sparse=False))
    w.do(storage.report_space, w.sd, available=8 * GiB, used=GiB)
    w.rejects(
        c.AddDisk(name="big", provisioned_size=10 * GiB, storage_domain_id=w.sd, sparse=False),
        "Low disk space on Storage Domain nfs1",
        field="storage_domain",
    )
    w.run(c.AddDisk(name="thin", provisioned_size=10 * GiB, storage_domain_id=w.sd))
    w.do(storage.report_space, w.sd, available=4 * GiB, used=5 * GiB)  # below the 5 GiB blocker
    w.rejects(
        c.AddDisk(name="thin2", provisioned_size=GiB, storage_domain_id=w.sd),
        "Low disk space",
    )
