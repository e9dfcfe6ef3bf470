"""VM start latency through hostd on real KVM, 50 concurrent starts over 2 hosts, and live
migration downtime (hosts from hostd.harness on this machine)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--starts", type=int, default=20, help="sequential starts for p50/p99")
    p.add_argument("--concurrent", type=int, default=50, help="VMs started at once")
    p.add_argument("--migrations", type=int, default=3, help="migrations to average")
    p.add_argument("--memory-mib", type=int, default=32)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[k]


async def _bench(cluster, args: argparse.Namespace) -> dict:
    from hostd import protocol as P

    clients = [await P.HostClient.connect(*h.address, token=cluster.token) for h in cluster.hosts]
    ups: dict[str, asyncio.Future] = {}

    def listener(fact: object) -> None:
        if isinstance(fact, P.VmStatusChanged) and fact.status == "up":
            fut = ups.get(fact.vm_id)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    for c in clients:
        c.listeners.append(listener)

    def spec(name: str) -> P.VmSpec:
        return P.VmSpec(id=str(uuid.uuid4()), name=name, memory_mib=args.memory_mib)

    async def start(c: P.HostClient, s: P.VmSpec) -> float:
        loop = asyncio.get_running_loop()
        ups[s.id] = loop.create_future()
        t0 = time.perf_counter()
        await c.call(P.CreateVm(spec=s))
        t1 = await asyncio.wait_for(ups[s.id], 120)
        return (t1 - t0) * 1000.0

    # Warm-up (first QEMU start probes capabilities).
    for i, c in enumerate(clients):
        s = spec(f"warm{i}")
        await start(c, s)
        await c.call(P.DestroyVm(vm_id=s.id, undefine=True))

    lat = []
    for i in range(args.starts):
        s = spec(f"seq{i}")
        lat.append(await start(clients[0], s))
        await clients[0].call(P.DestroyVm(vm_id=s.id, undefine=True))

    specs = [(clients[i % len(clients)], spec(f"conc{i}")) for i in range(args.concurrent)]
    t0 = time.perf_counter()
    await asyncio.gather(*(start(c, s) for c, s in specs))
    concurrent_s = time.perf_counter() - t0
    await asyncio.gather(*(c.call(P.DestroyVm(vm_id=s.id, undefine=True)) for c, s in specs))

    # Migration: one VM ping-pongs between the hosts.
    downtimes, durations = [], []
    s = spec("mig")
    await start(clients[0], s)
    src = 0
    for _ in range(args.migrations):
        dst = 1 - src
        done_fut = asyncio.get_running_loop().create_future()

        def on_done(f: object, fut: asyncio.Future = done_fut) -> None:
            if isinstance(f, P.MigrationDone) and f.vm_id == s.id and not fut.done():
                fut.set_result(f)

        clients[src].listeners.append(on_done)
        await clients[src].call(
            P.Migrate(
                vm_id=s.id,
                dest_uri=cluster.hosts[dst].uri,
                migration_uri=cluster.hosts[dst].migration_uri(),
                unsafe=True,
            )
        )
        done = await asyncio.wait_for(done_fut, 120)
        clients[src].listeners.remove(on_done)
        if not done.ok:
            raise RuntimeError(f"migration failed: {done.error}")
        downtimes.append(done.downtime_ms or 0)
        durations.append(done.duration_ms)
        src = dst
    await clients[src].call(P.DestroyVm(vm_id=s.id, undefine=True))
    for c in clients:
        await c.close()
    return {
        "kvm": clients[0].welcome.kvm if clients[0].welcome else None,
        "starts": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(_pct(lat, 0.99), 1),
        "concurrent": args.concurrent,
        "concurrent50_s": round(concurrent_s, 2),
        "migrations": len(downtimes),
        "migration_downtime_ms": round(statistics.median(downtimes), 1),
        "migration_duration_ms": round(statistics.median(durations), 1),
    }


def run(args: argparse.Namespace) -> dict:
    from hostd.harness import Cluster

    with Cluster(2, hostd_args=["--stats-interval", "15"]) as cluster:
        return asyncio.run(_bench(cluster, args))
