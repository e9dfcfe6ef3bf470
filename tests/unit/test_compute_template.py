"""Templates: from a VM, versions, VMs from templates (thin and clone), removal."""

from __future__ import annotations

from uuid import UUID

import pytest

from commands import disk as disk_cmd
from commands import template as c
from commands import vm as vm_cmd
from domain.disk import Disk
from domain.statuses import DiskStatus, TemplateStatus, VmStatus
from domain.template import Template
from domain.values import BLANK_TEMPLATE_ID
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit


@pytest.fixture
def w() -> ComputeWorld:
    return ComputeWorld()


def _settle(w: ComputeWorld) -> None:
    for d in sorted(w.engine.all(Disk), key=lambda d: d.id):
        if d.status == DiskStatus.LOCKED:
            w.run(disk_cmd.ReportDiskOperation(disk_id=d.id))


def _template(w: ComputeWorld, name: str = "tpl", *, disks: int = 1) -> UUID:
    src = w.add_vm(f"src-{name}", memory=2 * GiB, cpu_cores=2, os_type="rhel_8x64")
    for i in range(disks):
        w.add_vm_disk(src, name=f"{name}-disk{i}", bootable=i == 0)
    w.run(vm_cmd.AddVmNic(vm_id=src, name="nic1", vnic_profile_id=w.profile))
    t = w.run(c.AddTemplate(vm_id=src, name=name))
    _settle(w)
    return t


def tpl(w: ComputeWorld, t: UUID) -> Template:
    return w.engine.get(Template, t)


def test_template_from_a_down_vm_copies_settings_and_disks(w: ComputeWorld) -> None:
    src = w.add_vm("src", memory=2 * GiB, cpu_cores=2)
    d = w.add_vm_disk(src, name="root", bootable=True)
    t = w.run(c.AddTemplate(vm_id=src, name="golden", description="g"))
    template = tpl(w, t)
    assert template.status == TemplateStatus.LOCKED
    assert (template.memory, template.cpu_cores, template.version_number) == (2 * GiB, 2, 1)
    assert template.base_template_id == t and template.data_center_id == w.dc
    (copy,) = template.disk_ids
    assert copy != d
    assert (w.disk(copy).template_id, w.disk(copy).status, w.disk(copy).name) == (
        t,
        "locked",
        "root",
    )
    w.rejects(vm_cmd.AddVm(name="early", cluster_id=w.cluster, template_id=t), "Template is locked")
    w.run(disk_cmd.ReportDiskOperation(disk_id=copy))
    assert tpl(w, t).status == TemplateStatus.OK
    w.assert_replays()


def test_template_needs_a_down_vm(w: ComputeWorld) -> None:
    src = w.running_vm("src")
    w.rejects(c.AddTemplate(vm_id=src, name="t"), "Cannot add Template. VM is running.")


def test_template_names_are_unique_per_data_center(w: ComputeWorld) -> None:
    _template(w, "t")
    src = w.add_vm("other")
    w.rejects(c.AddTemplate(vm_id=src, name="t"), "The Template name is already in use")


def test_failed_copy_makes_the_template_illegal(w: ComputeWorld) -> None:
    src = w.add_vm("src")
    w.add_vm_disk(src)
    t = w.run(c.AddTemplate(vm_id=src, name="t"))
    w.run(disk_cmd.ReportDiskOperation(disk_id=tpl(w, t).disk_ids[0], ok=False))
    assert tpl(w, t).status == TemplateStatus.ILLEGAL


def test_thin_vm_uses_the_template_disks_as_backing(w: ComputeWorld) -> None:
    t = _template(w)
    vm_id = w.add_vm("thin", template_id=t)
    vm = w.vm(vm_id)
    assert vm.status == VmStatus.IMAGE_LOCKED
    assert (vm.memory, vm.cpu_cores, vm.os_type, vm.template_id) == (2 * GiB, 2, "rhel_8x64", t)
    (att,) = vm.disk_attachments
    disk = w.disk(att.disk_id)
    assert disk.base_disk_id == tpl(w, t).disk_ids[0]
    assert (disk.format, disk.sparse, disk.status, att.bootable) == ("cow", True, "locked", True)
    # The NICs come along with fresh MACs.
    assert len(vm.nics) == 1 and vm.nics[0].mac != tpl(w, t).nics[0].mac
    n = len(w.log)
    w.run(disk_cmd.ReportDiskOperation(disk_id=disk.id))
    assert w.topics(n) == ["DiskOperationCompleted", "VmImagesReady"]
    assert w.vm(vm_id).status == VmStatus.DOWN
    w.run(vm_cmd.StartVm(vm_id=vm_id))
    w.assert_replays()


def test_clone_vm_gets_independent_disks(w: ComputeWorld) -> None:
    t = _template(w, disks=2)
    vm_id = w.add_vm("clone", template_id=t, clone=True, storage_domain_id=w.block)
    disks = [w.disk(a.disk_id) for a in w.vm(vm_id).disk_attachments]
    assert len(disks) == 2
    assert all(d.base_disk_id is None and d.storage_domain_id == w.block for d in disks)
    w.run(disk_cmd.ReportDiskOperation(disk_id=disks[0].id))
    assert w.vm(vm_id).status == VmStatus.IMAGE_LOCKED  # one still copying
    w.run(disk_cmd.ReportDiskOperation(disk_id=disks[1].id))
    assert w.vm(vm_id).status == VmStatus.DOWN


def test_host_may_confirm_the_images_directly(w: ComputeWorld) -> None:
    t = _template(w)
    vm_id = w.add_vm("thin", template_id=t)
    w.rejects(vm_cmd.ReportVmImagesReady(vm_id=vm_id), "still has locked disks")
    w.run(disk_cmd.ReportDiskOperation(disk_id=w.vm(vm_id).disk_attachments[0].disk_id))
    w.rejects(vm_cmd.ReportVmImagesReady(vm_id=vm_id), "is not image locked")


def test_versions_share_the_base_name(w: ComputeWorld) -> None:
    t = _template(w, "web")
    src = w.add_vm("src2", memory=4 * GiB)
    v2 = w.run(c.AddTemplate(vm_id=src, base_template_id=t, version_name="more memory"))
    v3 = w.run(c.AddTemplate(vm_id=src, base_template_id=t, name="web"))
    assert [tpl(w, x).version_number for x in (t, v2, v3)] == [1, 2, 3]
    assert tpl(w, v2).name == "web" and tpl(w, v2).base_template_id == t
    assert tpl(w, v2).memory == 4 * GiB
    w.rejects(c.AddTemplate(vm_id=src, base_template_id=t, name="other"), "base Template's name")
    w.rejects(c.AddTemplate(vm_id=src, base_template_id=v2), "must be a base version")
    w.rejects(
        c.UpdateTemplate(template_id=v2, name="renamed"), "Cannot update the name of Sub-Templates"
    )
    w.run(c.UpdateTemplate(template_id=v2, version_name="v2"))
    w.rejects(c.RemoveTemplate(template_id=t), "has sub-versions")
    w.run(c.RemoveTemplate(template_id=v3))
    w.run(c.RemoveTemplate(template_id=v2))
    w.run(c.RemoveTemplate(template_id=t))
    w.assert_replays()


def test_remove_only_when_unused(w: ComputeWorld) -> None:
    t = _template(w)
    vm_id = w.add_vm("user", template_id=t)
    _settle(w)
    w.rejects(
        c.RemoveTemplate(template_id=t),
        "Template is being used by the following VMs: user.",
    )
    w.run(vm_cmd.RemoveVm(vm_id=vm_id))
    disk_ids = tpl(w, t).disk_ids
    w.run(c.RemoveTemplate(template_id=t))
    assert w.engine.objects.get(t) is None
    assert all(w.engine.objects.get(d) is None for d in disk_ids)


def test_blank_cannot_be_removed(w: ComputeWorld) -> None:
    w.rejects(c.RemoveTemplate(template_id=BLANK_TEMPLATE_ID), "Blank Template cannot be removed")


def test_template_disks_cannot_be_removed_or_attached_alone(w: ComputeWorld) -> None:
    t = _template(w)
    d = tpl(w, t).disk_ids[0]
    w.rejects(disk_cmd.RemoveDisk(disk_id=d), "belongs to a Template")
    w.rejects(vm_cmd.AttachDisk(vm_id=w.add_vm("x"), disk_id=d), "belongs to a Template")


def test_update_template(w: ComputeWorld) -> None:
    t = _template(w)
    w.run(c.UpdateTemplate(template_id=t, memory=8 * GiB, description="bigger"))
    assert (tpl(w, t).memory, tpl(w, t).description) == (8 * GiB, "bigger")
    w.rejects(c.UpdateTemplate(template_id=t, cpu_sockets=200, cpu_cores=2), "Max number of CPUs")
