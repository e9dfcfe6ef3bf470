"""hostd's pure parts: protocol frames, domain XML, hooks, libvirt status mapping."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest

from hostd import domxml, hooks
from hostd import protocol as P

pytestmark = pytest.mark.unit


def _spec(**kw) -> P.VmSpec:
    base = dict(
        id=str(uuid.uuid4()),
        name="vm1",
        memory_mib=128,
        cpu=P.CpuTopology(sockets=2, cores=2, threads=1),
        disks=[P.DiskSpec(path="/sd/a/images/d/v"), P.DiskSpec(path="/sd/b", format="raw")],
        nics=[P.NicSpec(mac="56:6f:00:00:00:01", network="ovirtmgmt")],
        graphics=[P.GraphicsSpec(type="vnc"), P.GraphicsSpec(type="spice")],
        custom_properties={"sla": "gold", "x-y": "1 2"},
    )
    base.update(kw)
    return P.VmSpec(**base)


def test_every_request_round_trips_in_a_call_frame() -> None:
    spec = _spec()
    reqs = [
        P.GetCapabilities(),
        P.CreateVm(spec=spec),
        P.Migrate(vm_id=spec.id, dest_uri="qemu+tcp://h2/system", migration_uri="tcp://h2"),
        P.SnapshotCreate(vm_id=spec.id, snapshot_id="s", memory=True),
        P.SetupNetworks(bridges=[P.BridgeSpec(network="ovirtmgmt", nic="eth0", vlan=10)]),
        P.ConnectStorage(sd_id="sd", kind="nfs", path="10.0.0.1:/export"),
    ]
    for i, req in enumerate(reqs):
        frame = P.encode_frame(P.Call(id=i, req=req))
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        back = P.decode_frame(frame[4:])
        assert back == P.Call(id=i, req=req)
    assert set(P.RESULTS) >= {type(r) for r in reqs}


def test_facts_and_replies_decode_by_tag() -> None:
    f = P.VmStatusChanged(vm_id="u", name="n", status="up", reason="booted", seq=3)
    assert P.decode_frame(P.encode_frame(f)[4:]) == f
    r = P.Reply(id=1, ok=False, error=P.Error(code="hook", message="no"))
    assert P.decode_frame(P.encode_frame(r)[4:]) == r
    raw = msgspec.json.decode(P.encode_frame(f)[4:])
    assert raw["t"] == "vm_status"


def test_unknown_request_is_rejected() -> None:
    body = msgspec.json.encode({"t": "call", "id": 1, "req": {"op": "format_disk"}})
    with pytest.raises(msgspec.ValidationError):
        P.decode_frame(body)


def test_domain_xml_from_spec() -> None:
    spec = _spec()
    xml = domxml.build(spec, kvm=True)
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm"
    assert root.findtext("uuid") == spec.id and root.findtext("name") == "vm1"
    assert root.findtext("vcpu") == "4"
    topo = root.find("./cpu/topology")
    assert topo is not None and topo.get("sockets") == "2" and topo.get("cores") == "2"
    assert [d.target for d in domxml.disks(xml)] == ["vda", "vdb"]
    assert domxml.disks(xml)[1].format == "raw"
    assert root.find("./devices/interface/source").get("bridge") == "ovirtmgmt"
    assert [g.get("type") for g in root.findall("./devices/graphics")] == ["vnc", "spice"]
    vnc = root.find("./devices/graphics")
    assert len(vnc.get("passwd")) <= 8 and vnc.get("passwdValidTo").startswith("1970")
    assert root.find("./devices/serial") is not None
    assert domxml.custom_properties(xml) == {"sla": "gold", "x-y": "1 2"}
    assert ET.fromstring(domxml.build(spec, kvm=False)).get("type") == "qemu"
    assert ET.fromstring(domxml.build(_spec(emulator="tcg"), kvm=True)).get("type") == "qemu"


def test_kernel_boot_and_escaping() -> None:
    spec = _spec(name="a<b&c", kernel="/k", initrd="/i", cmdline="console=ttyS0 x='1'")
    root = ET.fromstring(domxml.build(spec, kvm=False))
    assert root.findtext("name") == "a<b&c"
    assert root.findtext("./os/kernel") == "/k" and root.findtext("./os/initrd") == "/i"
    assert root.findtext("./os/cmdline") == "console=ttyS0 x='1'"


def test_set_disk_source() -> None:
    xml = domxml.build(_spec(), kvm=True)
    new = domxml.set_disk_source(xml, "vdb", "/sd/new", "qcow2")
    d = {x.target: x for x in domxml.disks(new)}
    assert d["vdb"].path == "/sd/new" and d["vdb"].format == "qcow2"
    assert d["vda"].path == "/sd/a/images/d/v"
    with pytest.raises(KeyError):
        domxml.set_disk_source(xml, "vdz", "/x")


def _hook(dirpath: Path, name: str, body: str) -> None:
    dirpath.mkdir(parents=True, exist_ok=True)
    p = dirpath / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)


def test_hooks_rewrite_xml_in_order_and_see_properties(tmp_path: Path) -> None:
    h = hooks.Hooks(tmp_path)
    d = tmp_path / "before_vm_start"
    _hook(d, "10_a", "echo \"<a sla='$sla' p='$x_y'/>\" > \"$_hook_domxml\"\n")
    _hook(d, "20_b", 'sed -i "s|<a|<b|" "$_hook_domxml"\n')
    (d / "30_not_executable").write_text("#!/bin/sh\nexit 1\n")
    out = h.run("before_vm_start", "<domain/>", {"sla": "gold", "x-y": "1"})
    assert out.strip() == "<b sla='gold' p='1'/>"
    assert h.listing() == {"before_vm_start": ["10_a", "20_b"]}
    assert h.run("after_vm_start", "<same/>") == "<same/>"


def test_failing_hook_carries_its_stderr(tmp_path: Path) -> None:
    h = hooks.Hooks(tmp_path)
    _hook(tmp_path / "before_vm_start", "10_no", 'echo "nope: $sla" >&2\nexit 2\n')
    with pytest.raises(hooks.HookError) as e:
        h.run("before_vm_start", "<domain/>", {"sla": "gold"})
    assert "nope: gold" in str(e.value) and "10_no" in str(e.value)


def test_libvirt_status_mapping() -> None:
    import libvirt

    from hostd import virt

    ev = virt.event_status
    assert ev(libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED) == (
        "up",
        "booted",
    )
    assert ev(libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)[0] == (
        "paused"
    )
    assert ev(libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED) == (
        "down",
        "crashed",
    )
    assert ev(libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED)[0] == (
        "suspended"
    )
    assert ev(libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED) == (
        "down",
        "migrated",
    )
    assert ev(libvirt.VIR_DOMAIN_EVENT_DEFINED, 0) is None
    st = virt.state_status
    assert st(libvirt.VIR_DOMAIN_RUNNING, 1) == ("up", "running")
    assert st(libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED, True)[0] == "suspended"
    assert st(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER) == ("paused", "user")


def test_cli_launcher_parses() -> None:
    import argparse

    from api import cli_hostd

    p = argparse.ArgumentParser()
    cli_hostd.add_arguments(p)
    a = p.parse_args(["--listen", "127.0.0.1:5555", "--data-dir", "/x", "--token", "t"])
    assert a.listen == "127.0.0.1:5555" and a.token == "t" and a.libvirt == "qemu:///system"
