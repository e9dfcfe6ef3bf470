"""Where and whether a VM runs: the up hosts of its cluster, host choice through
the scheduler (with pinning and reruns), start, resume and migration (its disks on active
domains of its data center), the host's status reports, and the VMs of a host that went
down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from domain import scheduling
from domain.base import DomainError, Tx
from domain.current import current_all
from domain.datacenter import DataCenter
from domain.disk import Disk
from domain.host import Host
from domain.rules.cluster_rules import cluster_dc
from domain.rules.vm_pool_return_rules import vm_went_down
from domain.statuses import (
    VM_MIGRATABLE,
    VM_ON_HOST,
    DataCenterStatus,
    DiskStatus,
    HostStatus,
    StorageDomainStatus,
    VmStatus,
)
from domain.storage import StorageDomain
from domain.vm import (
    MAX_RERUNS,
    REPORTABLE,
    HostScoreRow,
    Vm,
    VmMarkedDown,
    VmMigrationFailed,
    VmMigrationStarted,
    VmResumeRequested,
    VmScheduled,
    VmStartRequested,
    VmStatusReported,
    check_not_snapshot_busy,
    get_vm,
    locked_error,
    report_migration_done,
    status_illegal_error,
)


def up_hosts(engine: Any, cluster_id: UUID) -> list[Any]:
    """The cluster's hosts that are up, in a stable order (name, id)."""
    hosts = [
        h for h in engine.all(Host) if h.cluster_id == cluster_id and h.status == HostStatus.UP
    ]
    return sorted(hosts, key=lambda h: (h.name, str(h.id)))


def choose_host(
    tx: Tx,
    vm: Vm,
    *,
    action: str,
    requested: UUID | None = None,
    exclude: Iterable[UUID] = (),
) -> tuple[UUID, tuple[HostScoreRow, ...]]:
    """The scheduling call site: a host for ``vm`` and the score table behind the choice.

    An explicitly requested host must be up in the VM's cluster. The choice itself is
    domain/scheduling.py's (filters and weights by the cluster's policy), over the VMs as
    they stand after the events this command emitted so far (a pool allocation or a rerun
    schedules after earlier changes of the same command).
    """

    excluded = set(exclude)
    if requested is not None:
        host = tx.engine.get(Host, requested, field="host")
        if host.cluster_id != vm.cluster_id:
            raise DomainError(
                f"Cannot {action} VM. The Host is not in the VM's Cluster.", field="host"
            )
        if requested in excluded:
            raise DomainError(
                f"Cannot {action} VM. Source and destination Hosts are the same.", field="host"
            )
        if host.status != HostStatus.UP:
            raise DomainError(f"Cannot {action} VM. The Host is not up.", field="host")
    candidates = [h for h in up_hosts(tx.engine, vm.cluster_id) if h.id not in excluded]
    if not candidates:
        if action == "migrate":
            raise DomainError(
                "Cannot migrate VM. There is no host that satisfies current scheduling "
                "constraints.",
                field="host",
            )
        raise DomainError(
            f"Cannot {action} VM. There are no available running Hosts in the Host Cluster.",
            field="host",
        )
    result = scheduling.schedule(
        tx.engine, vm, wanted_host_id=requested, exclude=excluded, vms=current_all(tx, Vm)
    )
    if result.host_id is None:
        raise scheduling.no_host_error(result, action)
    rows = tuple(
        HostScoreRow(host_id=r.host_id, name=r.name, score=r.score, reason=r.reason)
        for r in result.scores
    )
    return result.host_id, rows


def check_placement(tx: Tx, action: str, cluster_id: UUID, host_id: UUID | None) -> None:
    if host_id is None:
        return
    host = tx.engine.get(Host, host_id, field="placement_host")
    if host.cluster_id != cluster_id:
        raise DomainError(
            f"Cannot {action} VM. The Host is not in the VM's Cluster.", field="placement_host"
        )


def start_vm(
    tx: Tx, vm_id: UUID, *, host_id: UUID | None = None, paused: bool = False
) -> UUID | None:
    """Asks for the VM to run; returns the host chosen (None when resuming in place).

    Down -> scheduled, ``wait_for_launch``; suspended -> scheduled, ``restoring_state``;
    paused -> resume on its host.
    """
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.IMAGE_LOCKED:
        raise locked_error("run")
    if vm.status == VmStatus.PAUSED:
        tx.emit(VmResumeRequested, vm_id)
        return None
    if vm.status not in (VmStatus.DOWN, VmStatus.SUSPENDED):
        raise DomainError("Cannot run VM. VM is running.")
    check_not_snapshot_busy(vm, "run")
    _check_run_disks(tx, vm)
    chosen, scores = _restore_host(tx, vm) if host_id is None else (None, ())
    if chosen is None:
        chosen, scores = choose_host(tx, vm, action="run", requested=host_id)
    tx.emit(VmStartRequested, vm_id, requested_host_id=host_id, start_paused=paused)
    status = (
        VmStatus.RESTORING_STATE if vm.status == VmStatus.SUSPENDED else VmStatus.WAIT_FOR_LAUNCH
    )
    tx.emit(VmScheduled, vm_id, host_id=chosen, scores=scores, status=status, start_paused=paused)
    return chosen


def _restore_host(tx: Tx, vm: Vm) -> tuple[UUID | None, tuple[HostScoreRow, ...]]:
    """A suspended VM resumes where its memory was saved when that host can take it;
    elsewhere it would boot afresh, which is what an administrator resuming does not want."""
    if vm.status != VmStatus.SUSPENDED or vm.saved_on_host_id is None:
        return None, ()
    try:
        return choose_host(tx, vm, action="run", requested=vm.saved_on_host_id)
    except DomainError:
        return None, ()


def _check_run_disks(tx: Tx, vm: Vm) -> None:
    disks = [d for a in vm.disk_attachments if a.active and (d := tx.engine.find(Disk, a.disk_id))]
    if not disks:
        return  # a diskless VM needs no storage, nor an up data center
    locked = [d.name for d in disks if d.status == DiskStatus.LOCKED]
    if locked:
        raise DomainError(
            f"Cannot run VM: The following disks are locked: {', '.join(locked)}. "
            "Please try again in a few minutes."
        )
    illegal = [d.name for d in disks if d.status == DiskStatus.ILLEGAL]
    if illegal:
        raise DomainError(f"Cannot run VM. The following disks are illegal: {', '.join(illegal)}.")
    dc = tx.engine.find(DataCenter, cluster_dc(tx, vm.cluster_id))
    if dc is None or dc.status != DataCenterStatus.UP:
        raise DomainError("Cannot run VM. The relevant Data Center is not up.")
    for d in disks:
        sd = tx.engine.find(StorageDomain, d.storage_domain_id)
        if sd is None or sd.status != StorageDomainStatus.ACTIVE:
            raise DomainError("Cannot run VM. Storage Domain is not active.")


def resume_vm(tx: Tx, vm_id: UUID, *, host_id: UUID | None = None) -> UUID | None:
    """Paused -> the host resumes it; suspended -> restored on a chosen host."""
    vm = get_vm(tx, vm_id)
    if vm.status not in (VmStatus.PAUSED, VmStatus.SUSPENDED):
        raise DomainError("Cannot resume VM. VM is not paused or suspended.")
    return start_vm(tx, vm_id, host_id=host_id)


def migrate_vm(tx: Tx, vm_id: UUID, *, host_id: UUID | None = None) -> UUID:
    vm = get_vm(tx, vm_id)
    if vm.status == VmStatus.MIGRATING:
        raise DomainError("Cannot migrate VM. Migration is in progress.")
    if vm.status in (VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED):
        raise DomainError("Cannot migrate VM. VM is not running.")
    if vm.status not in VM_MIGRATABLE:
        raise status_illegal_error("migrate", vm)
    check_not_snapshot_busy(vm, "migrate")
    assert vm.run_on_host_id is not None
    dest, scores = choose_host(
        tx, vm, action="migrate", requested=host_id, exclude=(vm.run_on_host_id,)
    )
    tx.emit(
        VmMigrationStarted,
        vm_id,
        source_host_id=vm.run_on_host_id,
        destination_host_id=dest,
        scores=scores,
    )
    return dest


def report_vm_status(
    tx: Tx,
    vm_id: UUID,
    status: VmStatus,
    host_id: UUID,
    *,
    reason: str = "",
    exit_status: str = "",
    downtime_ms: int = 0,
) -> bool:
    """A host reports the VM's status; returns whether anything changed.

    Only a report from the VM's host (or, while migrating, its destination) counts, and
    only along the transitions of ``REPORTABLE``. A repeat of the current status changes
    nothing. While migrating: ``up`` from the destination completes the migration, ``up``
    from the source or ``down`` from the destination fails it.
    """
    vm = get_vm(tx, vm_id)
    status = VmStatus(status)
    if vm.status == VmStatus.MIGRATING and host_id == vm.migrating_to_host_id:
        if status == VmStatus.UP:
            report_migration_done(tx, vm_id, host_id=host_id, downtime_ms=downtime_ms)
            return True
        if status == VmStatus.DOWN:
            tx.emit(VmMigrationFailed, vm_id, reason=reason or "VM is down on the destination")
            return True
        if status == VmStatus.MIGRATING:
            return False
        raise DomainError(
            f"Cannot report VM {vm.name} as {status.value} from its migration destination."
        )
    if vm.run_on_host_id != host_id:
        raise DomainError(f"VM {vm.name} is not running on host {host_id}.", field="host")
    if status == vm.status:
        return False
    if status not in REPORTABLE[vm.status]:
        raise DomainError(
            f"VM {vm.name} cannot go from {vm.status.value} to {status.value}.", field="status"
        )
    if vm.status == VmStatus.MIGRATING and status == VmStatus.UP:
        tx.emit(VmMigrationFailed, vm_id, reason=reason or "VM is up on the source")
        return True
    if status == VmStatus.DOWN and not exit_status:
        exit_status = "normal" if vm.status == VmStatus.POWERING_DOWN else "error"
    tx.emit(
        VmStatusReported,
        vm_id,
        status=status,
        host_id=host_id,
        reason=reason,
        exit_status=exit_status,
    )
    if status == VmStatus.DOWN and _rerun(tx, vm, exit_status):
        return True
    if status == VmStatus.DOWN and vm.pool_id is not None:
        vm_went_down(tx, vm.pool_id, vm_id, was=vm.status)
    return True


def _rerun(tx: Tx, vm: Vm, exit_status: str) -> bool:
    """A launch that failed is retried on another host, up to ``MAX_RERUNS`` hosts."""
    if vm.status != VmStatus.WAIT_FOR_LAUNCH or exit_status == "normal":
        return False
    if not vm.run_attempts or len(vm.run_attempts) >= MAX_RERUNS:
        return False
    try:
        host_id, scores = choose_host(tx, vm, action="run", exclude=vm.run_attempts)
    except DomainError:
        return False
    tx.emit(VmScheduled, vm.id, host_id=host_id, scores=scores, rerun=True)
    return True


def vms_on_host_down(tx: Tx, host_id: UUID, *, reason: str = "") -> list[UUID]:
    """The host was fenced or confirmed rebooted: every VM it ran is down."""
    touched = []
    for vm in sorted(tx.engine.all(Vm), key=lambda v: str(v.id)):
        if vm.run_on_host_id == host_id and vm.status in VM_ON_HOST:
            tx.emit(VmMarkedDown, vm.id, host_id=host_id, reason=reason or "Host was rebooted")
            touched.append(vm.id)
            if vm.pool_id is not None:
                vm_went_down(tx, vm.pool_id, vm.id, was=vm.status)
        elif vm.migrating_to_host_id == host_id and vm.status == VmStatus.MIGRATING:
            tx.emit(VmMigrationFailed, vm.id, reason="The destination host went down")
            touched.append(vm.id)
    return touched
