"""The API reading the read side's projected engine view instead of the write side's
Engine: same answers, and read-your-writes after every command."""

from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import connection, running_server

pytestmark = pytest.mark.integration


def test_sdk_flow_on_projected_reads(store_location):
    loc = store_location
    with running_server(loc["data_dir"], loc["database_url"], reads="projections") as srv:
        c = connection(srv)
        s = c.system_service()
        assert "Default" in [d.name for d in s.data_centers_service().list()]
        dc = s.data_centers_service().add(types.DataCenter(name="proj-dc", local=False))
        # Read-your-writes through the projection.
        assert s.data_centers_service().data_center_service(dc.id).get().name == "proj-dc"
        cl = s.clusters_service().add(
            types.Cluster(name="proj-cl", data_center=types.DataCenter(name="proj-dc"))
        )
        vm = s.vms_service().add(
            types.Vm(
                name="proj-vm",
                cluster=types.Cluster(id=cl.id),
                template=types.Template(name="Blank"),
            )
        )
        assert [v.name for v in s.vms_service().list(search="name=proj-*")] == ["proj-vm"]
        s.vms_service().vm_service(vm.id).update(types.Vm(description="seen"))
        assert s.vms_service().vm_service(vm.id).get().description == "seen"
        s.vms_service().vm_service(vm.id).remove()
        with pytest.raises(sdk.NotFoundError):
            s.vms_service().vm_service(vm.id).get()
        c.close()
