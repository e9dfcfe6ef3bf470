"""Local hosts for the embedded installation (``orrery serve --local-hosts N``).

Starts N hosts on this machine through the hostd harness (each its own libvirtd and
hostd), registers them in the Default cluster under stable names (``local-1``...), and
gives the Default data center a posixfs data domain under DATA_DIR/storage, so a fresh
``make run`` can run VMs at once. On a restart the same hosts are found by name and
their new ports and secrets are recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

from commands import host as host_cmds
from commands import storage as sd_cmds
from domain.base import DomainError
from domain.cluster import Cluster
from domain.datacenter import DataCenter
from domain.host import Host
from domain.statuses import HostStatus
from domain.storage import StorageDomain, StorageType
from hostd.harness import Cluster as Harness

log = logging.getLogger("orrery.local_hosts")

LOCAL_SD = "local-data"
HOSTD_PORT = 54321
LIBVIRT_PORT = 16600


def start_local_hosts(
    bus: Any, secrets: Any, data_dir: Path | str, n: int, pki: Any = None
) -> tuple[Any, dict[UUID, str]]:
    """Starts and registers the hosts; returns the harness cluster and host id -> libvirt URI.
    With the Manager's ``pki`` each host is enrolled (its TLS directory written) before
    its hostd starts, and serves mutual TLS; without, plain TCP."""

    base = Path(data_dir).resolve()
    harness = Harness(
        n, base=base / "local-hosts", enroll=pki.enroll_host if pki is not None else None
    )
    # Stable ports, so a restart finds each host where the log says it is: hostd on
    # VDSM's 54321 (then 54322...), its libvirtd on 16600 (then 16601...).
    for i, h in enumerate(harness.hosts):
        h.hostd_port = HOSTD_PORT + i
        h.libvirt_port = LIBVIRT_PORT + i
    harness.start()
    try:
        return harness, _register(bus, secrets, harness)
    except BaseException:
        harness.stop()
        raise


def _register(bus: Any, secrets: Any, harness: Any) -> dict[UUID, str]:

    uris: dict[UUID, str] = {}
    with bus.lock:
        default = next((c for c in bus.engine.all(Cluster) if c.name == "Default"), None)
        by_name = {h.name: h for h in bus.engine.all(Host)}
    if default is None:
        raise RuntimeError("the Default cluster is missing; cannot register local hosts")
    for i, h in enumerate(harness.hosts, start=1):
        name = f"local-{i}"
        existing = by_name.get(name)
        if existing is None:
            import uuid

            hid = uuid.uuid4()
            bus.execute(
                host_cmds.AddHost(
                    id=hid,
                    name=name,
                    address="127.0.0.1",
                    port=h.hostd_port,
                    cluster_id=default.id,
                    actor="system",
                )
            )
            secrets.put(hid, harness.token)  # once the host is committed, as the API does
        else:
            hid = existing.id
            secrets.put(hid, harness.token)
            if existing.port != h.hostd_port:
                log.warning(
                    "%s is registered on port %s, not %s", name, existing.port, h.hostd_port
                )
        uris[hid] = h.uri
        log.info("local host %s: hostd 127.0.0.1:%s, libvirt %s", name, h.hostd_port, h.uri)
    return uris


async def attach_local_storage(
    bus: Any, data_dir: Path | str, host_ids: list[UUID], timeout: float = 180.0
) -> None:
    """Once a local host is up: adds the local posixfs data domain (DATA_DIR/storage) and
    attaches it to Default, unless a domain of that name exists already."""
    import asyncio
    import time

    storage = Path(data_dir).resolve() / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    storage.chmod(0o777)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with bus.lock:
            sd = next((d for d in bus.engine.all(StorageDomain) if d.name == LOCAL_SD), None)
            dc = next((d for d in bus.engine.all(DataCenter) if d.name == "Default"), None)
            up = [
                h
                for h in host_ids
                if (x := bus.engine.find(Host, h)) is not None and x.status == HostStatus.UP
            ]
        if dc is None or (sd is not None and sd.data_center_id is not None):
            return
        if not up:
            await asyncio.sleep(1.0)
            continue
        try:
            if sd is None:
                sd_id = (
                    await bus.execute_async(
                        sd_cmds.AddStorageDomain(
                            name=LOCAL_SD,
                            storage_type=StorageType.POSIXFS,
                            path=str(storage),
                            host_id=up[0],
                            actor="system",
                        )
                    )
                ).value
            else:
                sd_id = sd.id
            await bus.execute_async(
                sd_cmds.AttachStorageDomain(
                    storage_domain_id=sd_id, data_center_id=dc.id, actor="system"
                )
            )
            log.info("local data domain %s attached to Default", storage)
            return
        except DomainError as e:
            log.info("local data domain not attached yet: %s", e)
            await asyncio.sleep(1.0)
    log.warning("could not attach %s: no local host came up", LOCAL_SD)
