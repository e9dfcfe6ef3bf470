"""Host sessions and monitoring: one connection per monitored host, its handshake (the
cluster's networks, capabilities, storage, what runs there), the host's facts turned into
report commands, and what happens when a host goes quiet.

- A host whose session drops (or goes silent past ``heartbeat_timeout``) is reported
  ``connecting``; after ``non_responsive_after`` seconds more it is marked
  ``non_responsive`` (its VMs become unknown). A session that comes back reports what
  runs (``ListVms``), so VM states are adopted rather than recreated.
- Networks: the handshake asks for the bridges of the cluster's networks a few times
  (``network_tries``); a host left non-operational for want of them is handshaken again
  every ``network_retry_every`` seconds (oVirt's auto-recovery).
- Facts: ``VmStatusChanged`` -> ``ReportVmStatus`` (one host's in the order sent),
  ``MigrationDone`` -> ``ReportVmMigrationDone`` / ``Failed``, ``StatsSample`` -> the
  telemetry sink.

May import ``.core`` (and below); no other flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands import host as host_cmds
from commands import vm as vm_cmds
from commands.hostlink.core import ACTOR, MONITORED, Core, MiB, Session
from domain.base import Event
from domain.host import NETWORK_UNREACHABLE, Host, HostStatusChanged
from domain.network import LogicalNetwork
from domain.statuses import HostStatus, VmStatus
from domain.vm import Vm
from hostd import protocol as P

log = logging.getLogger("orrery.hostlink")

# libvirt's reasons for a VM going down that are not failures.
NORMAL_EXITS = frozenset({"shutdown", "destroyed", "saved", "migrated", "from_snapshot"})


class Monitor:
    def __init__(
        self,
        core: Core,
        *,
        heartbeat_timeout: float,
        non_responsive_after: float,
        reconnect_every: float,
        network_retry_every: float,
        telemetry: Callable[[UUID, P.StatsSample], None] | None,
    ) -> None:
        self.core = core
        self.heartbeat_timeout = heartbeat_timeout
        self.non_responsive_after = non_responsive_after
        self.reconnect_every = reconnect_every
        # A host non-operational for want of its cluster's networks: how often the monitor
        # asks it again, and the tries within one handshake.
        self.network_retry_every = network_retry_every
        self.network_tries = 3
        self.migration_grace = 10.0  # wait for MigrationDone after the destination's "up"
        self.telemetry = telemetry

    # -- sessions -----------------------------------------------------------------------
    def reconcile_sessions(self) -> None:
        """A session task for every monitored host; none for a host that is gone."""
        sessions = self.core.sessions
        hosts = {h.id: h for h in self.core.all(Host)}
        for hid, h in hosts.items():
            s = sessions.get(hid)
            if h.status in MONITORED and (s is None or s.task is None or s.task.done()):
                s = s or sessions.setdefault(hid, Session(hid))
                s.task = asyncio.create_task(self.session(hid), name=f"host-{h.name}")
        for hid in list(sessions):
            if hid not in hosts:
                s = sessions.pop(hid)
                if s.task is not None:
                    s.task.cancel()

    def host_changed(self, ev: Event) -> None:
        """A host added or its status changed: sessions follow; a host activated (from
        maintenance, non-operational ...) while connected is brought up by reporting it
        afresh, as after a reconnect."""
        self.reconcile_sessions()
        s = self.core.sessions.get(ev.originator_id)
        if (
            isinstance(ev, HostStatusChanged)
            and ev.status == HostStatus.INITIALIZING
            and s is not None
            and s.client is not None
        ):
            self.core.spawn(self.rehandshake(s))

    async def check_silence(self) -> None:
        now = time.monotonic()
        for s in list(self.core.sessions.values()):
            if s.client is not None and now - s.last_seen > self.heartbeat_timeout:
                log.info("host %s silent for %.0fs", s.host_id, now - s.last_seen)
                await s.client.close()
            if s.client is None and s.lost_at is not None:
                host = self.core.find(Host, s.host_id)
                if (
                    host is not None
                    and host.status == HostStatus.CONNECTING
                    and now - s.lost_at >= self.non_responsive_after
                ):
                    await self.core.run_command(
                        host_cmds.MarkHostNonResponsive(host_id=s.host_id, actor=ACTOR)
                    )

    async def session(self, host_id: UUID) -> None:
        s = self.core.sessions[host_id]
        while True:
            host = self.core.find(Host, host_id)
            if host is None or host.status not in MONITORED:
                return
            # A host just added has its secret stored a moment after it is committed.
            wait = self.reconnect_every if host.status == HostStatus.INSTALLING else 0.0
            secret = await self.core.secrets.wait_for(host_id, wait)
            try:
                client = await P.HostClient.connect(
                    host.address, host.port, secret or "", timeout=5.0, ssl=self.core.tls
                )
            except ssl.SSLCertVerificationError as e:
                await self._untrusted(host, f"certificate refused: {e.verify_message}")
                await asyncio.sleep(self.reconnect_every)
                continue
            except (TimeoutError, OSError, P.HostdError) as e:
                await self._connection_failed(s, host, str(e))
                await asyncio.sleep(self.reconnect_every)
                continue
            why = self._revoked(host, client)
            if why:
                await client.close()
                await self._untrusted(host, why)
                await asyncio.sleep(self.reconnect_every)
                continue
            s.client = client
            s.last_seen = time.monotonic()
            client.listeners.append(functools.partial(self.on_fact, s))
            try:
                await self.handshake(s)
                await client.closed.wait()
            except P.HostdError as e:
                log.info("host %s: %s", host.name, e)
            except Exception:
                log.exception("host %s session failed", host.name)
            finally:
                s.client = None
                with contextlib.suppress(Exception):
                    await client.close()
            host = self.core.find(Host, host_id)
            if host is not None:
                await self._connection_failed(s, host, "connection lost")
            await asyncio.sleep(self.reconnect_every)

    def host_added(self, ev: Event) -> None:
        """A host added: the Manager CA issues its certificate for its address, in
        ``DATA_DIR/pki/hosts/<host id>/`` (hostd's ``--tls-dir``, to be installed on the
        host); then its session starts."""
        host = self.core.find(Host, ev.originator_id)
        if self.core.pki is not None and host is not None:
            self.core.pki.enroll_host(str(host.id), host.address, self.core.pki.host_dir(host.id))
        self.host_changed(ev)

    def host_removed(self, ev: Event) -> None:
        """A removed host: its session ends and the certificates issued to it or that
        it presented are revoked (its TLS directory deleted), so a host that comes back
        with one is refused."""
        self.reconcile_sessions()
        if self.core.pki is not None:
            n = self.core.pki.revoke_host(ev.originator_id)
            log.info("host %s removed: %d certificate(s) revoked", ev.originator_id, n)

    def _revoked(self, host: Host, client: P.HostClient) -> str:
        """Why hostd's (verified) certificate is not accepted: revoked; '' if it is."""
        pki = self.core.pki
        if pki is None:
            return ""
        serial = client.peer_serial
        if serial is None:
            return "hostd presented no certificate"
        if pki.is_revoked(serial):
            return f"certificate refused: serial {serial:x} is revoked"
        pki.host_seen(host.id, serial)
        return ""

    async def _untrusted(self, host: Host, why: str) -> None:
        """hostd answered with a certificate the Manager refuses: not a transient fault,
        so the host says why at once (installation failed, or non operational) instead
        of retrying silently."""
        why = f"Host {host.name} ({host.address}) cannot be trusted: {why}"[:900]
        log.warning("%s", why)
        if host.status == HostStatus.INSTALLING:
            await self.core.run_command(
                host_cmds.ReportHostInstalled(
                    host_id=host.id, success=False, message=why, actor=ACTOR
                )
            )
        elif host.status_detail != why:
            await self.core.run_command(
                host_cmds.SetHostNonOperational(host_id=host.id, reason=why, actor=ACTOR)
            )

    async def _connection_failed(self, s: Session, host: Host, why: str) -> None:
        if host.status == HostStatus.INSTALLING:
            # The installer (here: the first contact) failed.
            if s.lost_at is None:
                s.lost_at = time.monotonic()
            elif time.monotonic() - s.lost_at >= self.non_responsive_after:
                await self.core.run_command(
                    host_cmds.ReportHostInstalled(
                        host_id=host.id, success=False, message=why[:900], actor=ACTOR
                    )
                )
            return
        if host.status in (HostStatus.UP, HostStatus.NON_OPERATIONAL, HostStatus.INITIALIZING):
            await self.core.run_command(
                host_cmds.ReportHostConnectionLost(host_id=host.id, actor=ACTOR)
            )
        if s.lost_at is None:
            s.lost_at = time.monotonic()

    # -- the handshake ------------------------------------------------------------------
    async def handshake(self, s: Session) -> None:
        s.handshaking = True
        try:
            await self._handshake_once(s)
        finally:
            s.handshaking = False

    async def _handshake_once(self, s: Session) -> None:
        client = s.client
        assert client is not None
        host = self.core.get(Host, s.host_id)
        if host.status == HostStatus.INSTALLING:
            await self.core.run_command(host_cmds.ReportHostInstalled(host_id=host.id, actor=ACTOR))
        elif host.status in (HostStatus.CONNECTING, HostStatus.NON_RESPONSIVE):
            await self.core.run_command(
                host_cmds.ReportHostConnectionRestored(host_id=host.id, actor=ACTOR)
            )
        s.lost_at = None
        # Bridges for the cluster's networks, then the data center's active storage.
        nets = self._cluster_networks(host.cluster_id)
        network_error = await self._setup_networks(client, nets) if nets else ""
        caps: P.Capabilities = await client.call(P.GetCapabilities())
        s.caps = caps
        s.storage = dict(caps.storage)
        for sd in self.core.dc_storage(host.cluster_id):
            await self.core.connect_storage(s, sd)
        host = self.core.get(Host, s.host_id)
        if host.status not in (HostStatus.MAINTENANCE, HostStatus.PREPARING_FOR_MAINTENANCE):
            await self.core.run_command(
                host_cmds.ReportHostCapabilities(
                    host_id=host.id,
                    cpu_model=caps.cpu_model[:1000] or "unknown",
                    cpu_cores=max(1, caps.cpus),
                    cpu_sockets=max(1, caps.cpu_sockets),
                    memory_total=caps.memory_mib * MiB,
                    libvirt_version=caps.libvirt_version,
                    qemu_version=caps.qemu_version,
                    kvm=caps.kvm,
                    hardware_uuid=caps.host_id,
                    networks=tuple(n.network for n in caps.networks if n.ok),
                    network_error=network_error[:1000],
                    actor=ACTOR,
                )
            )
        await self._adopt_vms(s)

    def _cluster_networks(self, cluster_id: UUID) -> list[str]:
        return sorted(
            n.name
            for n in self.core.all(LogicalNetwork)
            if cluster_id in getattr(n, "cluster_ids", ())
        )

    async def _setup_networks(self, client: P.HostClient, nets: list[str]) -> str:
        """Asks the host for the bridges of its cluster's networks, a few times before
        this handshake gives up. Returns "" or hostd's reason, which the capabilities
        report carries into the host's status detail and an event; the monitor retries a
        host left without its networks (``retry_networks``)."""
        why = ""
        for attempt in range(self.network_tries):
            if attempt:
                await asyncio.sleep(0.5 * attempt)
            try:
                res: P.NetworksResult = await client.call(
                    P.SetupNetworks(bridges=[P.BridgeSpec(network=n) for n in nets])
                )
            except P.HostdError as e:
                why = str(e)
                continue
            bad = [f"{st.network}: {st.detail}" for st in res.networks if not st.ok]
            if not bad:
                return ""
            why = "; ".join(bad)
        log.info("host %s: networks not set up: %s", client, why)
        return why

    def retry_networks(self) -> None:
        """Hosts non-operational for want of networks are handshaken again now and then:
        their bridges are asked for anew and a host that has them all comes up."""
        now = time.monotonic()
        lacking = {
            h.id
            for h in self.core.all(Host)
            if h.status == HostStatus.NON_OPERATIONAL
            and h.status_detail.startswith(NETWORK_UNREACHABLE)
        }
        for s in self.core.sessions.values():
            if (
                s.host_id in lacking
                and s.client is not None
                and not s.handshaking
                and now - s.networks_tried >= self.network_retry_every
            ):
                s.networks_tried = now
                self.core.spawn(self.rehandshake(s))

    async def rehandshake(self, s: Session) -> None:
        if s.handshaking:
            return  # the handshake under way reports the host anyway
        try:
            await self.handshake(s)
        except P.HostdError as e:
            self.core.note(f"host {s.host_id}: {e}")

    async def refresh(self, host_id: UUID) -> None:
        """The administrator's refresh: the handshake once more (GetCapabilities and its
        report), then the outcome as an event ("refreshed" or why not)."""
        s = self.core.sessions.get(host_id)
        reason = ""
        if s is None or s.client is None:
            reason = "the host is not connected"
        else:
            while s.handshaking:  # one under way may predate the request: read afresh after it
                await asyncio.sleep(0.05)
            try:
                await self.handshake(s)
            except P.HostdError as e:
                reason = str(e) or "the host did not answer"
        await self.core.run_command(
            host_cmds.ReportHostRefreshed(host_id=host_id, reason=reason[:1000], actor=ACTOR)
        )

    async def _adopt_vms(self, s: Session) -> None:
        """Reports what runs on the host, so a restart of either side loses nothing."""
        assert s.client is not None
        listing: P.VmList = await s.client.call(P.ListVms())
        running = {v.id: v for v in listing.vms}
        mine = [
            v
            for v in self.core.all(Vm)
            if v.run_on_host_id == s.host_id and v.status != VmStatus.DOWN
        ]
        for vm in mine:
            info = running.get(str(vm.id))
            status = vm_status(info.status) if info is not None else VmStatus.DOWN
            if saving(vm, status):
                continue
            if status is not None and status != vm.status:
                await self.core.run_command(
                    vm_cmds.ReportVmStatus(
                        vm_id=vm.id,
                        host_id=s.host_id,
                        status=status,
                        reason=(info.reason if info else "not running on the host")[:900],
                        actor=ACTOR,
                    )
                )

    # -- facts -> commands --------------------------------------------------------------
    def on_fact(self, s: Session, fact: Any) -> None:
        s.last_seen = time.monotonic()
        if isinstance(fact, P.VmStatusChanged):
            self.core.spawn(self._vm_fact(s, fact))
        elif isinstance(fact, P.MigrationDone):
            self.core.spawn(self._migration_fact(fact))
        elif isinstance(fact, P.StatsSample):
            s.latest_stats = fact
            if self.telemetry is not None:
                try:
                    self.telemetry(s.host_id, fact)
                except Exception:
                    log.exception("telemetry sink failed")

    async def _vm_fact(self, s: Session, fact: P.VmStatusChanged) -> None:
        # One host's VM facts are reported in the order the host sent them (asyncio's
        # lock wakes waiters first come, first served; tasks start in creation order).
        async with s.fact_lock:
            await self._vm_fact_in_order(s, fact)

    async def _vm_fact_in_order(self, s: Session, fact: P.VmStatusChanged) -> None:
        status = vm_status(fact.status)
        try:
            vm_id = UUID(fact.vm_id)
        except ValueError:
            return
        vm = self.core.find(Vm, vm_id)
        if status is None or vm is None:
            return
        if status == VmStatus.MIGRATING or (
            vm.status == VmStatus.MIGRATING
            and status == VmStatus.DOWN
            and fact.reason == "migrated"
        ):
            return  # the migration's outcome comes with MigrationDone
        if saving(vm, status):
            return
        if (
            vm.status == VmStatus.MIGRATING
            and status == VmStatus.UP
            and s.host_id == vm.migrating_to_host_id
        ):
            # Running on the destination: the source's MigrationDone (with the measured
            # downtime) settles it; only if that never comes does this report count.
            version = vm.version
            await asyncio.sleep(self.migration_grace)
            vm = self.core.find(Vm, vm_id)
            if vm is None or vm.version != version:
                return  # settled (or a later migration began): this report is stale
        exit_status = ""
        if status == VmStatus.DOWN:
            # A power-off or shutdown someone asked for ends normally; a QEMU that died
            # (crashed, failed) is an error, which is what HA restarts.
            exit_status = "normal" if fact.reason in NORMAL_EXITS else "error"
        await self.core.run_command(
            vm_cmds.ReportVmStatus(
                vm_id=vm_id,
                host_id=s.host_id,
                status=status,
                reason=fact.reason[:900],
                exit_status=exit_status,
                actor=ACTOR,
            )
        )

    async def _migration_fact(self, fact: P.MigrationDone) -> None:
        vm = self.core.find(Vm, UUID(fact.vm_id))
        if vm is None or vm.status != VmStatus.MIGRATING or vm.migrating_to_host_id is None:
            return
        if fact.ok:
            await self.core.run_command(
                vm_cmds.ReportVmMigrationDone(
                    vm_id=vm.id,
                    host_id=vm.migrating_to_host_id,
                    downtime_ms=max(0, fact.downtime_ms or 0),
                    actor=ACTOR,
                )
            )
        elif not fact.cancelled:
            await self.core.run_command(
                vm_cmds.ReportVmMigrationFailed(
                    vm_id=vm.id, reason=(fact.error or "migration failed")[:900], actor=ACTOR
                )
            )


def saving(vm: Vm, status: VmStatus | None) -> bool:
    """libvirt pauses a VM to save it: "suspended" (or a failure) follows. Reported, the
    pause would stick, since a paused VM cannot become suspended."""
    return vm.status == VmStatus.SAVING_STATE and status == VmStatus.PAUSED


def vm_status(text: str) -> VmStatus | None:
    try:
        return VmStatus(text)
    except ValueError:
        return None
