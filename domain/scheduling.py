"""The scheduler: pure. Which host should a VM run on, and why not the others.

``schedule(engine, vm)`` filters the hosts of the VM's cluster the way oVirt's filter
units do (status up, memory with the cluster's overcommit, CPU count, enforcing VM and
VM-to-host affinity, the networks of the VM's NICs), then weighs the survivors by the
cluster's scheduling policy. The answer names the chosen host and gives a row per host
(score or the reason it was rejected) for the ``VmScheduled`` event.

Scores: lower is better (as in oVirt). Ties go to the host name, then the id.
Loads are "allocated" loads (vCPUs and memory committed to VMs), in per mille.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import msgspec

from domain.affinity import AffinityGroup
from domain.base import DomainError
from domain.cluster import Cluster, SchedulingPolicy
from domain.host import Host
from domain.network import LogicalNetwork, VnicProfile
from domain.statuses import VM_ON_HOST, HostStatus
from domain.vm import Vm

# Soft-rule penalties, after oVirt's weight factors (PreferredHosts x99,
# VmToHostAffinity soft x20, VmAffinity soft x1), scaled above any load score.
UNIT = 10_000
PREFERRED_HOST_PENALTY = 99 * UNIT
VM_HOST_SOFT_PENALTY = 20 * UNIT
VM_VM_SOFT_PENALTY = 1 * UNIT
HA_RESERVATION_WEIGHT = 1000


class HostScore(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One host's row: ``score`` when it passed the filters, else ``reason``."""

    host_id: UUID
    name: str
    score: int | None = None
    reason: str = ""


class ScheduleResult(msgspec.Struct, frozen=True, kw_only=True):
    host_id: UUID | None
    scores: tuple[HostScore, ...] = ()
    policy: str = "none"

    def rejected(self) -> list[HostScore]:
        return [s for s in self.scores if s.score is None]

    def score_map(self) -> dict[UUID, int]:
        """The hosts that passed and their scores (the shape ``VmScheduled`` records)."""
        return {s.host_id: s.score for s in self.scores if s.score is not None}


def vcpus_of(vm: Any) -> int:
    return int(
        getattr(vm, "cpu_sockets", 1) * getattr(vm, "cpu_cores", 1) * getattr(vm, "cpu_threads", 1)
    )


def _network_names(engine: Any, vm: Any) -> list[str]:

    names = set()
    for nic in getattr(vm, "nics", ()):
        pid = getattr(nic, "vnic_profile_id", None)
        profile = engine.find(VnicProfile, pid)
        if profile is None:
            continue
        net = engine.find(LogicalNetwork, profile.network_id)
        if net is not None:
            names.add(net.name)
    return sorted(names)


def schedule(
    engine: Any,
    vm: Any,
    *,
    wanted_host_id: UUID | None = None,
    exclude: Iterable[UUID] = (),
    vms: list[Any] | None = None,
) -> ScheduleResult:
    """Chooses a host for ``vm`` (None when no host passes) with the per-host table.

    ``wanted_host_id``: only that host is a candidate (run on / migrate to a host).
    ``exclude``: hosts that may not be chosen (the migration source, failed runs).
    ``vms``: every VM (defaults to the engine's); the scheduled VM itself is ignored.
    """

    cluster = engine.get(Cluster, vm.cluster_id, field="cluster")
    excluded = set(exclude)
    all_vms = [v for v in (engine.all(Vm) if vms is None else vms) if v.id != vm.id]
    hosts = sorted(
        (h for h in engine.all(Host) if h.cluster_id == cluster.id or h.id == wanted_host_id),
        key=lambda h: (h.name, h.id),
    )
    groups = sorted(
        (g for g in engine.all(AffinityGroup) if g.cluster_id == cluster.id and vm.id in g.vm_ids),
        key=lambda g: (g.name, g.id),
    )
    member_hosts: dict[UUID, set[UUID]] = {}
    for g in groups:
        hs: set[UUID] = set()
        for other in all_vms:
            if other.id in g.vm_ids and other.status in VM_ON_HOST:
                h = getattr(other, "run_on_host_id", None)
                if h is not None:
                    hs.add(h)
        member_hosts[g.id] = hs
    networks = _network_names(engine, vm)
    need_cpus = vcpus_of(vm)
    need_mem = int(getattr(vm, "memory", 0))
    policy = SchedulingPolicy(cluster.scheduling_policy)

    by_host: dict[UUID, list[Any]] = {}
    for v in all_vms:
        if v.status in VM_ON_HOST:
            for hid in {
                getattr(v, "run_on_host_id", None),
                getattr(v, "migrating_to_host_id", None),
            }:
                if hid is not None:
                    by_host.setdefault(hid, []).append(v)
    rows: list[HostScore] = []
    best: tuple[int, str, UUID] | None = None
    for h in hosts:
        on_host = by_host.get(h.id, [])
        reason = _filter(
            h,
            cluster=cluster,
            wanted=wanted_host_id,
            excluded=excluded,
            on_host=on_host,
            need_cpus=need_cpus,
            need_mem=need_mem,
            networks=networks,
            groups=groups,
            member_hosts=member_hosts,
        )
        if reason:
            rows.append(HostScore(host_id=h.id, name=h.name, reason=reason))
            continue
        score = _weigh(h, vm, cluster, policy, on_host, need_cpus, need_mem)
        score += _soft_penalty(h, vm, groups, member_hosts)
        rows.append(HostScore(host_id=h.id, name=h.name, score=score))
        key = (score, h.name, h.id)
        if best is None or key < best:
            best = key
    return ScheduleResult(
        host_id=best[2] if best is not None else None, scores=tuple(rows), policy=str(policy)
    )


def _filter(
    h: Host,
    *,
    cluster: Cluster,
    wanted: UUID | None,
    excluded: set[UUID],
    on_host: list[Any],
    need_cpus: int,
    need_mem: int,
    networks: list[str],
    groups: list[Any],
    member_hosts: dict[UUID, set[UUID]],
) -> str:
    if h.cluster_id != cluster.id:
        return "The Host is not in the VM's Cluster."
    if wanted is not None and h.id != wanted:
        return "Not the requested Host."
    if h.id in excluded:
        return "The Host is excluded (source Host or an earlier failed attempt)."
    if h.status != HostStatus.UP:
        return f"The Host is not up (status {h.status})."
    if h.cpu_cores < need_cpus:
        return f"The Host has {h.cpu_cores} CPUs, the VM needs {need_cpus}."
    capacity = h.memory_total * cluster.memory_overcommit // 100
    committed = sum(int(getattr(v, "memory", 0)) for v in on_host)
    if committed + need_mem > capacity:
        return (
            f"Not enough memory: {capacity - committed} bytes schedulable, the VM needs {need_mem}."
        )
    missing = [n for n in networks if n not in h.networks]
    if missing:
        return "The Host lacks the VM's networks: " + ", ".join(missing) + "."
    for g in groups:
        if g.enforcing:
            where = member_hosts[g.id]
            if g.positive and where and where != {h.id}:
                return f"Affinity group {g.name}: the VM must run with its group's VMs."
            if not g.positive and h.id in where:
                return f"Affinity group {g.name}: the VM must not run with its group's VMs."
        if g.hosts_enforcing and g.host_ids:
            if g.hosts_positive and h.id not in g.host_ids:
                return f"Affinity group {g.name}: the VM must run on the group's Hosts."
            if not g.hosts_positive and h.id in g.host_ids:
                return f"Affinity group {g.name}: the VM must not run on the group's Hosts."
    return ""


def _loads(h: Host, cluster: Cluster, on_host: list[Any], cpus: int, mem: int) -> tuple[int, int]:
    """Allocated CPU and memory load in per mille, counting the VM being placed."""
    cpu = (sum(vcpus_of(v) for v in on_host) + cpus) * 1000 // max(h.cpu_cores, 1)
    capacity = max(h.memory_total * cluster.memory_overcommit // 100, 1)
    memory = (sum(int(getattr(v, "memory", 0)) for v in on_host) + mem) * 1000 // capacity
    return cpu, memory


def _weigh(
    h: Host,
    vm: Any,
    cluster: Cluster,
    policy: SchedulingPolicy,
    on_host: list[Any],
    cpus: int,
    mem: int,
) -> int:
    score = 0
    if policy in (SchedulingPolicy.EVENLY_DISTRIBUTED, SchedulingPolicy.POWER_SAVING):
        cpu, memory = _loads(h, cluster, on_host, cpus, mem)
        load = 2 * cpu + memory  # EvenDistribution: CPU x2, memory x1
        score = load if policy == SchedulingPolicy.EVENLY_DISTRIBUTED else -load
    elif policy == SchedulingPolicy.VM_EVENLY_DISTRIBUTED:
        score = len(on_host) * 100
    if cluster.ha_reservation and getattr(vm, "highly_available", False):
        # HaReservation: spread highly available VMs so a host failure hits few of them.
        score += HA_RESERVATION_WEIGHT * sum(
            1 for v in on_host if getattr(v, "highly_available", False)
        )
    placement = getattr(vm, "placement_host_id", None)
    if placement is not None and placement != h.id:
        score += PREFERRED_HOST_PENALTY
    return score


def _soft_penalty(h: Host, vm: Any, groups: list[Any], member_hosts: dict[UUID, set[UUID]]) -> int:
    penalty = 0
    for g in groups:
        where = member_hosts[g.id]
        if not g.enforcing and where:
            if g.positive and h.id not in where:
                penalty += VM_VM_SOFT_PENALTY
            if not g.positive and h.id in where:
                penalty += VM_VM_SOFT_PENALTY
        if not g.hosts_enforcing and g.host_ids:
            if g.hosts_positive and h.id not in g.host_ids:
                penalty += VM_HOST_SOFT_PENALTY
            if not g.hosts_positive and h.id in g.host_ids:
                penalty += VM_HOST_SOFT_PENALTY
    return penalty


def no_host_error(result: ScheduleResult, action: str = "run") -> DomainError:
    """oVirt's refusal when no host passes, listing each host's reason."""
    details = "; ".join(f"{s.name}: {s.reason}" for s in result.rejected())
    msg = f"Cannot {action} VM. There is no host that satisfies current scheduling constraints."
    if details:
        msg += f" See below for details: {details}"
    return DomainError(msg, field="host")


def choose(
    engine: Any,
    vm: Any,
    *,
    action: str = "run",
    wanted_host_id: UUID | None = None,
    exclude: Iterable[UUID] = (),
) -> ScheduleResult:
    """``schedule`` that raises oVirt's DomainError when no host passes."""
    result = schedule(engine, vm, wanted_host_id=wanted_host_id, exclude=exclude)
    if result.host_id is None:
        raise no_host_error(result, action)
    return result


__all__ = ["HostScore", "ScheduleResult", "choose", "no_host_error", "schedule"]
