"""Host commands: the administrator's (add, edit, remove, maintenance, activate, install,
confirm rebooted) and the host monitor's reports (install outcome, capabilities,
connection lost/restored, non-responsive, storage unreachable)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText, refuse_unless_default
from commands.registry import handles
from domain import host
from domain.base import Tx
from domain.rules import host_rules

SpmPriority = Annotated[int, msgspec.Meta(ge=host.MIN_SPM_PRIORITY, le=host.MAX_SPM_PRIORITY)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Fact = Annotated[str, msgspec.Meta(max_length=1000)]
NetName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class AddHost(Command, frozen=True, kw_only=True):
    name: Name
    address: Address
    cluster_id: UUID
    port: Port = host.DEFAULT_PORT
    description: ShortText = ""
    spm_priority: SpmPriority = host.DEFAULT_SPM_PRIORITY
    id: UUID | None = None
    # oVirt's activate=false (stay in maintenance after install) is refused, not ignored.
    activate: bool = True


class UpdateHost(Command, frozen=True, kw_only=True):
    host_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    address: Address | UnsetType = UNSET
    port: Port | UnsetType = UNSET
    cluster_id: UUID | UnsetType = UNSET
    spm_priority: SpmPriority | UnsetType = UNSET


class RemoveHost(Command, frozen=True, kw_only=True):
    host_id: UUID
    # oVirt's force (remove a host that is not in maintenance) is refused, not ignored.
    force: bool = False


class InstallHost(Command, frozen=True, kw_only=True):
    """Reinstall a host in maintenance (or whose installation failed)."""

    host_id: UUID


class ReportHostInstalled(Command, frozen=True, kw_only=True):
    host_id: UUID
    success: bool = True
    message: ShortText = ""


class ReportHostCapabilities(Command, frozen=True, kw_only=True):
    host_id: UUID
    cpu_model: Fact
    cpu_cores: Annotated[int, msgspec.Meta(ge=1)]
    memory_total: Count
    cpu_sockets: Annotated[int, msgspec.Meta(ge=1)] = 1
    libvirt_version: Fact = ""
    qemu_version: Fact = ""
    kvm: bool = True
    hardware_uuid: Fact = ""
    os_version: Fact = ""
    networks: tuple[NetName, ...] = ()
    network_error: Fact = ""  # hostd's reason for failing to set up the cluster's networks


class ReportHostConnectionLost(Command, frozen=True, kw_only=True):
    host_id: UUID


class MarkHostNonResponsive(Command, frozen=True, kw_only=True):
    host_id: UUID


class ReportHostConnectionRestored(Command, frozen=True, kw_only=True):
    host_id: UUID


class SetHostNonOperational(Command, frozen=True, kw_only=True):
    host_id: UUID
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class ReportHostStorageUnreachable(Command, frozen=True, kw_only=True):
    host_id: UUID
    storage_domain_id: UUID


class DeactivateHost(Command, frozen=True, kw_only=True):
    """Maintenance; ``reason`` is kept as the host's status detail (oVirt's maintenance
    reason) until its status changes again."""

    host_id: UUID
    reason: ShortText = ""


class FinishHostMaintenance(Command, frozen=True, kw_only=True):
    host_id: UUID


class ActivateHost(Command, frozen=True, kw_only=True):
    host_id: UUID


class ConfirmHostRebooted(Command, frozen=True, kw_only=True):
    host_id: UUID


class FenceHost(Command, frozen=True, kw_only=True):
    """Power-management fencing (restart/start/stop/status); manual fencing is
    ConfirmHostRebooted."""

    host_id: UUID
    fence_type: Annotated[str, msgspec.Meta(max_length=20)] = "restart"


class RefreshHost(Command, frozen=True, kw_only=True):
    host_id: UUID


class ReportHostRefreshed(Command, frozen=True, kw_only=True):
    host_id: UUID
    reason: Fact = ""


class CheckHostUpgrade(Command, frozen=True, kw_only=True):
    host_id: UUID


@handles(AddHost)
def _add(tx: Tx, c: AddHost) -> UUID:
    refuse_unless_default(c, "activate", "leaving a new host in maintenance")
    return host_rules.add_host(
        tx,
        name=c.name,
        address=c.address,
        cluster_id=c.cluster_id,
        port=c.port,
        description=c.description,
        spm_priority=c.spm_priority,
        id=c.id,
    )


@handles(UpdateHost)
def _update(tx: Tx, c: UpdateHost) -> None:
    host_rules.update_host(
        tx,
        c.host_id,
        name=c.name,
        description=c.description,
        address=c.address,
        port=c.port,
        cluster_id=c.cluster_id,
        spm_priority=c.spm_priority,
    )


@handles(RemoveHost)
def _remove(tx: Tx, c: RemoveHost) -> None:
    refuse_unless_default(c, "force", "removing a host that is not in maintenance")
    host_rules.remove_host(tx, c.host_id)


@handles(InstallHost)
def _install(tx: Tx, c: InstallHost) -> None:
    host_rules.reinstall_host(tx, c.host_id)


@handles(ReportHostInstalled)
def _installed(tx: Tx, c: ReportHostInstalled) -> None:
    host_rules.finish_install(tx, c.host_id, success=c.success, message=c.message)


@handles(ReportHostCapabilities)
def _caps(tx: Tx, c: ReportHostCapabilities) -> str:
    return host_rules.report_capabilities(
        tx,
        c.host_id,
        cpu_model=c.cpu_model,
        cpu_cores=c.cpu_cores,
        memory_total=c.memory_total,
        cpu_sockets=c.cpu_sockets,
        libvirt_version=c.libvirt_version,
        qemu_version=c.qemu_version,
        kvm=c.kvm,
        hardware_uuid=c.hardware_uuid,
        os_version=c.os_version,
        networks=c.networks,
        network_error=c.network_error,
    ).value


@handles(ReportHostConnectionLost)
def _lost(tx: Tx, c: ReportHostConnectionLost) -> None:
    host_rules.connection_lost(tx, c.host_id)


@handles(MarkHostNonResponsive)
def _non_responsive(tx: Tx, c: MarkHostNonResponsive) -> dict[str, Any]:
    return {"unknown_vm_ids": host_rules.mark_non_responsive(tx, c.host_id)}


@handles(ReportHostConnectionRestored)
def _restored(tx: Tx, c: ReportHostConnectionRestored) -> None:
    host_rules.connection_restored(tx, c.host_id)


@handles(SetHostNonOperational)
def _non_operational(tx: Tx, c: SetHostNonOperational) -> None:
    host_rules.set_non_operational(tx, c.host_id, c.reason)


@handles(ReportHostStorageUnreachable)
def _storage_unreachable(tx: Tx, c: ReportHostStorageUnreachable) -> None:
    host_rules.report_storage_unreachable(tx, c.host_id, c.storage_domain_id)


@handles(DeactivateHost)
def _deactivate(tx: Tx, c: DeactivateHost) -> str:
    return host_rules.deactivate_host(tx, c.host_id, reason=c.reason).value


@handles(FinishHostMaintenance)
def _finish_maintenance(tx: Tx, c: FinishHostMaintenance) -> None:
    host_rules.finish_maintenance(tx, c.host_id)


@handles(ActivateHost)
def _activate(tx: Tx, c: ActivateHost) -> None:
    host_rules.activate_host(tx, c.host_id)


@handles(ConfirmHostRebooted)
def _confirm_rebooted(tx: Tx, c: ConfirmHostRebooted) -> dict[str, Any]:
    return {"down_vm_ids": host_rules.confirm_rebooted(tx, c.host_id)}


@handles(FenceHost)
def _fence(tx: Tx, c: FenceHost) -> None:
    host.fence_host(tx, c.host_id, c.fence_type)


@handles(RefreshHost)
def _refresh(tx: Tx, c: RefreshHost) -> None:
    host.request_refresh(tx, c.host_id)


@handles(ReportHostRefreshed)
def _refreshed(tx: Tx, c: ReportHostRefreshed) -> None:
    host.report_refreshed(tx, c.host_id, c.reason)


@handles(CheckHostUpgrade)
def _upgrade_check(tx: Tx, c: CheckHostUpgrade) -> None:
    host.check_upgrade(tx, c.host_id)
