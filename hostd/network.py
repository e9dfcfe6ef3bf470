"""Linux bridges, one per logical network (the bridge is named after the network, like
VDSM's ovirtmgmt). Failures are reported, never hidden: the NetworkState says why."""

from __future__ import annotations

import json
import os
import subprocess
import time
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


def setup(b: BridgeSpec) -> tuple[NetworkState, bool]:
    """Create (or complete) the bridge. Returns its state and whether this call created it.

    A bridge that appears while this call tries to create it (another hostd on the same
    machine, an administrator) is a success, not a failure to undo. Only a bridge this
    call created is removed again when a later step fails, so a failed setup leaves
    nothing half-done and never takes away a bridge somebody else made."""
    name = b.network
    bad = valid_name(name)
    if bad:
        return NetworkState(network=name, bridge=name, ok=False, detail=bad), False
    created, err = _ensure_bridge(name)
    if err:
        return NetworkState(network=name, bridge=name, ok=False, detail=err), False
    st = _configure(b)
    if not st.ok and created:
        _ip("link", "del", name)
        return st, False
    return st, created


def _ensure_bridge(name: str) -> tuple[bool, str]:
    """(created here, error)."""
    if bridge_exists(name):
        return False, ""
    err = ""
    if not Path(f"/sys/class/net/{name}").exists():
        ok, err = _ip("link", "add", name, "type", "bridge")
        if ok:
            return True, ""
    # The name is taken: a bridge another process is making shows its bridge directory a
    # moment after its interface appears.
    for _ in range(20):
        if bridge_exists(name):
            return False, ""
        time.sleep(0.05)
    if Path(f"/sys/class/net/{name}").exists():
        return False, "an interface of that name exists and is not a bridge"
    return False, f"ip link add {name} type bridge: {err}"


def _configure(b: BridgeSpec) -> NetworkState:
    name = b.network
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


def remove(name: str, created_here: bool) -> NetworkState:
    """Removes a bridge this hostd created; one it found in place is left alone."""
    if not bridge_exists(name):
        return NetworkState(network=name, bridge=name, ok=True, detail="not present")
    if not created_here:
        return NetworkState(
            network=name, bridge=name, ok=True, detail="not created by hostd; left in place"
        )
    ok, err = _ip("link", "del", name)
    return NetworkState(network=name, bridge=name, ok=ok, detail="" if ok else err)


def state(name: str) -> NetworkState:
    if bridge_exists(name):
        return NetworkState(network=name, bridge=name, ok=True)
    return NetworkState(network=name, bridge=name, ok=False, detail="bridge does not exist")


# -- which bridges this hostd created (so that only those are ever removed) --------------
CREATED_FILE = "bridges-created.json"


def load_created(data_dir: Path) -> set[str]:
    """The bridges a hostd with this data directory created and has not removed."""
    try:
        names = json.loads((data_dir / CREATED_FILE).read_text())
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str) and valid_name(n) is None}


def save_created(data_dir: Path, names: set[str]) -> None:
    """Written atomically: a crash leaves the old list or the new one."""
    tmp = data_dir / (CREATED_FILE + ".tmp")
    tmp.write_text(json.dumps(sorted(names)))
    os.replace(tmp, data_dir / CREATED_FILE)


def remove_created(data_dir: Path) -> list[str]:
    """Removes every bridge recorded as created under ``data_dir`` (the harness's clean-up
    of what its hosts made). Returns the names removed."""
    gone = []
    for name in sorted(load_created(data_dir)):
        if bridge_exists(name) and _ip("link", "del", name)[0]:
            gone.append(name)
    save_created(data_dir, set())
    return gone
