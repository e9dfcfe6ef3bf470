"""Maps hostd's statistics facts to the history warehouse's samples.

Telemetry is not domain state: samples go straight to the warehouse's sampler (which
keeps one row per object per interval), never to the event log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

log = logging.getLogger("orrery.telemetry")
MiB = 1 << 20


class TelemetrySink:
    """``sink(host_id, stats_sample)``: called by the HostLink for every StatsSample."""

    def __init__(self, bus: Any, runner: Any) -> None:
        self.bus = bus
        self.runner = runner

    def __call__(self, host_id: UUID, fact: Any) -> None:
        from domain.host import Host
        from domain.storage import StorageDomain
        from domain.vm import Vm
        from history.samples import HostSample, StorageDomainSample, VmSample

        when = datetime.fromtimestamp(fact.ts, UTC) if fact.ts else datetime.now(UTC)
        eng = self.bus.engine
        host = eng.find(Host, host_id)
        h = fact.host
        vm_stats = list(fact.vms)
        self.runner.observe(
            HostSample(
                time=when,
                host_id=host_id,
                status=str(host.status) if host is not None else "up",
                cpu_usage_percent=h.cpu_user + h.cpu_sys,
                user_cpu_usage_percent=h.cpu_user,
                system_cpu_usage_percent=h.cpu_sys,
                cpu_load=h.cpu_load,
                memory_used=max(0, h.mem_total_mib - h.mem_free_mib) * MiB,
                memory_total=h.mem_total_mib * MiB,
                swap_used=max(0, h.swap_total_mib - h.swap_free_mib) * MiB,
                active_vms=h.vms_running,
                total_vms=len(vm_stats),
                total_vms_vcpus=sum(v.vcpus for v in vm_stats),
            )
        )
        for v in vm_stats:
            try:
                vm_id = UUID(v.vm_id)
            except ValueError:
                continue
            vm = eng.find(Vm, vm_id)
            if vm is None:
                continue
            self.runner.observe(
                VmSample(
                    time=when,
                    vm_id=vm_id,
                    status=str(vm.status),
                    cpu_usage_percent=v.cpu_percent,
                    memory_used=(v.memory_rss_mib or 0) * MiB,
                    memory_total=v.memory_mib * MiB,
                    host_id=host_id,
                )
            )
        if host is not None:
            from domain.cluster import Cluster

            cluster = eng.find(Cluster, host.cluster_id)
            for sd in eng.all(StorageDomain):
                if cluster is not None and sd.data_center_id == cluster.data_center_id:
                    self.runner.observe(
                        StorageDomainSample(
                            time=when,
                            storage_domain_id=sd.id,
                            status=str(sd.status),
                            available=sd.available,
                            used=sd.used,
                        )
                    )
