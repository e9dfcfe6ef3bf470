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
from uuid import UUID

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
    STATS_BY_BASE,
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


Sample = VmSample | HostSample | StorageDomainSample | NicSample | DiskSample

BASE_OF: dict[type, str] = {
    VmSample: "vm",
    HostSample: "host",
    StorageDomainSample: "storage_domain",
    NicSample: "vm_interface",
    DiskSample: "vm_disk",
}
_KEY_ATTR = {
    VmSample: "vm_id",
    HostSample: "host_id",
    StorageDomainSample: "storage_domain_id",
    NicSample: "nic_id",
    DiskSample: "disk_id",
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


def _secs(s: Any, v: Any) -> int:
    """seconds_in_status; a sample that did not go through a Sampler counts a whole interval."""
    return s.seconds_in_status if s.seconds_in_status is not None else DEFAULT_INTERVAL


def _pct(used: int, total: int) -> float:
    return (100.0 * used / total) if total else 0.0


def _row_vm(s: VmSample, v: dict[UUID, int]) -> tuple:
    return (
        naive_utc(s.time),
        s.vm_id,
        _VM_CODE[str(s.status)],
        _secs(s, v),
        s.cpu_usage_percent,
        _pct(s.memory_used, s.memory_total),
        s.user_cpu_usage_percent,
        s.system_cpu_usage_percent,
        s.memory_used // MiB,
        s.memory_buffered >> 10,
        s.memory_cached >> 10,
        s.memory_total // MiB,
        s.ip,
        s.host_id,
        v.get(s.vm_id),
        v.get(s.host_id) if s.host_id is not None else None,
    )


def _row_host(s: HostSample, v: dict[UUID, int]) -> tuple:
    return (
        naive_utc(s.time),
        s.host_id,
        _HOST_CODE[str(s.status)],
        _secs(s, v),
        _pct(s.memory_used, s.memory_total),
        s.cpu_usage_percent,
        s.user_cpu_usage_percent,
        s.system_cpu_usage_percent,
        s.ksm_cpu_percent,
        s.ksm_shared_memory // MiB,
        s.cpu_load,
        s.active_vms,
        s.total_vms,
        s.total_vms_vcpus,
        s.swap_used // MiB,
        s.memory_used // MiB,
        s.memory_total // MiB,
        v.get(s.host_id),
    )


def _row_sd(s: StorageDomainSample, v: dict[UUID, int]) -> tuple:
    return (
        naive_utc(s.time),
        s.storage_domain_id,
        _SD_CODE[str(s.status)],
        _secs(s, v),
        s.available / GiB,
        s.used / GiB,
        v.get(s.storage_domain_id),
    )


def _row_nic(s: NicSample, v: dict[UUID, int]) -> tuple:
    return (
        naive_utc(s.time),
        s.nic_id,
        s.receive_rate_percent,
        s.transmit_rate_percent,
        s.vm_id,
        s.received_bytes,
        s.transmitted_bytes,
        s.received_dropped,
        s.transmitted_dropped,
        v.get(s.nic_id),
    )


def _row_disk(s: DiskSample, v: dict[UUID, int]) -> tuple:
    return (
        naive_utc(s.time),
        s.disk_id,
        s.read_rate,
        s.write_rate,
        s.read_latency,
        s.write_latency,
        s.flush_latency,
        s.vm_id,
        s.actual_size // MiB,
        s.read_ops,
        s.write_ops,
        v.get(s.disk_id),
    )


_ROW: dict[str, Any] = {
    "vm": _row_vm,
    "host": _row_host,
    "storage_domain": _row_sd,
    "vm_interface": _row_nic,
    "vm_disk": _row_disk,
}


def columns(
    base: str, samples: Sequence[Any], versions: dict[UUID, int] | None = None
) -> list[list[Any]]:
    """Column lists in the samples table's order after ``history_id``."""
    spec = STATS_BY_BASE[base]
    v = versions or {}
    fn = _ROW[base]
    rows = [fn(s, v) for s in samples]
    n = len(spec.sample_columns()) - 1
    if not rows:
        return [[] for _ in range(n)]
    cols = [list(c) for c in zip(*rows, strict=True)]
    assert len(cols) == n, (base, len(cols), n)
    return cols


def group(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(BASE_OF[type(s)], []).append(s)
    return out
