"""hostd's network request: ``SetupNetworks`` (bridges added and removed). hostd removes
only the bridges it created itself (``Core.created_bridges``, recorded in its data
directory so that a restart keeps them); a bridge that already exists is used as it is.

May import ``hostd.core``, ``hostd.protocol`` and the driver module ``network``; no other
request handler module.
"""

from __future__ import annotations

from hostd import network
from hostd import protocol as P
from hostd.core import Core


async def setup_networks(core: Core, req: P.SetupNetworks) -> P.NetworksResult:
    out = []
    for name in req.remove:
        st = await core.run(network.remove, name, name in core.created_bridges)
        if st.ok:
            core.created_bridges.discard(name)
        core.networks.discard(name)
        out.append(st)
    for b in req.bridges:
        st, created = await core.run(network.setup, b)
        if created:
            core.created_bridges.add(b.network)
        core.networks.add(b.network)
        out.append(st)
    await core.run(network.save_created, core.data_dir, set(core.created_bridges))
    core.emit(P.NetworkStatus(networks=[network.state(n) for n in sorted(core.networks)]))
    return P.NetworksResult(networks=out)
