"""Committed events -> host calls: ``HANDLERS``, the table event type -> handler, and
``dispatch``, which looks an event's exact type up in it (events without a line are
not the host link's business). A handler is a plain function of the flows and the event;
it starts the flow's action in the background (``core.spawn``) or does the bookkeeping
the event calls for, and never waits.

A new event for the hosts: its handler here, its line in ``HANDLERS``, the work in its
flow's module. May import every flow module and ``.core``; imported only by ``.link``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from commands.hostlink.consoles import Consoles
from commands.hostlink.core import Core
from commands.hostlink.images import Images
from commands.hostlink.sessions import Monitor
from commands.hostlink.snapshots import Snapshots
from commands.hostlink.storage import Storage
from commands.hostlink.vms import VmRuns
from domain.base import Event
from domain.disk import (
    DiskAdded,
    DiskDiscardStarted,
    DiskExtendStarted,
    DiskMoveStarted,
    DiskOperationCompleted,
    DiskRemoved,
)
from domain.host import HostAdded, HostRefreshRequested, HostRemoved, HostStatusChanged
from domain.statuses import VmStatus
from domain.storage import StorageDomainStatusChanged
from domain.vm import (
    VmConsoleTicketSet,
    VmMigrationCanceled,
    VmMigrationStarted,
    VmPauseRequested,
    VmRebootRequested,
    VmResumeRequested,
    VmScheduled,
    VmShutdownRequested,
    VmSnapshotAdded,
    VmSnapshotCommitted,
    VmSnapshotPreviewed,
    VmSnapshotRemoveStarted,
    VmSnapshotUndone,
    VmStopRequested,
    VmSuspendRequested,
)
from hostd import protocol as P


@dataclass(frozen=True)
class Flows:
    """The flows of one HostLink, over their shared core."""

    core: Core
    monitor: Monitor
    vms: VmRuns
    images: Images
    snapshots: Snapshots
    storage: Storage
    consoles: Consoles


def _vm_scheduled(f: Flows, ev: VmScheduled) -> None:
    oid = ev.originator_id
    if ev.status == VmStatus.RESTORING_STATE:
        f.core.spawn(f.vms.restore(oid, ev.host_id, ev.start_paused))
    else:
        f.core.spawn(f.vms.run(oid, ev.host_id, ev.start_paused))


def _vm_request(make: Callable[[str], P.Request]) -> Callable[[Flows, Event], None]:
    """A handler sending ``make(vm id)`` to the host running the VM."""

    def handle(f: Flows, ev: Event) -> None:
        f.core.spawn(f.vms.vm_call(ev.originator_id, make))

    return handle


HANDLERS: dict[type[Event], Callable[[Flows, Any], None]] = {
    # the VM run flow (vms.py)
    VmScheduled: _vm_scheduled,
    VmShutdownRequested: lambda f, ev: f.core.spawn(f.vms.shutdown(ev.originator_id)),
    VmStopRequested: _vm_request(lambda i: P.DestroyVm(vm_id=i)),
    VmRebootRequested: _vm_request(lambda i: P.RebootVm(vm_id=i)),
    VmPauseRequested: _vm_request(lambda i: P.PauseVm(vm_id=i)),
    VmSuspendRequested: _vm_request(lambda i: P.SuspendVm(vm_id=i)),
    VmResumeRequested: _vm_request(lambda i: P.ResumeVm(vm_id=i)),
    VmMigrationStarted: lambda f, ev: f.core.spawn(
        f.vms.migrate(ev.originator_id, ev.source_host_id, ev.destination_host_id)
    ),
    VmMigrationCanceled: _vm_request(lambda i: P.MigrateCancel(vm_id=i)),
    # snapshots (snapshots.py)
    VmSnapshotAdded: lambda f, ev: f.snapshots.added(ev),
    VmSnapshotRemoveStarted: lambda f, ev: f.core.spawn(
        f.snapshots.remove(ev.originator_id, ev.snapshot_id)
    ),
    VmSnapshotPreviewed: lambda f, ev: f.core.spawn(
        f.snapshots.preview(ev.originator_id, ev.snapshot_id, ev.saved.id)
    ),
    VmSnapshotUndone: lambda f, ev: f.core.spawn(
        f.snapshots.undo(ev.originator_id, ev.snapshot_id, ev.saved_id)
    ),
    VmSnapshotCommitted: lambda f, ev: f.core.spawn(
        f.snapshots.commit(ev.originator_id, ev.snapshot_id, ev.removed_ids)
    ),
    # consoles (consoles.py)
    VmConsoleTicketSet: lambda f, ev: f.consoles.ticket_set(ev),
    # images (images.py)
    DiskAdded: lambda f, ev: f.images.added(ev),
    DiskExtendStarted: lambda f, ev: f.core.spawn(f.images.extend(ev.originator_id)),
    DiskMoveStarted: lambda f, ev: f.core.spawn(f.images.move(ev.originator_id, ev.move_target_id)),
    DiskDiscardStarted: lambda f, ev: f.core.spawn(f.images.discard(ev.originator_id)),
    DiskOperationCompleted: lambda f, ev: f.images.completed(ev),
    DiskRemoved: lambda f, ev: f.images.removed(ev),
    # storage (storage.py)
    StorageDomainStatusChanged: lambda f, ev: f.storage.status_changed(ev),
    # sessions (sessions.py)
    HostAdded: lambda f, ev: f.monitor.host_added(ev),
    HostStatusChanged: lambda f, ev: f.monitor.host_changed(ev),
    HostRemoved: lambda f, ev: f.monitor.host_removed(ev),
    HostRefreshRequested: lambda f, ev: f.core.spawn(f.monitor.refresh(ev.originator_id)),
}


def dispatch(flows: Flows, ev: Event) -> None:
    """Carries a committed event out, if it is one of ``HANDLERS``' types."""
    handler = HANDLERS.get(type(ev))
    if handler is not None:
        handler(flows, ev)
