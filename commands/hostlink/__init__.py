"""The Manager's side of the host protocol: one session per host, and the flows that
carry committed events out to hostd.

Facts flow in as commands (``ReportVmStatus``, ``ReportHostCapabilities``, ...) so every
input that moves state is an event; committed events flow out as host calls, through
the table ``dispatch.HANDLERS`` (event type -> handler):

    VmScheduled -> CreateVm on the chosen host      DiskAdded -> CreateImage on the SPM
      (restoring_state -> RestoreVm)                  (a thin copy: backed by the template's
    VmShutdown/Stop/Reboot/Pause/Resume/Suspend ->    volume; a full copy: CopyImage)
      the matching hostd call                       DiskExtendStarted -> ResizeImage
    VmMigrationStarted -> Migrate                   DiskMoveStarted -> CopyImage + DeleteImage
    VmSnapshotAdded -> SnapshotCreate               DiskRemoved -> DeleteImage (best effort)
    VmConsoleTicketSet -> SetTicket                 DiskDiscardStarted -> DeleteImage of each
                                                      volume, reported (a pool revert)
                                                    StorageDomain active -> ConnectStorage

The package, top to bottom (an import-linter ``layers`` contract keeps it so):

- ``link``: ``HostLink``, which assembles the flows over one core, subscribes to the bus
  and runs the dispatch loop, the monitor tick and the space loop;
- ``dispatch``: ``HANDLERS`` and ``Flows``, the flows one HostLink has;
- the flows, which do not import each other: ``sessions`` (connect, handshake, networks,
  silence, facts -> report commands), ``vms`` (run, restore, migrate, VM calls, the VM
  spec), ``images``, ``snapshots``, ``storage``, ``consoles``;
- ``core``: ``Core``, what the flows share (bus, sessions, the volume index, locked
  Engine reads, call / spawn / note / run_command, the storage host);
- ``volumes``: where a disk's volumes live (pure paths).

Shape: flows are small classes that receive the shared ``Core`` (composition, as the
asyncio package's modules share their base classes and cosmicpython's handlers receive a
unit of work), not mixins of one class: a flow's dependencies are the core's few names,
the layers contract can check them, and a flow can be read alone.

Host enrollment secrets and console tickets live in ``commands.credentials``, which the
command handlers import as well.
"""

from commands.credentials import CONSOLE_TICKETS, ConsoleTickets, HostSecrets, new_console_password
from commands.hostlink.link import HostLink
from commands.hostlink.volumes import disk_leaf, volume_path

__all__ = [
    "CONSOLE_TICKETS",
    "ConsoleTickets",
    "HostLink",
    "HostSecrets",
    "disk_leaf",
    "new_console_password",
    "volume_path",
]
