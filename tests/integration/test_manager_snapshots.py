"""Snapshot preview, undo and commit of a down VM, on real volumes and a real KVM host.

Data is written straight into the disk's active volume with qemu-io while the VM is down:
0xaa before snapshot S, 0xbb after it. Previewing S makes the active volume (as vm_spec
derives it) read 0xaa; undo brings 0xbb back and deletes the preview layer; preview again
and commit keeps 0xaa, and the VM started afterwards runs on that volume.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from commands import host as host_cmds
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


def reads(path: str, pattern: int) -> bool:
    if not Path(path).exists():
        return False
    out = qemu_io(path, f"read -P {pattern:#x} 0 64k", read_only=True)
    return "Pattern verification failed" not in out and "read 65536/65536" in out


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


def test_preview_undo_commit_of_a_down_vm(hosts: HostCluster, sd_dir: Path, tmp_path: Path) -> None:
    m = Manager(tmp_path, {})
    try:
        cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
        h = hosts.hosts[0]
        hid = uuid4()
        m.secrets.put(hid, hosts.token)
        m.uris[hid] = h.uri
        m.run(
            host_cmds.AddHost(
                id=hid,
                name=h.name,
                address="127.0.0.1",
                port=h.hostd_port,
                cluster_id=cluster.id,
                actor="admin@internal",
            )
        )
        m.wait(lambda: m.get(Host, hid).status == HostStatus.UP, 60, "host up")
        sd_id = m.run(
            sd_cmds.AddStorageDomain(
                name="snapdata",
                storage_type="posixfs",
                path=str(sd_dir),
                available=100 * 1024**3,
                host_id=hid,
            )
        ).value
        m.run(
            sd_cmds.AttachStorageDomain(
                storage_domain_id=sd_id, data_center_id=cluster.data_center_id
            )
        )
        m.wait(
            lambda: m.get(StorageDomain, sd_id).status == StorageDomainStatus.ACTIVE,
            30,
            "storage domain active",
        )
        m.wait(lambda: m.get(DataCenter, cluster.data_center_id).spm_host_id is not None, 30)

        vm_id: UUID = m.run(
            vm_cmds.AddVm(name="snappy", cluster_id=cluster.id, memory=64 * MiB, actor="admin")
        ).value
        disk_id: UUID = m.run(
            vm_cmds.AddVmDisk(
                vm_id=vm_id,
                name="snappy_disk",
                provisioned_size=64 * MiB,
                storage_domain_id=sd_id,
                bootable=True,
            )
        ).value
        m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 30, "disk created")
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 30, "VM down")

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
        xml = subprocess.run(
            ["virsh", "-r", "-c", h.uri, "dumpxml", str(vm_id)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert f"<source file='{committed}'" in xml
        m.run(vm_cmds.StopVm(vm_id=vm_id))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 60, "VM down again")
        assert active() == committed
        assert reads(committed, 0xAA)
        assert not m.link.errors
    finally:
        m.close()
