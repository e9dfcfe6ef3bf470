"""The Manager driving real hosts: add two hosts and a posixfs data domain, create a VM
with a disk and a NIC, run it on KVM, live-migrate it, stop and remove it; a killed hostd
makes its host non_responsive, a restarted one brings it back up with its VMs intact.

Everything here is real: the log (SQLite), the bus, the HostLink, two libvirtd + hostd
pairs from the harness, QEMU/KVM guests (OS-less, so nothing waits for a guest).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from commands import host as host_cmds
from commands import storage as sd_cmds
from commands import vm as vm_cmds
from commands.bootstrap import open_bus
from commands.bus import CommandBus
from commands.hostlink import HostLink, HostSecrets
from commands.policies import Policies
from commands.system import ensure_initialized
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.disk import Disk
from domain.host import Host
from domain.statuses import DiskStatus, HostStatus, StorageDomainStatus, VmStatus
from domain.storage import StorageDomain
from domain.vm import Vm
from hostd.harness import Cluster as HostCluster
from tests.integration.hostd_fixtures import harness_pki, running_hosts

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def hosts() -> Iterator[HostCluster]:
    with running_hosts(2, ["--stats-interval", "1", "--heartbeat-interval", "0.5"]) as c:
        yield c


@pytest.fixture(scope="module")
def sd_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="orrery-sd-"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Manager:
    """The bus and the HostLink on one event loop, driven synchronously from the test."""

    def __init__(
        self,
        data_dir: Path,
        uris: dict[UUID, str] | None = None,
        policies: dict[str, float] | None = None,
    ) -> None:
        self.bus: CommandBus = open_bus(None, data_dir)
        ensure_initialized(self.bus, admin_password="secret-admin")
        self.secrets = HostSecrets(data_dir / "host-secrets.json")
        self.loop = asyncio.new_event_loop()
        self.uris = uris if uris is not None else {}
        self.policies = Policies(self.bus, **policies) if policies is not None else None  # type: ignore[arg-type]
        self.link = HostLink(
            self.bus,
            self.secrets,
            pki=harness_pki(),
            # A few seconds of silence on a loaded 2-core CI machine are not a dead host.
            heartbeat_timeout=5.0,
            non_responsive_after=2.0,
            reconnect_every=0.5,
            shutdown_timeout=2.0,
            space_every=0.5,
            libvirt_uris=self.uris,
            policies=self.policies,
        )
        self._thread = None
        self.harness_hosts: list = []  # harness hosts added, for their logs on a timeout
        import threading

        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.link.start())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    def run(self, cmd):
        return self.bus.execute(cmd)

    def wait(self, pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.bus.lock:
                if pred():
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; saw:\n{self.seen()}")

    def seen(self) -> str:
        """What the Manager sees (hosts, VMs, storage) and the hosts' last log lines."""
        with self.bus.lock:
            rows = [
                f"host {h.name}: {h.status} {h.status_detail!r}" for h in self.bus.engine.all(Host)
            ]
            rows += [
                f"storage domain {d.name}: {d.status}" for d in self.bus.engine.all(StorageDomain)
            ]
            rows += [
                f"vm {v.name}: {v.status} on {v.run_on_host_id}" for v in self.bus.engine.all(Vm)
            ]
        rows.append(f"link errors: {self.link.errors[-10:]}")
        rows += [h.log_tail() for h in self.harness_hosts]
        return "\n".join(rows)

    def get(self, cls, oid):
        return self.bus.engine.get(cls, oid)

    def add_host(self, h, token: str, cluster_id: UUID, *, migration_uri: bool = True) -> UUID:
        """Adds a harness host with its enrollment secret (and, for migration, its libvirt
        address); returns its id. Up comes later (wait for it)."""
        hid = uuid4()
        self.harness_hosts.append(h)
        self.secrets.put(hid, token)
        if migration_uri:
            self.uris[hid] = h.uri
        self.run(
            host_cmds.AddHost(
                id=hid,
                name=h.name,
                address="127.0.0.1",
                port=h.hostd_port,
                cluster_id=cluster_id,
                actor="admin@internal",
            )
        )
        return hid

    def close(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.link.stop(), self.loop)
        fut.result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.bus.stop()


def virsh_list(uri: str) -> str:
    out = subprocess.run(
        ["virsh", "-r", "-c", uri, "list", "--all", "--uuid", "--name"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout


def test_manager_runs_migrates_and_survives_hostd_restart(
    hosts: HostCluster, sd_dir: Path, tmp_path: Path
) -> None:
    uris: dict[UUID, str] = {}
    m = Manager(tmp_path, uris)
    try:
        with m.bus.lock:
            cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
        dc_id = cluster.data_center_id
        host_ids = [m.add_host(h, hosts.token, cluster.id) for h in hosts.hosts]
        m.wait(
            lambda: all(m.get(Host, h).status == HostStatus.UP for h in host_ids),
            60,
            "both hosts up",
        )
        assert m.get(Host, host_ids[0]).kvm is True
        assert m.get(Host, host_ids[0]).memory_total > 0

        sd_id = m.run(
            sd_cmds.AddStorageDomain(
                name="data1",
                storage_type="posixfs",
                path=str(sd_dir),
                available=100 * 1024**3,
                host_id=host_ids[0],
            )
        ).value
        m.run(sd_cmds.AttachStorageDomain(storage_domain_id=sd_id, data_center_id=dc_id))
        m.wait(
            lambda: m.get(StorageDomain, sd_id).status == StorageDomainStatus.ACTIVE,
            30,
            "storage domain active",
        )
        m.wait(lambda: m.get(DataCenter, dc_id).spm_host_id is not None, 30, "an SPM")
        # The hosts measure the domain's filesystem: its space is reported, not declared.
        m.wait(lambda: m.get(StorageDomain, sd_id).used > 0, 30, "space reported")
        fs = os.statvfs(sd_dir)
        assert abs(m.get(StorageDomain, sd_id).available - fs.f_bavail * fs.f_frsize) < 2**30

        vm_id = m.run(
            vm_cmds.AddVm(name="web1", cluster_id=cluster.id, memory=64 * MiB, actor="admin")
        ).value
        disk_id = m.run(
            vm_cmds.AddVmDisk(
                vm_id=vm_id,
                name="web1_disk",
                provisioned_size=64 * MiB,
                storage_domain_id=sd_id,
                bootable=True,
            )
        ).value
        m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 30, "disk image created")
        assert list(sd_dir.glob(f"{sd_id}/images/{disk_id}/*")), "the qcow2 volume exists"
        m.run(vm_cmds.AddVmNic(vm_id=vm_id, name="nic1"))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 30, "VM down")

        t0 = time.monotonic()
        m.run(vm_cmds.StartVm(vm_id=vm_id, actor="admin@internal"))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "VM up")
        start_s = time.monotonic() - t0
        # wait_for_launch (scheduled) -> powering_up (host launching QEMU) -> up.
        reported = [
            e.status
            for _, e in m.bus.log.iter_all()
            if e.originator_id == vm_id and type(e).__name__ in ("VmScheduled", "VmStatusReported")
        ]
        assert reported[:3] == [VmStatus.WAIT_FOR_LAUNCH, VmStatus.POWERING_UP, VmStatus.UP]
        src = m.get(Vm, vm_id).run_on_host_id
        src_h = hosts.hosts[host_ids.index(src)]
        dst_h = hosts.hosts[1 - host_ids.index(src)]
        assert str(vm_id) in virsh_list(src_h.uri)

        # A live snapshot puts a layer named after it on the disk.
        snap_id = m.run(vm_cmds.AddSnapshot(vm_id=vm_id, description="before upgrade")).value
        m.wait(lambda: m.get(Vm, vm_id).snapshot(snap_id).status == "ok", 30, "snapshot ok")
        layer = sd_dir / str(sd_id) / "images" / str(disk_id) / str(snap_id)
        assert layer.exists()

        m.run(vm_cmds.MigrateVm(vm_id=vm_id))
        m.wait(
            lambda: (
                m.get(Vm, vm_id).status == VmStatus.UP and m.get(Vm, vm_id).run_on_host_id != src
            ),
            120,
            "VM migrated",
        )
        vm = m.get(Vm, vm_id)
        assert vm.last_migration_downtime_ms is not None
        running_dst = subprocess.run(
            ["virsh", "-r", "-c", dst_h.uri, "list", "--uuid"], capture_output=True, text=True
        ).stdout
        running_src = subprocess.run(
            ["virsh", "-r", "-c", src_h.uri, "list", "--uuid"], capture_output=True, text=True
        ).stdout
        assert str(vm_id) in running_dst and str(vm_id) not in running_src

        # Restart the Manager: it reconnects and adopts the running VM.
        m.close()
        m = Manager(tmp_path, uris)
        m.wait(
            lambda: all(m.get(Host, h).status == HostStatus.UP for h in host_ids),
            30,
            "hosts up after Manager restart",
        )
        assert m.get(Vm, vm_id).status == VmStatus.UP
        assert m.get(Vm, vm_id).run_on_host_id == vm.run_on_host_id

        # Kill hostd where the VM runs: the host goes non_responsive, the VM unknown.
        dst_id = vm.run_on_host_id
        dst_h.stop_hostd()
        m.wait(
            lambda: m.get(Host, dst_id).status == HostStatus.NON_RESPONSIVE,
            30,
            "host non_responsive",
        )
        assert m.get(Vm, vm_id).status == VmStatus.UNKNOWN
        # Restart it: up again, and the still-running VM is adopted as up.
        dst_h.start_hostd()
        m.wait(lambda: m.get(Host, dst_id).status == HostStatus.UP, 60, "host up again")
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 30, "VM adopted as up")
        assert virsh_list(dst_h.uri).count(str(vm_id)) == 1  # no duplicate domain

        # Removing the newest snapshot merges its layer back (live block commit).
        m.run(vm_cmds.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap_id))
        m.wait(lambda: m.get(Vm, vm_id).snapshot(snap_id) is None, 60, "snapshot merged")
        assert not layer.exists()

        # An OS-less guest ignores ACPI: shutdown powers it off after the timeout.
        m.run(vm_cmds.ShutdownVm(vm_id=vm_id))
        m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.DOWN, 60, "VM down after shutdown")
        m.run(vm_cmds.RemoveVm(vm_id=vm_id))
        assert m.bus.engine.find(Vm, vm_id) is None
        print(f"start-to-up {start_s * 1000:.0f} ms")
    finally:
        m.close()
