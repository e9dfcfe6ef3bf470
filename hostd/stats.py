"""Statistics samples: host CPU/memory/network from /proc, VMs from getAllDomainStats."""

from __future__ import annotations

import os
from pathlib import Path

from hostd.protocol import HostStats, VmStats


def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    return [int(x) for x in parts]


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, _, rest = line.partition(":")
        out[k] = int(rest.split()[0])  # kB
    return out


def _netdev() -> dict[str, dict[str, int]]:
    out = {}
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = [int(x) for x in rest.split()]
        out[name.strip()] = {
            "rx_bytes": f[0],
            "rx_packets": f[1],
            "rx_errors": f[2],
            "rx_dropped": f[3],
            "tx_bytes": f[8],
            "tx_packets": f[9],
            "tx_errors": f[10],
            "tx_dropped": f[11],
        }
    return out


class Sampler:
    """Keeps the previous counters to turn CPU times into percentages."""

    def __init__(self) -> None:
        self._cpu = _cpu_times()
        self._vm_cpu: dict[str, tuple[int, float]] = {}

    def host(self, vms_running: int) -> HostStats:
        now = _cpu_times()
        d = [b - a for a, b in zip(self._cpu, now, strict=False)]
        self._cpu = now
        total = sum(d) or 1
        user = (d[0] + d[1]) * 100.0 / total
        system = (d[2] + (d[5] if len(d) > 6 else 0) + (d[6] if len(d) > 6 else 0)) * 100.0
        system /= total
        idle = (d[3] + (d[4] if len(d) > 4 else 0)) * 100.0 / total
        mem = _meminfo()
        total_kb = mem.get("MemTotal", 0)
        free_kb = mem.get("MemAvailable", mem.get("MemFree", 0))
        return HostStats(
            cpu_user=round(user, 2),
            cpu_sys=round(system, 2),
            cpu_idle=round(idle, 2),
            cpu_load=round(os.getloadavg()[0], 2),
            mem_total_mib=total_kb // 1024,
            mem_free_mib=free_kb // 1024,
            mem_used_percent=round(100.0 * (total_kb - free_kb) / total_kb, 2) if total_kb else 0,
            swap_total_mib=mem.get("SwapTotal", 0) // 1024,
            swap_free_mib=mem.get("SwapFree", 0) // 1024,
            nics=_netdev(),
            vms_running=vms_running,
        )

    def vm(self, uuid: str, name: str, status: str, rec: dict, now: float) -> VmStats:
        cpu_time = int(rec.get("cpu.time", 0))
        vcpus = int(rec.get("vcpu.current", 0) or 0)
        prev = self._vm_cpu.get(uuid)
        self._vm_cpu[uuid] = (cpu_time, now)
        pct = 0.0
        if prev is not None and now > prev[1]:
            ncpu = os.cpu_count() or 1
            pct = (cpu_time - prev[0]) / ((now - prev[1]) * 1e9) * 100.0 / ncpu
        disks = {}
        for i in range(int(rec.get("block.count", 0))):
            name_ = rec.get(f"block.{i}.name", str(i))
            disks[name_] = {
                k: int(rec.get(f"block.{i}.{k}", 0))
                for k in ("rd.bytes", "wr.bytes", "rd.reqs", "wr.reqs", "allocation", "capacity")
            }
        nics = {}
        for i in range(int(rec.get("net.count", 0))):
            name_ = rec.get(f"net.{i}.name", str(i))
            nics[name_] = {
                k: int(rec.get(f"net.{i}.{k}", 0))
                for k in ("rx.bytes", "tx.bytes", "rx.pkts", "tx.pkts", "rx.drop", "tx.drop")
            }
        mem_kib = int(rec.get("balloon.current", 0) or rec.get("balloon.maximum", 0) or 0)
        rss = rec.get("balloon.rss")
        return VmStats(
            vm_id=uuid,
            name=name,
            status=status,
            cpu_percent=round(max(pct, 0.0), 2),
            cpu_time_ns=cpu_time,
            vcpus=vcpus,
            memory_mib=mem_kib // 1024,
            memory_rss_mib=int(rss) // 1024 if rss is not None else None,
            disks=disks,
            nics=nics,
        )

    def forget(self, alive: set[str]) -> None:
        for k in list(self._vm_cpu):
            if k not in alive:
                del self._vm_cpu[k]
