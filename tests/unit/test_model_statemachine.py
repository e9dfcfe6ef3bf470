"""The whole model at once: random sequences over every area's commands, with invariants.

One hypothesis state machine drives data centers, clusters, hosts (and what their
monitors report), storage domains, networks and vNIC profiles, VMs (NICs, disks, the run
flow with host reports, migration, snapshots), templates, pools, users, tags, affinity
groups and permissions through ``World.run``, as the bus would, with the acting user on
each command. Some commands are meant to be refused (unknown references, rule
violations); a refused command must leave the engine's digest and the log as they were.

After every step: names are unique in their scope, every reference points at a live
object of the right kind, a data center has at most one master domain (an active one
while a data domain is active), its SPM (at most one) is an up host of that data center,
a VM on a host names an existing host that can hold VMs and a VM off hosts names none, a
VM previews at most one snapshot and attaches a disk at most once, permissions name live
principals, roles and objects -- and replaying the log into a fresh Engine gives the
live digest.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands import affinity as ac
from commands import cluster as cc
from commands import datacenter as dcc
from commands import disk as dkc
from commands import host as hc
from commands import network as nc
from commands import permission as pc
from commands import storage as sc
from commands import system as sysc
from commands import tag as tc
from commands import template as tpc
from commands import user as uc
from commands import vm as vc
from commands import vmpool as pl
from commands.messages import Command
from commands.registry import HANDLERS
from domain.affinity import AffinityGroup
from domain.base import Aggregate, Ctx, DomainError, Meta, Tx
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.disk import Disk, DiskFormat
from domain.engine import Engine
from domain.host import Host
from domain.network import LogicalNetwork, VnicProfile
from domain.permission import Permission
from domain.role import BUILTIN_BY_NAME, Role
from domain.statuses import (
    VM_ON_HOST,
    DataCenterStatus,
    DiskStatus,
    HostStatus,
    SnapshotStatus,
    StorageDomainStatus,
    VmStatus,
)
from domain.storage import StorageDomain, StorageDomainType
from domain.system import ADMIN_USER_ID, DEFAULT_CLUSTER_ID, DEFAULT_DATA_CENTER_ID
from domain.tag import Tag
from domain.template import Template
from domain.user import Group, User
from domain.values import BLANK_TEMPLATE_ID, SnapshotType
from domain.vm import Vm
from domain.vmpool import PoolType, VmPool
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

GiB = 1 << 30
PICK = st.integers(min_value=0, max_value=63)
# Host statuses in which a host may still hold VMs (up, or on its way somewhere).
HOLDS_VMS = frozenset(
    {
        HostStatus.UP,
        HostStatus.CONNECTING,
        HostStatus.NON_RESPONSIVE,
        HostStatus.INITIALIZING,
        HostStatus.PREPARING_FOR_MAINTENANCE,
        HostStatus.NON_OPERATIONAL,
    }
)
# References every aggregate may carry, and the kind each must point at.
REFERENCES: dict[str, tuple[str, ...]] = {
    "data_center_id": ("data_center",),
    "cluster_id": ("cluster",),
    "network_id": ("network",),
    "storage_domain_id": ("storage_domain",),
    "pool_id": ("vm_pool",),
    "placement_host_id": ("host",),
    "run_on_host_id": ("host",),
    "migrating_to_host_id": ("host",),
    "spm_host_id": ("host",),
    "role_id": ("role",),
    "user_id": ("user",),
    "group_id": ("group",),
    "parent_id": ("tag",),
    "base_template_id": ("template",),
    "base_disk_id": ("disk",),
    "move_target_id": ("storage_domain",),
}


def bogus(k: int) -> UUID:
    """An id no object has (the World's ids start at 2**64)."""
    return UUID(int=0xDEAD0000 + k)


class ModelWorld(World):
    """``World`` that puts the acting user on the events, as the bus does."""

    def run(self, cmd: Command) -> Any:
        meta = Meta(actor_id=cmd.actor_id, actor=cmd.actor, command=cmd.NAME)
        tx = Tx(self.engine, Ctx(now=self.now, meta=meta), self.next_id)
        value = HANDLERS[type(cmd)](tx, cmd)
        for e in tx.events:
            self.engine.apply(e)
        self.log.extend(tx.events)
        self.engine.position += len(tx.events)
        return value


class Model(RuleBasedStateMachine):
    def make_world(self) -> Any:
        """Where the commands run: an in-memory World here (the integration test runs the
        same machine through a CommandBus on a real log)."""
        return ModelWorld()

    @initialize()
    def setup(self) -> None:
        self.w = self.make_world()
        self.refused = 0
        self.done: Counter[str] = Counter()
        self.run(sysc.InitializeSystem())
        # Two up hosts and an active data domain in Default; a second data center.
        for i in (0, 1):
            self.add_host(i, 0, True)
        self.add_sd(0, "data")
        self.sd_op(0, 0, "attach")
        self.add_dc(1)
        self.add_user(0)
        self.grant(0, 0, "cluster")  # u0 is a PowerUser on a cluster, not an admin
        self.add_vm(0, 1, 2, 1)
        self.add_vm(1, 1, 1, 1)
        self.add_vm_disk(1, 0, 1, True)
        self.settle_disks(1)
        self.add_template(1, 0, 1, False)
        self.settle_disks(1)
        self.start(0, 0, False)
        self.host_drives(0, 0, 1)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def e(self) -> Engine:
        return self.w.engine

    def ids(self, cls: type[Aggregate]) -> list[UUID]:
        return sorted(o.id for o in self.e.all(cls))

    def pick(self, cls: type[Aggregate], k: int) -> UUID:
        ids = self.ids(cls)
        return ids[k % len(ids)] if ids else bogus(k)

    def actor(self, k: int) -> UUID | None:
        """Who acts: nobody (a system decision), admin@internal, or a plain user."""
        users = [u for u in self.ids(User) if u != ADMIN_USER_ID]
        choices: list[UUID | None] = [None, ADMIN_USER_ID, *users]
        return choices[k % len(choices)]

    def run(self, cmd: Command) -> Any:
        """Runs a command that must succeed."""
        value = self.w.run(cmd)
        self.w.tick()
        return value

    def cmd(self, command: Command) -> bool:
        """Runs a command that may be refused; a refusal must leave no trace."""
        before, n = self.e.digest(), len(self.w.log)
        try:
            self.w.run(command)
        except DomainError:
            self.refused += 1
            assert self.e.digest() == before, command
            assert len(self.w.log) == n, command
            return False
        finally:
            self.w.tick()
        self.done[command.NAME] += 1
        return True

    def vm(self, k: int, *statuses: VmStatus, on_host: bool = False) -> Vm | None:
        """The k-th VM, among those in ``statuses`` (or on a host) when there are any: the
        rules mostly act on VMs they can act on, and now and then on any other."""
        vms = sorted(self.e.all(Vm), key=lambda v: v.id)
        fit = [
            v
            for v in vms
            if (not statuses or v.status in statuses) and (not on_host or v.run_on_host_id)
        ]
        if fit and k % 8:
            vms = fit
        return vms[k % len(vms)] if vms else None

    # -- infrastructure -----------------------------------------------------------------------
    @rule(i=PICK)
    def add_dc(self, i: int) -> None:
        self.cmd(dcc.AddDataCenter(name=f"dc{i % 3}", local=False))

    @rule(i=PICK, j=PICK)
    def add_cluster(self, i: int, j: int) -> None:
        self.cmd(cc.AddCluster(name=f"cl{i % 3}", data_center_id=self.pick(DataCenter, j)))

    @rule(i=PICK, j=PICK, up=st.booleans())
    def add_host(self, i: int, j: int, up: bool) -> None:
        clusters = self.ids(Cluster)
        cluster_id = DEFAULT_CLUSTER_ID if j % 2 == 0 else self.pick(Cluster, j)
        if cluster_id not in clusters:
            cluster_id = self.pick(Cluster, j)
        if not self.cmd(
            hc.AddHost(name=f"h{i % 5}", address=f"10.0.0.{i % 5}", cluster_id=cluster_id)
        ):
            return
        host_id = self.e.by_name(("host",), f"h{i % 5}")
        assert host_id is not None
        if up:
            self.cmd(hc.ReportHostInstalled(host_id=host_id))
            self.caps(host_id)

    def caps(self, host_id: UUID) -> None:
        nets = tuple(sorted({n.name for n in self.e.all(LogicalNetwork)}))
        self.cmd(
            hc.ReportHostCapabilities(
                host_id=host_id,
                cpu_model="Intel",
                cpu_cores=16,
                memory_total=64 * GiB,
                hardware_uuid=f"hw-{host_id}",
                networks=nets,
            )
        )

    @rule(
        i=PICK,
        op=st.sampled_from(
            [
                "lost",
                "non_responsive",
                "restored",
                "maintenance",
                "finish_maintenance",
                "activate",
                "remove",
                "confirm_rebooted",
                "non_operational",
                "spm",
            ]
        ),
    )
    def host_op(self, i: int, op: str) -> None:
        h = self.pick(Host, i)
        match op:
            case "lost":
                self.cmd(hc.ReportHostConnectionLost(host_id=h))
            case "non_responsive":
                self.cmd(hc.MarkHostNonResponsive(host_id=h))
            case "restored":
                if self.cmd(hc.ReportHostConnectionRestored(host_id=h)):
                    self.caps(h)
            case "maintenance":
                self.cmd(hc.DeactivateHost(host_id=h))
            case "finish_maintenance":
                self.cmd(hc.FinishHostMaintenance(host_id=h))
            case "activate":
                if self.cmd(hc.ActivateHost(host_id=h)):
                    self.caps(h)
            case "remove":
                self.cmd(hc.RemoveHost(host_id=h))
            case "confirm_rebooted":
                self.cmd(hc.ConfirmHostRebooted(host_id=h))
            case "non_operational":
                self.cmd(hc.SetHostNonOperational(host_id=h, reason="test"))
            case "spm":
                self.cmd(dcc.SelectSpm(data_center_id=self.pick(DataCenter, i), host_id=h))

    @rule(i=PICK, kind=st.sampled_from(["data", "data", "iso"]))
    def add_sd(self, i: int, kind: str) -> None:
        self.cmd(
            sc.AddStorageDomain(
                name=f"sd{i % 4}",
                domain_type=StorageDomainType(kind),
                address="nfs.example",
                path=f"/export/{i}",
                available=1 << 40,
            )
        )

    @rule(
        i=PICK,
        j=PICK,
        op=st.sampled_from(["attach", "activate", "deactivate", "detach", "remove", "destroy"]),
    )
    def sd_op(self, i: int, j: int, op: str) -> None:
        sd = self.pick(StorageDomain, i)
        match op:
            case "attach":
                dc = DEFAULT_DATA_CENTER_ID if j % 2 == 0 else self.pick(DataCenter, j)
                self.cmd(sc.AttachStorageDomain(storage_domain_id=sd, data_center_id=dc))
            case "activate":
                self.cmd(sc.ActivateStorageDomain(storage_domain_id=sd))
            case "deactivate":
                self.cmd(sc.DeactivateStorageDomain(storage_domain_id=sd))
            case "detach":
                self.cmd(sc.DetachStorageDomain(storage_domain_id=sd))
            case _:
                self.cmd(sc.RemoveStorageDomain(storage_domain_id=sd, force=op == "destroy"))

    @rule(i=PICK, j=PICK, op=st.sampled_from(["add", "attach", "detach", "remove", "profile"]))
    def network_op(self, i: int, j: int, op: str) -> None:
        net = self.pick(LogicalNetwork, i)
        match op:
            case "add":
                self.cmd(
                    nc.AddNetwork(
                        name=f"net{i % 3}", data_center_id=self.pick(DataCenter, j), required=False
                    )
                )
            case "attach":
                self.cmd(
                    nc.AttachNetworkToCluster(network_id=net, cluster_id=self.pick(Cluster, j))
                )
            case "detach":
                self.cmd(
                    nc.DetachNetworkFromCluster(network_id=net, cluster_id=self.pick(Cluster, j))
                )
            case "remove":
                self.cmd(nc.RemoveNetwork(network_id=net))
            case "profile":
                self.cmd(nc.AddVnicProfile(name=f"prof{j % 3}", network_id=net))

    @rule(i=PICK, what=st.sampled_from(["cluster", "dc", "dc_force", "profile"]))
    def remove_infra(self, i: int, what: str) -> None:
        match what:
            case "cluster":
                self.cmd(cc.RemoveCluster(cluster_id=self.pick(Cluster, i)))
            case "profile":
                self.cmd(nc.RemoveVnicProfile(vnic_profile_id=self.pick(VnicProfile, i)))
            case _:
                self.cmd(
                    dcc.RemoveDataCenter(
                        data_center_id=self.pick(DataCenter, i), force=what == "dc_force"
                    )
                )

    # -- VMs ------------------------------------------------------------------------------------
    @rule(i=PICK, j=PICK, who=PICK, tpl=PICK)
    def add_vm(self, i: int, j: int, who: int, tpl: int) -> None:
        cluster_id = DEFAULT_CLUSTER_ID if j % 3 else self.pick(Cluster, j)
        template_id = BLANK_TEMPLATE_ID if tpl % 2 else self.pick(Template, tpl)
        self.cmd(
            vc.AddVm(
                name=f"vm{i % 6}",
                cluster_id=cluster_id,
                template_id=template_id,
                memory=GiB,
                actor_id=self.actor(who),
            )
        )

    @rule(i=PICK, j=PICK, connected=st.booleans())
    def add_nic(self, i: int, j: int, connected: bool) -> None:
        vm = self.vm(i)
        if vm is not None:
            profile = self.pick(VnicProfile, j) if connected else None
            self.cmd(vc.AddVmNic(vm_id=vm.id, name=f"nic{j % 3}", vnic_profile_id=profile))

    @rule(i=PICK, j=PICK, who=PICK, boot=st.booleans())
    def add_vm_disk(self, i: int, j: int, who: int, boot: bool) -> None:
        vm = self.vm(i)
        if vm is not None:
            self.cmd(
                vc.AddVmDisk(
                    vm_id=vm.id,
                    name=f"{vm.name}-d{j % 3}",
                    provisioned_size=GiB,
                    storage_domain_id=self.pick(StorageDomain, j),
                    bootable=boot,
                    actor_id=self.actor(who),
                )
            )

    @rule(i=PICK, who=PICK, shareable=st.booleans())
    def add_floating_disk(self, i: int, who: int, shareable: bool) -> None:
        self.cmd(
            dkc.AddDisk(
                name=f"float{i % 3}",
                provisioned_size=GiB,
                storage_domain_id=self.pick(StorageDomain, i),
                format=DiskFormat.RAW if shareable else DiskFormat.COW,
                sparse=not shareable,
                shareable=shareable,
                actor_id=self.actor(who),
            )
        )

    @rule(ok=st.integers(0, 5))
    def settle_disks(self, ok: int) -> None:
        """The hosts finish every image operation in progress (one in six fails)."""
        for d in sorted(self.e.all(Disk), key=lambda d: d.id):
            if d.status == DiskStatus.LOCKED and d.operation:
                self.cmd(dkc.ReportDiskOperation(disk_id=d.id, ok=ok != 0))

    @rule(i=PICK, j=PICK, op=st.sampled_from(["attach", "detach", "remove", "move"]))
    def disk_op(self, i: int, j: int, op: str) -> None:
        vm = self.vm(i)
        disk = self.pick(Disk, j)
        match op:
            case "attach":
                if vm is not None:
                    self.cmd(vc.AttachDisk(vm_id=vm.id, disk_id=disk))
            case "detach":
                if vm is not None and vm.disk_attachments:
                    att = vm.disk_attachments[j % len(vm.disk_attachments)]
                    self.cmd(vc.DetachDisk(vm_id=vm.id, disk_id=att.disk_id))
            case "remove":
                self.cmd(dkc.RemoveDisk(disk_id=disk))
            case "move":
                self.cmd(dkc.MoveDisk(disk_id=disk, storage_domain_id=self.pick(StorageDomain, i)))

    @rule(i=PICK, h=PICK, explicit=st.booleans())
    def start(self, i: int, h: int, explicit: bool) -> None:
        vm = self.vm(i, VmStatus.DOWN, VmStatus.SUSPENDED, VmStatus.PAUSED)
        if vm is not None:
            host = self.pick(Host, h) if explicit else None
            self.cmd(vc.StartVm(vm_id=vm.id, host_id=host))

    @rule(i=PICK, action=st.sampled_from(["shutdown", "stop", "reboot", "pause", "suspend"]))
    def user_action(self, i: int, action: str) -> None:
        vm = self.vm(i, on_host=True)
        if vm is None:
            return
        cls: Any = {
            "shutdown": vc.ShutdownVm,
            "stop": vc.StopVm,
            "reboot": vc.RebootVm,
            "pause": vc.PauseVm,
            "suspend": vc.SuspendVm,
        }[action]
        self.cmd(cls(vm_id=vm.id))

    @rule(i=PICK, ms=st.integers(0, 500), fail=st.integers(0, 7))
    def host_drives(self, i: int, ms: int, fail: int) -> None:
        """The VM's host does what was asked (now and then a launch fails instead)."""
        vm = self.vm(i, on_host=True)
        if vm is None or vm.run_on_host_id is None:
            return
        if vm.status == VmStatus.MIGRATING and vm.migrating_to_host_id is not None:
            self.cmd(
                vc.ReportVmStatus(
                    vm_id=vm.id,
                    host_id=vm.migrating_to_host_id,
                    status=VmStatus.UP,
                    downtime_ms=ms,
                )
            )
            return
        nxt = {
            VmStatus.WAIT_FOR_LAUNCH: VmStatus.DOWN if fail == 0 else VmStatus.POWERING_UP,
            VmStatus.POWERING_UP: VmStatus.UP,
            VmStatus.RESTORING_STATE: VmStatus.UP,
            VmStatus.REBOOT_IN_PROGRESS: VmStatus.UP,
            VmStatus.POWERING_DOWN: VmStatus.DOWN,
            VmStatus.SAVING_STATE: VmStatus.SUSPENDED,
            VmStatus.PAUSED: VmStatus.UP,
            VmStatus.NOT_RESPONDING: VmStatus.UP,
            VmStatus.UNKNOWN: VmStatus.UP,
            VmStatus.UP: VmStatus.DOWN if fail == 0 else None,
        }.get(vm.status)
        if nxt is not None:
            self.cmd(vc.ReportVmStatus(vm_id=vm.id, host_id=vm.run_on_host_id, status=nxt))

    @rule(i=PICK, h=PICK, explicit=st.booleans())
    def migrate(self, i: int, h: int, explicit: bool) -> None:
        vm = self.vm(i, VmStatus.UP, VmStatus.POWERING_UP, VmStatus.PAUSED)
        if vm is not None:
            host = self.pick(Host, h) if explicit else None
            self.cmd(vc.MigrateVm(vm_id=vm.id, host_id=host))

    @rule(i=PICK, outcome=st.sampled_from(["failed", "cancel"]))
    def migration_outcome(self, i: int, outcome: str) -> None:
        vm = self.vm(i, VmStatus.MIGRATING)
        if vm is not None:
            if outcome == "failed":
                self.cmd(vc.ReportVmMigrationFailed(vm_id=vm.id))
            else:
                self.cmd(vc.CancelVmMigration(vm_id=vm.id))

    @rule(
        i=PICK, j=PICK, op=st.sampled_from(["add", "report", "preview", "commit", "undo", "remove"])
    )
    def snapshot(self, i: int, j: int, op: str) -> None:
        vm = self.vm(i, VmStatus.DOWN, VmStatus.UP)
        if vm is None:
            return
        regular = [s for s in vm.snapshots if s.snapshot_type == SnapshotType.REGULAR]
        snaps = regular if regular and j % 5 else list(vm.snapshots)
        snap = snaps[j % len(snaps)].id if snaps else bogus(j)
        command: Any = {
            "add": lambda: vc.AddSnapshot(vm_id=vm.id, persist_memory=j % 2 == 0),
            "report": lambda: vc.ReportSnapshot(vm_id=vm.id, snapshot_id=snap, ok=j % 4 != 0),
            "preview": lambda: vc.PreviewSnapshot(vm_id=vm.id, snapshot_id=snap),
            "commit": lambda: vc.CommitSnapshot(vm_id=vm.id),
            "undo": lambda: vc.UndoSnapshot(vm_id=vm.id),
            "remove": lambda: vc.RemoveSnapshot(vm_id=vm.id, snapshot_id=snap),
        }[op]()
        self.cmd(command)

    @rule(i=PICK, end=st.sampled_from(["commit", "undo", "stay"]))
    def snapshot_preview_cycle(self, i: int, end: str) -> None:
        """Take a snapshot of a down VM, let the host finish it, preview it, then commit,
        undo, or stay in preview (where most changes are refused)."""
        vm = self.vm(i, VmStatus.DOWN)
        if vm is None or not self.cmd(vc.AddSnapshot(vm_id=vm.id, description="cycle")):
            return
        snap = self.e.get(Vm, vm.id).snapshots[-1]
        if snap.status == SnapshotStatus.LOCKED:
            self.cmd(vc.ReportSnapshot(vm_id=vm.id, snapshot_id=snap.id))
        if self.cmd(vc.PreviewSnapshot(vm_id=vm.id, snapshot_id=snap.id)) and end != "stay":
            cls = vc.CommitSnapshot if end == "commit" else vc.UndoSnapshot
            self.cmd(cls(vm_id=vm.id))

    @rule(i=PICK, keep=st.booleans())
    def remove_vm(self, i: int, keep: bool) -> None:
        vm = self.vm(i, VmStatus.DOWN)
        if vm is not None:
            self.cmd(vc.RemoveVm(vm_id=vm.id, detach_only=keep))

    @rule(i=PICK, j=PICK, what=st.sampled_from(["host_cluster", "vm_cluster", "pin", "unpin"]))
    def move(self, i: int, j: int, what: str) -> None:
        """Objects change where they belong: a host to another cluster, a VM to another
        cluster, a VM pinned to (or freed from) a host."""
        vm = self.vm(i, VmStatus.DOWN)
        match what:
            case "host_cluster":
                self.cmd(
                    hc.UpdateHost(host_id=self.pick(Host, i), cluster_id=self.pick(Cluster, j))
                )
            case "vm_cluster":
                if vm is not None:
                    self.cmd(vc.UpdateVm(vm_id=vm.id, cluster_id=self.pick(Cluster, j)))
            case "pin":
                if vm is not None:
                    self.cmd(vc.UpdateVm(vm_id=vm.id, placement_host_id=self.pick(Host, j)))
            case "unpin":
                if vm is not None:
                    self.cmd(vc.UpdateVm(vm_id=vm.id, placement_host_id=None))

    @rule(i=PICK, j=PICK, enforcing=st.booleans())
    def host_affinity(self, i: int, j: int, enforcing: bool) -> None:
        vm = self.vm(i)
        host = self.e.find(Host, self.pick(Host, j))
        if vm is not None and host is not None:
            self.cmd(
                ac.AddAffinityGroup(
                    name=f"hag{i % 2}",
                    cluster_id=vm.cluster_id,
                    vm_ids=(vm.id,),
                    host_ids=(host.id,),
                    hosts_enforcing=enforcing,
                )
            )

    # -- templates and pools --------------------------------------------------------------------
    @rule(i=PICK, j=PICK, who=PICK, version=st.booleans())
    def add_template(self, i: int, j: int, who: int, version: bool) -> None:
        vm = self.vm(i, VmStatus.DOWN)
        if vm is None:
            return
        if version:
            base = self.pick(Template, j)
            self.cmd(tpc.AddTemplate(vm_id=vm.id, base_template_id=base, actor_id=self.actor(who)))
        else:
            self.cmd(tpc.AddTemplate(vm_id=vm.id, name=f"t{j % 3}", actor_id=self.actor(who)))

    @rule(i=PICK)
    def remove_template(self, i: int) -> None:
        self.cmd(tpc.RemoveTemplate(template_id=self.pick(Template, i)))

    @rule(i=PICK, j=PICK, size=st.integers(1, 3), prestarted=st.integers(0, 1))
    def add_pool(self, i: int, j: int, size: int, prestarted: int) -> None:
        template_id = BLANK_TEMPLATE_ID if j % 2 else self.pick(Template, j)
        self.cmd(
            pl.AddVmPool(
                name=f"pool{i % 2}",
                cluster_id=DEFAULT_CLUSTER_ID,
                template_id=template_id,
                size=size,
                prestarted_vms=prestarted,
                actor_id=ADMIN_USER_ID,
            )
        )

    @rule(
        i=PICK,
        j=PICK,
        op=st.sampled_from(["allocate", "return", "detach", "grow", "remove", "prestart"]),
    )
    def pool_op(self, i: int, j: int, op: str) -> None:
        pool_id = self.pick(VmPool, i)
        pool = self.e.find(VmPool, pool_id)
        vm_id = pool.vm_ids[j % len(pool.vm_ids)] if pool and pool.vm_ids else bogus(j)
        match op:
            case "allocate":
                self.cmd(pl.AllocateVm(vm_pool_id=pool_id, user_id=self.pick(User, j)))
            case "return":
                self.cmd(pl.ReturnVmToPool(vm_pool_id=pool_id, vm_id=vm_id))
            case "detach":
                self.cmd(pl.DetachVmFromPool(vm_pool_id=pool_id, vm_id=vm_id))
            case "grow":
                size = (pool.size if pool else 1) + 1
                self.cmd(pl.UpdateVmPool(vm_pool_id=pool_id, size=size))
            case "remove":
                self.cmd(pl.RemoveVmPool(vm_pool_id=pool_id))
            case "prestart":  # what the prestart policy does: one StartVm per VM
                from domain.rules.vmpool_rules import vms_to_prestart

                if pool is not None:
                    for v in vms_to_prestart(self.e, pool_id):
                        self.cmd(vc.StartVm(vm_id=v, actor="system"))

    # -- users, permissions, tags, affinity ------------------------------------------------------
    @rule(i=PICK)
    def add_user(self, i: int) -> None:
        self.cmd(uc.AddUser(user_name=f"u{i % 3}@internal"))

    @rule(i=PICK)
    def remove_user(self, i: int) -> None:
        self.cmd(uc.RemoveUser(user_id=self.pick(User, i)))

    @rule(
        i=PICK,
        j=PICK,
        kind=st.sampled_from(["system", "cluster", "vm", "disk", "template", "host", "vm_pool"]),
    )
    def grant(self, i: int, j: int, kind: str) -> None:
        roles = ["PowerUserRole", "UserRole", "UserVmManager", "ClusterAdmin", "DiskOperator"]
        role = BUILTIN_BY_NAME[roles[j % len(roles)]].id
        cls: dict[str, type[Aggregate]] = {
            "cluster": Cluster,
            "vm": Vm,
            "disk": Disk,
            "template": Template,
            "host": Host,
            "vm_pool": VmPool,
        }
        users = [u for u in self.ids(User) if u != ADMIN_USER_ID] or [bogus(i)]
        obj = None if kind == "system" else self.pick(cls[kind], j)
        self.cmd(
            pc.AddPermission(
                role_id=role, user_id=users[i % len(users)], object_kind=kind, object_id=obj
            )
        )

    @rule(i=PICK)
    def revoke(self, i: int) -> None:
        self.cmd(pc.RemovePermission(permission_id=self.pick(Permission, i)))

    @rule(i=PICK, j=PICK, op=st.sampled_from(["add", "attach_vm", "attach_host", "remove"]))
    def tag_op(self, i: int, j: int, op: str) -> None:
        tag = self.pick(Tag, i)
        match op:
            case "add":
                self.cmd(tc.AddTag(name=f"tag{i % 3}"))
            case "attach_vm":
                vm = self.vm(j)
                self.cmd(tc.AttachTag(tag_id=tag, object_id=vm.id if vm else bogus(j)))
            case "attach_host":
                self.cmd(tc.AttachTag(tag_id=tag, object_id=self.pick(Host, j)))
            case "remove":
                self.cmd(tc.RemoveTag(tag_id=tag))

    @rule(i=PICK, j=PICK, positive=st.booleans(), enforcing=st.booleans())
    def affinity(self, i: int, j: int, positive: bool, enforcing: bool) -> None:
        vms = [v.id for v in sorted(self.e.all(Vm), key=lambda v: v.id)]
        members = tuple(vms[k % len(vms)] for k in {i, j}) if vms else ()
        cluster_id = self.e.get(Vm, members[0]).cluster_id if members else DEFAULT_CLUSTER_ID
        if j % 4 == 0:
            self.cmd(ac.RemoveAffinityGroup(affinity_group_id=self.pick(AffinityGroup, i)))
            return
        self.cmd(
            ac.AddAffinityGroup(
                name=f"ag{i % 3}",
                cluster_id=cluster_id,
                positive=positive,
                enforcing=enforcing,
                vm_ids=tuple(sorted(set(members))),
            )
        )

    # -- commands that must be refused -----------------------------------------------------------
    @rule(k=PICK, which=st.integers(0, 15))
    def bad_reference(self, k: int, which: int) -> None:
        """A command naming an object that does not exist is refused and writes nothing."""
        b = bogus(k)
        vm = self.vm(k)
        vm_id = vm.id if vm is not None else b
        commands: list[Command] = [
            vc.StartVm(vm_id=b),
            vc.AddVm(name="ghost", cluster_id=b),
            vc.AddVm(name="ghost", cluster_id=DEFAULT_CLUSTER_ID, template_id=b),
            vc.AttachDisk(vm_id=vm_id, disk_id=b),
            vc.AddVmNic(vm_id=vm_id, name="ghostnic", vnic_profile_id=b),
            vc.MigrateVm(vm_id=vm_id, host_id=b),
            vc.StartVm(vm_id=vm_id, host_id=b),
            vc.RemoveSnapshot(vm_id=vm_id, snapshot_id=b),
            sc.AttachStorageDomain(storage_domain_id=self.pick(StorageDomain, k), data_center_id=b),
            hc.AddHost(name="ghost", address="10.9.9.9", cluster_id=b),
            pl.AddVmPool(name="ghost", cluster_id=DEFAULT_CLUSTER_ID, template_id=b, size=1),
            pl.AllocateVm(vm_pool_id=self.pick(VmPool, k), user_id=b),
            pc.AddPermission(role_id=b, user_id=self.pick(User, k)),
            pc.AddPermission(
                role_id=BUILTIN_BY_NAME["UserRole"].id,
                user_id=self.pick(User, k),
                object_kind="vm",
                object_id=b,
            ),
            tpc.AddTemplate(vm_id=b, name="ghost"),
            dkc.AddDisk(name="ghost", provisioned_size=GiB, storage_domain_id=b),
        ]
        command = commands[which % len(commands)]
        assert not self.cmd(command), f"{command} was accepted"

    # -- invariants -------------------------------------------------------------------------------
    @invariant()
    def names_are_unique_in_scope(self) -> None:
        keys = Counter(
            (*scope, getattr(o, "name", None))
            for o in self.e.objects.values()
            if (scope := o.name_scope()) is not None
        )
        assert all(n == 1 for n in keys.values()), keys.most_common(1)
        for key, oid in self.e._names.items():
            obj = self.e.objects.get(oid)
            assert obj is not None and (*obj.name_scope(), obj.name) == key  # type: ignore[misc, attr-defined]

    @invariant()
    def references_point_at_live_objects(self) -> None:
        e = self.e

        def live(oid: UUID | None, *kinds: str, what: Any = None) -> None:
            if oid is None:
                return
            obj = e.objects.get(oid)
            assert obj is not None, (what, oid)
            assert obj.KIND in kinds, (what, obj.KIND, kinds)

        for o in e.objects.values():
            for attr, kinds in REFERENCES.items():
                value = getattr(o, attr, None)
                if isinstance(value, UUID) and not (
                    isinstance(o, Permission) and attr != "role_id"
                ):
                    live(value, *kinds, what=(o.KIND, o.id, attr))
        for vm in e.all(Vm):
            live(vm.template_id, "template", what=vm)
            for nic in vm.nics:
                live(nic.vnic_profile_id, "vnic_profile", what=(vm.name, nic))
            for att in vm.disk_attachments:
                live(att.disk_id, "disk", what=(vm.name, att))
            if vm.pool_id is not None:
                assert vm.id in e.get(VmPool, vm.pool_id).vm_ids
        for d in e.all(Disk):
            live(d.template_id, "template", what=d)
        for t in e.all(Template):
            for disk_id in t.disk_ids:
                live(disk_id, "disk", what=t)
            for nic in t.nics:
                live(nic.vnic_profile_id, "vnic_profile", what=(t.name, nic))
        for p in e.all(VmPool):
            for vm_id in p.vm_ids:
                live(vm_id, "vm", what=p)
                assert e.get(Vm, vm_id).pool_id == p.id
            for a in p.assignments:
                assert a.vm_id in p.vm_ids, p
                live(a.user_id, "user", what=p)
        for n in e.all(LogicalNetwork):
            for cid in n.cluster_ids:
                live(cid, "cluster", what=n)
                assert e.get(Cluster, cid).data_center_id == n.data_center_id
        for g in e.all(AffinityGroup):
            for vm_id in g.vm_ids:
                live(vm_id, "vm", what=g)
            for host_id in g.host_ids:
                live(host_id, "host", what=g)
        for tag in e.all(Tag):
            for oid in tag.object_ids:
                assert oid in e.objects, (tag, oid)
        for u in e.all(User):
            for gid in u.group_ids:
                live(gid, "group", what=u)

    @invariant()
    def permissions_name_live_things(self) -> None:
        for p in self.e.all(Permission):
            assert self.e.find(Role, p.role_id) is not None, p
            assert (p.user_id is None) != (p.group_id is None), p
            if p.user_id is not None:
                assert self.e.find(User, p.user_id) is not None, p
            if p.group_id is not None:
                assert self.e.find(Group, p.group_id) is not None, p
            if p.object_id is None:
                assert p.object_kind == "system", p
            else:
                obj = self.e.objects.get(p.object_id)
                assert obj is not None and p.object_kind == obj.KIND, p

    @invariant()
    def storage_and_spm(self) -> None:
        e = self.e
        spm_hosts = Counter(d.spm_host_id for d in e.all(DataCenter) if d.spm_host_id)
        assert all(n == 1 for n in spm_hosts.values()), spm_hosts
        for d in e.all(DataCenter):
            attached = [s for s in e.all(StorageDomain) if s.data_center_id == d.id]
            masters = [s for s in attached if s.master]
            assert len(masters) <= 1, d
            active_data = [
                s
                for s in attached
                if s.domain_type == "data" and s.status == StorageDomainStatus.ACTIVE
            ]
            if active_data:
                assert len(masters) == 1 and masters[0].status == StorageDomainStatus.ACTIVE, d
            if d.spm_host_id is not None:
                spm = e.get(Host, d.spm_host_id)
                assert spm.status == HostStatus.UP, (d, spm)
                assert e.get(Cluster, spm.cluster_id).data_center_id == d.id
            if d.status == DataCenterStatus.UP:
                assert d.spm_host_id is not None and masters, d
        for s in e.all(StorageDomain):
            assert (s.data_center_id is None) == (s.status == StorageDomainStatus.UNATTACHED), s

    @invariant()
    def vms_are_where_their_status_says(self) -> None:
        for vm in self.e.all(Vm):
            if vm.status in VM_ON_HOST:
                assert vm.run_on_host_id is not None, vm
                host = self.e.get(Host, vm.run_on_host_id)
                assert host.status in HOLDS_VMS, (vm.name, vm.status, host.status)
                assert host.cluster_id == vm.cluster_id, vm
            else:
                assert vm.run_on_host_id is None, vm
            if vm.status == VmStatus.MIGRATING:
                assert vm.migrating_to_host_id not in (None, vm.run_on_host_id), vm
                self.e.get(Host, vm.migrating_to_host_id)
            else:
                assert vm.migrating_to_host_id is None, vm

    @invariant()
    def snapshots_and_disks(self) -> None:
        holders: Counter[UUID] = Counter()
        for vm in self.e.all(Vm):
            types = [s.snapshot_type for s in vm.snapshots]
            assert types.count(SnapshotType.ACTIVE) == 1, vm
            previews = [s for s in vm.snapshots if s.status == SnapshotStatus.IN_PREVIEW]
            assert len(previews) <= 1, vm
            assert types.count(SnapshotType.PREVIEW) == len(previews), vm
            ids = [a.disk_id for a in vm.disk_attachments]
            assert len(ids) == len(set(ids)), vm
            assert sum(a.bootable for a in vm.disk_attachments) <= 1, vm
            holders.update(ids)
        for disk_id, n in holders.items():
            disk = self.e.get(Disk, disk_id)
            assert n == 1 or disk.shareable, disk
            assert disk.template_id is None, disk

    @invariant()
    def replay_gives_the_same_state(self) -> None:
        fresh = Engine()
        fresh.apply_all(self.w.log)
        assert fresh.digest() == self.e.digest()


Model.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestModel = Model.TestCase


def test_the_setup_brings_the_model_up() -> None:
    """The starting state the machine builds on: Default up with an SPM, a VM owned by
    the plain user who created it and running, admin-made objects owned as oVirt does
    (no grant on a VM, DiskOperator on a disk, TemplateOwner on a template)."""
    m = Model()
    m.setup()
    dc = m.e.get(DataCenter, DEFAULT_DATA_CENTER_ID)
    assert dc.status == DataCenterStatus.UP and dc.spm_host_id is not None

    def owners(obj_id: UUID) -> list[tuple[str, UUID | None]]:
        return sorted(
            (m.e.get(Role, p.role_id).name, p.user_id)
            for p in m.e.all(Permission)
            if p.object_id == obj_id
        )

    vm0 = m.e.get(Vm, m.e.by_name(("vm",), "vm0"))  # type: ignore[arg-type]
    vm1 = m.e.get(Vm, m.e.by_name(("vm",), "vm1"))  # type: ignore[arg-type]
    u0 = m.e.by_name(("user",), "u0@internal") or next(
        u.id for u in m.e.all(User) if u.user_name == "u0@internal"
    )
    assert owners(vm0.id) == [("UserVmManager", u0)]
    assert vm0.status == VmStatus.POWERING_UP
    assert owners(vm1.id) == []  # admin@internal manages it through SuperUser already
    disk = vm1.disk_attachments[0].disk_id
    assert owners(disk) == [("DiskOperator", ADMIN_USER_ID)]
    template = next(t for t in m.e.all(Template) if t.name == "t0")
    assert owners(template.id) == [("TemplateOwner", ADMIN_USER_ID)]
    m.remove_vm(1, False)  # picks a down VM: vm1, with its disk and its permissions
    assert m.e.find(Vm, vm1.id) is None and owners(disk) == []
    m.teardown()


def test_a_pool_user_holds_user_role_on_its_vm_while_allocated() -> None:
    m = Model()
    m.setup()
    u0 = next(u.id for u in m.e.all(User) if u.user_name == "u0@internal")
    pool = m.run(
        pl.AddVmPool(
            name="desk",
            cluster_id=DEFAULT_CLUSTER_ID,
            template_id=BLANK_TEMPLATE_ID,
            size=2,
            pool_type=PoolType.MANUAL,
        )
    )
    vm_id = m.run(pl.AllocateVm(vm_pool_id=pool, user_id=u0, start=False))
    user_role = BUILTIN_BY_NAME["UserRole"].id

    def grants() -> list[Permission]:
        return [
            p
            for p in m.e.all(Permission)
            if p.role_id == user_role and p.user_id == u0 and p.object_id == vm_id
        ]

    assert len(grants()) == 1
    m.run(pl.ReturnVmToPool(vm_pool_id=pool, vm_id=vm_id))
    assert grants() == []
    m.run(pl.AllocateVm(vm_pool_id=pool, user_id=u0, start=False))
    m.run(uc.RemoveUser(user_id=u0))  # its permissions and its assignment go
    assert m.e.get(VmPool, pool).assignments == ()
    m.permissions_name_live_things()
    m.references_point_at_live_objects()
