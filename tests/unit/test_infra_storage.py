"""Storage domains: validation, attach/activate/deactivate/detach/remove, the master role."""

from __future__ import annotations

import pytest

from commands.host import DeactivateHost
from commands.storage import (
    ActivateStorageDomain,
    AddStorageDomain,
    AttachStorageDomain,
    DeactivateStorageDomain,
    DetachStorageDomain,
    RemoveStorageDomain,
    ReportStorageDomainSpace,
    UpdateStorageDomain,
)
from domain.datacenter import DataCenter
from domain.statuses import StorageDomainStatus
from domain.storage import StorageDomain
from tests.unit.helpers import World
from tests.unit.test_infra_world import cluster, dc, host, nfs, rejects, up_dc

pytestmark = pytest.mark.unit


def _sd(w: World, sd):
    return w.engine.get(StorageDomain, sd)


@pytest.mark.parametrize(
    ("kw", "match", "field"),
    [
        (dict(storage_type="nfs", path="/x"), "needs an address", "address"),
        (dict(storage_type="nfs", address="srv"), "needs a path", "path"),
        (dict(storage_type="nfs", address="srv", path="rel/x"), "absolute", "path"),
        (dict(storage_type="nfs", address="srv:/x", path="/x"), "host name or IP", "address"),
        (dict(storage_type="posixfs"), "needs a path", "path"),
        (dict(storage_type="localfs", path="data"), "absolute", "path"),
        (dict(storage_type="glusterfs", path="vol"), "needs an address", "address"),
        (dict(storage_type="iscsi"), "needs an address", "address"),
        (dict(storage_type="fcp", path="/x"), "neither address nor path", "path"),
        (dict(storage_type="iscsi", address="t", domain_type="iso"), "ISO domains", "storage_type"),
    ],
)
def test_connection_validation(kw, match, field) -> None:
    w = World()
    rejects(w, AddStorageDomain(name="sd", **kw), match, field=field)


def test_add_unattached_and_unique_name_and_connection() -> None:
    w = World()
    sd = nfs(w, "data1", available=100, used=5)
    obj = _sd(w, sd)
    assert (obj.status, obj.data_center_id, obj.master) == ("unattached", None, False)
    assert (obj.available, obj.used) == (100, 5)
    rejects(w, AddStorageDomain(name="data1", address="o", path="/o"), "name is already in use")
    rejects(
        w,
        AddStorageDomain(name="dup", address="nfs.example", path="/exports/data1/"),
        "already used by Storage Domain data1",
    )
    w.run(AddStorageDomain(name="blk", storage_type="fcp"))
    w.run(AddStorageDomain(name="blk2", storage_type="fcp"))


def test_attach_needs_an_up_host_and_makes_first_data_domain_master() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    sd = nfs(w)
    rejects(w, AttachStorageDomain(storage_domain_id=sd, data_center_id=d), "no active Host")
    host(w, c)
    w.run(AttachStorageDomain(storage_domain_id=sd, data_center_id=d))
    obj = _sd(w, sd)
    assert (obj.status, obj.data_center_id, obj.master) == ("active", d, True)
    rejects(w, AttachStorageDomain(storage_domain_id=sd, data_center_id=d), "already attached")


def test_attach_without_activate_leaves_maintenance() -> None:
    w = World()
    d = dc(w)
    host(w, cluster(w, d))
    sd = nfs(w)
    w.run(AttachStorageDomain(storage_domain_id=sd, data_center_id=d, activate=False))
    assert _sd(w, sd).status == StorageDomainStatus.MAINTENANCE
    assert not _sd(w, sd).master
    assert w.engine.get(DataCenter, d).status == "uninitialized"
    w.run(ActivateStorageDomain(storage_domain_id=sd))
    assert _sd(w, sd).master and w.engine.get(DataCenter, d).status == "up"
    rejects(w, ActivateStorageDomain(storage_domain_id=sd), "already active")


def test_localfs_only_in_local_dc_and_local_dc_only_localfs() -> None:
    w = World()
    shared, _c, _hs, _ = up_dc(w)
    local = dc(w, "local", local=True)
    host(w, cluster(w, local, "lc"), "lh", port=2)
    lsd = w.run(AddStorageDomain(name="l1", storage_type="localfs", path="/data/l1"))
    rejects(
        w, AttachStorageDomain(storage_domain_id=lsd, data_center_id=shared), "local Data Center"
    )
    other = nfs(w, "n2")
    rejects(
        w, AttachStorageDomain(storage_domain_id=other, data_center_id=local), "only local storage"
    )
    w.run(AttachStorageDomain(storage_domain_id=lsd, data_center_id=local))
    assert w.engine.get(DataCenter, local).status == "up"


def test_iso_and_export_need_a_master_and_only_one_each() -> None:
    w = World()
    d = dc(w)
    host(w, cluster(w, d))
    iso = nfs(w, "iso", domain_type="iso")
    rejects(
        w, AttachStorageDomain(storage_domain_id=iso, data_center_id=d), "active data domain first"
    )
    nfs(w, "data", dc_id=d)
    w.run(AttachStorageDomain(storage_domain_id=iso, data_center_id=d))
    iso2 = nfs(w, "iso2", domain_type="iso")
    rejects(
        w, AttachStorageDomain(storage_domain_id=iso2, data_center_id=d), "already contains an ISO"
    )
    exp = nfs(w, "exp", domain_type="export")
    w.run(AttachStorageDomain(storage_domain_id=exp, data_center_id=d))
    assert _sd(w, exp).status == "active" and not _sd(w, exp).master


def test_master_moves_to_another_active_data_domain() -> None:
    w = World()
    d, _c, _hs, first = up_dc(w)
    second = nfs(w, "b-data", dc_id=d)
    third = nfs(w, "a-data", dc_id=d)
    assert _sd(w, first).master and not _sd(w, second).master
    w.run(DeactivateStorageDomain(storage_domain_id=first))
    assert not _sd(w, first).master
    assert _sd(w, third).master  # by name: a-data before b-data
    assert w.engine.get(DataCenter, d).status == "up"
    masters = [s for s in w.engine.all(StorageDomain) if s.master]
    assert len(masters) == 1


def test_last_master_waits_for_iso_export_domains() -> None:
    w = World()
    d, _c, _hs, data = up_dc(w)
    iso = nfs(w, "iso", domain_type="iso", dc_id=d)
    rejects(w, DeactivateStorageDomain(storage_domain_id=data), "ISO/Export domains")
    w.run(DeactivateStorageDomain(storage_domain_id=iso))
    w.run(DeactivateStorageDomain(storage_domain_id=data))
    assert w.engine.get(DataCenter, d).status == "maintenance"
    rejects(w, DeactivateStorageDomain(storage_domain_id=data), "already in maintenance")


def test_detach_only_from_maintenance() -> None:
    w = World()
    d, _c, _hs, _data = up_dc(w)
    other = nfs(w, "other", dc_id=d)
    rejects(
        w, DetachStorageDomain(storage_domain_id=other), "Storage Domain is not in maintenance."
    )
    w.run(DeactivateStorageDomain(storage_domain_id=other))
    w.run(DetachStorageDomain(storage_domain_id=other))
    obj = _sd(w, other)
    assert (obj.status, obj.data_center_id) == ("unattached", None)
    rejects(w, DetachStorageDomain(storage_domain_id=other), "not attached")


def test_master_detach_only_when_last() -> None:
    w = World()
    d, _c, _hs, data = up_dc(w)
    sd2 = w.run(AddStorageDomain(name="z", address="n", path="/z"))
    w.run(AttachStorageDomain(storage_domain_id=sd2, data_center_id=d, activate=False))
    w.run(DeactivateStorageDomain(storage_domain_id=data))
    # sd2 is in maintenance, so the master stays on data.
    assert _sd(w, data).master
    rejects(w, DetachStorageDomain(storage_domain_id=data), "master Storage Domain")
    w.run(DetachStorageDomain(storage_domain_id=sd2))
    w.run(DetachStorageDomain(storage_domain_id=data))
    assert w.engine.get(DataCenter, d).status == "uninitialized"


def test_remove_only_unattached_or_destroy_when_not_active() -> None:
    w = World()
    d, _c, _hs, data = up_dc(w)
    rejects(w, RemoveStorageDomain(storage_domain_id=data), "Detach it first")
    rejects(w, RemoveStorageDomain(storage_domain_id=data, force=True), "is active")
    w.run(DeactivateStorageDomain(storage_domain_id=data))
    w.run(RemoveStorageDomain(storage_domain_id=data, force=True))
    assert w.engine.find(StorageDomain, data) is None
    assert w.engine.get(DataCenter, d).status == "uninitialized"
    free = nfs(w, "free")
    w.run(RemoveStorageDomain(storage_domain_id=free))
    assert w.engine.find(StorageDomain, free) is None


def test_the_data_center_and_host_a_request_names_are_the_domains() -> None:
    w = World()
    d, _c, hs, data = up_dc(w)
    d2, _c2, hs2, _data2 = up_dc(w, name="dc2")
    for cmd in (ActivateStorageDomain, DeactivateStorageDomain, DetachStorageDomain):
        rejects(w, cmd(storage_domain_id=data, data_center_id=d2), "Entity not found")
    w.run(DeactivateStorageDomain(storage_domain_id=data, data_center_id=d))
    destroy = RemoveStorageDomain(storage_domain_id=data, force=True, host_id=hs2[0])
    rejects(w, destroy, "not in the Storage Domain's Data Center", field="host")
    w.run(RemoveStorageDomain(storage_domain_id=data, force=True, host_id=hs[0]))
    assert w.engine.find(StorageDomain, data) is None


def test_space_reports_and_update() -> None:
    w = World()
    sd = nfs(w)
    w.run(ReportStorageDomainSpace(storage_domain_id=sd, available=50, used=10))
    assert (_sd(w, sd).available, _sd(w, sd).used) == (50, 10)
    n = len(w.log)
    w.run(ReportStorageDomainSpace(storage_domain_id=sd, available=50, used=10))
    assert len(w.log) == n  # nothing changed, nothing written
    w.run(UpdateStorageDomain(storage_domain_id=sd, name="renamed", warning_low_space=20))
    assert _sd(w, sd).name == "renamed" and _sd(w, sd).warning_low_space == 20


def test_host_maintenance_of_last_host_keeps_domain_but_dc_non_responsive() -> None:
    w = World()
    d, _c, hs, data = up_dc(w)
    w.run(DeactivateHost(host_id=hs[0]))
    obj = w.engine.get(DataCenter, d)
    assert obj.status == "non_responsive" and obj.spm_host_id is None
    assert _sd(w, data).master
