"""Hosts, storage, VMs, disks, NICs and snapshots through the unmodified SDK. The host side
(what hostd would report) is played by commands on the bus, as the host connector will."""

from __future__ import annotations

from uuid import UUID

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import connection, running_server

pytestmark = pytest.mark.e2e


def _cmd(name: str, **kw):
    from commands.messages import COMMAND_TYPES

    return COMMAND_TYPES[name](**kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("compute")) as srv:
        c = connection(srv)
        s = c.system_service()
        host = s.hosts_service().add(
            types.Host(
                name="h1",
                address="127.0.0.1",
                cluster=types.Cluster(name="Default"),
                root_password="unused",
            )
        )
        assert host.status == types.HostStatus.INSTALLING
        hid = UUID(host.id)
        srv.bus.execute(_cmd("ReportHostInstalled", host_id=hid, success=True))
        srv.bus.execute(
            _cmd(
                "ReportHostCapabilities",
                host_id=hid,
                cpu_model="Intel",
                cpu_cores=4,
                memory_total=16 << 30,
                cpu_sockets=1,
                libvirt_version="9.0",
                qemu_version="8.0",
                kvm=True,
                hardware_uuid="hw-1",
                os_version="Debian 12",
                networks=("ovirtmgmt",),
            )
        )
        assert s.hosts_service().host_service(host.id).get().status == types.HostStatus.UP
        sd = s.storage_domains_service().add(
            types.StorageDomain(
                name="data1",
                type=types.StorageDomainType.DATA,
                host=types.Host(name="h1"),
                storage=types.HostStorage(
                    type=types.StorageType.NFS, address="10.0.0.1", path="/d"
                ),
            )
        )
        dc = s.data_centers_service().list(search="name=Default")[0]
        attached = (
            s.data_centers_service()
            .data_center_service(dc.id)
            .storage_domains_service()
            .add(types.StorageDomain(id=sd.id))
        )
        assert attached.status == types.StorageDomainStatus.ACTIVE
        yield srv, c, host, sd, dc
        c.close()


def test_hosts_and_storage_listed_and_searched(world):
    _srv, c, _host, sd, dc = world
    s = c.system_service()
    assert [h.name for h in s.hosts_service().list(search="name=h1 and status=up")] == ["h1"]
    assert [h.name for h in s.hosts_service().list(search="cluster=Default")] == ["h1"]
    dc_sds = s.data_centers_service().data_center_service(dc.id).storage_domains_service()
    assert [x.name for x in dc_sds.list()] == ["data1"]
    got = s.storage_domains_service().storage_domain_service(sd.id).get()
    assert got.storage.type == types.StorageType.NFS and got.storage.path == "/d"
    api = s.get()
    assert api.summary.hosts.total == 1 and api.summary.hosts.active == 1


def test_vm_life_with_disk_nic_snapshot(world):
    srv, c, host, _sd, _dc = world
    vms = c.system_service().vms_service()
    vm = vms.add(
        types.Vm(
            name="vm1",
            memory=1 << 30,
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
            cpu=types.Cpu(topology=types.CpuTopology(cores=2, sockets=1, threads=1)),
        )
    )
    assert vm.status in (types.VmStatus.DOWN, types.VmStatus.IMAGE_LOCKED)
    assert vm.cpu.topology.cores == 2 and vm.memory == 1 << 30
    svc = vms.vm_service(vm.id)
    profile = c.system_service().vnic_profiles_service().list()[0]
    nic = svc.nics_service().add(
        types.Nic(name="nic1", vnic_profile=types.VnicProfile(id=profile.id))
    )
    assert nic.mac.address and nic.vnic_profile.id == profile.id
    da = svc.disk_attachments_service().add(
        types.DiskAttachment(
            disk=types.Disk(
                name="vm1-disk",
                provisioned_size=1 << 30,
                format=types.DiskFormat.COW,
                storage_domains=[types.StorageDomain(name="data1")],
            ),
            interface=types.DiskInterface.VIRTIO,
            bootable=True,
            active=True,
        )
    )
    disk = c.system_service().disks_service().disk_service(da.disk.id).get()
    assert disk.alias == "vm1-disk" and disk.provisioned_size == 1 << 30
    assert disk.status == types.DiskStatus.LOCKED
    # While the image is being created the VM cannot start: 409 with oVirt's reason.
    with pytest.raises(sdk.Error) as err:
        svc.start()
    assert err.value.code == 409 and "locked" in str(err.value)
    srv.bus.execute(_cmd("ReportDiskOperation", disk_id=UUID(disk.id), ok=True))
    assert (
        c.system_service().disks_service().disk_service(disk.id).get().status == types.DiskStatus.OK
    )
    followed = vms.list(search="name=vm1", follow="disk_attachments.disk,nics")[0]
    assert [a.disk.alias for a in followed.disk_attachments] == ["vm1-disk"]
    assert [n.name for n in followed.nics] == ["nic1"]
    assert svc.numa_nodes_service().list() == []

    snap = svc.snapshots_service().add(
        types.Snapshot(description="snap1", persist_memorystate=False)
    )
    assert snap.description == "snap1"
    srv.bus.execute(_cmd("ReportSnapshot", vm_id=UUID(vm.id), snapshot_id=UUID(snap.id), ok=True))
    kinds = {(x.description, x.snapshot_type) for x in svc.snapshots_service().list()}
    assert ("snap1", types.SnapshotType.REGULAR) in kinds

    # Start answers at once; the status moves as the host reports.
    svc.start()
    status = svc.get().status
    assert status in (types.VmStatus.WAIT_FOR_LAUNCH, types.VmStatus.POWERING_UP)
    srv.bus.execute(_cmd("ReportVmStatus", vm_id=UUID(vm.id), host_id=UUID(host.id), status="up"))
    running = svc.get()
    assert running.status == types.VmStatus.UP and running.host.id == host.id
    with pytest.raises(sdk.Error) as err:
        svc.start()
    assert err.value.code == 409 and "running" in err.value.fault.detail.lower()
    ticket = svc.ticket()
    assert ticket.value
    svc.stop()
    updated = svc.update(types.Vm(description="edited"))
    assert updated.description == "edited"


def test_vm_remove(world):
    c = world[1]
    vms = c.system_service().vms_service()
    vm = vms.add(
        types.Vm(
            name="gone",
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
        )
    )
    vms.vm_service(vm.id).remove()
    assert vms.list(search="name=gone") == []
    with pytest.raises(sdk.NotFoundError):
        vms.vm_service(vm.id).get()


def test_reference_by_unknown_name_is_404(world):
    c = world[1]
    with pytest.raises(sdk.NotFoundError) as err:
        c.system_service().vms_service().add(
            types.Vm(
                name="x", cluster=types.Cluster(name="nope"), template=types.Template(name="Blank")
            )
        )
    assert "Cluster" in str(err.value)
