"""The libvirt side of hostd: status mapping, error mapping and blocking helpers.

Everything here that talks to libvirt is blocking and runs in hostd's thread pool; libvirt's
events reach the asyncio loop through ``libvirtaio``.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import libvirt

from hostd.protocol import Error

# Lifecycle event -> (oVirt status, reason) by detail. None: no status change reported.
_EV = libvirt
EVENT_NAMES = {
    _EV.VIR_DOMAIN_EVENT_DEFINED: "defined",
    _EV.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    _EV.VIR_DOMAIN_EVENT_STARTED: "started",
    _EV.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    _EV.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    _EV.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    _EV.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    _EV.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    _EV.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

_STARTED = {
    _EV.VIR_DOMAIN_EVENT_STARTED_BOOTED: ("up", "booted"),
    _EV.VIR_DOMAIN_EVENT_STARTED_MIGRATED: ("migrating", "incoming_migration"),
    _EV.VIR_DOMAIN_EVENT_STARTED_RESTORED: ("up", "restored"),
    _EV.VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT: ("up", "from_snapshot"),
    _EV.VIR_DOMAIN_EVENT_STARTED_WAKEUP: ("up", "wakeup"),
}
_SUSPENDED = {
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED: ("paused", "user"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED: ("migrating", "migration"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR: ("paused", "ioerror"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG: ("paused", "watchdog"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_RESTORED: ("paused", "restored"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT: ("paused", "from_snapshot"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR: ("paused", "api_error"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY: ("migrating", "postcopy"),
    _EV.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED: ("paused", "postcopy_failed"),
}
_RESUMED = {
    _EV.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED: ("up", "unpaused"),
    _EV.VIR_DOMAIN_EVENT_RESUMED_MIGRATED: ("up", "migrated"),
    _EV.VIR_DOMAIN_EVENT_RESUMED_FROM_SNAPSHOT: ("up", "from_snapshot"),
    _EV.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY: ("migrating", "postcopy"),
}
_STOPPED = {
    _EV.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: ("down", "shutdown"),
    _EV.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: ("down", "destroyed"),
    _EV.VIR_DOMAIN_EVENT_STOPPED_CRASHED: ("down", "crashed"),
    _EV.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: ("down", "migrated"),
    _EV.VIR_DOMAIN_EVENT_STOPPED_SAVED: ("suspended", "saved"),
    _EV.VIR_DOMAIN_EVENT_STOPPED_FAILED: ("down", "failed"),
    _EV.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: ("down", "from_snapshot"),
}


def event_status(event: int, detail: int) -> tuple[str, str] | None:
    if event == _EV.VIR_DOMAIN_EVENT_STARTED:
        return _STARTED.get(detail, ("up", "started"))
    if event == _EV.VIR_DOMAIN_EVENT_SUSPENDED:
        if detail == _EV.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED:
            return ("paused", "user")
        return _SUSPENDED.get(detail, ("paused", "unknown"))
    if event == _EV.VIR_DOMAIN_EVENT_RESUMED:
        return _RESUMED.get(detail, ("up", "resumed"))
    if event == _EV.VIR_DOMAIN_EVENT_STOPPED:
        return _STOPPED.get(detail, ("down", "stopped"))
    if event == _EV.VIR_DOMAIN_EVENT_SHUTDOWN:
        if detail == getattr(_EV, "VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED", 0):
            return ("powering_down", "guest")
        return ("powering_down", "guest")
    if event == _EV.VIR_DOMAIN_EVENT_PMSUSPENDED:
        return ("suspended", "pm")
    if event == _EV.VIR_DOMAIN_EVENT_CRASHED:
        return ("down", "crashed")
    if event == _EV.VIR_DOMAIN_EVENT_UNDEFINED:
        return ("removed", "undefined")
    return None


_PAUSED_REASONS = {
    _EV.VIR_DOMAIN_PAUSED_USER: ("paused", "user"),
    _EV.VIR_DOMAIN_PAUSED_MIGRATION: ("migrating", "migration"),
    _EV.VIR_DOMAIN_PAUSED_SAVE: ("saving_state", "save"),
    _EV.VIR_DOMAIN_PAUSED_DUMP: ("paused", "dump"),
    _EV.VIR_DOMAIN_PAUSED_IOERROR: ("paused", "ioerror"),
    _EV.VIR_DOMAIN_PAUSED_WATCHDOG: ("paused", "watchdog"),
    _EV.VIR_DOMAIN_PAUSED_FROM_SNAPSHOT: ("paused", "from_snapshot"),
    _EV.VIR_DOMAIN_PAUSED_SHUTTING_DOWN: ("powering_down", "shutting_down"),
    _EV.VIR_DOMAIN_PAUSED_SNAPSHOT: ("paused", "snapshot"),
    _EV.VIR_DOMAIN_PAUSED_CRASHED: ("paused", "crashed"),
    _EV.VIR_DOMAIN_PAUSED_STARTING_UP: ("powering_up", "starting_up"),
    _EV.VIR_DOMAIN_PAUSED_POSTCOPY: ("migrating", "postcopy"),
}
_SHUTOFF_REASONS = {
    _EV.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "shutdown",
    _EV.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    _EV.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
    _EV.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated",
    _EV.VIR_DOMAIN_SHUTOFF_SAVED: "saved",
    _EV.VIR_DOMAIN_SHUTOFF_FAILED: "failed",
    _EV.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: "from_snapshot",
}


def state_status(state: int, reason: int, managed_save: bool = False) -> tuple[str, str]:
    """oVirt status and reason of a libvirt (state, reason) pair."""
    if state in (_EV.VIR_DOMAIN_RUNNING, _EV.VIR_DOMAIN_BLOCKED):
        if reason == _EV.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED:
            return ("up", "migration_canceled")
        if reason == _EV.VIR_DOMAIN_RUNNING_MIGRATED:
            return ("up", "migrated")
        return ("up", "running")
    if state == _EV.VIR_DOMAIN_PAUSED:
        return _PAUSED_REASONS.get(reason, ("paused", "unknown"))
    if state == _EV.VIR_DOMAIN_SHUTDOWN:
        return ("powering_down", "shutdown")
    if state == _EV.VIR_DOMAIN_PMSUSPENDED:
        return ("suspended", "pm")
    if state == _EV.VIR_DOMAIN_CRASHED:
        return ("down", "crashed")
    if state == _EV.VIR_DOMAIN_SHUTOFF:
        if managed_save:
            return ("suspended", "saved")
        return ("down", _SHUTOFF_REASONS.get(reason, "shutoff"))
    return ("unknown", "nostate")


def error_of(e: libvirt.libvirtError) -> Error:
    code = e.get_error_code()
    msg = e.get_error_message() or str(e)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return Error(code="not_found", message=msg)
    if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_FAILED):
        low = msg.lower()
        if "already running" in low or "already active" in low or "is already" in low:
            return Error(code="already_running", message=msg)
        if "not running" in low or "is not active" in low:
            return Error(code="not_running", message=msg)
        return Error(code="invalid", message=msg)
    if code == libvirt.VIR_ERR_SYSTEM_ERROR and e.get_error_domain() == libvirt.VIR_FROM_RPC:
        return Error(code="libvirt_unreachable", message=msg)
    return Error(code="libvirt", message=msg)


def host_caps(conn: libvirt.virConnect) -> dict:
    caps = ET.fromstring(conn.getCapabilities())
    cpu = caps.find("./host/cpu")
    topo = cpu.find("topology") if cpu is not None else None
    machines: set[str] = set()
    kvm = False
    for guest in caps.findall("./guest"):
        arch = guest.find("arch")
        if arch is None or arch.get("name") != "x86_64":
            continue
        for m in arch.findall("machine"):
            if m.text:
                machines.add(m.text)
        for d in arch.findall("domain"):
            if d.get("type") == "kvm":
                kvm = True
    return {
        "uuid": caps.findtext("./host/uuid", ""),
        "cpu_model": cpu.findtext("model", "") if cpu is not None else "",
        "cpu_vendor": cpu.findtext("vendor", "") if cpu is not None else "",
        "sockets": int(topo.get("sockets", 1)) if topo is not None else 1,
        "cores": int(topo.get("cores", 1)) if topo is not None else 1,
        "threads": int(topo.get("threads", 1)) if topo is not None else 1,
        "machines": sorted(machines),
        "kvm_domain": kvm,
        "qemu_ids": qemu_ids(caps),
    }


def qemu_ids(caps: ET.Element) -> tuple[int, int] | None:
    """The uid and gid QEMU runs as under libvirt's DAC driver (its base label for KVM
    guests, e.g. ``+999:+994``); None when no DAC driver confines QEMU."""
    for model in caps.findall("./host/secmodel"):
        if model.findtext("model") != "dac":
            continue
        for label in model.findall("baselabel"):
            if label.get("type") == "kvm" and label.text and ":" in label.text:
                uid, gid = label.text.split(":", 1)
                return int(uid.lstrip("+")), int(gid.lstrip("+"))
    return None


def version_str(v: int) -> str:
    return f"{v // 1000000}.{(v // 1000) % 1000}.{v % 1000}"


def wait_inactive(dom: libvirt.virDomain, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not dom.isActive():
                return True
        except libvirt.libvirtError:
            return True
        time.sleep(0.1)
    return False


def block_commit(dom: libvirt.virDomain, target: str, top: str, base: str, timeout: float) -> None:
    """Live merge of ``top``, a layer below the active one, into ``base`` (its backing
    file); qemu points the layer above ``top`` at ``base`` when the job completes. The
    job just disappears, done or failed: the caller checks the chain afterwards."""
    dom.blockCommit(target, base, top, 0, 0)
    deadline = time.monotonic() + timeout
    while dom.blockJobInfo(target, 0):
        if time.monotonic() > deadline:
            dom.blockJobAbort(target, 0)
            raise libvirt.libvirtError(f"block commit of {top} on {target} timed out")
        time.sleep(0.05)


def block_commit_active(dom: libvirt.virDomain, target: str, base: str, timeout: float) -> None:
    """Live merge of the active layer of ``target`` into ``base`` (its backing file), then
    pivot onto ``base``."""
    dom.blockCommit(target, base, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
    deadline = time.monotonic() + timeout
    while True:
        info = dom.blockJobInfo(target, 0)
        if info and info.get("end", 0) > 0 and info.get("cur") == info.get("end"):
            break
        if not info:
            raise libvirt.libvirtError(f"block commit job on {target} vanished")
        if time.monotonic() > deadline:
            dom.blockJobAbort(target, 0)
            raise libvirt.libvirtError(f"block commit on {target} timed out")
        time.sleep(0.05)
    while True:  # cur == end can come before qemu declares the job ready
        try:
            dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            break
        except libvirt.libvirtError as e:
            if "not ready" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    while dom.blockJobInfo(target, 0):
        if time.monotonic() > deadline:
            raise libvirt.libvirtError(f"pivot on {target} did not finish")
        time.sleep(0.05)
