"""Maps hostd's statistics facts to the history warehouse's samples.

Telemetry is not domain state: samples go straight to the warehouse's sampler (which
keeps one row per object per interval), never to the event log.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec

from domain.cluster import Cluster
from domain.host import Host
from domain.storage import StorageDomain
from domain.vm import Vm
from history.samples import (
    DiskSample,
    HostInterfaceSample,
    HostSample,
    NicSample,
    StorageDomainSample,
    VmSample,
    host_interface_id,
)

log = logging.getLogger("orrery.telemetry")
MiB = 1 << 20


class Statistic(msgspec.Struct, frozen=True, kw_only=True):
    """One of oVirt's statistics of a host or VM (GET .../statistics)."""

    id: UUID
    name: str
    description: str
    kind: str  # gauge | counter
    type: str  # integer | decimal
    unit: str  # bytes | percent | none
    datum: float | int


class HostNic(msgspec.Struct, frozen=True, kw_only=True):
    """A host's network interface as hostd last sampled it (GET /hosts/{id}/nics)."""

    id: UUID
    name: str
    bridged: bool
    received_bytes: int
    transmitted_bytes: int


class TelemetrySink:
    """``sink(host_id, stats_sample)``: called by the HostLink for every StatsSample.
    Feeds the warehouse (when given a runner) and keeps each host's and VM's latest
    figures for the API's statistics sub-collections."""

    def __init__(self, bus: Any, runner: Any = None) -> None:
        self.bus = bus
        self.runner = runner
        self._lock = threading.Lock()
        self._hosts: dict[UUID, Any] = {}
        self._vms: dict[UUID, Any] = {}
        self._vms_of: dict[UUID, set[UUID]] = {}
        self._disk_prev: dict[UUID, tuple[float, int, int]] = {}  # time, rd, wr bytes
        # (host, interface name) -> time, rx, tx bytes
        self._host_nic_prev: dict[tuple[UUID, str], tuple[float, int, int]] = {}

    def nics_of(self, host: Any) -> list[HostNic]:
        with self._lock:
            h = self._hosts.get(host.id)
        if h is None:
            return []
        bridges = set(getattr(host, "networks", ()))
        return [
            HostNic(
                id=uuid5(NAMESPACE_URL, f"{host.id}/nic/{name}"),
                name=name,
                bridged=name in bridges,
                received_bytes=c.get("rx_bytes", 0),
                transmitted_bytes=c.get("tx_bytes", 0),
            )
            for name, c in sorted(h.nics.items())
            if name != "lo"
        ]

    def statistics_of(self, obj: Any) -> list[Statistic]:
        with self._lock:
            h = self._hosts.get(obj.id)
            v = self._vms.get(obj.id)
        if h is not None:
            used = max(0, h.mem_total_mib - h.mem_free_mib) * MiB
            rows = [
                (
                    "memory.total",
                    "Total memory",
                    "gauge",
                    "integer",
                    "bytes",
                    h.mem_total_mib * MiB,
                ),
                ("memory.used", "Used memory", "gauge", "integer", "bytes", used),
                ("memory.free", "Free memory", "gauge", "integer", "bytes", h.mem_free_mib * MiB),
                ("swap.total", "Total swap", "gauge", "integer", "bytes", h.swap_total_mib * MiB),
                ("swap.free", "Free swap", "gauge", "integer", "bytes", h.swap_free_mib * MiB),
                ("cpu.current.user", "User CPU usage", "gauge", "decimal", "percent", h.cpu_user),
                (
                    "cpu.current.system",
                    "System CPU usage",
                    "gauge",
                    "decimal",
                    "percent",
                    h.cpu_sys,
                ),
                ("cpu.current.idle", "Idle CPU usage", "gauge", "decimal", "percent", h.cpu_idle),
                ("cpu.load.avg.5m", "CPU load average", "gauge", "decimal", "none", h.cpu_load),
            ]
        elif v is not None:
            rows = [
                (
                    "memory.installed",
                    "Total memory configured",
                    "gauge",
                    "integer",
                    "bytes",
                    v.memory_mib * MiB,
                ),
                (
                    "memory.used",
                    "Memory used (resident)",
                    "gauge",
                    "integer",
                    "bytes",
                    (v.memory_rss_mib or 0) * MiB,
                ),
                (
                    "cpu.current.total",
                    "Total CPU usage",
                    "gauge",
                    "decimal",
                    "percent",
                    v.cpu_percent,
                ),
                (
                    "cpu.usage.history.ns",
                    "CPU time used",
                    "counter",
                    "integer",
                    "none",
                    v.cpu_time_ns,
                ),
            ]
        else:
            return []
        return [
            Statistic(
                id=uuid5(NAMESPACE_URL, f"{obj.id}/{r[0]}"),
                name=r[0],
                description=r[1],
                kind=r[2],
                type=r[3],
                unit=r[4],
                datum=r[5],
            )
            for r in rows
        ]

    def __call__(self, host_id: UUID, fact: Any) -> None:
        reported = set()
        for v in fact.vms:
            try:
                reported.add(UUID(v.vm_id))
            except ValueError:
                continue
        with self._lock:
            self._hosts[host_id] = fact.host
            for gone in self._vms_of.get(host_id, set()) - reported:
                self._vms.pop(gone, None)
            self._vms_of[host_id] = reported
            for v in fact.vms:
                if (vid := _uuid(v.vm_id)) is not None:
                    self._vms[vid] = v
        if self.runner is not None:
            self._to_warehouse(host_id, fact)

    def _to_warehouse(self, host_id: UUID, fact: Any) -> None:

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
        t_now = when.timestamp()
        for name, c in sorted((getattr(h, "nics", None) or {}).items()):
            if name == "lo":
                continue
            rx, tx = c.get("rx_bytes", 0), c.get("tx_bytes", 0)
            prev = self._host_nic_prev.get((host_id, name))
            self._host_nic_prev[(host_id, name)] = (t_now, rx, tx)
            dt = t_now - prev[0] if prev is not None else 0.0
            self.runner.observe(
                HostInterfaceSample(
                    time=when,
                    host_interface_id=host_interface_id(host_id, name),
                    host_id=host_id,
                    name=name,
                    # a counter that went back (interface reset) gives no rate this time
                    receive_rate=int(max(0, rx - prev[1]) / dt) if prev and dt > 0 else 0,
                    transmit_rate=int(max(0, tx - prev[2]) / dt) if prev and dt > 0 else 0,
                    received_bytes=rx,
                    transmitted_bytes=tx,
                    received_packets=c.get("rx_packets", 0),
                    transmitted_packets=c.get("tx_packets", 0),
                    received_errors=c.get("rx_errors", 0),
                    transmitted_errors=c.get("tx_errors", 0),
                    received_dropped=c.get("rx_dropped", 0),
                    transmitted_dropped=c.get("tx_dropped", 0),
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
            # hostd lists a VM's NICs and disks in the order of the spec the HostLink
            # built: plugged NICs, then active disk attachments, each in the VM's order.
            nics = [n for n in vm.nics if n.plugged]
            for nic, c in zip(nics, v.nics.values(), strict=False):
                self.runner.observe(
                    NicSample(
                        time=when,
                        nic_id=nic.id,
                        vm_id=vm_id,
                        received_bytes=c.get("rx.bytes", 0),
                        transmitted_bytes=c.get("tx.bytes", 0),
                        received_dropped=c.get("rx.drop", 0),
                        transmitted_dropped=c.get("tx.drop", 0),
                    )
                )
            atts = [a for a in vm.disk_attachments if a.active]
            for att, c in zip(atts, v.disks.values(), strict=False):
                t = when.timestamp()
                rd, wr = c.get("rd.bytes", 0), c.get("wr.bytes", 0)
                prev = self._disk_prev.get(att.disk_id)
                self._disk_prev[att.disk_id] = (t, rd, wr)
                dt = t - prev[0] if prev is not None else 0.0
                self.runner.observe(
                    DiskSample(
                        time=when,
                        disk_id=att.disk_id,
                        vm_id=vm_id,
                        actual_size=c.get("allocation", 0),
                        read_rate=int(max(0, rd - prev[1]) / dt) if prev and dt > 0 else 0,
                        write_rate=int(max(0, wr - prev[2]) / dt) if prev and dt > 0 else 0,
                        read_ops=c.get("rd.reqs", 0),
                        write_ops=c.get("wr.reqs", 0),
                    )
                )
        if host is not None:
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


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def statistics_items(parent: Any, reads: Any) -> list[Statistic]:
    """The ``statistics`` sub-collection of a host or VM (empty before the first sample)."""
    sink = getattr(reads, "telemetry", None)
    return sink.statistics_of(parent) if sink is not None else []


STATISTIC_FIELDS = [
    ("name", lambda s: s.name),
    ("description", lambda s: s.description),
    ("kind", lambda s: s.kind),
    ("type", lambda s: s.type),
    ("unit", lambda s: s.unit),
    ("values", lambda s: {"value": [{"datum": s.datum}]}),
]


def host_nic_items(parent: Any, reads: Any) -> list[HostNic]:
    """The ``nics`` sub-collection of a host (empty before its first sample)."""
    sink = getattr(reads, "telemetry", None)
    return sink.nics_of(parent) if sink is not None else []


HOST_NIC_FIELDS = [
    ("name", lambda n: n.name),
    ("bridged", lambda n: n.bridged),
    ("status", lambda n: "up"),
    (
        "statistics",
        lambda n: {
            "statistic": [
                {"name": "data.total.rx", "values": {"value": [{"datum": n.received_bytes}]}},
                {"name": "data.total.tx", "values": {"value": [{"datum": n.transmitted_bytes}]}},
            ]
        },
    ),
]
