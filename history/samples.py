"""Statistics samples: the warehouse's own telemetry structs and the interval sampler.

The coordinator maps whatever hostd reports onto these structs (history never imports
hostd). ``Sampler`` keeps the latest telemetry per object and, once per sampling interval
(60 s by default, like oVirt's dwhd), emits one sample per object stamped at the
interval boundary, with ``seconds_in_status`` worked out from when the status began.
``columns(base, samples, versions)`` turns samples into the columns of a samples table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec

from domain.statuses import (
    HostStatus,
    StorageDomainStatus,
    VmStatus,
    host_history_bucket,
    vm_history_bucket,
)
from history.config import naive_utc
from history.schema import (
    HOST_BUCKET_CODES,
    STORAGE_DOMAIN_BUCKET_CODES,
    VM_BUCKET_CODES,
)

MiB = 1 << 20
GiB = 1 << 30


class VmSample(msgspec.Struct, frozen=True, kw_only=True):
    time: datetime
    vm_id: UUID
    status: str = VmStatus.UP.value  # a VmStatus value
    cpu_usage_percent: float = 0.0
    user_cpu_usage_percent: float = 0.0
    system_cpu_usage_percent: float = 0.0
    memory_used: int = 0  # bytes
    memory_total: int = 0  # bytes
    memory_buffered: int = 0  # bytes
    memory_cached: int = 0  # bytes
    host_id: UUID | None = None
    ip: str | None = None
    seconds_in_status: int | None = None  # filled by the Sampler when None


class HostSample(msgspec.Struct, frozen=True, kw_only=True):
    time: datetime
    host_id: UUID
    status: str = HostStatus.UP.value
    cpu_usage_percent: float = 0.0
    user_cpu_usage_percent: float = 0.0
    system_cpu_usage_percent: float = 0.0
    cpu_load: float = 0.0
    memory_used: int = 0
    memory_total: int = 0
    swap_used: int = 0
    ksm_cpu_percent: float = 0.0
    ksm_shared_memory: int = 0
    active_vms: int = 0
    total_vms: int = 0
    total_vms_vcpus: int = 0
    seconds_in_status: int | None = None


class StorageDomainSample(msgspec.Struct, frozen=True, kw_only=True):
    time: datetime
    storage_domain_id: UUID
    status: str = StorageDomainStatus.ACTIVE.value
    available: int = 0  # bytes
    used: int = 0  # bytes
    seconds_in_status: int | None = None


class NicSample(msgspec.Struct, frozen=True, kw_only=True):
    time: datetime
    nic_id: UUID
    vm_id: UUID | None = None
    receive_rate_percent: float = 0.0
    transmit_rate_percent: float = 0.0
    received_bytes: int = 0  # counters since the NIC appeared
    transmitted_bytes: int = 0
    received_dropped: int = 0
    transmitted_dropped: int = 0


class DiskSample(msgspec.Struct, frozen=True, kw_only=True):
    time: datetime
    disk_id: UUID
    vm_id: UUID | None = None
    actual_size: int = 0  # bytes
    read_rate: int = 0  # bytes/s
    write_rate: int = 0
    read_latency: float = 0.0  # seconds
    write_latency: float = 0.0
    flush_latency: float = 0.0
    read_ops: int = 0  # counters
    write_ops: int = 0


class HostInterfaceSample(msgspec.Struct, frozen=True, kw_only=True):
    """One network interface of a host; ``host_interface_id`` is stable per (host, name)
    (``host_interface_id(host_id, name)``)."""

    time: datetime
    host_interface_id: UUID
    host_id: UUID
    name: str
    receive_rate: int = 0  # bytes/s over the last interval
    transmit_rate: int = 0
    receive_rate_percent: float = 0.0  # of the link speed, when known
    transmit_rate_percent: float = 0.0
    received_bytes: int = 0  # counters as the host reports them
    transmitted_bytes: int = 0
    received_packets: int = 0
    transmitted_packets: int = 0
    received_errors: int = 0
    transmitted_errors: int = 0
    received_dropped: int = 0
    transmitted_dropped: int = 0


def host_interface_id(host_id: UUID, name: str) -> UUID:
    """The stable id of a host's interface (the same the API gives GET /hosts/{id}/nics)."""
    return uuid5(NAMESPACE_URL, f"{host_id}/nic/{name}")


Sample = VmSample | HostSample | StorageDomainSample | NicSample | DiskSample | HostInterfaceSample

BASE_OF: dict[type, str] = {
    VmSample: "vm",
    HostSample: "host",
    StorageDomainSample: "storage_domain",
    NicSample: "vm_interface",
    DiskSample: "vm_disk",
    HostInterfaceSample: "host_interface",
}
_KEY_ATTR = {
    VmSample: "vm_id",
    HostSample: "host_id",
    StorageDomainSample: "storage_domain_id",
    NicSample: "nic_id",
    DiskSample: "disk_id",
    HostInterfaceSample: "host_interface_id",
}


def key_of(s: Sample) -> UUID:
    return getattr(s, _KEY_ATTR[type(s)])


_ACTIVE = {StorageDomainStatus.ACTIVE}
_MAINT = {StorageDomainStatus.MAINTENANCE, StorageDomainStatus.PREPARING_FOR_MAINTENANCE}


def storage_domain_bucket(status: StorageDomainStatus) -> str:
    if status in _ACTIVE:
        return "Active"
    if status in _MAINT:
        return "Maintenance"
    return "Inactive"


_VM_CODE = {s.value: VM_BUCKET_CODES[vm_history_bucket(s)] for s in VmStatus}
_HOST_CODE = {s.value: HOST_BUCKET_CODES[host_history_bucket(s)] for s in HostStatus}
_SD_CODE = {
    s.value: STORAGE_DOMAIN_BUCKET_CODES[storage_domain_bucket(s)] for s in StorageDomainStatus
}
_CODES = {VmSample: _VM_CODE, HostSample: _HOST_CODE, StorageDomainSample: _SD_CODE}


def bucket_code(s: Sample) -> int | None:
    codes = _CODES.get(type(s))
    return codes[str(s.status)] if codes is not None else None  # type: ignore[union-attr]


class Sampler:
    """Latest telemetry per object -> one sample per object per interval.

    ``observe(sample)`` as telemetry arrives (any rate); ``collect(now)`` returns the
    samples of every interval boundary passed since the last call, stamped at the
    boundary. Objects not heard of for ``stale_after`` stop being sampled; ``forget(id)``
    drops one at once (removed VM).
    """

    def __init__(self, interval: float = 60.0, stale_after: float | None = None) -> None:
        self.interval = timedelta(seconds=interval)
        self.stale_after = timedelta(seconds=stale_after or 5 * interval)
        self.latest: dict[UUID, Sample] = {}
        self._since: dict[UUID, tuple[int | None, datetime]] = {}
        self._last_boundary: datetime | None = None

    def boundary(self, now: datetime) -> datetime:
        now = naive_utc(now)
        step = self.interval.total_seconds()
        epoch = datetime(1970, 1, 1)
        secs = (now - epoch).total_seconds()
        return epoch + timedelta(seconds=(secs // step) * step)

    def observe(self, sample: Sample) -> None:
        key = key_of(sample)
        t = naive_utc(sample.time)
        code = bucket_code(sample)
        since = self._since.get(key)
        if since is None or since[0] != code:
            self._since[key] = (code, t)
        self.latest[key] = sample

    def forget(self, obj_id: UUID) -> None:
        self.latest.pop(obj_id, None)
        self._since.pop(obj_id, None)

    def collect(self, now: datetime) -> list[Sample]:
        b = self.boundary(now)
        if self._last_boundary is not None and b <= self._last_boundary:
            return []
        self._last_boundary = b
        out: list[Sample] = []
        step = int(self.interval.total_seconds())
        for key, s in list(self.latest.items()):
            t = naive_utc(s.time)
            if b - t > self.stale_after:
                self.forget(key)
                continue
            fields: dict[str, Any] = {"time": b}
            if getattr(s, "seconds_in_status", 0) is None:
                since = self._since[key][1]
                ref = max(b, t)  # telemetry a little past the boundary still counts
                fields["seconds_in_status"] = max(0, min(step, int((ref - since).total_seconds())))
            out.append(msgspec.structs.replace(s, **fields))
        return out


# -- samples -> table columns -------------------------------------------------------
DEFAULT_INTERVAL = 60

# sample table column -> (id column it versions): filled by the warehouse from the open
# configuration rows when the samples are written.
VERSION_OF: dict[str, tuple[tuple[str, str], ...]] = {
    "vm": (
        ("vm_configuration_version", "vm_id"),
        ("current_host_configuration_version", "currently_running_on_host"),
    ),
    "host": (("host_configuration_version", "host_id"),),
    "storage_domain": (("storage_configuration_version", "storage_domain_id"),),
    "vm_interface": (("vm_interface_configuration_version", "vm_interface_id"),),
    "vm_disk": (("vm_disk_configuration_version", "vm_disk_id"),),
    "host_interface": (("host_interface_configuration_version", "host_interface_id"),),
}


def _secs(ss: Sequence[Any]) -> list[int]:
    """seconds_in_status; a sample that did not go through a Sampler counts a whole interval."""
    return [DEFAULT_INTERVAL if s.seconds_in_status is None else s.seconds_in_status for s in ss]


def _pct(used: list[int], total: list[int]) -> list[float]:
    return [(100.0 * u / t) if t else 0.0 for u, t in zip(used, total, strict=True)]


def _vm(ss: Sequence[VmSample]) -> dict[str, list[Any]]:
    used = [s.memory_used for s in ss]
    total = [s.memory_total for s in ss]
    return {
        "vm_id": [s.vm_id for s in ss],
        "vm_status": [_VM_CODE[s.status] for s in ss],
        "seconds_in_status": _secs(ss),
        "cpu_usage_percent": [s.cpu_usage_percent for s in ss],
        "memory_usage_percent": _pct(used, total),
        "user_cpu_usage_percent": [s.user_cpu_usage_percent for s in ss],
        "system_cpu_usage_percent": [s.system_cpu_usage_percent for s in ss],
        "memory_used_mb": [u >> 20 for u in used],
        "memory_buffered_kb": [s.memory_buffered >> 10 for s in ss],
        "memory_cached_kb": [s.memory_cached >> 10 for s in ss],
        "memory_size_mb": [t >> 20 for t in total],
        "vm_ip": [s.ip for s in ss],
        "currently_running_on_host": [s.host_id for s in ss],
    }


def _host(ss: Sequence[HostSample]) -> dict[str, list[Any]]:
    used = [s.memory_used for s in ss]
    total = [s.memory_total for s in ss]
    return {
        "host_id": [s.host_id for s in ss],
        "host_status": [_HOST_CODE[s.status] for s in ss],
        "seconds_in_status": _secs(ss),
        "memory_usage_percent": _pct(used, total),
        "cpu_usage_percent": [s.cpu_usage_percent for s in ss],
        "user_cpu_usage_percent": [s.user_cpu_usage_percent for s in ss],
        "system_cpu_usage_percent": [s.system_cpu_usage_percent for s in ss],
        "ksm_cpu_percent": [s.ksm_cpu_percent for s in ss],
        "ksm_shared_memory_mb": [s.ksm_shared_memory >> 20 for s in ss],
        "cpu_load": [s.cpu_load for s in ss],
        "active_vms": [s.active_vms for s in ss],
        "total_vms": [s.total_vms for s in ss],
        "total_vms_vcpus": [s.total_vms_vcpus for s in ss],
        "swap_used_mb": [s.swap_used >> 20 for s in ss],
        "memory_used_mb": [u >> 20 for u in used],
        "memory_size_mb": [t >> 20 for t in total],
    }


def _sd(ss: Sequence[StorageDomainSample]) -> dict[str, list[Any]]:
    return {
        "storage_domain_id": [s.storage_domain_id for s in ss],
        "storage_domain_status": [_SD_CODE[s.status] for s in ss],
        "seconds_in_status": _secs(ss),
        "available_disk_size_gb": [s.available / GiB for s in ss],
        "used_disk_size_gb": [s.used / GiB for s in ss],
    }


def _nic(ss: Sequence[NicSample]) -> dict[str, list[Any]]:
    return {
        "vm_interface_id": [s.nic_id for s in ss],
        "receive_rate_percent": [s.receive_rate_percent for s in ss],
        "transmit_rate_percent": [s.transmit_rate_percent for s in ss],
        "vm_id": [s.vm_id for s in ss],
        "received_total_byte": [s.received_bytes for s in ss],
        "transmitted_total_byte": [s.transmitted_bytes for s in ss],
        "received_dropped_total_packets": [s.received_dropped for s in ss],
        "transmitted_dropped_total_packets": [s.transmitted_dropped for s in ss],
    }


def _disk(ss: Sequence[DiskSample]) -> dict[str, list[Any]]:
    return {
        "vm_disk_id": [s.disk_id for s in ss],
        "read_rate_bytes_per_second": [s.read_rate for s in ss],
        "write_rate_bytes_per_second": [s.write_rate for s in ss],
        "read_latency_seconds": [s.read_latency for s in ss],
        "write_latency_seconds": [s.write_latency for s in ss],
        "flush_latency_seconds": [s.flush_latency for s in ss],
        "vm_id": [s.vm_id for s in ss],
        "vm_disk_actual_size_mb": [s.actual_size >> 20 for s in ss],
        "read_ops_total_count": [s.read_ops for s in ss],
        "write_ops_total_count": [s.write_ops for s in ss],
    }


def _host_interface(ss: Sequence[HostInterfaceSample]) -> dict[str, list[Any]]:
    return {
        "host_interface_id": [s.host_interface_id for s in ss],
        "receive_rate_percent": [s.receive_rate_percent for s in ss],
        "transmit_rate_percent": [s.transmit_rate_percent for s in ss],
        "receive_rate_bytes_per_second": [s.receive_rate for s in ss],
        "transmit_rate_bytes_per_second": [s.transmit_rate for s in ss],
        "host_id": [s.host_id for s in ss],
        "host_interface_name": [s.name for s in ss],
        "received_total_byte": [s.received_bytes for s in ss],
        "transmitted_total_byte": [s.transmitted_bytes for s in ss],
        "received_total_packets": [s.received_packets for s in ss],
        "transmitted_total_packets": [s.transmitted_packets for s in ss],
        "received_error_total_packets": [s.received_errors for s in ss],
        "transmitted_error_total_packets": [s.transmitted_errors for s in ss],
        "received_dropped_total_packets": [s.received_dropped for s in ss],
        "transmitted_dropped_total_packets": [s.transmitted_dropped for s in ss],
    }


_COLUMNS: dict[str, Any] = {
    "vm": _vm,
    "host": _host,
    "storage_domain": _sd,
    "vm_interface": _nic,
    "vm_disk": _disk,
    "host_interface": _host_interface,
}


def columns(base: str, samples: Sequence[Any]) -> dict[str, list[Any]]:
    """The samples table's columns (but history_id, history_datetime and the
    configuration versions, which the warehouse adds) as lists."""
    out: dict[str, list[Any]] = _COLUMNS[base](samples)
    return out


def group(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(BASE_OF[type(s)], []).append(s)
    return out
