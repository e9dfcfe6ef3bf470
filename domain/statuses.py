"""oVirt's status sets, with the REST names as values, and the transitions they allow."""

from __future__ import annotations

from enum import StrEnum


class VmStatus(StrEnum):
    DOWN = "down"
    WAIT_FOR_LAUNCH = "wait_for_launch"
    POWERING_UP = "powering_up"
    UP = "up"
    POWERING_DOWN = "powering_down"
    PAUSED = "paused"
    MIGRATING = "migrating"
    NOT_RESPONDING = "not_responding"
    UNKNOWN = "unknown"
    REBOOT_IN_PROGRESS = "reboot_in_progress"
    SAVING_STATE = "saving_state"
    RESTORING_STATE = "restoring_state"
    SUSPENDED = "suspended"
    IMAGE_LOCKED = "image_locked"


# oVirt's VMStatus.isRunning / isNotRunning / qualifyToMigrate sets.
VM_RUNNING = frozenset(
    {
        VmStatus.UP,
        VmStatus.POWERING_DOWN,
        VmStatus.POWERING_UP,
        VmStatus.MIGRATING,
        VmStatus.WAIT_FOR_LAUNCH,
        VmStatus.REBOOT_IN_PROGRESS,
    }
)
VM_NOT_RUNNING = frozenset({VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.IMAGE_LOCKED})
VM_MIGRATABLE = frozenset(
    {VmStatus.UP, VmStatus.POWERING_UP, VmStatus.PAUSED, VmStatus.REBOOT_IN_PROGRESS}
)
# Statuses in which a VM holds resources on a host.
VM_ON_HOST = VM_RUNNING | {
    VmStatus.PAUSED,
    VmStatus.NOT_RESPONDING,
    VmStatus.UNKNOWN,
    VmStatus.SAVING_STATE,
    VmStatus.RESTORING_STATE,
}


class HostStatus(StrEnum):
    INSTALLING = "installing"
    INSTALL_FAILED = "install_failed"
    INITIALIZING = "initializing"
    UP = "up"
    CONNECTING = "connecting"
    NON_RESPONSIVE = "non_responsive"
    PREPARING_FOR_MAINTENANCE = "preparing_for_maintenance"
    MAINTENANCE = "maintenance"
    NON_OPERATIONAL = "non_operational"
    ERROR = "error"
    DOWN = "down"


class StorageDomainStatus(StrEnum):
    UNATTACHED = "unattached"
    ACTIVE = "active"
    INACTIVE = "inactive"
    LOCKED = "locked"
    MAINTENANCE = "maintenance"
    PREPARING_FOR_MAINTENANCE = "preparing_for_maintenance"
    DETACHING = "detaching"
    ACTIVATING = "activating"


class DataCenterStatus(StrEnum):
    UNINITIALIZED = "uninitialized"
    UP = "up"
    MAINTENANCE = "maintenance"
    NOT_OPERATIONAL = "not_operational"
    NON_RESPONSIVE = "non_responsive"
    CONTEND = "contend"


class DiskStatus(StrEnum):
    OK = "ok"
    LOCKED = "locked"
    ILLEGAL = "illegal"


class SnapshotStatus(StrEnum):
    OK = "ok"
    LOCKED = "locked"
    IN_PREVIEW = "in_preview"


class TemplateStatus(StrEnum):
    OK = "ok"
    LOCKED = "locked"
    ILLEGAL = "illegal"


def vm_history_bucket(status: VmStatus) -> str:
    """The DWH status bucket: Up, Down, Paused or Problematic."""
    return _VM_BUCKET[status]


_VM_BUCKET = {
    VmStatus.DOWN: "Down",
    VmStatus.WAIT_FOR_LAUNCH: "Down",
    VmStatus.IMAGE_LOCKED: "Down",
    VmStatus.UP: "Up",
    VmStatus.POWERING_UP: "Up",
    VmStatus.POWERING_DOWN: "Up",
    VmStatus.REBOOT_IN_PROGRESS: "Up",
    VmStatus.MIGRATING: "Up",
    VmStatus.SAVING_STATE: "Up",
    VmStatus.RESTORING_STATE: "Up",
    VmStatus.PAUSED: "Paused",
    VmStatus.SUSPENDED: "Paused",
    VmStatus.UNKNOWN: "Problematic",
    VmStatus.NOT_RESPONDING: "Problematic",
}


def host_history_bucket(status: HostStatus) -> str:
    if status == HostStatus.UP:
        return "Up"
    if status in (HostStatus.MAINTENANCE, HostStatus.PREPARING_FOR_MAINTENANCE):
        return "Maintenance"
    return "Problematic"
