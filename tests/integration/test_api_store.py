"""The API on both log backends (SQLite and PostgreSQL): writes survive a restart, and a
client whose token died with the old process logs in again by itself."""

from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import connection, running_server

pytestmark = pytest.mark.integration


def test_api_round_trip_and_restart(store_location):
    loc = store_location
    with running_server(loc["data_dir"], loc["database_url"]) as srv:
        c = connection(srv)
        dcs = c.system_service().data_centers_service()
        dc = dcs.add(types.DataCenter(name="persisted", local=False))
        cl = (
            c.system_service()
            .clusters_service()
            .add(types.Cluster(name="persisted-cl", data_center=types.DataCenter(id=dc.id)))
        )
        vm = (
            c.system_service()
            .vms_service()
            .add(
                types.Vm(
                    name="persisted-vm",
                    cluster=types.Cluster(id=cl.id),
                    template=types.Template(name="Blank"),
                    memory=512 * 1024 * 1024,
                )
            )
        )
        with pytest.raises(sdk.Error) as err:
            dcs.add(types.DataCenter(name="persisted", local=False))
        assert err.value.code == 409
        head = srv.bus.log.head()
        token = c.authenticate()
    with running_server(loc["data_dir"], loc["database_url"]) as srv2:
        assert srv2.bus.log.head() == head  # initialization did not run twice
        c2 = connection(srv2)
        got = c2.system_service().vms_service().vm_service(vm.id).get()
        assert got.name == "persisted-vm" and got.memory == 512 * 1024 * 1024
        assert got.cluster.id == cl.id
        assert [
            d.name for d in c2.system_service().data_centers_service().list(search="name=persisted")
        ] == ["persisted"]
        # The old token is gone with the old process: 401, and the SDK logs in again.
        c_old = sdk.Connection(url=srv2.url, token=token)
        with pytest.raises(sdk.AuthError):
            c_old.system_service().get()
        c2.close()
