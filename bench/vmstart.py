"""VM start latency on real KVM, 50 concurrent starts over 2 hosts, and live migration
downtime (hosts from hostd.harness on this machine).

``--level manager`` (the default) measures through the whole Manager: from a ``StartVm``
command handed to the bus until the engine holds the VM ``up`` (bus, HostLink, hostd,
libvirt/QEMU, the status fact back as a ``ReportVmStatus`` command), and the downtime of a
``MigrateVm`` as recorded by ``VmMigrated``. The breakdown (``*_ms`` under ``phases``)
says where a sequential start spends its time: the Manager's part, hostd's part of the
``CreateVm`` call (``hostd_*``: lookups, XML, hooks, defineXML, and the create call that
launches QEMU), and an ``anatomy`` of that create call measured beside it on a bare QEMU
(its start-up until QMP answers, and the guest-CPU read-back libvirt 9 does on every
start: one ``qom-get`` per CPU feature, several hundred). ``--level hostd`` measures hostd
alone (``CreateVm`` -> the ``up`` fact).

"up" is libvirt's own started event (the guest's CPUs run), as oVirt reports it. The VM is
the Manager's small VM: 1 vCPU, ``--memory-mib`` MiB (not preallocated), a VNC display,
a serial console on a pty, a virtio balloon, no disk, NIC or OS; having nothing to boot,
hostd gives it qboot, which halts at once (``--level hostd --firmware seabios`` measures
the same VM under SeaBIOS, whose POST costs ~4-5 s of a core per guest here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--starts", type=int, default=20, help="sequential starts for p50/p99")
    p.add_argument("--concurrent", type=int, default=50, help="VMs started at once")
    p.add_argument("--migrations", type=int, default=3, help="migrations to average")
    p.add_argument("--memory-mib", type=int, default=256)
    p.add_argument("--level", choices=("manager", "hostd"), default="manager")
    p.add_argument(
        "--firmware", choices=("auto", "seabios", "qboot"), default="auto", help="(hostd level)"
    )
    p.add_argument(
        "--launch-concurrency", type=int, default=0, help="HostLink's launches per host (0: all)"
    )


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
        return P.VmSpec(
            id=str(uuid.uuid4()),
            name=name,
            memory_mib=args.memory_mib,
            graphics=[P.GraphicsSpec(type="vnc")],
            firmware=args.firmware,
        )

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
        "level": "hostd",
        "vm": _vm_text(args, args.firmware),
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


class _Manager:
    """A Manager in this process: the bus (log in a temporary directory, or the database
    of --database-url), the HostLink on its own event loop thread."""

    def __init__(self, data_dir: str, database_url: str | None) -> None:
        from commands.bootstrap import open_bus
        from commands.hostlink import HostLink, HostSecrets
        from commands.system import ensure_initialized

        self.bus = open_bus(database_url, data_dir)
        ensure_initialized(self.bus, admin_password="bench-admin")
        self.secrets = HostSecrets(f"{data_dir}/host-secrets.json")
        self.link = HostLink(self.bus, self.secrets, reconnect_every=0.5)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.link.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name="bench-hostlink", daemon=True)
        self.thread.start()
        ready.wait(30)

    def wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.bus.lock:
                if pred():
                    return
            time.sleep(0.01)
        raise RuntimeError(f"timed out waiting for {what}: {self.link.errors[-3:]}")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.link.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.bus.stop()


def _bench_manager(cluster: Any, args: argparse.Namespace) -> dict:
    import tempfile

    from commands import cluster as cluster_cmds
    from commands import host as host_cmds
    from commands import vm as vm_cmds
    from domain.cluster import Cluster as VmCluster
    from domain.host import Host
    from domain.statuses import HostStatus, VmStatus
    from domain.vm import Vm, VmMigrated, VmScheduled, VmStatusReported
    from hostd import protocol as P

    with tempfile.TemporaryDirectory(prefix="orrery-bench-") as data_dir:
        m = _Manager(data_dir, getattr(args, "database_url", None))
        m.link.launch_concurrency = args.launch_concurrency
        try:
            # Instants, by VM id, seen on the writer thread as batches commit.
            up_at: dict[UUID, float] = {}
            scheduled_at: dict[UUID, float] = {}
            migrated: dict[UUID, list[int]] = {}

            def committed(pairs: list) -> None:
                now = time.perf_counter()
                for _, ev in pairs:
                    if isinstance(ev, VmStatusReported) and ev.status == VmStatus.UP:
                        up_at.setdefault(ev.originator_id, now)
                    elif isinstance(ev, VmScheduled):
                        scheduled_at.setdefault(ev.originator_id, now)
                    elif isinstance(ev, VmMigrated):
                        migrated.setdefault(ev.originator_id, []).append(ev.downtime_ms)

            m.bus.subscribe(committed)
            # Where a start spends its time: hostd's CreateVm call, and the up fact's arrival.
            create_calls: dict[str, tuple[float, float]] = {}
            hostd_timings: dict[str, dict[str, float]] = {}
            fact_at: dict[str, float] = {}
            real_call = m.link.core.call

            async def timed_call(host_id: Any, req: Any) -> Any:
                t0 = time.perf_counter()
                out = await real_call(host_id, req)
                if isinstance(req, P.CreateVm):
                    create_calls[req.spec.id] = (t0, time.perf_counter())
                    hostd_timings[req.spec.id] = dict(getattr(out, "timings_ms", None) or {})
                return out

            m.link.core.call = timed_call  # type: ignore[method-assign]
            real_fact = m.link.monitor.on_fact

            raw_downtimes: list[int | None] = []

            def timed_fact(s: Any, fact: Any) -> None:
                if isinstance(fact, P.VmStatusChanged) and fact.status == "up":
                    fact_at.setdefault(fact.vm_id, time.perf_counter())
                elif isinstance(fact, P.MigrationDone):
                    raw_downtimes.append(fact.downtime_ms)
                real_fact(s, fact)

            m.link.monitor.on_fact = timed_fact  # type: ignore[method-assign]

            cluster_id = next(c for c in m.bus.engine.all(VmCluster) if c.name == "Default").id
            # Spread the VMs over the hosts (oVirt's VM-count balancing policy).
            m.bus.execute(
                cluster_cmds.UpdateCluster(
                    cluster_id=cluster_id, scheduling_policy="vm_evenly_distributed"
                )
            )
            host_ids = []
            for h in cluster.hosts:
                hid = uuid.uuid4()
                m.secrets.put(hid, cluster.token)
                m.bus.execute(
                    host_cmds.AddHost(
                        id=hid,
                        name=h.name,
                        address="127.0.0.1",
                        port=h.hostd_port,
                        cluster_id=cluster_id,
                    )
                )
                host_ids.append(hid)
            m.wait(
                lambda: all(m.bus.engine.get(Host, h).status == HostStatus.UP for h in host_ids),
                60,
                "hosts up",
            )

            def add_vm(name: str) -> UUID:
                return m.bus.execute(
                    vm_cmds.AddVm(name=name, cluster_id=cluster_id, memory=args.memory_mib << 20)
                ).value

            def status(vm_id: UUID) -> VmStatus:
                return m.bus.engine.get(Vm, vm_id).status

            def stop_all(ids: list[UUID]) -> None:
                futs = [m.bus.submit(vm_cmds.StopVm(vm_id=v)) for v in ids]
                for f in futs:
                    f.result(60)
                m.wait(lambda: all(status(v) == VmStatus.DOWN for v in ids), 120, "VMs down")

            def start_and_wait(vm_id: UUID, host_id: UUID | None = None) -> dict[str, float]:
                up_at.pop(vm_id, None)
                t0 = time.perf_counter()
                fut = m.bus.submit(vm_cmds.StartVm(vm_id=vm_id, host_id=host_id))
                fut.result(60)
                t_acc = time.perf_counter()
                m.wait(lambda: vm_id in up_at, 60, "VM up")
                t_up = up_at[vm_id]
                # The up fact may overtake CreateVm's reply; the phases need both.
                m.wait(lambda: str(vm_id) in create_calls, 30, "CreateVm reply")
                c0, c1 = create_calls.get(str(vm_id), (t_acc, t_acc))
                f = fact_at.pop(str(vm_id), t_up)
                inner = hostd_timings.pop(str(vm_id), {})
                return {
                    "total": (t_up - t0) * 1000,
                    "commit_start": (t_acc - t0) * 1000,
                    "dispatch": (c0 - scheduled_at.pop(vm_id, c0)) * 1000,
                    "hostd_call": (c1 - c0) * 1000,
                    **{f"hostd_{k}": v for k, v in inner.items()},
                    "up_fact_after_create_call": (f - c1) * 1000,
                    "fact_to_engine": (t_up - f) * 1000,
                }

            # Warm-up: the first QEMU start on each host probes capabilities.
            warm = [add_vm(f"warm{i}") for i in range(len(host_ids))]
            for v, h in zip(warm, host_ids, strict=True):
                start_and_wait(v, h)
            stop_all(warm)

            seq = [add_vm(f"seq{i}") for i in range(args.starts)]
            runs = []
            for v in seq:
                runs.append(start_and_wait(v))
                stop_all([v])
            lat = [r["total"] for r in runs]

            conc = [add_vm(f"conc{i}") for i in range(args.concurrent)]
            for v in conc:
                up_at.pop(v, None)
            daemons_cpu0 = _daemons_cpu(cluster)
            wall0 = time.perf_counter()
            t0 = time.perf_counter()
            futs = [m.bus.submit(vm_cmds.StartVm(vm_id=v)) for v in conc]
            for f in futs:
                f.result(120)
            m.wait(lambda: all(v in up_at for v in conc), 300, "all VMs up")
            concurrent_s = max(up_at[v] for v in conc) - t0
            conc_cpu = _cpu_report(cluster, daemons_cpu0, time.perf_counter() - wall0)
            calls = [create_calls[str(v)] for v in conc if str(v) in create_calls]
            conc_phases = {
                "last_call_issued_s": round(max(c[0] for c in calls) - t0, 2),
                "last_call_answered_s": round(max(c[1] for c in calls) - t0, 2),
                "max_fact_to_engine_ms": round(
                    max((up_at[v] - fact_at.get(str(v), up_at[v])) * 1000 for v in conc), 1
                ),
            }
            per_host = {
                str(h): sum(1 for v in conc if m.bus.engine.get(Vm, v).run_on_host_id == h)
                for h in host_ids
            }
            stop_all(conc)

            mig = add_vm("mig")
            start_and_wait(mig, host_ids[0])
            durations = []
            for _ in range(args.migrations):
                src = m.bus.engine.get(Vm, mig).run_on_host_id
                n = len(migrated.get(mig, []))
                t0 = time.perf_counter()
                m.bus.execute(vm_cmds.MigrateVm(vm_id=mig))
                m.wait(lambda n=n: len(migrated.get(mig, [])) > n, 120, "migrated")
                durations.append((time.perf_counter() - t0) * 1000)
                assert m.bus.engine.get(Vm, mig).run_on_host_id != src
            stop_all([mig])
            downtimes = migrated.get(mig, [])
            phases = {
                f"{k}_ms": round(statistics.median(r[k] for r in runs if k in r), 1)
                for k in runs[0]
                if k != "total"
            }
        finally:
            m.close()
    return {
        "level": "manager",
        "vm": _vm_text(args, "auto"),
        "kvm": bool(cluster.hosts and _kvm()),
        "starts": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(_pct(lat, 0.99), 1),
        "phases": phases,
        "anatomy": _anatomy(args.memory_mib),
        "concurrent": args.concurrent,
        "concurrent50_s": round(concurrent_s, 2),
        "concurrent_per_host": list(per_host.values()),
        "concurrent_phases": conc_phases,
        "concurrent_cpu_s": conc_cpu,
        "migrations": len(downtimes),
        "migration_downtime_ms": round(statistics.median(downtimes), 1) if downtimes else None,
        "migration_duration_ms": round(statistics.median(durations), 1) if durations else None,
        "migration_downtimes_reported_ms": raw_downtimes,
    }


def _vm_text(args: argparse.Namespace, fw: str) -> str:
    from hostd import domxml
    from hostd import protocol as P

    fw = domxml.firmware(P.VmSpec(id="", name="", firmware=fw))  # type: ignore[arg-type]
    return (
        f"1 vCPU, {args.memory_mib} MiB, VNC display, serial console (pty), virtio balloon, "
        f"no disk/NIC/OS, firmware {fw}"
    )


def _cpu_s(pid: int, per_thread: bool = False) -> dict[str, float]:
    """CPU seconds (user + system) of a process, or of its threads by name."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    tasks = os.listdir(f"/proc/{pid}/task") if per_thread else [None]
    for tid in tasks:
        path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
        try:
            with open(path) as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        key = "all" if tid is None else name
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _daemons_cpu(cluster: Any) -> dict[str, float]:
    out: dict[str, float] = {"libvirtd": 0.0, "hostd": 0.0}
    for h in cluster.hosts:
        for key, proc in (("libvirtd", h.libvirtd), ("hostd", h.hostd)):
            if proc is not None:
                out[key] += _cpu_s(proc.pid).get("all", 0.0)
    return out


def _cpu_report(cluster: Any, daemons0: dict[str, float], wall_s: float) -> dict:
    """Where the CPU of the concurrent starts went: the QEMUs now running (by thread:
    monitor I/O thread, main thread, vCPUs) and libvirtd/hostd since ``daemons0``."""
    qemu: dict[str, float] = {"monitor_iothread": 0.0, "main": 0.0, "vcpus": 0.0, "other": 0.0}
    for h in cluster.hosts:
        for pid in h.qemu_pids():
            if h.libvirtd is not None and pid == h.libvirtd.pid:
                continue  # libvirtd's own pid file sits beside the guests'
            for name, sec in _cpu_s(pid, per_thread=True).items():
                if name.startswith("IO mon"):
                    qemu["monitor_iothread"] += sec
                elif name.startswith("qemu:"):
                    qemu["main"] += sec
                elif name.startswith("CPU "):
                    qemu["vcpus"] += sec
                else:
                    qemu["other"] += sec
    daemons = _daemons_cpu(cluster)
    out = {f"qemu_{k}": round(v, 2) for k, v in qemu.items()}
    out |= {k: round(daemons[k] - daemons0.get(k, 0.0), 2) for k in daemons}
    out["wall"] = round(wall_s, 2)
    return out


class _Qmp:
    """A bare QEMU (paused) with its monitor on stdio."""

    def __init__(self, memory_mib: int) -> None:
        import subprocess

        from hostd import domxml

        argv = ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "qemu64"]
        argv += ["-m", str(memory_mib), "-bios", domxml.QBOOT, "-nodefaults"]
        argv += ["-display", "none", "-S", "-qmp", "stdio"]
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        assert self.p.stdout is not None
        self.p.stdout.readline()  # the greeting

    def __call__(self, name: str, **arguments: Any) -> Any:
        import json

        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
        while True:
            r = json.loads(self.p.stdout.readline())
            if "return" in r or "error" in r:
                return r.get("return")

    def close(self) -> None:
        self.p.kill()
        self.p.wait()


def _anatomy(memory_mib: int, rounds: int = 5) -> dict:
    """The two big parts of libvirt's create call, measured on a bare QEMU with the same
    machine: QEMU's start-up until its monitor answers, and reading the guest CPU back one
    feature at a time (``qom-get`` per boolean CPU property, as libvirt 9 does on every
    start to verify the guest CPU). Medians of ``rounds``."""
    starts, readbacks, counts = [], [], []
    cpu = "/machine/unattached/device[0]"
    for _ in range(rounds):
        t0 = time.perf_counter()
        qmp = _Qmp(memory_mib)
        try:
            qmp("qmp_capabilities")
            t1 = time.perf_counter()
            props = [x["name"] for x in qmp("qom-list", path=cpu) if x["type"] == "bool"]
            for name in props:
                qmp("qom-get", path=cpu, property=name)
            t2 = time.perf_counter()
        finally:
            qmp.close()
        starts.append((t1 - t0) * 1000)
        readbacks.append((t2 - t1) * 1000)
        counts.append(len(props))
    return {
        "qemu_start_to_qmp_ms": round(statistics.median(starts), 1),
        "cpu_readback_ms": round(statistics.median(readbacks), 1),
        "cpu_readback_qom_gets": max(counts),
    }


def _kvm() -> bool:
    from hostd.harness import kvm_usable

    return kvm_usable()


def run(args: argparse.Namespace) -> dict:
    from hostd.harness import Cluster

    with Cluster(2, hostd_args=["--stats-interval", "15"]) as cluster:
        if args.level == "hostd":
            return asyncio.run(_bench(cluster, args))
        return _bench_manager(cluster, args)
