"""The compute tests' world: a data center with two up hosts and active storage.

Infrastructure is built through the infrastructure area's decision functions; compute
actions go through the command handlers (``world.run``) as the bus would run them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from commands import disk as dc_cmd
from commands import vm as vm_cmd
from commands.messages import Command
from domain import datacenter, host, network, storage
from domain.base import Ctx, DomainError, Meta, Tx
from domain.disk import Disk
from domain.rules import cluster_rules, datacenter_rules, host_rules, storage_rules
from domain.rules.template_rules import add_blank_template
from domain.statuses import VmStatus
from domain.values import BLANK_TEMPLATE_ID
from domain.vm import Vm
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

GiB = 1 << 30


class ComputeWorld(World):
    """World plus a Default-like setup: dc, cluster, hosts h1 and h2 (up), an active NFS
    data domain ``sd`` (master), an active iSCSI data domain ``block`` and the
    ``ovirtmgmt`` vNIC profile."""

    def __init__(self, *, hosts: int = 2) -> None:
        super().__init__()
        self.do(add_blank_template)
        self.dc = self.do(datacenter_rules.add_data_center, name="dc1")
        self.cluster = self.do(cluster_rules.add_cluster, name="cl1", data_center_id=self.dc)
        self.hosts: list[UUID] = []
        for i in range(hosts):
            h = self.do(
                host_rules.add_host,
                name=f"h{i + 1}",
                address=f"10.0.0.{i + 1}",
                cluster_id=self.cluster,
            )
            self.do(host_rules.finish_install, h, success=True)
            self.do(
                host_rules.report_capabilities,
                h,
                cpu_model="Intel",
                cpu_cores=16,
                memory_total=64 * GiB,
                networks=("ovirtmgmt",),
            )
            self.hosts.append(h)
        self.sd = self.do(
            storage_rules.add_storage_domain,
            name="nfs1",
            address="nfs.example",
            path="/data",
            available=1 << 40,
            data_center_id=self.dc if hosts else None,
        )
        self.block = (
            self.do(
                storage_rules.add_storage_domain,
                name="iscsi1",
                storage_type="iscsi",
                address="iscsi.example",
                path="iqn.2026-01.example:1",
                available=1 << 40,
                data_center_id=self.dc,
            )
            if hosts
            else None
        )
        self.profile = next(
            p.id
            for p in self.engine.all(network.VnicProfile)
            if self.engine.get(network.LogicalNetwork, p.network_id).data_center_id == self.dc
        )

    # -- running decisions ------------------------------------------------------------
    def do(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Runs a domain decision the way ``run`` runs a command."""
        tx = Tx(self.engine, Ctx(now=self.now, meta=Meta()), self.next_id)
        value = fn(tx, *args, **kw)
        for e in tx.events:
            self.engine.apply(e)
        self.log.extend(tx.events)
        self.engine.position += len(tx.events)
        return value

    def rejects(self, cmd: Command, text: str, *, field: str | None = None) -> DomainError:
        """The command fails with ``text`` in its message and writes nothing."""
        before, n = self.engine.digest(), len(self.log)
        with pytest.raises(DomainError) as info:
            self.run(cmd)
        assert text in info.value.message, info.value.message
        if field is not None:
            assert info.value.field == field
        assert self.engine.digest() == before
        assert len(self.log) == n
        return info.value

    # -- reading ----------------------------------------------------------------------
    def vm(self, vm_id: UUID) -> Vm:
        return self.engine.get(Vm, vm_id)

    def disk(self, disk_id: UUID) -> Disk:
        return self.engine.get(Disk, disk_id)

    def topics(self, since: int) -> list[str]:
        return [e.TOPIC for e in self.log[since:]]

    # -- common steps -------------------------------------------------------------------
    def add_vm(self, name: str = "vm1", **kw: Any) -> UUID:
        return self.run(
            vm_cmd.AddVm(name=name, cluster_id=kw.pop("cluster_id", self.cluster), **kw)
        )

    def add_vm_disk(self, vm_id: UUID, *, ready: bool = True, **kw: Any) -> UUID:
        kw.setdefault("name", "disk1")
        kw.setdefault("provisioned_size", 10 * GiB)
        kw.setdefault("storage_domain_id", self.sd)
        disk_id = self.run(vm_cmd.AddVmDisk(vm_id=vm_id, **kw))
        if ready:
            self.run(dc_cmd.ReportDiskOperation(disk_id=disk_id))
        return disk_id

    def report(self, vm_id: UUID, status: VmStatus, host_id: UUID | None = None, **kw: Any) -> Any:
        hid = host_id or self.vm(vm_id).run_on_host_id
        assert hid is not None
        return self.run(vm_cmd.ReportVmStatus(vm_id=vm_id, host_id=hid, status=status, **kw))

    def power_off(self, vm_id: UUID) -> None:
        """Stop, and the host reports the VM down."""
        self.run(vm_cmd.StopVm(vm_id=vm_id))
        self.report(vm_id, VmStatus.DOWN)

    def running_vm(self, name: str = "vm1", **kw: Any) -> UUID:
        vm_id = self.add_vm(name, **kw)
        self.run(vm_cmd.StartVm(vm_id=vm_id))
        self.report(vm_id, VmStatus.UP)
        return vm_id

    def assert_replays(self) -> None:
        assert self.replayed().digest() == self.engine.digest()


def test_world_has_up_hosts_and_active_storage() -> None:
    w = ComputeWorld()
    assert [w.engine.get(host.Host, h).status for h in w.hosts] == ["up", "up"]
    assert w.engine.get(storage.StorageDomain, w.sd).status == "active"
    assert w.engine.get(datacenter.DataCenter, w.dc).status == "up"
    assert w.engine.exists(BLANK_TEMPLATE_ID)
    w.assert_replays()


def test_blank_template_is_created_once() -> None:
    w = ComputeWorld(hosts=0)
    n = len(w.log)
    assert w.do(add_blank_template) == BLANK_TEMPLATE_ID
    assert len(w.log) == n
