"""hostd's requests about the host itself: ``Ping``, ``GetCapabilities`` (what this host
is and has: CPU, memory, machines, networks, storage, hooks, the libvirt URI to migrate
to) and ``GetStats`` (a statistics sample on demand).

May import ``hostd.core``, ``hostd.protocol`` and the driver modules; no other request
handler module (``hostd.dispatch`` maps the requests to these functions).
"""

from __future__ import annotations

import time

from hostd import network, virt
from hostd import protocol as P
from hostd.core import VERSION, Core


async def ping(core: Core, req: P.Ping) -> P.Ok:
    return P.Ok(detail="pong")


async def get_capabilities(core: Core, req: P.GetCapabilities) -> P.Capabilities:
    conn = core.c()
    caps = await core.run(virt.host_caps, conn)
    info = await core.run(conn.getInfo)
    return P.Capabilities(
        host_id=core.host_id,
        hostname=core.hostname,
        hostd_version=VERSION,
        libvirt_version=virt.version_str(await core.run(conn.getLibVersion)),
        qemu_version=virt.version_str(await core.run(conn.getVersion)),
        kvm=core.kvm and caps["kvm_domain"],
        cpu_model=caps["cpu_model"],
        cpu_vendor=caps["cpu_vendor"],
        cpu_sockets=caps["sockets"],
        cpu_cores=caps["cores"],
        cpu_threads=caps["threads"],
        cpus=int(info[2]),
        memory_mib=int(info[1]),
        emulated_machines=caps["machines"],
        networks=[network.state(n) for n in sorted(core.networks)],
        storage=dict(core.storage),
        hooks=core.hooks.listing(),
        migration_port_min=core.cfg.migration_port_min,
        libvirt_uri=core.cfg.public_libvirt_uri,
    )


async def get_stats(core: Core, req: P.GetStats) -> P.StatsSample:
    s = await core.sample()
    s.host_id, s.boot_id, s.ts = core.host_id, core.boot_id, time.time()
    return s
