"""libvirt domain XML from a VmSpec, and the few facts hostd reads back from domain XML."""

from __future__ import annotations

import os
import secrets
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from hostd.protocol import DiskSpec, GraphicsSpec, NicSpec, VmDisk, VmSpec

OVIRT_NS = "http://orrery.example/hostd/1.0"
# QEMU's minimal firmware (Debian qemu-system-data): it boots a kernel handed over by
# fw_cfg or halts. SeaBIOS' POST of a guest with nothing to boot costs ~4-5 s of a core
# under nested KVM before it prints "No bootable device" and halts.
QBOOT = "/usr/share/qemu/qboot.rom"
_BUS_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "ide": "hd"}


def _target_names(disks: list[DiskSpec]) -> list[str]:
    counters: dict[str, int] = {}
    names = []
    for d in disks:
        prefix = _BUS_PREFIX[d.bus]
        n = counters.get(prefix, 0)
        counters[prefix] = n + 1
        names.append(prefix + chr(ord("a") + n))
    return names


def _disk(d: DiskSpec, target: str) -> str:
    ro = "<readonly/>" if d.readonly or d.device == "cdrom" else ""
    serial = f"<serial>{escape(d.serial)}</serial>" if d.serial else ""
    boot = "<boot order='1'/>" if d.bootable else ""
    return (
        f"<disk type='file' device='{d.device}'>"
        f"<driver name='qemu' type='{d.format}' cache='none' io='threads' "
        f"error_policy='stop'/>"
        f"<source file={quoteattr(d.path)}/>"
        f"<target dev='{target}' bus='{d.bus}'/>{ro}{serial}{boot}</disk>"
    )


def _nic(n: NicSpec) -> str:
    return (
        "<interface type='bridge'>"
        f"<mac address={quoteattr(n.mac)}/>"
        f"<source bridge={quoteattr(n.network)}/>"
        f"<model type='{n.model}'/></interface>"
    )


def _graphics(g: GraphicsSpec) -> str:
    port = "autoport='yes'" if g.port < 0 else f"port='{g.port}' autoport='no'"
    # Like VDSM: a random password that has already expired; SetTicket opens the console.
    pw = secrets.token_hex(4)  # VNC allows 8 characters
    return (
        f"<graphics type='{g.type}' {port} listen={quoteattr(g.listen)} passwd='{pw}' "
        "passwdValidTo='1970-01-01T00:00:01'>"
        f"<listen type='address' address={quoteattr(g.listen)}/></graphics>"
    )


def firmware(spec: VmSpec) -> str:
    """``seabios`` or ``qboot`` for ``spec``: ``auto`` picks qboot only for a VM that has
    nothing any firmware could boot (no disk, no NIC for PXE, no kernel) and only when
    qboot is installed; both leave such a guest halted, qboot without the POST."""
    if spec.firmware != "auto":
        return spec.firmware
    if spec.disks or spec.nics or spec.kernel or not os.path.exists(QBOOT):
        return "seabios"
    return "qboot"


def build(spec: VmSpec, kvm: bool, emulator: str | None = None) -> str:
    """The domain XML for ``spec``. ``kvm``: whether /dev/kvm works on this host."""
    use_kvm = kvm if spec.emulator == "auto" else spec.emulator == "kvm"
    dtype = "kvm" if use_kvm else "qemu"
    t = spec.cpu
    vcpus = t.sockets * t.cores * t.threads
    os_parts = [f"<type arch='x86_64' machine={quoteattr(spec.machine)}>hvm</type>"]
    fw = firmware(spec)
    if fw == "qboot":
        os_parts.append(f"<loader type='rom'>{escape(QBOOT)}</loader>")
    if spec.kernel:
        os_parts.append(f"<kernel>{escape(spec.kernel)}</kernel>")
        if spec.initrd:
            os_parts.append(f"<initrd>{escape(spec.initrd)}</initrd>")
        if spec.cmdline:
            os_parts.append(f"<cmdline>{escape(spec.cmdline)}</cmdline>")
    elif fw == "seabios" and not any(d.bootable for d in spec.disks):
        os_parts.extend(f"<boot dev='{b}'/>" for b in spec.boot)
    devices = []
    if emulator:
        devices.append(f"<emulator>{escape(emulator)}</emulator>")
    # No USB controller (oVirt's default: USB off); nothing here plugs into one.
    devices.append("<controller type='usb' model='none'/>")
    devices += [_disk(d, tg) for d, tg in zip(spec.disks, _target_names(spec.disks), strict=True)]
    devices += [_nic(n) for n in spec.nics]
    devices += [_graphics(g) for g in spec.graphics]
    if spec.serial_console:
        devices.append("<serial type='pty'><target port='0'/></serial>")
        devices.append("<console type='pty'><target type='serial' port='0'/></console>")
    devices.append("<memballoon model='virtio'><stats period='5'/></memballoon>")
    props = "".join(
        f"<orrery:property name={quoteattr(k)}>{escape(v)}</orrery:property>"
        for k, v in sorted(spec.custom_properties.items())
    )
    # No host-passthrough: nested KVM here rejects some host MSRs (arch_capabilities), and
    # the default model keeps guests migratable between unlike hosts.
    cpu = (
        f"<cpu><topology sockets='{t.sockets}' dies='1' cores='{t.cores}' "
        f"threads='{t.threads}'/></cpu>"
    )
    return (
        f"<domain type='{dtype}'>"
        f"<name>{escape(spec.name)}</name><uuid>{escape(spec.id)}</uuid>"
        f"<metadata><orrery:vm xmlns:orrery='{OVIRT_NS}'>{props}</orrery:vm></metadata>"
        f"<memory unit='MiB'>{spec.memory_mib}</memory>"
        f"<currentMemory unit='MiB'>{spec.memory_mib}</currentMemory>"
        f"<vcpu placement='static'>{vcpus}</vcpu>"
        f"<os>{''.join(os_parts)}</os>"
        "<features><acpi/><apic/></features>"
        f"{cpu}"
        "<clock offset='utc'/>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
        "<on_crash>destroy</on_crash>"
        f"<devices>{''.join(devices)}</devices>"
        "</domain>"
    )


def disks(xml: str) -> list[VmDisk]:
    """The file-backed disks of a domain XML: target, current source path, format."""
    root = ET.fromstring(xml)
    out = []
    for d in root.findall("./devices/disk"):
        src = d.find("source")
        tgt = d.find("target")
        drv = d.find("driver")
        if src is None or tgt is None or src.get("file") is None:
            continue
        out.append(
            VmDisk(
                target=tgt.get("dev", ""),
                path=src.get("file", ""),
                format=drv.get("type", "raw") if drv is not None else "raw",
            )
        )
    return out


def set_disk_source(xml: str, target: str, path: str, fmt: str = "qcow2") -> str:
    """The XML with disk ``target`` pointing at ``path`` (backing chain dropped: qemu
    re-reads it from the image)."""
    root = ET.fromstring(xml)
    for d in root.findall("./devices/disk"):
        tgt = d.find("target")
        if tgt is None or tgt.get("dev") != target:
            continue
        src = d.find("source")
        if src is None:
            src = ET.SubElement(d, "source")
        for k in list(src.attrib):
            del src.attrib[k]
        src.set("file", path)
        for child in list(src):
            src.remove(child)
        bs = d.find("backingStore")
        if bs is not None:
            d.remove(bs)
        drv = d.find("driver")
        if drv is not None:
            drv.set("type", fmt)
        return ET.tostring(root, encoding="unicode")
    raise KeyError(target)


def graphics(xml: str) -> tuple[str | None, int | None]:
    root = ET.fromstring(xml)
    g = root.find("./devices/graphics")
    if g is None:
        return None, None
    port = g.get("port")
    return g.get("type"), int(port) if port and port.lstrip("-").isdigit() else None


def graphics_xml(xml: str, protocol: str) -> ET.Element | None:
    root = ET.fromstring(xml)
    for g in root.findall("./devices/graphics"):
        if g.get("type") == protocol:
            return g
    return None


def custom_properties(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)
    out = {}
    for p in root.iter(f"{{{OVIRT_NS}}}property"):
        out[p.get("name", "")] = p.text or ""
    return out
