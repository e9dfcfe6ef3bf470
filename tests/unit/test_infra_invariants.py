"""Random sequences of infrastructure commands keep the model's invariants.

After every step: names are unique in their scope, a data center has at most one master
domain (exactly one while a data domain is active), its SPM (at most one) is an up host
of that data center, an up data center has an SPM and an active master, references
point at live objects, statuses only move along their tables, a refused command writes
nothing -- and replaying the log gives the live state.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import cluster as cc
from commands import datacenter as dcc
from commands import host as hc
from commands import network as nc
from commands import storage as sc
from domain.base import DomainError
from domain.cluster import Cluster
from domain.datacenter import DC_TRANSITIONS, DataCenter, DataCenterStatusChanged
from domain.host import HOST_TRANSITIONS, Host, HostStatusChanged
from domain.network import LogicalNetwork, VnicProfile
from domain.statuses import DataCenterStatus, HostStatus, StorageDomainStatus
from domain.storage import StorageDomain, StorageDomainType
from tests.unit.helpers import World
from tests.unit.test_infra_world import caps

pytestmark = pytest.mark.unit


def pick(w: World, cls: type, k: int) -> UUID:
    objs = sorted(o.id for o in w.engine.all(cls))
    return objs[k % len(objs)] if objs else UUID(int=k + 1)


def build(w: World, op: str, i: int, j: int) -> Any:
    h = pick(w, Host, i)
    sd = pick(w, StorageDomain, i)
    d = pick(w, DataCenter, j)
    match op:
        case "add_dc":
            return dcc.AddDataCenter(name=f"dc{i % 3}", local=j % 5 == 0)
        case "add_cluster":
            return cc.AddCluster(name=f"c{i % 4}", data_center_id=d)
        case "add_host":
            return hc.AddHost(
                name=f"h{i % 6}",
                address="10.0.0.1",
                port=1000 + i % 7,
                cluster_id=pick(w, Cluster, j),
                spm_priority=i % 12 - 1,
            )
        case "installed":
            return hc.ReportHostInstalled(host_id=h, success=j % 5 != 0)
        case "caps":
            nets = () if j % 9 == 0 else ("ovirtmgmt", "red")
            return caps(h, kvm=j % 7 != 0, networks=nets, hardware_uuid=f"hw{i % 6}")
        case "lost":
            return hc.ReportHostConnectionLost(host_id=h)
        case "non_responsive":
            return hc.MarkHostNonResponsive(host_id=h)
        case "restored":
            return hc.ReportHostConnectionRestored(host_id=h)
        case "deactivate_host":
            return hc.DeactivateHost(host_id=h)
        case "activate_host":
            return hc.ActivateHost(host_id=h)
        case "finish_maintenance":
            return hc.FinishHostMaintenance(host_id=h)
        case "remove_host":
            return hc.RemoveHost(host_id=h)
        case "reinstall":
            return hc.InstallHost(host_id=h)
        case "confirm_rebooted":
            return hc.ConfirmHostRebooted(host_id=h)
        case "non_operational":
            return hc.SetHostNonOperational(host_id=h, reason="test")
        case "priority":
            return hc.UpdateHost(host_id=h, spm_priority=j % 12 - 1)
        case "select_spm":
            return dcc.SelectSpm(data_center_id=d, host_id=h)
        case "add_sd":
            kind = ("data", "data", "iso", "export")[j % 4]
            if j % 5 == 0 and kind == "data":
                return sc.AddStorageDomain(
                    name=f"sd{i % 6}", storage_type="localfs", path=f"/l/{i}"
                )
            return sc.AddStorageDomain(
                name=f"sd{i % 6}", domain_type=kind, address="nfs", path=f"/e/{i}"
            )
        case "attach_sd":
            return sc.AttachStorageDomain(
                storage_domain_id=sd, data_center_id=d, activate=j % 3 != 0
            )
        case "activate_sd":
            return sc.ActivateStorageDomain(storage_domain_id=sd)
        case "deactivate_sd":
            return sc.DeactivateStorageDomain(storage_domain_id=sd)
        case "detach_sd":
            return sc.DetachStorageDomain(storage_domain_id=sd)
        case "remove_sd":
            return sc.RemoveStorageDomain(storage_domain_id=sd, force=j % 2 == 0)
        case "sd_unreachable":
            return hc.ReportHostStorageUnreachable(host_id=h, storage_domain_id=sd)
        case "remove_cluster":
            return cc.RemoveCluster(cluster_id=pick(w, Cluster, i))
        case "remove_dc":
            return dcc.RemoveDataCenter(data_center_id=d, force=i % 2 == 0)
        case "add_network":
            return nc.AddNetwork(name="red", data_center_id=d, required=i % 2 == 0)
        case "attach_network":
            return nc.AttachNetworkToCluster(
                network_id=pick(w, LogicalNetwork, i), cluster_id=pick(w, Cluster, j)
            )
        case "detach_network":
            return nc.DetachNetworkFromCluster(
                network_id=pick(w, LogicalNetwork, i), cluster_id=pick(w, Cluster, j)
            )
        case "remove_network":
            return nc.RemoveNetwork(network_id=pick(w, LogicalNetwork, i))
    raise AssertionError(op)


OPS = [
    "add_dc",
    "add_cluster",
    "add_host",
    "installed",
    "caps",
    "caps",
    "lost",
    "non_responsive",
    "restored",
    "deactivate_host",
    "activate_host",
    "finish_maintenance",
    "remove_host",
    "reinstall",
    "confirm_rebooted",
    "non_operational",
    "priority",
    "select_spm",
    "add_sd",
    "attach_sd",
    "activate_sd",
    "deactivate_sd",
    "detach_sd",
    "remove_sd",
    "sd_unreachable",
    "remove_cluster",
    "remove_dc",
    "add_network",
    "attach_network",
    "detach_network",
    "remove_network",
]
# Storage and monitoring paths are where the status rules live: visit them more often.
OPS += ["attach_sd", "attach_sd", "activate_sd", "deactivate_sd", "detach_sd", "add_sd"]
OPS += ["caps", "installed", "lost", "non_responsive", "restored", "sd_unreachable"]
OPS += ["finish_maintenance", "select_spm", "add_host"]


def check(w: World) -> None:
    e = w.engine
    # Unique names per scope, and the engine's name index agrees with the objects.
    keys = Counter((*o.name_scope(), o.name) for o in e.objects.values() if o.name_scope())
    assert all(n == 1 for n in keys.values()), keys.most_common(1)
    dcs = {d.id: d for d in e.all(DataCenter)}
    clusters = {c.id: c for c in e.all(Cluster)}
    hosts = {h.id: h for h in e.all(Host)}
    for c in clusters.values():
        assert c.data_center_id in dcs
    for h in hosts.values():
        assert h.cluster_id in clusters
    for n in e.all(LogicalNetwork):
        assert n.data_center_id in dcs
        assert all(clusters[c].data_center_id == n.data_center_id for c in n.cluster_ids)
    for p in e.all(VnicProfile):
        assert e.find(LogicalNetwork, p.network_id) is not None
    for c in clusters.values():  # every cluster carries its DC's management network
        mgmt = [
            n for n in e.all(LogicalNetwork) if "management" in n.usages and c.id in n.cluster_ids
        ]
        assert len(mgmt) == 1 and mgmt[0].data_center_id == c.data_center_id
    spm_hosts = Counter(d.spm_host_id for d in dcs.values() if d.spm_host_id is not None)
    assert all(n == 1 for n in spm_hosts.values())
    for sd in e.all(StorageDomain):
        assert (sd.data_center_id is None) == (sd.status == StorageDomainStatus.UNATTACHED)
        assert sd.data_center_id is None or sd.data_center_id in dcs
        assert not sd.master or sd.domain_type == StorageDomainType.DATA
        if sd.data_center_id is not None and sd.storage_type == "localfs":
            assert dcs[sd.data_center_id].local
    for d in dcs.values():
        attached = [s for s in e.all(StorageDomain) if s.data_center_id == d.id]
        masters = [s for s in attached if s.master]
        assert len(masters) <= 1
        active_data = [
            s
            for s in attached
            if s.domain_type == "data" and s.status == StorageDomainStatus.ACTIVE
        ]
        if active_data:
            assert len(masters) == 1 and masters[0].status == StorageDomainStatus.ACTIVE
        if d.spm_host_id is not None:
            spm = hosts[d.spm_host_id]
            assert spm.status == HostStatus.UP
            assert clusters[spm.cluster_id].data_center_id == d.id
            assert masters and masters[0].status == StorageDomainStatus.ACTIVE
        if d.status == DataCenterStatus.UP:
            assert d.spm_host_id is not None
        if not masters:
            assert d.status == DataCenterStatus.UNINITIALIZED


def check_transitions(w: World) -> None:
    host_status: dict[UUID, HostStatus] = {}
    dc_status: dict[UUID, DataCenterStatus] = {}
    for ev in w.log:
        if type(ev).__name__ == "HostAdded":
            host_status[ev.originator_id] = HostStatus.INSTALLING
        elif type(ev).__name__ == "DataCenterAdded":
            dc_status[ev.originator_id] = DataCenterStatus.UNINITIALIZED
        elif isinstance(ev, HostStatusChanged):
            prev = host_status[ev.originator_id]
            assert ev.status == prev or ev.status in HOST_TRANSITIONS[prev], (prev, ev.status)
            host_status[ev.originator_id] = ev.status
        elif isinstance(ev, DataCenterStatusChanged):
            prev_dc = dc_status[ev.originator_id]
            assert ev.status in DC_TRANSITIONS[prev_dc], (prev_dc, ev.status)
            dc_status[ev.originator_id] = ev.status


steps = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7)),
    min_size=1,
    max_size=60,
)

PRELUDE = [
    ("add_dc", 0, 1),
    ("add_cluster", 0, 0),
    ("add_host", 0, 0),
    ("installed", 0, 1),
    ("caps", 0, 1),
    ("add_host", 7, 0),
    ("installed", 1, 1),
    ("caps", 1, 1),
    ("add_sd", 0, 1),
    ("add_sd", 1, 2),
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps)
def test_random_infra_sequences_keep_invariants(seq) -> None:
    w = World()
    refused = 0
    for op, i, j in PRELUDE + seq:
        cmd = build(w, op, i, j)
        before, digest = len(w.log), w.engine.digest()
        try:
            w.run(cmd)
        except DomainError:
            refused += 1
            assert len(w.log) == before and w.engine.digest() == digest
        w.tick()
        check(w)
    check_transitions(w)
    assert w.replayed().digest() == w.engine.digest()


def test_a_scripted_busy_life_keeps_invariants() -> None:
    """A deterministic run through the interesting paths, for a readable failure."""
    w = World()
    seq = [
        *PRELUDE,
        ("caps", 0, 1),
        ("add_host", 1, 0),
        ("installed", 1, 1),
        ("caps", 1, 1),
        ("add_sd", 0, 1),
        ("attach_sd", 0, 1),
        ("add_sd", 1, 1),
        ("attach_sd", 1, 1),
        ("lost", 0, 0),
        ("non_responsive", 0, 0),
        ("deactivate_sd", 0, 0),
        ("select_spm", 1, 0),
        ("restored", 0, 0),
        ("caps", 0, 1),
        ("deactivate_sd", 1, 0),
        ("detach_sd", 1, 0),
        ("remove_sd", 1, 0),
    ]
    for op, i, j in seq:
        with contextlib.suppress(DomainError):
            w.run(build(w, op, i, j))
        check(w)
    check_transitions(w)
    assert w.replayed().digest() == w.engine.digest()
    ups = [e for e in w.log if isinstance(e, DataCenterStatusChanged) and e.status == "up"]
    assert ups  # the data center did come up on the way
    assert any(s.master for s in w.engine.all(StorageDomain))  # the master was not destroyed
