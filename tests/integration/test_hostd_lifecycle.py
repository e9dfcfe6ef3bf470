"""hostd on real libvirt/KVM: two hosts from the harness, OS-less guests with a qcow2 disk
on a posixfs-style directory and a NIC on a bridge."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import pytest

from hostd import protocol as P
from tests.integration.hostd_fixtures import client_of, cluster, run, sd_path, tiny_spec

__all__ = ["cluster", "sd_path"]
pytestmark = pytest.mark.integration

SD_ID = str(uuid.uuid4())


def virsh_list(uri: str) -> str:
    return (
        subprocess.run(
            ["virsh", "-r", "-c", uri, "list", "--all", "--uuid", "--name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        + subprocess.run(
            ["virsh", "-r", "-c", uri, "list", "--name"], capture_output=True, text=True, check=True
        ).stdout
    )


def running_uuids(uri: str) -> set[str]:
    out = subprocess.run(
        ["virsh", "-r", "-c", uri, "list", "--uuid"], capture_output=True, text=True, check=True
    ).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


async def _disk(c: P.HostClient, sd: str, size: int = 64 << 20) -> P.ImageInfoResult:
    await c.call(P.ConnectStorage(sd_id=SD_ID, kind="posixfs", path=sd))
    ref = P.VolumeRef(
        sd_path=sd, sd_id=SD_ID, disk_id=str(uuid.uuid4()), volume_id=str(uuid.uuid4())
    )
    return await c.call(P.CreateImage(volume=ref, size_bytes=size))


async def _status(c: P.HostClient, vm_id: str, status: str, timeout: float = 30) -> P.Fact:
    return await c.wait_fact(
        lambda f: isinstance(f, P.VmStatusChanged) and f.vm_id == vm_id and f.status == status,
        timeout,
    )


def test_capabilities_and_auth(cluster) -> None:
    async def go() -> None:
        c = await client_of(cluster, 0)
        caps = await c.call(P.GetCapabilities())
        assert caps.host_id == cluster.hosts[0].host_uuid
        assert caps.kvm == os.access("/dev/kvm", os.R_OK | os.W_OK)
        assert caps.memory_mib > 0 and caps.cpus >= 1
        assert caps.libvirt_version.startswith(("9.", "1"))
        await c.close()
        with pytest.raises(P.HostdError) as e:
            await client_of(cluster, 0, token="wrong")
        assert e.value.code == "unauthorized"
        with pytest.raises(P.HostdError):
            await client_of(cluster, 0, token="")

    run(go())


def test_lifecycle_snapshot_migrate_restart(cluster, sd_path) -> None:
    bridge = cluster.test_bridge
    h0, h1 = cluster.hosts

    async def go() -> str:
        c0 = await client_of(cluster, 0)
        c1 = await client_of(cluster, 1)
        nets = await c0.call(P.SetupNetworks(bridges=[P.BridgeSpec(network=bridge)]))
        assert nets.networks[0].ok, nets
        disk = await _disk(c0, str(sd_path))
        assert disk.format == "qcow2" and disk.virtual_size == 64 << 20
        assert disk.path.startswith(f"{sd_path}/{SD_ID}/images/")
        spec = tiny_spec(
            "lifecycle-vm",
            disks=[P.DiskSpec(path=disk.path)],
            nics=[P.NicSpec(mac="56:6f:00:00:00:01", network=bridge)],
            custom_properties={"sla": "gold"},
        )
        info = await c0.call(P.CreateVm(spec=spec))
        assert info.status == "up" and info.id == spec.id
        await _status(c0, spec.id, "up")
        out = virsh_list(h0.uri)
        assert spec.id in out and "lifecycle-vm" in out
        # Starting it again: already running, no duplicate.
        with pytest.raises(P.HostdError) as e:
            await c0.call(P.CreateVm(spec=spec))
        assert e.value.code == "already_running"
        with pytest.raises(P.HostdError) as e:
            await c0.call(P.StartVm(vm_id=spec.id))
        assert e.value.code == "already_running"

        # Pause / resume, with libvirt events as facts.
        await c0.call(P.PauseVm(vm_id=spec.id))
        f = await _status(c0, spec.id, "paused")
        assert f.reason == "user"
        await c0.call(P.ResumeVm(vm_id=spec.id))
        await _status(c0, spec.id, "up")

        # Console ticket.
        await c0.call(P.SetTicket(vm_id=spec.id, password="s3cret", expiry_s=60))

        # Statistics.
        s = await c0.call(P.GetStats())
        assert s.host.mem_total_mib > 0
        assert any(v.vm_id == spec.id for v in s.vms)
        pushed = await c0.wait_fact(lambda f: isinstance(f, P.StatsSample), 10)
        assert pushed.host_id == h0.host_uuid

        # Live snapshot without memory, then with memory; delete (live merge) both.
        snap = await c0.call(P.SnapshotCreate(vm_id=spec.id, snapshot_id=str(uuid.uuid4())))
        (ch,) = snap.changes
        assert ch.old_path == disk.path and os.path.exists(ch.new_path)
        got = await c0.call(P.GetVm(vm_id=spec.id))
        assert got.disks[0].path == ch.new_path
        info2 = await c0.call(P.ImageInfo(path=ch.new_path))
        assert info2.backing == disk.path
        snap2 = await c0.call(
            P.SnapshotCreate(vm_id=spec.id, snapshot_id=str(uuid.uuid4()), memory=True)
        )
        assert snap2.memory_path and os.path.exists(snap2.memory_path)
        await _status(c0, spec.id, "up")
        merged = await c0.call(
            P.SnapshotDelete(
                vm_id=spec.id,
                base_paths=[snap2.changes[0].old_path],
                memory_path=snap2.memory_path,
            )
        )
        assert merged.changes[0].new_path == ch.new_path
        assert not os.path.exists(snap2.changes[0].new_path)
        await c0.call(P.SnapshotDelete(vm_id=spec.id, base_paths=[disk.path]))
        got = await c0.call(P.GetVm(vm_id=spec.id))
        assert got.disks[0].path == disk.path and not os.path.exists(ch.new_path)

        # Live migration to the other host.
        await c1.call(P.SetupNetworks(bridges=[P.BridgeSpec(network=bridge)]))
        await c0.call(
            P.Migrate(
                vm_id=spec.id,
                dest_uri=h1.uri,
                migration_uri=h1.migration_uri(),
                max_downtime_ms=300,
            )
        )
        done = await c0.wait_fact(
            lambda f: isinstance(f, P.MigrationDone) and f.vm_id == spec.id, 60
        )
        assert done.ok, done.error
        assert done.downtime_ms is not None
        print(f"migration: {done.duration_ms} ms, downtime {done.downtime_ms} ms")
        await _status(c1, spec.id, "up")
        assert spec.id in running_uuids(h1.uri)
        assert spec.id not in running_uuids(h0.uri)
        vms0 = await c0.call(P.ListVms())
        assert spec.id not in {v.id for v in vms0.vms}
        await c0.close()
        await c1.close()
        return spec.id

    vm_id = run(go())

    # hostd restart: the running VM is reported, nothing duplicated.
    h1.restart_hostd()

    async def after() -> None:
        c1 = await client_of(cluster, 1)
        vms = (await c1.call(P.ListVms())).vms
        mine = [v for v in vms if v.id == vm_id]
        assert len(mine) == 1 and mine[0].status == "up"
        with pytest.raises(P.HostdError) as e:
            await c1.call(P.StartVm(vm_id=vm_id))
        assert e.value.code == "already_running"
        # Suspend (managed save) and restore.
        await c1.call(P.SuspendVm(vm_id=vm_id))
        await _status(c1, vm_id, "suspended")
        got = await c1.call(P.GetVm(vm_id=vm_id))
        assert got.status == "suspended" and got.managed_save
        await c1.call(P.RestoreVm(vm_id=vm_id))
        await _status(c1, vm_id, "up")
        # Shutdown: an OS-less guest ignores ACPI, so hostd powers it off after the timeout.
        await c1.call(P.ShutdownVm(vm_id=vm_id, timeout_s=1))
        f = await _status(c1, vm_id, "down", 20)
        assert f.reason == "destroyed"
        assert vm_id not in running_uuids(cluster.hosts[1].uri)
        await c1.call(P.DestroyVm(vm_id=vm_id, undefine=True))
        with pytest.raises(P.HostdError) as e:
            await c1.call(P.GetVm(vm_id=vm_id))
        assert e.value.code == "not_found"
        await c1.close()

    run(after())


# A guest that answers ACPI the way an OS does when the power button is pressed (polling
# instead of taking the SCI): a boot sector that reads the PM I/O base of the PIIX4 PM
# function (00:01.3, register 0x40, machine "pc"), enables the power-button event in
# PM1a_EN, waits for its status bit in PM1a_STS, then writes SLP_TYP=0 (S5 in QEMU's DSDT)
# | SLP_EN to PM1a_CNT. Assembled from:
#   cli; mov $0x80000b40,%eax; mov $0xcf8,%dx; out %eax,%dx; mov $0xcfc,%dx; in %dx,%eax
#   and $0xffc0,%ax; mov %ax,%bx; lea 2(%bx),%dx; mov $0x100,%ax; out %ax,%dx
#   1: mov %bx,%dx; in %dx,%ax; test $0x100,%ax; jz 1b
#   lea 4(%bx),%dx; mov $0x2000,%ax; out %ax,%dx; 2: hlt; jmp 2b
ACPI_GUEST_CODE = bytes.fromhex(
    "fa66b8400b0080baf80c66efbafc0c66ed83e0c089c38d5702b80001ef89daeda9000174f88d5704b80020eff4ebfd"
)


def test_a_guest_that_answers_acpi_is_shut_down_not_destroyed(cluster, sd_path, tmp_path) -> None:
    """Shutdown presses the ACPI power button; a guest that answers powers itself off well
    before the timeout, and libvirt reports a shutdown, not hostd's power-off."""
    sector = tmp_path / "acpi-guest.bin"
    sector.write_bytes(ACPI_GUEST_CODE + bytes(510 - len(ACPI_GUEST_CODE)) + b"\x55\xaa")

    async def go() -> None:
        c = await client_of(cluster, 0)
        disk = await _disk(c, str(sd_path), 8 << 20)
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", f"write -s {sector} 0 512", disk.path],
            check=True,
            capture_output=True,
        )
        spec = tiny_spec("acpi-guest", disks=[P.DiskSpec(path=disk.path)])
        assert spec.machine == "pc"
        await c.call(P.CreateVm(spec=spec, start=True))
        await _status(c, spec.id, "up")
        # Like an OS, the guest only hears the button once its code runs (after the
        # firmware, seconds under nested KVM): press until it answers, never forcing.
        f = None
        for _ in range(40):
            await c.call(P.ShutdownVm(vm_id=spec.id, timeout_s=600, force=False))
            try:
                f = await _status(c, spec.id, "down", 3)
                break
            except TimeoutError:
                continue
        assert f is not None, "the guest never powered off"
        assert f.reason == "shutdown"  # the guest's own S5, not hostd's destroy
        await c.call(P.DestroyVm(vm_id=spec.id, undefine=True))
        await c.close()

    run(go())


def test_offline_snapshot_preview_undo(cluster, sd_path) -> None:
    async def go() -> None:
        c = await client_of(cluster, 0)
        disk = await _disk(c, str(sd_path))
        spec = tiny_spec("offline-snap", disks=[P.DiskSpec(path=disk.path)])
        info = await c.call(P.CreateVm(spec=spec, start=False))
        assert info.status == "down"
        snap = await c.call(P.SnapshotCreate(vm_id=spec.id, snapshot_id=str(uuid.uuid4())))
        leaf = snap.changes[0].new_path
        prev = await c.call(P.SnapshotPreview(vm_id=spec.id, snapshot_paths=[disk.path]))
        assert prev.changes[0].old_path == leaf
        got = await c.call(P.GetVm(vm_id=spec.id))
        assert got.disks[0].path == prev.changes[0].new_path
        await c.call(P.SnapshotUndo(vm_id=spec.id, changes=prev.changes))
        got = await c.call(P.GetVm(vm_id=spec.id))
        assert got.disks[0].path == leaf
        await c.call(P.SnapshotDelete(vm_id=spec.id, base_paths=[disk.path]))
        got = await c.call(P.GetVm(vm_id=spec.id))
        assert got.disks[0].path == disk.path
        # Start, destroy, undefine.
        await c.call(P.StartVm(vm_id=spec.id))
        await _status(c, spec.id, "up")
        await c.call(P.DestroyVm(vm_id=spec.id, undefine=True))
        await _status(c, spec.id, "down")
        await c.close()

    run(go())


def test_errors_become_clear_replies(cluster, sd_path) -> None:
    async def go() -> None:
        c = await client_of(cluster, 0)
        # A disk that does not exist: libvirt's reason, and no VM left behind.
        spec = tiny_spec("bad-disk", disks=[P.DiskSpec(path=f"{sd_path}/nope.qcow2")])
        with pytest.raises(P.HostdError) as e:
            await c.call(P.CreateVm(spec=spec))
        assert "nope.qcow2" in e.value.message
        assert e.value.code == "libvirt"
        assert spec.id not in {v.id for v in (await c.call(P.ListVms())).vms}
        # A NIC on a network this host does not have: refused, not silently dropped.
        spec = tiny_spec("bad-net", nics=[P.NicSpec(mac="56:6f:00:00:00:09", network="nonet0")])
        with pytest.raises(P.HostdError) as e:
            await c.call(P.CreateVm(spec=spec))
        assert e.value.code == "network" and "nonet0" in e.value.message
        with pytest.raises(P.HostdError) as e:
            await c.call(P.PauseVm(vm_id=str(uuid.uuid4())))
        assert e.value.code == "not_found"
        await c.call(P.ConnectStorage(sd_id=SD_ID, kind="posixfs", path=str(sd_path)))
        with pytest.raises(P.HostdError) as e:
            await c.call(P.ImageInfo(path=f"{sd_path}/{SD_ID}/images/missing"))
        assert e.value.code == "image"
        await c.close()

    run(go())


def test_image_requests_touch_only_connected_storage_domains(cluster, sd_path, tmp_path) -> None:
    """A request naming a file outside the domains the host has connected is refused
    before qemu-img or libvirt sees it, and the file is left as it was."""
    own = tmp_path / "hosts-own-file"
    own.write_text("not a volume")
    outside = tmp_path / "other-sd"
    (outside / SD_ID / "images").mkdir(parents=True)

    async def go() -> None:
        c = await client_of(cluster, 0)
        vol = await _disk(c, str(sd_path), 1 << 20)  # connects SD_ID at sd_path
        images = sd_path / SD_ID / "images"
        escape = images / "escape"
        escape.symlink_to(own)  # inside the domain by name, outside once resolved
        ref = P.VolumeRef(sd_path=str(outside), sd_id=SD_ID, disk_id="d", volume_id="v")
        refused = [
            P.ImageInfo(path="/etc/hostname"),
            P.ImageInfo(path=str(escape)),
            P.ImageInfo(path=f"{images}/../../../{own.name}"),
            P.DeleteImage(path=str(own)),
            P.DeleteImage(path=str(escape)),
            P.ResizeImage(path=str(own), size_bytes=1 << 20),
            P.CopyImage(source=str(own), volume=ref),
            P.CopyImage(
                source=str(own),
                volume=P.VolumeRef(sd_path=str(sd_path), sd_id=SD_ID, disk_id="d", volume_id="v"),
            ),
            P.CreateImage(volume=ref, size_bytes=1 << 20),
            P.CreateImage(
                volume=P.VolumeRef(sd_path=str(sd_path), sd_id=SD_ID, disk_id="d", volume_id="w"),
                size_bytes=0,
                backing=str(own),
            ),
            P.MergeVolume(leaf=vol.path, layer=str(own)),
            P.SnapshotCommit(
                vm_id=str(uuid.uuid4()),
                changes=[P.DiskChange(target="vda", old_path=str(own), new_path=vol.path)],
            ),
            P.SnapshotDelete(vm_id=str(uuid.uuid4()), memory_path=str(own)),
        ]
        for req in refused:
            with pytest.raises(P.HostdError) as e:
                await c.call(req)
            assert e.value.code == "forbidden", (req, e.value)
            assert "not on a storage domain connected to this host" in e.value.message
        assert own.read_text() == "not a volume"
        assert not (outside / SD_ID / "images" / "d").exists()
        assert not (images / "d").exists()
        # inside the connected domain: carried out
        assert (await c.call(P.ImageInfo(path=vol.path))).virtual_size == 1 << 20
        await c.close()

    run(go())


def _vcpu_seconds(pid: int) -> float:
    """CPU time of a QEMU's vCPU threads."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()  # noqa: SIM115
        if "CPU " in stat.split(")")[0]:
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def test_firmware_of_a_vm_with_nothing_to_boot(cluster, sd_path) -> None:
    """A VM with no disk, NIC or kernel gets qboot, which halts at once (SeaBIOS would POST
    for seconds of CPU to say "No bootable device"); one with a disk keeps SeaBIOS. Both
    report up from libvirt's started event; CreateVm says where hostd spent its time."""

    async def go() -> None:
        c = await client_of(cluster, 0)
        bare = tiny_spec("fw-bare")
        info = await c.call(P.CreateVm(spec=bare))
        await _status(c, bare.id, "up")
        assert {"lookup", "xml", "hooks", "define", "create"} <= set(info.timings_ms)
        assert info.timings_ms["create"] > 0
        xml = (await c.call(P.GetVm(vm_id=bare.id, with_xml=True))).xml or ""
        assert "qboot.rom</loader>" in xml
        pid = int((cluster.hosts[0].base / "run" / "qemu" / "fw-bare.pid").read_text())
        before = _vcpu_seconds(pid)
        await asyncio.sleep(2.0)
        # Halted, not spinning in a POST (which takes a whole vCPU: ~2 s here); the margin
        # is for a loaded machine, where the halt itself comes late.
        assert _vcpu_seconds(pid) - before < 0.6

        img = await _disk(c, str(sd_path))
        disk = P.DiskSpec(path=img.path, format="qcow2", bootable=True)
        booted = tiny_spec("fw-disk", disks=[disk])
        await c.call(P.CreateVm(spec=booted))
        await _status(c, booted.id, "up")
        xml = (await c.call(P.GetVm(vm_id=booted.id, with_xml=True))).xml or ""
        assert "<loader" not in xml
        forced = tiny_spec("fw-forced", firmware="seabios")
        await c.call(P.CreateVm(spec=forced, start=False))
        xml = (await c.call(P.GetVm(vm_id=forced.id, with_xml=True))).xml or ""
        assert "<loader" not in xml and "<boot dev='hd'/>" in xml
        for s in (bare, booted, forced):
            await c.call(P.DestroyVm(vm_id=s.id, undefine=True))
        await c.close()

    run(go())


def test_hooks(cluster, sd_path) -> None:
    hooks_dir = cluster.hosts[0].data_dir / "hooks"
    before = hooks_dir / "before_vm_start"
    before.mkdir(parents=True, exist_ok=True)
    seen = sd_path / "hook-seen"
    ok_hook = before / "10_record"
    ok_hook.write_text(
        "#!/bin/sh\n"
        f'echo "$sla $_hook_domxml" > {seen}\n'
        # rewrite the XML: add a description
        'sed -i "s|<metadata>|<description>hooked</description><metadata>|" "$_hook_domxml"\n'
    )
    ok_hook.chmod(0o755)
    bad = before / "20_fail"

    async def go() -> None:
        c = await client_of(cluster, 0)
        spec = tiny_spec("hooked", custom_properties={"sla": "gold", "fail": "no"})
        info = await c.call(P.CreateVm(spec=spec))
        assert info.status == "up"
        assert seen.read_text().startswith("gold ")
        got = await c.call(P.GetVm(vm_id=spec.id, with_xml=True))
        assert "<description>hooked</description>" in (got.xml or "")
        await c.call(P.DestroyVm(vm_id=spec.id, undefine=True))

        bad.write_text('#!/bin/sh\necho "policy says no for $fail" >&2\nexit 1\n')
        bad.chmod(0o755)
        spec = tiny_spec("hook-refused", custom_properties={"fail": "yes"})
        with pytest.raises(P.HostdError) as e:
            await c.call(P.CreateVm(spec=spec))
        assert e.value.code == "hook"
        assert "policy says no for yes" in e.value.message
        assert spec.id not in {v.id for v in (await c.call(P.ListVms())).vms}
        await c.close()

    try:
        run(go())
    finally:
        ok_hook.unlink()
        bad.unlink(missing_ok=True)


def test_migration_cancel_keeps_vm_on_source(cluster, sd_path) -> None:
    h0, h1 = cluster.hosts

    async def go() -> None:
        c0 = await client_of(cluster, 0)
        spec = tiny_spec("cancel-me", memory_mib=256)
        await c0.call(P.CreateVm(spec=spec))
        await c0.call(
            P.Migrate(
                vm_id=spec.id,
                dest_uri=h1.uri,
                migration_uri=h1.migration_uri(),
                bandwidth_mibps=1,
                unsafe=True,
            )
        )
        st = await c0.call(P.MigrateStatus(vm_id=spec.id))
        assert st.active
        await c0.call(P.MigrateCancel(vm_id=spec.id))
        done = await c0.wait_fact(
            lambda f: isinstance(f, P.MigrationDone) and f.vm_id == spec.id, 60
        )
        assert not done.ok and done.cancelled, done
        assert done.error
        assert spec.id in running_uuids(h0.uri)
        assert spec.id not in running_uuids(h1.uri)
        got = await c0.call(P.GetVm(vm_id=spec.id))
        assert got.status == "up"
        await c0.call(P.DestroyVm(vm_id=spec.id, undefine=True))
        await c0.close()

    run(go())


def test_storage_connect_errors(cluster, sd_path) -> None:
    async def go() -> None:
        c = await client_of(cluster, 0)
        ok = await c.call(P.ConnectStorage(sd_id="sd-dir", kind="posixfs", path=str(sd_path)))
        assert ok.path == str(sd_path) and (sd_path / "sd-dir" / "images").is_dir()
        with pytest.raises(P.HostdError) as e:
            await c.call(P.ConnectStorage(sd_id="x", kind="posixfs", path=f"{sd_path}/none"))
        assert e.value.code == "storage"
        # Nothing serves NFS on this loopback: the mount attempt fails with its reason.
        with pytest.raises(P.HostdError) as e:
            await c.call(
                P.ConnectStorage(
                    sd_id="nfs1",
                    kind="nfs",
                    path="127.0.0.1:/nowhere",
                    mount_options="soft,timeo=10,retrans=1,retry=0",
                )
            )
        assert e.value.code == "storage" and "127.0.0.1:/nowhere" in e.value.message
        caps = await c.call(P.GetCapabilities())
        assert caps.storage.get("sd-dir") == str(sd_path) and "nfs1" not in caps.storage
        await c.close()

    run(go())


def test_bridge_failures_are_reported(cluster) -> None:
    async def go() -> None:
        c = await client_of(cluster, 1)
        res = await c.call(
            P.SetupNetworks(
                bridges=[
                    P.BridgeSpec(network="bad/name"),
                    P.BridgeSpec(network="ovtnonic0", nic="nosuchnic0"),
                ]
            )
        )
        by = {n.network: n for n in res.networks}
        assert not by["bad/name"].ok and "valid" in by["bad/name"].detail
        assert not by["ovtnonic0"].ok and by["ovtnonic0"].detail
        caps = await c.call(P.GetCapabilities())
        nets = {n.network: n for n in caps.networks}
        assert not nets["bad/name"].ok
        assert not os.path.exists("/sys/class/net/ovtnonic0")  # rolled back
        await c.call(P.SetupNetworks(remove=["bad/name"]))
        await c.close()

    run(go())


def test_libvirtd_restart_is_survived(cluster) -> None:
    h0 = cluster.hosts[0]

    async def go() -> None:
        c = await client_of(cluster, 0)
        spec = tiny_spec("survivor")
        await c.call(P.CreateVm(spec=spec))
        await asyncio.to_thread(h0.restart_libvirtd)
        lost = await c.wait_fact(
            lambda f: isinstance(f, P.HostError) and f.code == "libvirt_unreachable", 30
        )
        assert "lost" in lost.message
        back = await c.wait_fact(
            lambda f: (
                isinstance(f, P.VmStatusChanged) and f.vm_id == spec.id and f.event == "recovered"
            ),
            30,
        )
        assert back.status == "up"
        vms = [v for v in (await c.call(P.ListVms())).vms if v.id == spec.id]
        assert len(vms) == 1 and vms[0].status == "up"
        await c.call(P.PauseVm(vm_id=spec.id))  # events flow again
        await _status(c, spec.id, "paused")
        await c.call(P.DestroyVm(vm_id=spec.id, undefine=True))
        await c.close()

    run(go())
