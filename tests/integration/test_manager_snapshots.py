"""Snapshots and disk growth on real volumes and a real KVM host.

Preview/undo/commit of a down VM: data is written straight into the disk's active
volume with qemu-io while the VM is down: 0xaa before snapshot S, 0xbb after it.
Previewing S makes the active volume (as vm_spec derives it) read 0xaa; undo brings
0xbb back and deletes the preview layer; preview again and commit keeps 0xaa, and the VM
started afterwards runs on that volume. Removal merges any snapshot's layer, cold and
live; a running VM's disk is extended live."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from commands import storage as sd_cmds
from commands import vm as vm_cmds
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.disk import Disk
from domain.host import Host
from domain.statuses import DiskStatus, HostStatus, StorageDomainStatus, VmStatus
from domain.storage import StorageDomain
from domain.vm import Vm
from hostd.harness import Cluster as HostCluster
from tests.integration.hostd_fixtures import need_libvirt, running_hosts
from tests.integration.test_manager_hosts import Manager, sd_dir

pytestmark = pytest.mark.integration

MiB = 1024 * 1024

__all__ = ["sd_dir"]


@pytest.fixture(scope="module")
def hosts() -> Iterator[HostCluster]:
    need_libvirt()
    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io (qemu-utils) is not installed")
    with running_hosts(1, ["--stats-interval", "1", "--heartbeat-interval", "0.5"]) as c:
        yield c


def qemu_io(path: str, cmd: str, *, read_only: bool = False) -> str:
    args = ["qemu-io", "-f", "qcow2", *(["-r"] if read_only else []), "-c", cmd, path]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def reads(path: str, pattern: int, at: int = 0) -> bool:
    if not Path(path).exists():
        return False
    out = qemu_io(path, f"read -P {pattern:#x} {at} 64k", read_only=True)
    return "Pattern verification failed" not in out and "read 65536/65536" in out


def dumpxml(uri: str, vm_id: UUID) -> str:
    out = subprocess.run(
        ["virsh", "-r", "-c", uri, "dumpxml", str(vm_id)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout


def backing_chain(path: str) -> list[str]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:  # not (re)created yet
        return []
    return [Path(i["filename"]).name for i in json.loads(out.stdout)]


def _vm_with_disk(
    m: Manager, hosts: HostCluster, sd_dir: Path, name: str
) -> tuple[UUID, UUID, UUID, UUID]:
    """One up host, an active posixfs data domain on sd_dir, and a down VM with one 64 MiB
    disk there: (host id, storage domain id, VM id, disk id)."""
    with m.bus.lock:
        cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
    hid = m.add_host(hosts.hosts[0], hosts.token, cluster.id)
    m.wait(lambda: m.get(Host, hid).status == HostStatus.UP, 60, "host up")
    sd_id = m.run(
        sd_cmds.AddStorageDomain(
            name=f"{name}data",
            storage_type="posixfs",
            path=str(sd_dir),
            available=100 * 1024**3,
            host_id=hid,
        )
    ).value
    m.run(
        sd_cmds.AttachStorageDomain(storage_domain_id=sd_id, data_center_id=cluster.data_center_id)
    )
    m.wait(
        lambda: m.get(StorageDomain, sd_id).status == StorageDomainStatus.ACTIVE,
        30,
        "storage domain active",
    )
    m.wait(lambda: m.get(DataCenter, cluster.data_center_id).spm_host_id is not None, 30)
    vm_id: UUID = m.run(
        vm_cmds.AddVm(name=name, cluster_id=cluster.id, memory=64 * MiB, actor="admin")
    ).value
    disk_id: UUID = m.run(
        vm_cmds.AddVmDisk(
            vm_id=vm_id,
            name=f"{name}_disk",
            provisioned_size=64 * MiB,
            storage_domain_id=sd_id,
            bootable=True,
        )
    ).value
    m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 30, "disk created")
    m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 30, "VM down")
    return hid, sd_id, vm_id, disk_id


def test_preview_undo_commit_of_a_down_vm(hosts: HostCluster, sd_dir: Path, tmp_path: Path) -> None:
    m = Manager(tmp_path, {})
    try:
        h = hosts.hosts[0]
        hid, sd_id, vm_id, disk_id = _vm_with_disk(m, hosts, sd_dir, "snappy")

        def active() -> str:
            with m.bus.lock:
                return m.link.vm_spec(vm_id, hid).disks[0].path

        images = sd_dir / str(sd_id) / "images" / str(disk_id)
        base = active()
        assert Path(base).name == str(disk_id)
        qemu_io(base, "write -P 0xaa 0 64k")

        snap_id: UUID = m.run(vm_cmds.AddSnapshot(vm_id=vm_id, description="S")).value
        m.wait(lambda: m.get(Vm, vm_id).snapshot(snap_id).status == "ok", 30, "snapshot ok")
        layer = active()
        assert layer == str(images / str(snap_id))
        qemu_io(layer, "write -P 0xbb 0 64k")
        assert reads(layer, 0xBB)

        # Preview: a fresh layer on S's content (the base volume) becomes active.
        m.run(vm_cmds.PreviewSnapshot(vm_id=vm_id, snapshot_id=snap_id))
        preview = active()
        saved = next(s for s in m.get(Vm, vm_id).snapshots if s.snapshot_type == "preview")
        assert preview == str(images / str(saved.id))
        m.wait(lambda: Path(preview).exists(), 30, "preview layer created")
        assert reads(preview, 0xAA)
        assert backing_chain(preview) == [str(saved.id), str(disk_id)]

        # Undo: the normal leaf again, the preview layer deleted.
        m.run(vm_cmds.UndoSnapshot(vm_id=vm_id))
        assert active() == layer
        assert reads(layer, 0xBB)
        m.wait(lambda: not Path(preview).exists(), 30, "preview layer deleted")

        # Preview again, then commit: the previewed state stays.
        m.run(vm_cmds.PreviewSnapshot(vm_id=vm_id, snapshot_id=snap_id))
        saved = next(s for s in m.get(Vm, vm_id).snapshots if s.snapshot_type == "preview")
        preview = str(images / str(saved.id))
        m.wait(lambda: Path(preview).exists(), 30, "second preview layer created")
        assert reads(active(), 0xAA)
        m.run(vm_cmds.CommitSnapshot(vm_id=vm_id))
        committed = active()
        assert committed == layer  # S's layer name, now on top of the preview layer
        m.wait(
            lambda: backing_chain(committed) == [str(snap_id), str(saved.id), str(disk_id)],
            30,
            "S's layer rebuilt on the preview layer",
        )
        assert reads(committed, 0xAA)
        assert not m.link.errors

        # The VM starts on that volume.
        m.run(vm_cmds.StartVm(vm_id=vm_id, actor="admin@internal"))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "VM up")
        xml = dumpxml(h.uri, vm_id)
        assert f"<source file='{committed}'" in xml
        m.run(vm_cmds.StopVm(vm_id=vm_id))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 60, "VM down again")
        assert active() == committed
        assert reads(committed, 0xAA)
        assert not m.link.errors
    finally:
        m.close()


def test_remove_snapshots_cold_and_live(hosts: HostCluster, sd_dir: Path, tmp_path: Path) -> None:
    """Removing a snapshot merges its layer into the one under it, wherever it sits in the
    chain: with the VM down (qemu-img commit + rebase on a host that reaches the storage)
    and running (live block commit; of the active layer with a pivot). No data is lost."""
    m = Manager(tmp_path, {})
    try:
        h = hosts.hosts[0]
        hid, sd_id, vm_id, disk_id = _vm_with_disk(m, hosts, sd_dir, "merger")
        images = sd_dir / str(sd_id) / "images" / str(disk_id)

        def active() -> str:
            with m.bus.lock:
                return m.link.vm_spec(vm_id, hid).disks[0].path

        def snapshot(description: str) -> UUID:
            snap: UUID = m.run(vm_cmds.AddSnapshot(vm_id=vm_id, description=description)).value
            m.wait(lambda: m.get(Vm, vm_id).snapshot(snap).status == "ok", 60, "snapshot ok")
            return snap

        def remove(snap: UUID) -> None:
            m.run(vm_cmds.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap))
            m.wait(lambda: m.get(Vm, vm_id).snapshot(snap) is None, 60, f"snapshot {snap} gone")
            assert not (images / str(snap)).exists()

        def all_data(path: str) -> bool:
            return reads(path, 0xAA, 0) and reads(path, 0xBB, 65536) and reads(path, 0xCC, 131072)

        qemu_io(active(), "write -P 0xaa 0 64k")
        s1 = snapshot("S1")
        qemu_io(active(), "write -P 0xbb 64k 64k")
        s2 = snapshot("S2")
        qemu_io(active(), "write -P 0xcc 128k 64k")
        assert backing_chain(active()) == [str(s2), str(s1), str(disk_id)]

        # Cold, the middle one: S1's data goes into the base, S2's layer now sits on it.
        remove(s1)
        assert active() == str(images / str(s2))
        assert backing_chain(active()) == [str(s2), str(disk_id)]
        assert all_data(active())
        # Cold, the newest: everything ends in the base volume.
        remove(s2)
        assert active() == str(images / str(disk_id))
        assert all_data(active())
        assert not m.link.errors

        # Live: two snapshots of the running VM, the older (not active) removed first.
        m.run(vm_cmds.StartVm(vm_id=vm_id, actor="admin@internal"))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "VM up")
        s3 = snapshot("S3")
        s4 = snapshot("S4")
        assert backing_chain(active()) == [str(s4), str(s3), str(disk_id)]
        remove(s3)
        assert backing_chain(active()) == [str(s4), str(disk_id)]
        assert m.get(Vm, vm_id).status == VmStatus.UP
        remove(s4)  # the active layer: commit and pivot onto the base
        assert active() == str(images / str(disk_id))
        xml = dumpxml(h.uri, vm_id)
        assert f"<source file='{active()}'" in xml
        assert m.get(Vm, vm_id).status == VmStatus.UP
        m.run(vm_cmds.StopVm(vm_id=vm_id))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 60, "VM down again")
        assert all_data(active())
        assert not m.link.errors
    finally:
        m.close()


def test_extend_the_disk_of_a_running_vm(hosts: HostCluster, sd_dir: Path, tmp_path: Path) -> None:
    """oVirt extends a running VM's disk live: the guest's block device grows at once
    (virDomainBlockResize on the host running it); a down VM's volume with qemu-img."""
    from commands import disk as disk_cmds

    m = Manager(tmp_path, {})
    try:
        h = hosts.hosts[0]
        hid, _sd_id, vm_id, disk_id = _vm_with_disk(m, hosts, sd_dir, "grower")

        def active() -> str:
            with m.bus.lock:
                return m.link.vm_spec(vm_id, hid).disks[0].path

        def capacity() -> int:
            out = subprocess.run(
                ["virsh", "-r", "-c", h.uri, "domblkinfo", str(vm_id), active()],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            return int(next(li.split()[1] for li in out.splitlines() if li.startswith("Capacity")))

        def extend(size: int) -> None:
            m.run(disk_cmds.ExtendDisk(disk_id=disk_id, provisioned_size=size))
            m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 60, "disk extended")
            assert m.get(Disk, disk_id).provisioned_size == size

        extend(96 * MiB)  # down: qemu-img
        m.run(vm_cmds.StartVm(vm_id=vm_id, actor="admin@internal"))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "VM up")
        assert capacity() == 96 * MiB
        extend(128 * MiB)  # running: the guest's disk grows in place
        assert capacity() == 128 * MiB
        assert m.get(Vm, vm_id).status == VmStatus.UP
        m.run(vm_cmds.StopVm(vm_id=vm_id))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 60, "VM down again")
        info = subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", active()],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert json.loads(info)["virtual-size"] == 128 * MiB
        assert not m.link.errors
    finally:
        m.close()
