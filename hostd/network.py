"""Linux bridges, one per logical network (the bridge is named after the network, like
VDSM's ovirtmgmt). Failures are reported, never hidden: the NetworkState says why."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hostd.protocol import BridgeSpec, NetworkState


def _ip(*args: str) -> tuple[bool, str]:
    try:
        p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return p.returncode == 0, (p.stderr or p.stdout).strip()


def bridge_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}/bridge").is_dir()


def valid_name(name: str) -> str | None:
    if not name or len(name) > 15 or any(c in name for c in "/ \t\n:"):
        return f"{name!r} is not a valid Linux interface name (1-15 characters, no / : space)"
    return None


def setup(b: BridgeSpec) -> NetworkState:
    """Create (or complete) the bridge; a bridge created here is removed again when a later
    step fails, so a failed setup leaves nothing half-done."""
    created = not bridge_exists(b.network)
    st = _setup(b)
    if not st.ok and created and valid_name(b.network) is None and bridge_exists(b.network):
        _ip("link", "del", b.network)
    return st


def _setup(b: BridgeSpec) -> NetworkState:
    name = b.network
    bad = valid_name(name)
    if bad:
        return NetworkState(network=name, bridge=name, ok=False, detail=bad)
    if not bridge_exists(name):
        if Path(f"/sys/class/net/{name}").exists():
            return NetworkState(
                network=name, bridge=name, ok=False, detail="an interface of that name exists"
            )
        ok, err = _ip("link", "add", name, "type", "bridge")
        if not ok:
            return NetworkState(network=name, bridge=name, ok=False, detail=err)
    if b.mtu:
        _ip("link", "set", name, "mtu", str(b.mtu))
    if b.nic:
        port = b.nic
        if b.vlan is not None:
            port = f"{b.nic}.{b.vlan}"
            if not Path(f"/sys/class/net/{port}").exists():
                ok, err = _ip(
                    "link", "add", "link", b.nic, "name", port, "type", "vlan", "id", str(b.vlan)
                )
                if not ok:
                    return NetworkState(network=name, bridge=name, ok=False, detail=err)
        ok, err = _ip("link", "set", port, "master", name, "up")
        if not ok:
            return NetworkState(network=name, bridge=name, ok=False, detail=err)
    ok, err = _ip("link", "set", name, "up")
    if not ok:
        return NetworkState(network=name, bridge=name, ok=False, detail=err)
    return NetworkState(network=name, bridge=name, ok=True)


def remove(name: str) -> NetworkState:
    if not bridge_exists(name):
        return NetworkState(network=name, bridge=name, ok=True, detail="not present")
    ok, err = _ip("link", "del", name)
    return NetworkState(network=name, bridge=name, ok=ok, detail="" if ok else err)


def state(name: str) -> NetworkState:
    if bridge_exists(name):
        return NetworkState(network=name, bridge=name, ok=True)
    return NetworkState(network=name, bridge=name, ok=False, detail="bridge does not exist")
