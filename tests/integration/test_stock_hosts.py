"""Hosts the way a distribution installs them: libvirt's default ``qemu.conf`` (QEMU as
``libvirt-qemu`` under the DAC driver with dynamic ownership, QEMU's seccomp sandbox,
cgroups, guest output through virtlogd) and hostd on ``qemu:///system`` over libvirt's
Unix socket (``Cluster(stock=True)``). A VM with a disk runs, takes a live snapshot with
memory, merges it, migrates live to the other host and stops; a storage domain QEMU's
user cannot reach is refused at connection, naming the directory in the way."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd import protocol as P
from hostd.harness import Cluster
from tests.integration.hostd_fixtures import client_of, run, running_hosts, tiny_spec

pytestmark = pytest.mark.integration

SD_ID = str(uuid.uuid4())


@pytest.fixture(scope="module")
def stock() -> Iterator[Cluster]:
    with running_hosts(2, [], stock=True) as c:
        yield c


@pytest.fixture(scope="module")
def shared_sd() -> Iterator[Path]:
    """A posixfs domain directory as an administrator prepares one: root's, 0755."""
    d = Path(tempfile.mkdtemp(prefix="orrery-stock-sd-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _qemu_of(c: Cluster, i: int, name: str) -> int:
    """The pid of the QEMU running guest ``name`` on host ``i`` (by libvirt's pid file)."""
    pidfile = c.hosts[i].base / "run" / "qemu" / f"{name}.pid"
    return int(pidfile.read_text().strip())


async def _up(c: P.HostClient, vm_id: str) -> None:
    await c.wait_fact(
        lambda f: isinstance(f, P.VmStatusChanged) and f.vm_id == vm_id and f.status == "up", 30
    )


def test_a_vm_runs_as_libvirt_qemu_snapshots_and_migrates(stock, shared_sd) -> None:
    qemu = pwd.getpwnam("libvirt-qemu")

    async def go() -> None:
        c0, c1 = await client_of(stock, 0), await client_of(stock, 1)
        for c in (c0, c1):
            await c.call(P.ConnectStorage(sd_id=SD_ID, kind="posixfs", path=str(shared_sd)))
        ref = P.VolumeRef(
            sd_path=str(shared_sd), sd_id=SD_ID, disk_id=str(uuid.uuid4()), volume_id="v0"
        )
        disk = await c0.call(P.CreateImage(volume=ref, size_bytes=64 << 20))
        assert os.stat(disk.path).st_uid == 0  # made by hostd, as root
        spec = tiny_spec("stock-vm", disks=[P.DiskSpec(path=disk.path)], memory_mib=128)
        await c0.call(P.CreateVm(spec=spec))
        await _up(c0, spec.id)

        # QEMU runs as libvirt-qemu, confined by its seccomp filter; libvirt handed it
        # the volume (dynamic ownership).
        st = _status_of(_qemu_of(stock, 0, spec.name))
        assert st["Uid"].split()[0] == str(qemu.pw_uid), st["Uid"]
        assert st["Seccomp"] == "2", st.get("Seccomp")
        assert os.stat(disk.path).st_uid == qemu.pw_uid

        # A live snapshot with memory, then its merge, under DAC.
        snap = await c0.call(
            P.SnapshotCreate(vm_id=spec.id, snapshot_id=str(uuid.uuid4()), memory=True)
        )
        (ch,) = snap.changes
        assert snap.memory_path and os.path.exists(snap.memory_path)
        assert os.stat(ch.new_path).st_uid == qemu.pw_uid
        await _up(c0, spec.id)
        await c0.call(
            P.SnapshotDelete(vm_id=spec.id, base_paths=[disk.path], memory_path=snap.memory_path)
        )
        assert (await c0.call(P.GetVm(vm_id=spec.id))).disks[0].path == disk.path

        # Live migration to the other stock host.
        await c0.call(
            P.Migrate(
                vm_id=spec.id,
                dest_uri=stock.hosts[1].uri,
                migration_uri=stock.hosts[1].migration_uri(),
                max_downtime_ms=300,
            )
        )
        done = await c0.wait_fact(
            lambda f: isinstance(f, P.MigrationDone) and f.vm_id == spec.id, 90
        )
        assert done.ok, f"{done.error}\n{stock.log_tail(20)}"
        st = _status_of(_qemu_of(stock, 1, spec.name))
        assert st["Uid"].split()[0] == str(qemu.pw_uid) and st["Seccomp"] == "2"

        await c1.call(P.DestroyVm(vm_id=spec.id, undefine=True))
        await c1.wait_fact(
            lambda f: (
                isinstance(f, P.VmStatusChanged) and f.vm_id == spec.id and f.status == "down"
            ),
            30,
        )
        # libvirt gives the volume back to its owner when no QEMU uses it any more.
        assert os.stat(disk.path).st_uid == 0
        await c0.close()
        await c1.close()

    run(go())


def test_a_domain_qemu_cannot_reach_is_refused_at_connection(stock) -> None:
    private = Path(tempfile.mkdtemp(prefix="orrery-stock-private-"))  # 0700, root's

    async def go() -> None:
        c = await client_of(stock, 0)
        with pytest.raises(P.HostdError) as e:
            await c.call(P.ConnectStorage(sd_id="private", kind="posixfs", path=str(private)))
        assert e.value.code == "storage"
        assert f"may not enter {private} (mode 0700" in e.value.message, e.value.message
        caps = await c.call(P.GetCapabilities())
        assert "private" not in caps.storage
        await c.close()

    try:
        run(go())
    finally:
        shutil.rmtree(private, ignore_errors=True)
