"""The Manager's image operations, console tickets and policies on real hosts (KVM).

One Manager (SQLite log, bus, HostLink, Policies with short timings) drives two harness
hosts and two posixfs data domains for the whole module; the tests run in file order and
leave the hosts up. The migration destination's libvirt URI comes from hostd's
capabilities here (no ``libvirt_uris`` given).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import msgspec
import pytest

from commands import disk as disk_cmds
from commands import host as host_cmds
from commands import storage as sd_cmds
from commands import template as tpl_cmds
from commands import vm as vm_cmds
from commands import vmpool as pool_cmds
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.disk import Disk
from domain.host import Host
from domain.statuses import DiskStatus, HostStatus, StorageDomainStatus, TemplateStatus, VmStatus
from domain.storage import StorageDomain
from domain.template import Template
from domain.vm import Vm, VmConsoleTicketSet, VmStartRequested, VmStatusReported
from domain.vmpool import VmPool
from hostd.harness import Cluster as HostCluster
from tests.integration.hostd_fixtures import harness_pki, running_hosts
from tests.integration.test_manager_hosts import Manager

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


class World:
    def __init__(self, m: Manager, hosts: HostCluster, host_ids: list[UUID], sds: list[UUID]):
        self.m = m
        self.hosts = hosts
        self.host_ids = host_ids
        self.sds = sds
        self.dirs: dict[UUID, Path] = {}
        self.cluster_id: UUID = UUID(int=0)
        self.data_dir = Path(".")

    def harness_host(self, host_id: UUID):
        return self.hosts.hosts[self.host_ids.index(host_id)]

    def volume(self, disk_id: UUID, volume: UUID | None = None) -> Path:
        d = self.m.get(Disk, disk_id)
        return (
            self.dirs[d.storage_domain_id]
            / str(d.storage_domain_id)
            / "images"
            / str(disk_id)
            / str(volume or disk_id)
        )

    def events(self) -> list:
        return [ev for _, ev in self.m.bus.log.read(0, 1_000_000)]

    def start(self, vm_id: UUID, host_id: UUID | None = None) -> None:
        self.m.run(vm_cmds.StartVm(vm_id=vm_id, host_id=host_id))
        self.m.wait(lambda: self.m.get(Vm, vm_id).status == VmStatus.UP, 60, "VM up")

    def stop(self, vm_id: UUID) -> None:
        self.m.run(vm_cmds.StopVm(vm_id=vm_id))
        self.m.wait(lambda: self.m.get(Vm, vm_id).status == VmStatus.DOWN, 60, "VM down")


def qemu_img_info(path: Path) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_hosts(2, ["--stats-interval", "5", "--heartbeat-interval", "0.5"]) as hosts:
        yield from _world(hosts)


def _world(hosts: HostCluster) -> Iterator[World]:
    data = Path(tempfile.mkdtemp(prefix="orrery-mgr-"))
    sd_dirs = [Path(tempfile.mkdtemp(prefix="orrery-sd-")) for _ in range(2)]
    m = None
    try:
        m = Manager(
            data,
            policies={
                "tick": 0.2,
                "ha_retry_interval": 1.0,
                "pool_interval": 1.0,
                "migrate_retry_interval": 2.0,
            },
        )
        with m.bus.lock:
            cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
        host_ids = [
            m.add_host(h, hosts.token, cluster.id, migration_uri=False) for h in hosts.hosts
        ]
        m.wait(
            lambda: all(m.get(Host, h).status == HostStatus.UP for h in host_ids), 60, "hosts up"
        )
        sds = []
        w = World(m, hosts, host_ids, sds)
        w.cluster_id = cluster.id
        w.data_dir = data
        for i, d in enumerate(sd_dirs):
            d.chmod(0o777)
            sd_id = m.run(
                sd_cmds.AddStorageDomain(
                    name=f"data{i}",
                    storage_type="posixfs",
                    path=str(d),
                    available=100 * 1024**3,
                    host_id=host_ids[0],
                )
            ).value
            m.run(
                sd_cmds.AttachStorageDomain(
                    storage_domain_id=sd_id, data_center_id=cluster.data_center_id
                )
            )
            m.wait(
                lambda sd_id=sd_id: (
                    m.get(StorageDomain, sd_id).status == StorageDomainStatus.ACTIVE
                ),
                30,
                "storage domain active",
            )
            sds.append(sd_id)
            w.dirs[sd_id] = d
        m.wait(lambda: m.get(DataCenter, cluster.data_center_id).spm_host_id is not None, 30, "SPM")
        yield w
    finally:
        if m is not None:
            m.close()
        for d in [data, *sd_dirs]:
            shutil.rmtree(d, ignore_errors=True)


def test_console_ticket_reaches_the_host_and_never_the_log(world: World) -> None:
    m = world.m
    vm_id = m.run(
        vm_cmds.AddVm(name="console1", cluster_id=world.cluster_id, memory=32 * MiB)
    ).value
    world.start(vm_id)
    out = m.run(vm_cmds.SetVmConsoleTicket(vm_id=vm_id, expiry=300)).value
    password = out["ticket"]
    assert len(password) >= 8 and out["expires_at"]

    import libvirt

    uri = world.harness_host(m.get(Vm, vm_id).run_on_host_id).uri
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByUUIDString(str(vm_id))
        deadline = time.monotonic() + 20
        while f"passwd='{password}'" not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE):
            assert time.monotonic() < deadline, f"password not set; {m.link.errors}"
            time.sleep(0.1)
        assert "passwdValidTo=" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    finally:
        conn.close()

    # The event says that a ticket was set, never what it is: neither in the decoded log
    # nor anywhere in the Manager's files (SQLite database and its WAL).
    evs = [e for e in world.events() if isinstance(e, VmConsoleTicketSet)]
    assert evs and evs[-1].originator_id == vm_id
    assert all(password not in msgspec.json.encode(e).decode() for e in world.events())
    for f in world.data_dir.rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f
    world.stop(vm_id)


def test_suspended_vm_resumes_from_its_saved_memory(world: World) -> None:
    m = world.m
    vm_id = m.run(vm_cmds.AddVm(name="sleepy1", cluster_id=world.cluster_id, memory=32 * MiB)).value
    world.start(vm_id)
    host_id = m.get(Vm, vm_id).run_on_host_id
    m.run(vm_cmds.SuspendVm(vm_id=vm_id))
    m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.SUSPENDED, 60, "VM suspended")
    save = world.harness_host(host_id).base / "lib" / "qemu" / "save" / "sleepy1.save"
    assert save.exists()
    m.run(vm_cmds.StartVm(vm_id=vm_id, host_id=host_id))
    m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "VM restored")
    # Restored from it: libvirt drops a used managed save, just after its start event.
    m.wait(lambda: not save.exists(), 30, "the managed save consumed")
    assert not any("restore VM" in e for e in m.link.errors)
    world.stop(vm_id)


def _kill_qemu(world: World, vm: Vm) -> None:
    h = world.harness_host(vm.run_on_host_id)
    pid = int((h.base / "run" / "qemu" / f"{vm.name}.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)


def test_ha_vm_is_restarted_after_its_qemu_dies(world: World) -> None:
    m = world.m
    vm_id = m.run(
        vm_cmds.AddVm(
            name="ha1", cluster_id=world.cluster_id, memory=32 * MiB, highly_available=True
        )
    ).value
    plain = m.run(vm_cmds.AddVm(name="plain1", cluster_id=world.cluster_id, memory=32 * MiB)).value
    world.start(vm_id)
    world.start(plain)
    before = m.bus.engine.position
    _kill_qemu(world, m.get(Vm, vm_id))
    _kill_qemu(world, m.get(Vm, plain))

    def went_down_with_error(oid: UUID) -> bool:
        return any(
            isinstance(e, VmStatusReported)
            and e.originator_id == oid
            and e.status == VmStatus.DOWN
            and e.exit_status == "error"
            for _, e in m.bus.log.read(before, 100_000)
        )

    m.wait(lambda: went_down_with_error(vm_id), 30, "HA VM down with an error")
    m.wait(lambda: m.get(Vm, plain).status == VmStatus.DOWN, 30, "plain VM down")
    m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "HA VM up again")
    restarts = [
        e
        for _, e in m.bus.log.read(before, 100_000)
        if isinstance(e, VmStartRequested) and e.originator_id == vm_id
    ]
    assert restarts and restarts[0].meta.actor == "system"
    # A VM that is not highly available stays down; one stopped on purpose is not restarted.
    assert m.get(Vm, plain).status == VmStatus.DOWN
    assert m.get(Vm, plain).exit_status == "error"
    world.stop(vm_id)
    time.sleep(1.0)
    assert m.get(Vm, vm_id).status == VmStatus.DOWN
    assert m.get(Vm, vm_id).exit_status == "normal"


def test_template_thin_and_cloned_vms_and_a_pool(world: World) -> None:
    m = world.m
    sd0 = world.sds[0]
    src = m.run(vm_cmds.AddVm(name="tplsrc", cluster_id=world.cluster_id, memory=32 * MiB)).value
    src_disk = m.run(
        vm_cmds.AddVmDisk(
            vm_id=src, name="tplsrc_disk", provisioned_size=32 * MiB, storage_domain_id=sd0
        )
    ).value
    m.wait(lambda: m.get(Disk, src_disk).status == DiskStatus.OK, 30, "source disk")
    tpl = m.run(tpl_cmds.AddTemplate(vm_id=src, name="tpl1")).value
    m.wait(lambda: m.get(Template, tpl).status == TemplateStatus.OK, 60, "template copied")
    (tdisk,) = m.get(Template, tpl).disk_ids
    tinfo = qemu_img_info(world.volume(tdisk))
    assert "backing-filename" not in tinfo and tinfo["virtual-size"] == 32 * MiB

    thin = m.run(vm_cmds.AddVm(name="thin1", cluster_id=world.cluster_id, template_id=tpl)).value
    clone = m.run(
        vm_cmds.AddVm(name="clone1", cluster_id=world.cluster_id, template_id=tpl, clone=True)
    ).value
    for v in (thin, clone):
        m.wait(lambda v=v: m.get(Vm, v).status == VmStatus.DOWN, 60, "VM images ready")
    thin_disk = m.get(Vm, thin).disk_attachments[0].disk_id
    clone_disk = m.get(Vm, clone).disk_attachments[0].disk_id
    assert m.get(Disk, thin_disk).base_disk_id == tdisk
    info = qemu_img_info(world.volume(thin_disk))
    assert info.get("full-backing-filename", info.get("backing-filename")) == str(
        world.volume(tdisk)
    )
    assert "backing-filename" not in qemu_img_info(world.volume(clone_disk))

    # The thin VM runs on KVM over the template's volume.
    m.run(vm_cmds.UpdateVm(vm_id=thin, memory=32 * MiB))
    world.start(thin)
    world.stop(thin)

    # A pool of two from the template keeps one VM prestarted.
    pool = m.run(
        pool_cmds.AddVmPool(
            name="pool1", cluster_id=world.cluster_id, template_id=tpl, size=2, prestarted_vms=1
        )
    ).value

    def prestarted() -> bool:
        vms = [m.get(Vm, v) for v in m.get(VmPool, pool).vm_ids]
        return sum(v.status == VmStatus.UP for v in vms) == 1

    m.wait(prestarted, 90, "one pool VM prestarted")
    time.sleep(1.0)
    assert prestarted()
    for v in m.get(VmPool, pool).vm_ids:
        if m.get(Vm, v).status != VmStatus.DOWN:
            m.run(pool_cmds.UpdateVmPool(vm_pool_id=pool, prestarted_vms=0))
            world.stop(v)
    m.run(pool_cmds.RemoveVmPool(vm_pool_id=pool))

    # Removing the thin VM deletes its volume, never the template's.
    thin_vol = world.volume(thin_disk)
    m.run(vm_cmds.RemoveVm(vm_id=thin))
    m.wait(lambda: not thin_vol.exists(), 30, "thin volume deleted")
    assert world.volume(tdisk).exists()


def test_disk_extend_move_and_remove(world: World) -> None:
    m = world.m
    sd0, sd1 = world.sds
    disk_id = m.run(
        disk_cmds.AddDisk(name="floating1", provisioned_size=16 * MiB, storage_domain_id=sd0)
    ).value
    m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 30, "disk created")
    m.run(disk_cmds.ExtendDisk(disk_id=disk_id, provisioned_size=48 * MiB))
    m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 30, "disk extended")
    assert qemu_img_info(world.volume(disk_id))["virtual-size"] == 48 * MiB

    old = world.volume(disk_id)
    m.run(disk_cmds.MoveDisk(disk_id=disk_id, storage_domain_id=sd1))
    m.wait(
        lambda: (
            m.get(Disk, disk_id).status == DiskStatus.OK
            and m.get(Disk, disk_id).storage_domain_id == sd1
        ),
        60,
        "disk moved",
    )
    new = world.volume(disk_id)
    assert new.exists() and qemu_img_info(new)["virtual-size"] == 48 * MiB
    m.wait(lambda: not old.exists(), 30, "source volume deleted")

    m.run(disk_cmds.RemoveDisk(disk_id=disk_id))
    m.wait(lambda: not new.exists(), 30, "volume deleted")
    assert not new.parent.exists()


def test_an_image_operation_left_by_a_stopped_hostlink_is_resumed(world: World) -> None:
    import asyncio

    from commands.hostlink import HostLink

    m = world.m
    asyncio.run_coroutine_threadsafe(m.link.stop(), m.loop).result(30)
    disk_id = m.run(
        disk_cmds.AddDisk(name="orphan1", provisioned_size=8 * MiB, storage_domain_id=world.sds[0])
    ).value
    assert m.get(Disk, disk_id).status == DiskStatus.LOCKED
    m.link = HostLink(
        m.bus,
        m.secrets,
        pki=harness_pki(),
        heartbeat_timeout=5.0,
        non_responsive_after=2.0,
        reconnect_every=0.5,
        shutdown_timeout=2.0,
        policies=m.policies,
    )
    asyncio.run_coroutine_threadsafe(m.link.start(), m.loop).result(30)
    m.wait(lambda: m.get(Disk, disk_id).status == DiskStatus.OK, 30, "disk created on resume")
    assert world.volume(disk_id).exists()
    m.wait(lambda: all(m.get(Host, h).status == HostStatus.UP for h in world.host_ids), 30, "hosts")


def test_maintenance_migrates_the_vms_away(world: World) -> None:
    m = world.m
    h0, h1 = world.host_ids
    vms = [
        m.run(vm_cmds.AddVm(name=f"maint{i}", cluster_id=world.cluster_id, memory=32 * MiB)).value
        for i in range(2)
    ]
    for v in vms:
        world.start(v, host_id=h0)
    m.run(host_cmds.DeactivateHost(host_id=h0))
    m.wait(lambda: m.get(Host, h0).status == HostStatus.MAINTENANCE, 120, "host in maintenance")
    for v in vms:
        vm = m.get(Vm, v)
        assert (vm.status, vm.run_on_host_id) == (VmStatus.UP, h1)
        assert vm.last_migration_downtime_ms is not None
    m.run(host_cmds.ActivateHost(host_id=h0))
    m.wait(lambda: m.get(Host, h0).status == HostStatus.UP, 60, "host up again")
    for v in vms:
        world.stop(v)


# -- pools: what a user leaves on a pool VM's disk ---------------------------------------------


def _marker_read(path: str, pattern: int) -> bool:
    """Whether the first 64 KiB of the image read ``pattern`` (the VM may be running:
    a shared, read-only open)."""
    out = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-r", "-U", "-c", f"read -P {pattern:#x} 0 64k", path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    differs = "Pattern verification failed" in out.stdout  # qemu-io then exits 1
    assert "read 65536/65536" in out.stdout, out.stdout + out.stderr
    assert out.returncode == (1 if differs else 0), out.stdout + out.stderr
    return not differs


def _write_marker(path: str) -> None:
    out = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "wrote 65536/65536" in out.stdout, out.stdout + out.stderr


def test_an_automatic_pool_reverts_a_returned_vm_and_a_manual_pool_keeps_it(
    world: World,
) -> None:
    import asyncio

    import ovirtsdk4 as sdk
    import ovirtsdk4.types as types

    from api.server import Api
    from api.serving import ServerThread
    from commands.hostlink import HostLink
    from tests.e2e.api_server import connection

    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io (qemu-utils) is not installed")
    m = world.m
    src = m.run(vm_cmds.AddVm(name="goldsrc", cluster_id=world.cluster_id, memory=32 * MiB)).value
    src_disk = m.run(
        vm_cmds.AddVmDisk(
            vm_id=src, name="gold_disk", provisioned_size=8 * MiB, storage_domain_id=world.sds[0]
        )
    ).value
    m.wait(lambda: m.get(Disk, src_disk).status == DiskStatus.OK, 30, "source disk")
    tpl = m.run(tpl_cmds.AddTemplate(vm_id=src, name="gold")).value
    m.wait(lambda: m.get(Template, tpl).status == TemplateStatus.OK, 60, "template copied")
    pools = {
        kind: m.run(
            pool_cmds.AddVmPool(
                name=f"{kind}pool",
                cluster_id=world.cluster_id,
                template_id=tpl,
                size=1,
                pool_type=kind,
                actor="admin@internal",
            )
        ).value
        for kind in ("automatic", "manual")
    }
    vms = {kind: m.get(VmPool, p).vm_ids[0] for kind, p in pools.items()}
    for v in vms.values():
        m.wait(lambda v=v: m.get(Vm, v).status == VmStatus.DOWN, 60, "pool VM images ready")

    srv = ServerThread(Api(m.bus)).start()
    conns = []
    try:
        conns.append(connection(srv, "admin@internal", "secret-admin"))
        system = conns[0].system_service()
        ids = {}
        for name in ("alice", "bob"):
            u = system.users_service().add(
                types.User(
                    user_name=name, domain=types.Domain(name="internal"), password=f"pw-{name}"
                )
            )
            ids[name] = UUID(u.id)
            for p in pools.values():
                system.vm_pools_service().pool_service(str(p)).permissions_service().add(
                    types.Permission(role=types.Role(name="UserRole"), user=types.User(id=u.id))
                )
        conns += [connection(srv, f"{n}@internal", f"pw-{n}") for n in ("alice", "bob")]
        alice, bob = conns[1].system_service(), conns[2].system_service()

        def active_layer(vm_id: UUID) -> str:
            with m.bus.lock:
                return m.link.vm_spec(vm_id, world.host_ids[0]).disks[0].path

        def as_alice_with_a_marker(kind: str) -> str:
            """Alice takes the pool's VM; while it is down (hers) the marker goes into its
            active layer (what her guest would write); returns that layer."""
            vm_id = vms[kind]
            m.run(
                pool_cmds.AllocateVm(
                    vm_pool_id=pools[kind],
                    user_id=ids["alice"],
                    start=False,
                    actor="alice@internal",
                    actor_id=ids["alice"],
                )
            )
            assert m.get(VmPool, pools[kind]).assigned() == {vm_id: ids["alice"]}
            layer = active_layer(vm_id)
            _write_marker(layer)
            assert _marker_read(layer, 0x5A)
            return layer

        def bob_takes(kind: str) -> str:
            vm_id = vms[kind]
            bob.vm_pools_service().pool_service(str(pools[kind])).allocate_vm()
            assert m.get(VmPool, pools[kind]).assigned() == {vm_id: ids["bob"]}
            m.wait(lambda: m.get(Vm, vm_id).status == VmStatus.UP, 60, "Bob's VM up")
            return active_layer(vm_id)

        # Automatic: Alice runs the VM and shuts it down (as herself, through the API);
        # the pool takes it back and Bob finds the template's content, not her marker.
        auto = vms["automatic"]
        hers = as_alice_with_a_marker("automatic")
        # An administrator snapshots her VM: the marker now sits under a snapshot layer.
        snap = m.run(vm_cmds.AddSnapshot(vm_id=auto, description="backup")).value
        m.wait(lambda: m.get(Vm, auto).snapshot(snap).status == "ok", 30, "snapshot ok")
        her_layer = active_layer(auto)
        assert Path(her_layer).name == str(snap) and _marker_read(her_layer, 0x5A)
        alice.vms_service().vm_service(str(auto)).start()
        m.wait(lambda: m.get(Vm, auto).status == VmStatus.UP, 60, "Alice's VM up")
        alice.vms_service().vm_service(str(auto)).stop()
        m.wait(
            lambda: (
                m.get(Vm, auto).status == VmStatus.DOWN
                and not m.get(VmPool, pools["automatic"]).assignments
            ),
            60,
            "Alice's VM back in the pool",
        )
        layer = bob_takes("automatic")
        assert not _marker_read(layer, 0x5A), "Bob got Alice's disk"
        assert _marker_read(layer, 0x00)  # the template's (blank) content
        # Her volumes, snapshot layer included, are deleted (and their image directory).
        m.wait(lambda: not Path(hers).parent.exists(), 30, "Alice's volumes deleted")
        assert m.get(Vm, auto).snapshots[-1].snapshot_type == "active"
        assert not [e for e in m.link.errors if "image" in e or "volume" in e], m.link.errors
        bob.vms_service().vm_service(str(auto)).stop()
        m.wait(lambda: m.get(Vm, auto).status == VmStatus.DOWN, 60, "Bob's VM back")

        # A revert the Manager leaves half done (its host link stopped) is carried out by
        # the next one; meanwhile the VM is image locked and nobody is handed it.
        hers = as_alice_with_a_marker("automatic")
        her_disk = m.get(Vm, auto).disk_attachments[0].disk_id
        asyncio.run_coroutine_threadsafe(m.link.stop(), m.loop).result(30)
        m.run(
            pool_cmds.ReturnVmToPool(
                vm_pool_id=pools["automatic"],
                vm_id=auto,
                actor="alice@internal",
                actor_id=ids["alice"],
            )
        )
        assert m.get(Vm, auto).status == VmStatus.IMAGE_LOCKED
        with pytest.raises(sdk.Error, match="no available VMs"):
            bob.vm_pools_service().pool_service(str(pools["automatic"])).allocate_vm()
        m.link = HostLink(
            m.bus,
            m.secrets,
            pki=harness_pki(),
            heartbeat_timeout=5.0,
            non_responsive_after=2.0,
            reconnect_every=0.5,
            shutdown_timeout=2.0,
            policies=m.policies,
        )
        asyncio.run_coroutine_threadsafe(m.link.start(), m.loop).result(30)
        m.wait(lambda: m.get(Vm, auto).status == VmStatus.DOWN, 60, "revert resumed")
        m.wait(lambda: m.bus.engine.find(Disk, her_disk) is None, 30, "her disk discarded")
        assert not Path(hers).exists()
        assert not [e for e in m.link.errors if "image" in e or "volume" in e], m.link.errors
        layer = bob_takes("automatic")
        assert not _marker_read(layer, 0x5A), "Bob got Alice's disk after a restart"
        bob.vms_service().vm_service(str(auto)).stop()
        m.wait(lambda: m.get(Vm, auto).status == VmStatus.DOWN, 60, "Bob's VM back")

        # Manual: Alice runs it, shuts it down (still hers) and gives it back; her changes
        # stay, as oVirt's do.
        manual = vms["manual"]
        alice_layer = as_alice_with_a_marker("manual")
        alice.vms_service().vm_service(str(manual)).start()
        m.wait(lambda: m.get(Vm, manual).status == VmStatus.UP, 60, "Alice's VM up")
        alice.vms_service().vm_service(str(manual)).stop()
        m.wait(lambda: m.get(Vm, manual).status == VmStatus.DOWN, 60, "Alice's VM down")
        assert m.get(VmPool, pools["manual"]).assigned() == {manual: ids["alice"]}
        m.run(
            pool_cmds.ReturnVmToPool(
                vm_pool_id=pools["manual"],
                vm_id=manual,
                actor="alice@internal",
                actor_id=ids["alice"],
            )
        )
        layer = bob_takes("manual")
        assert layer == alice_layer and _marker_read(layer, 0x5A)
        bob.vms_service().vm_service(str(manual)).stop()
        m.wait(lambda: m.get(Vm, manual).status == VmStatus.DOWN, 60, "Bob's VM down")
    finally:
        for c in conns:
            c.close()
        srv.stop()
        m.wait(
            lambda: all(m.get(Host, h).status == HostStatus.UP for h in world.host_ids), 30, "hosts"
        )
