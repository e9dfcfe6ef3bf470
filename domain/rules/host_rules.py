"""Hosts within their cluster, data center, networks, storage and VMs: adding and
editing (local-storage data centers, addresses, SPM priority), removal refused while VMs
run or are pinned there, installation, capability reports and network compliance, the
monitor's connecting / non-responsive / restored transitions (the VMs a lost host held
become unknown; a confirmed reboot takes them down), maintenance and activation, storage
a host cannot reach; each change refreshes the data center's status.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from msgspec import UNSET, UnsetType

from domain.affinity import drop_member
from domain.base import DomainError, Tx
from domain.cluster import Cluster
from domain.current import current, current_all, get_current
from domain.datacenter import DataCenter
from domain.host import (
    DEFAULT_PORT,
    DEFAULT_SPM_PRIORITY,
    DUPLICATE_HARDWARE_UUID,
    HOST_TRANSITIONS,
    MAX_SPM_PRIORITY,
    MIN_SPM_PRIORITY,
    NETWORK_UNREACHABLE,
    STORAGE_DOMAIN_UNREACHABLE,
    Host,
    HostAdded,
    HostCapabilitiesReported,
    HostNetworkSetupFailed,
    HostRemoved,
    HostStatusChanged,
    HostUpdated,
    S,
)
from domain.network import required_networks
from domain.permission import remove_object_permissions
from domain.rules.datacenter_status_rules import hosts_of, refresh_data_center
from domain.rules.vm_run_rules import vms_on_host_down
from domain.statuses import VM_ON_HOST, HostStatus, StorageDomainStatus, VmStatus
from domain.storage import StorageDomain, StorageDomainStatusChanged
from domain.tag import detach_everywhere
from domain.vm import Vm, vms_on_host_unknown


def dc_of_host(tx: Tx, host: Host) -> UUID | None:

    c = current(tx, Cluster, host.cluster_id)
    return c.data_center_id if c is not None else None


def vms_on_host(tx: Tx, host_id: UUID) -> list[Any]:
    """VMs holding resources on the host (running there or migrating to it), by name."""
    return [
        vm
        for vm in current_all(tx, Vm)
        if vm.status in VM_ON_HOST
        and (vm.run_on_host_id == host_id or vm.migrating_to_host_id == host_id)
    ]


def set_host_status(tx: Tx, host_id: UUID, status: HostStatus, detail: str = "") -> None:
    """Moves the host along a legal transition and re-evaluates its data center."""
    host = get_current(tx, Host, host_id)
    if host.status == status and host.status_detail == detail:
        return
    if host.status != status and status not in HOST_TRANSITIONS[host.status]:
        raise DomainError(
            f"Cannot change Host status from {host.status} to {status}.", field="status"
        )
    tx.emit(HostStatusChanged, host_id, status=status, status_detail=detail)
    dc_id = dc_of_host(tx, host)
    if dc_id is not None:
        refresh_data_center(tx, dc_id)


def _check_local_dc(tx: Tx, cluster_id: UUID, own: UUID | None, action: str) -> None:

    cluster = tx.engine.get(Cluster, cluster_id, field="cluster")
    dc = tx.engine.get(DataCenter, cluster.data_center_id)
    if dc.local and any(h.cluster_id == cluster_id and h.id != own for h in tx.engine.all(Host)):
        raise DomainError(
            f"Cannot {action} Host. A local storage Data Center can contain only one Host.",
            field="cluster",
        )


def add_host(
    tx: Tx,
    *,
    name: str,
    address: str,
    cluster_id: UUID,
    port: int = DEFAULT_PORT,
    description: str = "",
    spm_priority: int = DEFAULT_SPM_PRIORITY,
    id: UUID | None = None,
) -> UUID:
    """Adds a host; it starts ``installing`` until the installer reports back."""

    tx.engine.get(Cluster, cluster_id, field="cluster")
    tx.engine.require_unique_name(("host",), name, label="Host")
    if not address:
        raise DomainError("Cannot add Host. The Host address must not be empty.", field="address")
    _check_address_free(tx, address, port, None, "add")
    _check_priority(spm_priority)
    _check_local_dc(tx, cluster_id, None, "add")
    host_id = tx.new_id(id)
    tx.emit(
        HostAdded,
        host_id,
        name=name,
        address=address,
        port=port,
        cluster_id=cluster_id,
        description=description,
        spm_priority=spm_priority,
        created_at=tx.now.isoformat(),
    )
    return host_id


def update_host(
    tx: Tx,
    host_id: UUID,
    *,
    name: str | UnsetType = UNSET,
    description: str | UnsetType = UNSET,
    address: str | UnsetType = UNSET,
    port: int | UnsetType = UNSET,
    cluster_id: UUID | UnsetType = UNSET,
    spm_priority: int | UnsetType = UNSET,
) -> None:

    host = tx.engine.get(Host, host_id)
    if name is not UNSET and name != host.name:
        other = tx.engine.by_name(("host",), name)
        if other is not None and other != host_id:
            raise DomainError("Cannot edit Host. The Host name is already in use.", field="name")
    parked = host.status in (S.MAINTENANCE, S.INSTALL_FAILED, S.DOWN)
    new_address = host.address if address is UNSET else address
    new_port = host.port if port is UNSET else port
    if (new_address, new_port) != (host.address, host.port):
        if not parked:
            raise DomainError(
                "Cannot edit Host. The address can be changed only in Maintenance mode.",
                field="address",
            )
        if not new_address:
            raise DomainError("Cannot edit Host. The address must not be empty.", field="address")
        _check_address_free(tx, new_address, new_port, host_id, "edit")
    if spm_priority is not UNSET:
        _check_priority(spm_priority)
    if cluster_id is not UNSET and cluster_id != host.cluster_id:
        target = tx.engine.get(Cluster, cluster_id, field="cluster")
        if host.status != S.MAINTENANCE:
            raise DomainError(
                "Cannot change Host Cluster. Host must be in Maintenance mode.", field="cluster"
            )
        old = tx.engine.get(Cluster, host.cluster_id)
        if target.data_center_id != old.data_center_id:
            raise DomainError(
                "Cannot change Host Cluster. The target Cluster is in another Data Center.",
                field="cluster",
            )
        _check_local_dc(tx, cluster_id, host_id, "edit")
    values = dict(
        name=name,
        description=description,
        address=address,
        port=port,
        cluster_id=cluster_id,
        spm_priority=spm_priority,
    )
    changes = {k: v for k, v in values.items() if v is not UNSET and v != getattr(host, k)}
    if changes:
        tx.emit(HostUpdated, host_id, **changes)


def remove_host(tx: Tx, host_id: UUID) -> None:

    host = tx.engine.get(Host, host_id)
    if vms_on_host(tx, host_id):
        raise DomainError("Cannot remove Host. Host has running VMs.")
    if host.status not in (S.MAINTENANCE, S.DOWN, S.INSTALL_FAILED):
        raise DomainError(
            "Cannot remove Host. Host is operational. Please switch Host to Maintenance mode first."
        )
    pinned = [vm.name for vm in current_all(tx, Vm) if vm.placement_host_id == host_id]
    if pinned:
        raise DomainError(
            "Cannot remove Host. The following VMs are pinned to the Host: "
            + ", ".join(sorted(pinned))
            + "."
        )
    drop_member(tx, host_id)
    detach_everywhere(tx, host_id)
    remove_object_permissions(tx, host_id)
    tx.emit(HostRemoved, host_id)


def reinstall_host(tx: Tx, host_id: UUID) -> None:
    host = tx.engine.get(Host, host_id)
    if host.status not in (S.MAINTENANCE, S.INSTALL_FAILED, S.DOWN):
        raise DomainError(
            "Cannot install Host. Host must be in Maintenance mode or the installation "
            "must have failed."
        )
    set_host_status(tx, host_id, S.INSTALLING)


def finish_install(tx: Tx, host_id: UUID, *, success: bool, message: str = "") -> None:
    """The installer's outcome: ``initializing`` (then the monitor reports) or failed."""
    host = tx.engine.get(Host, host_id)
    if host.status != S.INSTALLING:
        raise DomainError(
            f"Cannot finish Host installation. Host is not installing (status {host.status})."
        )
    if success:
        set_host_status(tx, host_id, S.INITIALIZING)
    else:
        set_host_status(tx, host_id, S.INSTALL_FAILED, message[:1000])


def _missing_networks(tx: Tx, host: Host) -> list[str]:
    """The cluster's required networks the host does not have."""

    return [n for n in required_networks(tx, host.cluster_id) if n not in host.networks]


def _compliance(tx: Tx, host: Host) -> str:
    """Why the host cannot be up in its cluster (a NonOperational reason) or ""."""
    # A host without KVM still runs VMs under TCG (see DESIGN.md), so ``kvm`` is a fact,
    # not a reason to refuse the host.
    if _missing_networks(tx, host):
        return NETWORK_UNREACHABLE
    if host.hardware_uuid and any(
        h.hardware_uuid == host.hardware_uuid and h.id != host.id for h in current_all(tx, Host)
    ):
        return DUPLICATE_HARDWARE_UUID
    return ""


def report_capabilities(
    tx: Tx,
    host_id: UUID,
    *,
    cpu_model: str,
    cpu_cores: int,
    memory_total: int,
    cpu_sockets: int = 1,
    libvirt_version: str = "",
    qemu_version: str = "",
    kvm: bool = True,
    hardware_uuid: str = "",
    os_version: str = "",
    networks: tuple[str, ...] = (),
    network_error: str = "",
) -> HostStatus:
    """Records what the host monitor found; an initializing host then comes up (or is
    non-operational with the reason), an up host that no longer complies goes
    non-operational. Returns the host's status afterwards.

    ``network_error`` is hostd's reason for failing to set up the cluster's networks: it
    joins the ``network_unreachable`` status detail and is an event of its own (once per
    distinct reason). A host non-operational for want of networks comes up again once a
    report finds them all (oVirt's auto-recovery of non-operational hosts)."""
    host = tx.engine.get(Host, host_id)
    if host.status in (S.INSTALLING, S.INSTALL_FAILED, S.MAINTENANCE, S.DOWN):
        raise DomainError(
            f"Cannot accept Host capabilities. Host is not monitored (status {host.status})."
        )
    facts = dict(
        cpu_model=cpu_model,
        cpu_sockets=cpu_sockets,
        cpu_cores=cpu_cores,
        memory_total=memory_total,
        libvirt_version=libvirt_version,
        qemu_version=qemu_version,
        kvm=kvm,
        hardware_uuid=hardware_uuid,
        os_version=os_version,
        networks=tuple(sorted(set(networks))),
    )
    if any(getattr(host, k) != v for k, v in facts.items()):
        tx.emit(HostCapabilitiesReported, host_id, **facts)
    host = get_current(tx, Host, host_id)
    reason = _compliance(tx, host)
    if reason == NETWORK_UNREACHABLE and network_error:
        reason = f"{NETWORK_UNREACHABLE}: {network_error}"[:1000]
        if host.status_detail != reason:
            tx.emit(
                HostNetworkSetupFailed,
                host_id,
                networks=", ".join(_missing_networks(tx, host)),
                reason=network_error[:1000],
            )
    if host.status == S.NON_OPERATIONAL and host.status_detail.startswith(NETWORK_UNREACHABLE):
        if not reason:
            set_host_status(tx, host_id, S.INITIALIZING)
            set_host_status(tx, host_id, S.UP)
        elif reason.startswith(NETWORK_UNREACHABLE):
            set_host_status(tx, host_id, S.NON_OPERATIONAL, reason)
    elif host.status in (S.INITIALIZING, S.CONNECTING, S.ERROR):
        if reason:
            set_host_status(tx, host_id, S.NON_OPERATIONAL, reason)
        else:
            set_host_status(tx, host_id, S.UP)
    elif host.status == S.UP and reason:
        set_host_status(tx, host_id, S.NON_OPERATIONAL, reason)
    return get_current(tx, Host, host_id).status


def connection_lost(tx: Tx, host_id: UUID) -> None:
    """The monitor could not reach the host: ``connecting`` for the grace period."""
    host = tx.engine.get(Host, host_id)
    if host.status == S.CONNECTING:
        return
    if S.CONNECTING not in HOST_TRANSITIONS[host.status]:
        raise DomainError(f"Cannot mark Host as connecting. Host is {host.status}.")
    # Only a non-operational reason is kept (a maintenance reason is not one).
    keep = host.status_detail if host.status == S.NON_OPERATIONAL else ""
    set_host_status(tx, host_id, S.CONNECTING, keep)


def mark_non_responsive(tx: Tx, host_id: UUID) -> list[UUID]:
    """The grace period ran out: the host is ``non_responsive``, its SPM role is given up,
    and the VMs it held become ``unknown`` (``domain.vm.vms_on_host_unknown``).
    Returns the ids of the VMs that must become unknown (by name)."""
    host = tx.engine.get(Host, host_id)
    if host.status == S.NON_RESPONSIVE:
        return []
    if S.NON_RESPONSIVE not in HOST_TRANSITIONS[host.status]:
        raise DomainError(f"Cannot mark Host as non responsive. Host is {host.status}.")
    affected = sorted(
        (vm for vm in vms_on_host(tx, host_id) if vm.status != VmStatus.UNKNOWN),
        key=lambda v: (v.name, v.id),
    )
    set_host_status(tx, host_id, S.NON_RESPONSIVE)
    vms_on_host_unknown(tx, host_id)
    return [vm.id for vm in affected]


def connection_restored(tx: Tx, host_id: UUID) -> None:
    """The monitor reached the host again: a connecting host is back up, a
    non-responsive one starts over at ``initializing``."""
    host = tx.engine.get(Host, host_id)
    if host.status == S.CONNECTING:
        # A host lost while non-operational keeps its reason ``status_detail``.
        reason = host.status_detail or _compliance(tx, host)
        if reason:
            set_host_status(tx, host_id, S.NON_OPERATIONAL, reason)
        else:
            set_host_status(tx, host_id, S.UP)
    elif host.status == S.NON_RESPONSIVE:
        set_host_status(tx, host_id, S.INITIALIZING)
    else:
        raise DomainError(f"Cannot reconnect Host. Host is {host.status}.")


def set_non_operational(tx: Tx, host_id: UUID, reason: str) -> None:
    host = tx.engine.get(Host, host_id)
    if not reason:
        raise DomainError("A non-operational Host needs a reason.", field="reason")
    if host.status != S.NON_OPERATIONAL and S.NON_OPERATIONAL not in HOST_TRANSITIONS[host.status]:
        raise DomainError(f"Cannot set Host to Non Operational. Host is {host.status}.")
    set_host_status(tx, host_id, S.NON_OPERATIONAL, reason)


def report_storage_unreachable(tx: Tx, host_id: UUID, sd_id: UUID) -> None:
    """The host cannot reach an active domain of its data center. While other up hosts
    can (or while the host is still initializing), the host goes non-operational; when
    it is the last up host, the domain is inactive (and a master domain's role moves on,
    or the data center is not operational)."""

    host = tx.engine.get(Host, host_id, field="host")
    sd = tx.engine.get(StorageDomain, sd_id, field="storage_domain")
    dc_id = dc_of_host(tx, host)
    if sd.data_center_id != dc_id or dc_id is None:
        raise DomainError(
            "Cannot report Storage Domain problem. The Storage Domain is not attached to the "
            "Host's Data Center.",
            field="storage_domain",
        )
    if sd.status != StorageDomainStatus.ACTIVE:
        return
    if host.status not in (S.UP, S.INITIALIZING):
        raise DomainError(f"Cannot report Storage Domain problem. Host is {host.status}.")
    others = [h for h in hosts_of(tx, dc_id) if h.status == S.UP and h.id != host_id]
    if others or host.status == S.INITIALIZING:
        set_host_status(tx, host_id, S.NON_OPERATIONAL, STORAGE_DOMAIN_UNREACHABLE)
    else:
        tx.emit(StorageDomainStatusChanged, sd_id, status=StorageDomainStatus.INACTIVE)
        refresh_data_center(tx, dc_id)


def check_hosts_networks(tx: Tx, cluster_id: UUID) -> None:
    """Up hosts that lack a required network of the cluster go non-operational."""

    need = required_networks(tx, cluster_id)
    for h in current_all(tx, Host):
        if (
            h.cluster_id == cluster_id
            and h.status == S.UP
            and any(n not in h.networks for n in need)
        ):
            set_host_status(tx, h.id, S.NON_OPERATIONAL, NETWORK_UNREACHABLE)


def deactivate_host(tx: Tx, host_id: UUID, *, reason: str = "") -> HostStatus:
    """Maintenance: straight to ``maintenance`` when no VMs remain, otherwise
    ``preparing_for_maintenance`` until they are migrated away (``finish_maintenance``);
    ``reason`` (oVirt's maintenance reason) is the status detail."""
    host = tx.engine.get(Host, host_id)
    if host.status in (S.MAINTENANCE, S.PREPARING_FOR_MAINTENANCE):
        raise DomainError(
            "Cannot switch Host to Maintenance mode. Host is already in Maintenance mode."
        )
    if host.status == S.INSTALLING:
        raise DomainError("Cannot switch Host to Maintenance mode. Host is installing.")
    vms = vms_on_host(tx, host_id)
    if vms and host.status == S.NON_RESPONSIVE:
        raise DomainError(
            "Cannot switch Host to Maintenance mode. Host is non responsive and has VMs; "
            "confirm that the Host has been rebooted first."
        )
    target = S.PREPARING_FOR_MAINTENANCE if vms else S.MAINTENANCE
    if target not in HOST_TRANSITIONS[host.status]:
        raise DomainError(f"Cannot switch Host to Maintenance mode. Host is {host.status}.")
    set_host_status(tx, host_id, target, reason)
    return target


def finish_maintenance(tx: Tx, host_id: UUID) -> None:
    """``preparing_for_maintenance -> maintenance`` once no VM is left on the host."""
    host = tx.engine.get(Host, host_id)
    if host.status != S.PREPARING_FOR_MAINTENANCE:
        raise DomainError(
            "Cannot complete Host maintenance. Host is not preparing for maintenance."
        )
    if vms_on_host(tx, host_id):
        raise DomainError(
            "Cannot switch Host to Maintenance mode. Host still has running VMs on it."
        )
    set_host_status(tx, host_id, S.MAINTENANCE, host.status_detail)  # the reason stays


def maybe_finish_maintenance(tx: Tx, host_id: UUID | None) -> bool:
    """For the VM area / policies after a VM left a host: a host preparing for
    maintenance with no VM left moves to ``maintenance``. Never raises; says whether."""
    host = current(tx, Host, host_id)
    if host is None or host.status != S.PREPARING_FOR_MAINTENANCE or vms_on_host(tx, host.id):
        return False
    set_host_status(tx, host.id, S.MAINTENANCE)
    return True


def activate_host(tx: Tx, host_id: UUID) -> None:
    """Activate: back to ``initializing``; the monitor's report brings it up."""
    host = tx.engine.get(Host, host_id)
    if host.status == S.UP:
        raise DomainError("Cannot activate Host. Host is already active.")
    if host.status in (S.INSTALLING, S.INSTALL_FAILED):
        raise DomainError(
            "Cannot activate Host. Host is being installed or its installation failed."
        )
    if host.status not in (
        S.MAINTENANCE,
        S.PREPARING_FOR_MAINTENANCE,
        S.NON_OPERATIONAL,
        S.ERROR,
        S.DOWN,
    ):
        raise DomainError(f"Cannot activate Host. Host is {host.status}.")
    set_host_status(tx, host_id, S.INITIALIZING)


def confirm_rebooted(tx: Tx, host_id: UUID) -> list[UUID]:
    """The administrator's "Confirm host has been rebooted": a non-responsive host is
    down and its VMs are down (``vm_run_rules.vms_on_host_down``). Returns the VMs' ids."""
    host = tx.engine.get(Host, host_id)
    if host.status != S.NON_RESPONSIVE:
        raise DomainError(
            "Cannot confirm 'Host has been rebooted'. Host is not in Non Responsive status."
        )
    vms = sorted(vms_on_host(tx, host_id), key=lambda v: (v.name, v.id))
    set_host_status(tx, host_id, S.DOWN)
    vms_on_host_down(tx, host_id, reason="Host was rebooted")
    return [vm.id for vm in vms]


def _check_address_free(tx: Tx, address: str, port: int, own: UUID | None, action: str) -> None:
    for h in tx.engine.all(Host):
        if h.id != own and h.address == address and h.port == port:
            raise DomainError(
                f"Cannot {action} Host. A Host with the same address already exists.",
                field="address",
            )


def _check_priority(spm_priority: int) -> None:
    if not MIN_SPM_PRIORITY <= spm_priority <= MAX_SPM_PRIORITY:
        raise DomainError(
            f"SPM priority must be between {MIN_SPM_PRIORITY} and {MAX_SPM_PRIORITY}.",
            field="spm_priority",
        )
