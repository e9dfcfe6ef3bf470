"""Hosts: added (installing), reported on by the host monitor, moved to maintenance,
activated, lost and found again, removed. Statuses change only along ``HOST_TRANSITIONS``.

The life of a host, as in oVirt:
``installing -> initializing`` (install finished) ``-> up`` (capabilities reported and the
host complies with its cluster) or ``non_operational`` (with a reason in
``status_detail``); ``up -> connecting`` (the monitor lost it) ``-> non_responsive`` (the
grace period ran out: its VMs become ``unknown``); ``up -> preparing_for_maintenance``
(VMs still on it) ``-> maintenance``; ``maintenance -> initializing`` (activate).
Every status change re-evaluates the data center's SPM and status.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain.base import Aggregate, DomainError, Event, InvalidInput, Tx
from domain.statuses import HostStatus

DEFAULT_PORT = 54321
DEFAULT_SPM_PRIORITY = 5
MIN_SPM_PRIORITY, MAX_SPM_PRIORITY = -1, 10

S = HostStatus
HOST_TRANSITIONS: dict[HostStatus, frozenset[HostStatus]] = {
    S.INSTALLING: frozenset({S.INITIALIZING, S.INSTALL_FAILED, S.NON_RESPONSIVE}),
    S.INSTALL_FAILED: frozenset({S.INSTALLING, S.MAINTENANCE}),
    S.INITIALIZING: frozenset(
        {
            S.UP,
            S.NON_OPERATIONAL,
            S.CONNECTING,
            S.NON_RESPONSIVE,
            S.PREPARING_FOR_MAINTENANCE,
            S.MAINTENANCE,
            S.ERROR,
        }
    ),
    S.UP: frozenset(
        {S.CONNECTING, S.PREPARING_FOR_MAINTENANCE, S.MAINTENANCE, S.NON_OPERATIONAL, S.ERROR}
    ),
    S.CONNECTING: frozenset(
        {
            S.UP,
            S.NON_RESPONSIVE,
            S.INITIALIZING,
            S.NON_OPERATIONAL,
            S.PREPARING_FOR_MAINTENANCE,
            S.MAINTENANCE,
        }
    ),
    S.NON_RESPONSIVE: frozenset({S.INITIALIZING, S.MAINTENANCE, S.DOWN}),
    S.PREPARING_FOR_MAINTENANCE: frozenset(
        {S.MAINTENANCE, S.INITIALIZING, S.CONNECTING, S.NON_RESPONSIVE}
    ),
    S.MAINTENANCE: frozenset({S.INITIALIZING, S.INSTALLING}),
    S.NON_OPERATIONAL: frozenset(
        {
            S.INITIALIZING,
            S.PREPARING_FOR_MAINTENANCE,
            S.MAINTENANCE,
            S.CONNECTING,
            S.NON_RESPONSIVE,
        }
    ),
    S.ERROR: frozenset(
        {
            S.INITIALIZING,
            S.UP,
            S.PREPARING_FOR_MAINTENANCE,
            S.MAINTENANCE,
            S.CONNECTING,
            S.NON_RESPONSIVE,
        }
    ),
    S.DOWN: frozenset({S.INITIALIZING, S.MAINTENANCE, S.INSTALLING}),
}

# Reasons a host is non-operational (``status_detail``), after oVirt's NonOperationalReason.
KVM_NOT_RUNNING = "kvm_not_running"
NETWORK_UNREACHABLE = "network_unreachable"
STORAGE_DOMAIN_UNREACHABLE = "storage_domain_unreachable"
CPU_TYPE_INCOMPATIBLE = "cpu_type_incompatible_with_cluster"
DUPLICATE_HARDWARE_UUID = "duplicate_hardware_uuid"


class Host(Aggregate, frozen=True, kw_only=True):
    KIND = "host"
    LABEL = "Host"

    name: str
    address: str
    port: int = DEFAULT_PORT
    cluster_id: UUID
    description: str = ""
    status: HostStatus = HostStatus.INSTALLING
    status_detail: str = ""
    spm_priority: int = DEFAULT_SPM_PRIORITY
    cpu_model: str = ""
    cpu_sockets: int = 0
    cpu_cores: int = 0
    memory_total: int = 0
    libvirt_version: str = ""
    qemu_version: str = ""
    kvm: bool = False
    hardware_uuid: str = ""
    os_version: str = ""
    networks: tuple[str, ...] = ()
    created_at: str = ""


class HostAdded(Event, frozen=True, kw_only=True):
    CREATES = "Host"
    name: str
    address: str
    port: int = DEFAULT_PORT
    cluster_id: UUID
    description: str = ""
    spm_priority: int = DEFAULT_SPM_PRIORITY
    created_at: str = ""


class HostUpdated(Event, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    address: str | UnsetType = UNSET
    port: int | UnsetType = UNSET
    cluster_id: UUID | UnsetType = UNSET
    spm_priority: int | UnsetType = UNSET


class HostStatusChanged(Event, frozen=True, kw_only=True):
    status: HostStatus
    status_detail: str = ""


class HostCapabilitiesReported(Event, frozen=True, kw_only=True):
    cpu_model: str = ""
    cpu_sockets: int = 0
    cpu_cores: int = 0
    memory_total: int = 0
    libvirt_version: str = ""
    qemu_version: str = ""
    kvm: bool = False
    hardware_uuid: str = ""
    os_version: str = ""
    networks: tuple[str, ...] = ()


class HostNetworkSetupFailed(Event, frozen=True, kw_only=True):
    """hostd could not set up networks the cluster has (its reason, word for word): the
    host lacks them, so it is non-operational until a retry succeeds."""

    networks: str = ""  # the cluster networks the host lacks, comma-separated
    reason: str = ""

    def evolve(self, agg: Any) -> Any:
        # A fact for the audit feed; the status change carries the state.
        return msgspec.structs.replace(agg, version=self.originator_version)


class HostRemoved(Event, frozen=True, kw_only=True):
    DELETES = True


class _HostFact(Event, frozen=True, kw_only=True):
    """An event for the host link or the audit feed that changes no field of the host."""

    def evolve(self, agg: Any) -> Any:
        return msgspec.structs.replace(agg, version=self.originator_version)


class HostRefreshRequested(_HostFact, frozen=True, kw_only=True):
    """The administrator asked for the host's capabilities again (the host link re-reads
    them with GetCapabilities)."""


class HostCapabilitiesRefreshed(_HostFact, frozen=True, kw_only=True):
    """The host link re-read the capabilities the refresh asked for."""


class HostRefreshFailed(_HostFact, frozen=True, kw_only=True):
    reason: str = ""


# -- reading ---------------------------------------------------------------------------------


# -- adding, editing, removing -------------------------------------------------------------


# -- installation and monitoring --------------------------------------------------------------


# -- maintenance -------------------------------------------------------------------------------


FENCE_TYPES = ("restart", "start", "stop", "status")


def fence_host(tx: Tx, host_id: UUID, fence_type: str) -> None:
    """Power-management fencing. Orrery drives no fence agents (IPMI, iLO, ...), so every
    host is one without power management, and oVirt refuses such a fence this way; the
    manual fence ("Confirm host has been rebooted") is ``confirm_rebooted``."""
    host = tx.engine.get(Host, host_id)
    if fence_type not in FENCE_TYPES:
        raise InvalidInput(
            f"Invalid fence type '{fence_type}'; use one of {', '.join(FENCE_TYPES)} or manual.",
            field="fence_type",
        )
    raise DomainError(
        f"Cannot {fence_type} Host. Power Management is not enabled for Host {host.name}."
    )


# -- refresh and upgrade check -----------------------------------------------------------------

REFRESHABLE = frozenset({S.UP, S.NON_OPERATIONAL})


def request_refresh(tx: Tx, host_id: UUID) -> None:
    """oVirt's RefreshHostCapabilities: only a host the Manager monitors can be asked."""
    host = tx.engine.get(Host, host_id)
    if host.status not in REFRESHABLE:
        raise DomainError(
            "Cannot refresh Host capabilities. Host status must be Up or NonOperational "
            f"(Host {host.name} is {host.status})."
        )
    tx.emit(HostRefreshRequested, host_id)


def report_refreshed(tx: Tx, host_id: UUID, reason: str = "") -> None:
    """The host link's answer to ``request_refresh``: done, or why not."""
    tx.engine.get(Host, host_id)
    if reason:
        tx.emit(HostRefreshFailed, host_id, reason=reason)
    else:
        tx.emit(HostCapabilitiesRefreshed, host_id)


def check_upgrade(tx: Tx, host_id: UUID) -> None:
    """oVirt asks the host's package manager for updates. An Orrery host has no package
    upgrade channel the Manager could query, so the check is refused rather than answered
    with an invented "no updates"."""
    host = tx.engine.get(Host, host_id)
    raise DomainError(
        f"Cannot check for upgrades of Host {host.name}. Orrery hosts have no package "
        "upgrade channel: hostd is upgraded with the Manager's own release."
    )


__all__ = [
    "HOST_TRANSITIONS",
    "Host",
    "HostAdded",
    "HostCapabilitiesRefreshed",
    "HostCapabilitiesReported",
    "HostRefreshFailed",
    "HostRefreshRequested",
    "HostRemoved",
    "HostStatusChanged",
    "HostUpdated",
    "check_upgrade",
    "report_refreshed",
    "request_refresh",
]
