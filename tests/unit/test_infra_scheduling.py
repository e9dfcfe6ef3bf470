"""The pure scheduler: filters, policies, affinity, networks, deterministic ties."""

from __future__ import annotations

from types import SimpleNamespace
from uuid import UUID

import pytest

from commands.cluster import UpdateCluster
from commands.host import ReportHostConnectionLost
from commands.network import AddNetwork
from domain.affinity import AffinityGroup
from domain.network import VnicProfile
from domain.scheduling import choose, schedule
from domain.statuses import VmStatus
from tests.unit.helpers import World
from tests.unit.test_infra_world import GIB, cluster, dc, host, rejects

pytestmark = pytest.mark.unit

_n = iter(range(1, 10_000))


def fake_vm(cluster_id, *, name=None, memory=GIB, cpus=1, host_id=None, nics=(), **kw):
    i = next(_n)
    return SimpleNamespace(
        id=UUID(int=(7 << 64) + i),
        name=name or f"vm{i}",
        cluster_id=cluster_id,
        memory=memory,
        cpu_sockets=cpus,
        cpu_cores=1,
        cpu_threads=1,
        nics=tuple(SimpleNamespace(vnic_profile_id=p) for p in nics),
        placement_host_id=kw.pop("placement_host_id", None),
        status=VmStatus.UP if host_id else VmStatus.DOWN,
        run_on_host_id=host_id,
        migrating_to_host_id=None,
        **kw,
    )


def world(policy="none", overcommit=100, hosts=3):
    w = World()
    d = dc(w)
    c = cluster(w, d, scheduling_policy=policy, memory_overcommit=overcommit)
    hs = [host(w, c, f"h{i}", port=i + 1, cpu_cores=4, memory_total=8 * GIB) for i in range(hosts)]
    return w, d, c, hs


def _row(result, hid):
    return next(r for r in result.scores if r.host_id == hid)


def test_none_policy_first_by_name_and_table_lists_every_host() -> None:
    w, _d, c, hs = world()
    r = schedule(w.engine, fake_vm(c), vms=[])
    assert r.host_id == hs[0]
    assert [row.name for row in r.scores] == ["h0", "h1", "h2"]
    assert all(row.score == 0 for row in r.scores)


def test_filters_status_cpu_memory_and_overcommit() -> None:
    w, _d, c, hs = world()
    w.run(ReportHostConnectionLost(host_id=hs[0]))
    big = [fake_vm(c, memory=7 * GIB, host_id=hs[1])]
    r = schedule(w.engine, fake_vm(c, memory=2 * GIB), vms=big)
    assert r.host_id == hs[2]
    assert "not up" in _row(r, hs[0]).reason
    assert "Not enough memory" in _row(r, hs[1]).reason
    r = schedule(w.engine, fake_vm(c, cpus=5), vms=[])
    assert r.host_id is None
    assert all("CPUs" in row.reason for row in r.scores[1:])
    # 150 % overcommit: 12 GiB schedulable, 7 used, 2 more fits.
    w.run(UpdateCluster(cluster_id=c, memory_overcommit=150))
    r = schedule(w.engine, fake_vm(c, memory=2 * GIB), vms=big, wanted_host_id=hs[1])
    assert r.host_id == hs[1]


def test_wanted_and_excluded_hosts() -> None:
    w, _d, c, hs = world()
    r = schedule(w.engine, fake_vm(c), vms=[], wanted_host_id=hs[2])
    assert r.host_id == hs[2]
    assert _row(r, hs[0]).reason == "Not the requested Host."
    r = schedule(w.engine, fake_vm(c), vms=[], exclude=[hs[0]])
    assert r.host_id == hs[1]


def test_hosts_of_other_clusters_never_chosen() -> None:
    w, d, c, _hs = world(hosts=1)
    other = cluster(w, d, "other")
    far = host(w, other, "far", port=99)
    r = schedule(w.engine, fake_vm(c), vms=[], wanted_host_id=far)
    assert r.host_id is None
    assert "not in the VM's Cluster" in _row(r, far).reason


def test_evenly_distributed_prefers_least_loaded_power_saving_most_loaded() -> None:
    w, _d, c, hs = world("evenly_distributed")
    load = [
        fake_vm(c, memory=4 * GIB, cpus=2, host_id=hs[0]),
        fake_vm(c, memory=GIB, host_id=hs[1]),
    ]
    r = schedule(w.engine, fake_vm(c), vms=load)
    assert r.host_id == hs[2]
    scores = [_row(r, h).score for h in hs]
    assert scores[0] > scores[1] > scores[2]
    w.run(UpdateCluster(cluster_id=c, scheduling_policy="power_saving"))
    assert schedule(w.engine, fake_vm(c), vms=load).host_id == hs[0]
    # Power saving still only picks a host where the VM fits.
    assert schedule(w.engine, fake_vm(c, memory=5 * GIB), vms=load).host_id == hs[1]


def test_vm_evenly_distributed_counts_vms() -> None:
    w, _d, c, hs = world("vm_evenly_distributed")
    load = [fake_vm(c, memory=1, host_id=hs[0]), fake_vm(c, memory=1, host_id=hs[0])]
    load.append(fake_vm(c, memory=6 * GIB, host_id=hs[1]))
    r = schedule(w.engine, fake_vm(c), vms=load)
    assert r.host_id == hs[2]
    load.append(fake_vm(c, memory=1, host_id=hs[2]))
    load.append(fake_vm(c, memory=1, host_id=hs[2]))
    assert schedule(w.engine, fake_vm(c), vms=load).host_id == hs[1]


def test_networks_of_the_vm_must_be_on_the_host() -> None:
    w, d, c, _hs = world(hosts=0)
    net = w.run(AddNetwork(name="red", data_center_id=d, cluster_ids=(c,), required=False))
    profile = next(p.id for p in w.engine.all(VnicProfile) if p.network_id == net)
    plain = host(w, c, "a-plain", port=1)
    red = host(w, c, "b-red", port=2, networks=("ovirtmgmt", "red"))
    r = schedule(w.engine, fake_vm(c, nics=(profile,)), vms=[])
    assert r.host_id == red
    assert "red" in _row(r, plain).reason


def _group(w, c, name, **kw):
    from commands.affinity import AddAffinityGroup

    return w.run(AddAffinityGroup(name=name, cluster_id=c, **kw))


def _vm_in_groups(w, c, vm, gid):
    """Puts a fake VM into a group without the VM area (groups only keep ids)."""
    import msgspec

    g = w.engine.get(AffinityGroup, gid)
    w.engine.objects[gid] = msgspec.structs.replace(g, vm_ids=(*g.vm_ids, vm.id))
    w.engine._by_type[AffinityGroup][gid] = w.engine.objects[gid]


def test_vm_to_host_affinity_enforcing_and_soft() -> None:
    w, _d, c, hs = world()
    vm = fake_vm(c)
    g = _group(w, c, "pin", host_ids=(hs[2],), hosts_enforcing=True, hosts_positive=True)
    _vm_in_groups(w, c, vm, g)
    r = schedule(w.engine, vm, vms=[])
    assert r.host_id == hs[2]
    assert "must run on the group's Hosts" in _row(r, hs[0]).reason
    w2, _d2, c2, hs2 = world()
    vm2 = fake_vm(c2)
    g2 = _group(w2, c2, "avoid", host_ids=(hs2[0],), hosts_enforcing=False, hosts_positive=False)
    _vm_in_groups(w2, c2, vm2, g2)
    r = schedule(w2.engine, vm2, vms=[])
    assert r.host_id == hs2[1]
    assert _row(r, hs2[0]).score > _row(r, hs2[1]).score


def test_vm_to_vm_affinity_positive_and_negative() -> None:
    w, _d, c, hs = world()
    friend = fake_vm(c, host_id=hs[1])
    vm = fake_vm(c)
    g = _group(w, c, "together", positive=True, enforcing=True)
    _vm_in_groups(w, c, friend, g)
    _vm_in_groups(w, c, vm, g)
    assert schedule(w.engine, vm, vms=[friend]).host_id == hs[1]
    w2, _d2, c2, hs2 = world()
    foe = fake_vm(c2, host_id=hs2[0])
    vm2 = fake_vm(c2)
    g2 = _group(w2, c2, "apart", positive=False, enforcing=True)
    _vm_in_groups(w2, c2, foe, g2)
    _vm_in_groups(w2, c2, vm2, g2)
    r = schedule(w2.engine, vm2, vms=[foe])
    assert r.host_id == hs2[1]
    assert "must not run with" in _row(r, hs2[0]).reason


def test_placement_host_preferred_and_no_host_error() -> None:
    w, _d, c, hs = world()
    assert schedule(w.engine, fake_vm(c, placement_host_id=hs[2]), vms=[]).host_id == hs[2]
    from domain.base import DomainError

    with pytest.raises(DomainError, match="no host that satisfies") as e:
        choose(w.engine, fake_vm(c, memory=100 * GIB), action="run")
    assert "h0: Not enough memory" in e.value.message


def test_deterministic_for_equal_hosts() -> None:
    w, _d, c, _hs = world("evenly_distributed")
    vm = fake_vm(c)
    first = schedule(w.engine, vm, vms=[])
    assert all(schedule(w.engine, vm, vms=[]) == first for _ in range(5))
    assert first.host_id == _hs[0]


def test_rejects_helper_is_shared() -> None:
    # The cluster policy field is validated at the command boundary too.
    w, _d, c, _hs = world()
    from domain.base import InvalidInput

    with pytest.raises(InvalidInput):
        from commands.messages import parse_command

        parse_command(UpdateCluster, {"cluster_id": str(c), "scheduling_policy": "random"})
    rejects(w, UpdateCluster(cluster_id=c, memory_overcommit=50), "between 100 and 400")


def test_ha_reservation_spreads_highly_available_vms() -> None:
    w, _d, c, hs = world()
    load = [fake_vm(c, memory=1, host_id=hs[0], highly_available=True)]
    ha = fake_vm(c, highly_available=True)
    assert schedule(w.engine, ha, vms=load).host_id == hs[0]  # reservation off: by name
    w.run(UpdateCluster(cluster_id=c, ha_reservation=True))
    assert schedule(w.engine, ha, vms=load).host_id == hs[1]
    plain = fake_vm(c, highly_available=False)
    assert schedule(w.engine, plain, vms=load).host_id == hs[0]


def test_score_map_lists_only_passing_hosts() -> None:
    w, _d, c, hs = world()
    w.run(ReportHostConnectionLost(host_id=hs[1]))
    r = schedule(w.engine, fake_vm(c), vms=[])
    assert r.score_map() == {hs[0]: 0, hs[2]: 0}
    assert [x.host_id for x in r.rejected()] == [hs[1]]
