"""The unmodified ovirtsdk4 drives Orrery the way the oVirt SDK examples do, against two
real hosts (libvirtd + hostd each, QEMU/KVM): add hosts with their root password, a
posixfs data domain attached and active, a VM from Blank with a disk and a NIC, start and
poll until up, snapshot, migrate, stop, remove; then list the events it all produced.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from hostd.harness import Cluster as HostCluster
from tests.e2e.api_server import connection, running_server
from tests.integration.hostd_fixtures import running_hosts

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@pytest.fixture(scope="module", params=["root-harness", "stock-qemu-system"])
def hosts(request: pytest.FixtureRequest) -> Iterator[HostCluster]:
    """The harness's hosts (QEMU as root, no confinement) and stock hosts (libvirt's
    default configuration: QEMU as libvirt-qemu under DAC, seccomp, qemu:///system)."""
    stock = request.param == "stock-qemu-system"
    args = ["--stats-interval", "1", "--heartbeat-interval", "0.5"]
    with running_hosts(2, args, stock=stock) as c:
        yield c


def poll(fetch: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout: float = 60):
    """Like the SDK examples: re-read every second until the condition holds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if ok(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {_describe(last)}")


def _describe(obj: Any) -> str:
    """An SDK object as the fields a wait looks at (its repr says nothing)."""
    if isinstance(obj, list):
        return "[" + ", ".join(_describe(o) for o in obj) + "]"
    fields = ("name", "status", "status_detail", "snapshot_status", "host")
    shown = {f: getattr(obj, f) for f in fields if getattr(obj, f, None) is not None}
    if not shown:
        return repr(obj)
    if "host" in shown:
        shown["host"] = getattr(shown["host"], "id", shown["host"])
    return " ".join(f"{k}={v}" for k, v in shown.items())


def test_sdk_end_to_end_on_real_hosts(hosts: HostCluster, tmp_path: Path) -> None:
    import ovirtsdk4.types as types

    sd_dir = Path(tempfile.mkdtemp(prefix="orrery-sdk-sd-"))
    sd_dir.chmod(0o777)
    uris: dict[UUID, str] = {}
    options = {
        "heartbeat_timeout": 3.0,
        "non_responsive_after": 3.0,
        "reconnect_every": 0.5,
        "shutdown_timeout": 2.0,
        "libvirt_uris": uris,
    }
    try:
        with running_server(
            tmp_path, hostlink_options=options, warehouse=True, sample_interval=1.0
        ) as srv:
            conn = connection(srv)
            conn.srv = srv
            try:
                _drive(conn, types, hosts, sd_dir, uris)
            except AssertionError as e:
                raise AssertionError(f"{e}\nthe hosts' logs:\n{hosts.log_tail()}") from e
            finally:
                conn.close()
            # The enrollment secret never reached the log.
            raw = b"".join(n.state for n in srv.bus.log.read_raw(0, 100_000))
            assert hosts.token.encode() not in raw
    finally:
        shutil.rmtree(sd_dir, ignore_errors=True)


def _drive(conn: Any, types: Any, hosts: HostCluster, sd_dir: Path, uris: dict) -> None:
    import ovirtsdk4 as sdk

    system = conn.system_service()
    hosts_service = system.hosts_service()
    for h in hosts.hosts:
        added = hosts_service.add(
            types.Host(
                name=h.name,
                address="127.0.0.1",
                port=h.hostd_port,
                root_password=hosts.token,
                cluster=types.Cluster(name="Default"),
            )
        )
        uris[UUID(added.id)] = h.uri
    for h in hosts.hosts:
        poll(
            lambda h=h: hosts_service.list(search=f"name={h.name}")[0],
            lambda x: x.status == types.HostStatus.UP,
            f"{h.name} up",
        )

    sds_service = system.storage_domains_service()
    sd = sds_service.add(
        types.StorageDomain(
            name="data1",
            type=types.StorageDomainType.DATA,
            host=types.Host(name=hosts.hosts[0].name),
            storage=types.HostStorage(type=types.StorageType.POSIXFS, path=str(sd_dir)),
        )
    )
    dc = system.data_centers_service().list(search="name=Default")[0]
    attached = system.data_centers_service().data_center_service(dc.id).storage_domains_service()
    attached.add(types.StorageDomain(id=sd.id))
    poll(
        lambda: attached.storage_domain_service(sd.id).get(),
        lambda x: x.status == types.StorageDomainStatus.ACTIVE,
        "storage domain active",
    )

    vms_service = system.vms_service()
    vm = vms_service.add(
        types.Vm(
            name="web1",
            memory=64 * MiB,
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
        )
    )
    vm_service = vms_service.vm_service(vm.id)
    poll(vm_service.get, lambda x: x.status == types.VmStatus.DOWN, "new VM down")
    att = vm_service.disk_attachments_service().add(
        types.DiskAttachment(
            disk=types.Disk(
                name="web1_disk",
                format=types.DiskFormat.COW,
                provisioned_size=64 * MiB,
                storage_domains=[types.StorageDomain(name="data1")],
            ),
            interface=types.DiskInterface.VIRTIO,
            bootable=True,
            active=True,
        )
    )
    disks_service = system.disks_service()
    poll(
        lambda: disks_service.disk_service(att.disk.id).get(),
        lambda x: x.status == types.DiskStatus.OK,
        "disk ok",
    )
    profile = next(p for p in system.vnic_profiles_service().list() if p.name == "ovirtmgmt")
    vm_service.nics_service().add(
        types.Nic(name="nic1", vnic_profile=types.VnicProfile(id=profile.id))
    )

    vm_service.start()
    up = poll(vm_service.get, lambda x: x.status == types.VmStatus.UP, "VM up")
    first_host = up.host.id
    # hostd samples every second here: the VM's and host's statistics fill in.
    stats = poll(
        lambda: {s.name: s for s in vm_service.statistics_service().list()},
        lambda x: "memory.installed" in x,
        "VM statistics",
    )
    assert stats["memory.installed"].values[0].datum == 64 * MiB
    host_stats = hosts_service.host_service(first_host).statistics_service().list()
    assert any(s.name == "memory.total" and s.values[0].datum > 0 for s in host_stats)
    # The host's interfaces as hostd samples them; fencing without power management.
    host_service = hosts_service.host_service(first_host)
    nics = host_service.nics_service().list()
    assert nics and all(n.name and n.name != "lo" for n in nics)
    with pytest.raises(sdk.Error) as refused:
        host_service.fence(fence_type="restart")
    assert refused.value.code == 409 and "Power Management is not enabled" in str(refused.value)
    # The same telemetry reaches the history warehouse, per VM, disk, NIC and host NIC.
    wh = conn.srv.api.warehouse  # type: ignore[attr-defined]
    for view in (
        "v4_4_statistics_vms_resources_usage_samples",
        "v4_4_statistics_vms_disks_resources_usage_samples",
        "v4_4_statistics_vms_interfaces_resources_usage_samples",
        "v4_4_statistics_hosts_interfaces_resources_usage_samples",
    ):
        poll(
            lambda view=view: wh.query(f"SELECT count(*) FROM {view}")[1][0][0],
            lambda n: n > 0,
            f"samples in {view}",
        )

    snaps = vm_service.snapshots_service()
    snap = snaps.add(types.Snapshot(description="before upgrade", persist_memorystate=False))
    poll(
        lambda: snaps.snapshot_service(snap.id).get(),
        lambda x: x.snapshot_status == types.SnapshotStatus.OK,
        "snapshot ok",
    )

    vm_service.migrate()
    poll(
        vm_service.get,
        lambda x: x.status == types.VmStatus.UP and x.host is not None and x.host.id != first_host,
        "VM migrated",
    )

    vm_service.stop()
    poll(vm_service.get, lambda x: x.status == types.VmStatus.DOWN, "VM down")
    vm_service.remove()
    assert not vms_service.list(search="name=web1")

    texts = [e.description for e in system.events_service().list(max=200)]
    assert any("web1" in t for t in texts), texts[:20]
