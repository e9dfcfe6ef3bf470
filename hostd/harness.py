"""Several hypervisor hosts on one machine: each with its own libvirtd and its own hostd.

Every host gets a private mount namespace (``unshare -m --propagation private``) in which
``/run/libvirt``, ``/var/lib/libvirt``, ``/etc/libvirt``, ``/var/log/libvirt`` and
``/var/cache/libvirt`` are bind mounts of directories under the host's base directory, a
``libvirtd.conf`` listening on 127.0.0.1 with its own TCP port and ``host_uuid``, and a
``qemu.conf`` that runs guests as root without cgroups, per-domain namespaces, seccomp or
virtlogd (guest stdio goes straight to ``/var/log/libvirt/qemu``), so nothing beyond the
libvirtd process has to be started. Display and migration port ranges are disjoint per host.

A *stock* host (``Cluster(stock=True)``) is a host as a distribution installs it: its
``qemu.conf`` holds only the per-host port ranges, so libvirt's own defaults apply (QEMU
runs as ``libvirt-qemu`` under the DAC security driver with dynamic ownership, cgroups,
a private ``/dev`` per domain, QEMU's seccomp sandbox, guest output through ``virtlogd``,
which is started in the namespace), and its hostd runs in the host's mount namespace
talking to ``qemu:///system`` over libvirt's Unix socket.

The hostd of each host is a separate process (``python -m hostd``) talking to its libvirtd
over ``qemu+tcp://127.0.0.1:PORT/system``. ``Cluster.stop()`` destroys every domain,
stops hostd and libvirtd (by pid), kills any leftover QEMU by the pid files of that host,
and removes the bridges its hostds created (each records them in its data directory) and
the ones the cluster was asked to create. The mounts disappear with the
namespace's last process.

Used by the integration tests and the benchmark; ``python -m hostd.harness --hosts 2`` keeps
a small cluster running until interrupted (for ``make run`` style use).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hostd import network

LIBVIRT_DIRS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "etc": "/etc/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}


SHARED_CACHE = Path("/var/tmp/orrery-hostd-harness/libvirt-cache")


class HarnessError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def libvirt_available() -> str | None:
    """None if libvirtd and QEMU can be started here, else the reason why not."""
    if os.geteuid() != 0:
        return "the harness needs root (mount namespaces, bridges)"
    for exe in ("libvirtd", "qemu-system-x86_64", "qemu-img", "unshare"):
        if shutil.which(exe) is None and not Path("/usr/sbin", exe).exists():
            return f"{exe} is not installed"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "libvirt-python is not installed"
    return None


def _wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise HarnessError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Host:
    """One simulated hypervisor: a libvirtd in its own mount namespace plus a hostd."""

    index: int
    base: Path
    token: str
    libvirt_port: int = 0
    hostd_port: int = 0
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    libvirtd: subprocess.Popen | None = None
    hostd: subprocess.Popen | None = None
    hostd_args: list[str] = field(default_factory=list)
    shared_cache: Path | None = SHARED_CACHE
    stock: bool = False  # libvirt's default qemu.conf (see the module's docstring)
    # The Manager's enrollment, as its installer would do it: writes this host's TLS
    # directory (hostd.tls) given the host's name, address and the directory. None: the
    # hostd serves plain TCP (--plain).
    enroll: Callable[[str, str, Path], None] | None = None

    @property
    def tls_dir(self) -> Path:
        return self.base / "tls"

    @property
    def name(self) -> str:
        return f"host{self.index}"

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.libvirt_port}/system"

    @property
    def migration_port_min(self) -> int:
        return 49152 + 64 * self.index

    @property
    def data_dir(self) -> Path:
        return self.base / "hostd"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.hostd_port)

    def migration_uri(self) -> str:
        """A tcp:// migration URI on this host (destination side)."""
        return f"tcp://127.0.0.1:{free_port()}"

    # -- libvirtd -------------------------------------------------------------------------

    def _write_config(self) -> None:
        for sub in LIBVIRT_DIRS:
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "log" / "qemu").mkdir(exist_ok=True)
        etc = self.base / "etc"
        (etc / "libvirtd.conf").write_text(
            "listen_tls = 0\n"
            "listen_tcp = 1\n"
            'listen_addr = "127.0.0.1"\n'
            f'tcp_port = "{self.libvirt_port}"\n'
            'auth_tcp = "none"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
            f'host_uuid = "{self.host_uuid}"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
            "max_clients = 256\nmax_workers = 40\nmax_client_requests = 50\n"
            "max_anonymous_clients = 256\n"
        )
        disp = 5900 + 100 * self.index
        ports = (
            f"remote_display_port_min = {disp}\nremote_display_port_max = {disp + 99}\n"
            f"migration_port_min = {self.migration_port_min}\n"
            f"migration_port_max = {self.migration_port_min + 63}\n"
        )
        if self.stock:
            (etc / "qemu.conf").write_text(ports)
            (etc / "libvirt.conf").write_text("")
            return
        (etc / "qemu.conf").write_text(
            'user = "root"\ngroup = "root"\n'
            "dynamic_ownership = 0\nremember_owner = 0\n"
            'security_driver = "none"\n'
            "cgroup_controllers = [ ]\n"
            "namespaces = [ ]\n"
            # No seccomp filter either: QEMU's monitor reads libvirt's commands one byte per
            # loop turn, and libvirt sends ~400 of them per start (the guest CPU read-back);
            # the filter on each of those syscalls is ~8% of a start's CPU.
            "seccomp_sandbox = 0\n"
            'stdio_handler = "file"\n'
            'vnc_listen = "127.0.0.1"\nspice_listen = "127.0.0.1"\n'
            f"{ports}"
            "set_process_name = 1\n"
        )
        (etc / "libvirt.conf").write_text("")

    def start_libvirtd(self, timeout: float = 20.0) -> None:
        if not self.libvirt_port:
            self.libvirt_port = free_port()
        self._write_config()
        sources = {sub: self.base / sub for sub in LIBVIRT_DIRS}
        if self.shared_cache is not None:
            # QEMU capability probing costs seconds per libvirtd; the cache is keyed by the
            # emulator binaries and written atomically, so hosts can share it.
            self.shared_cache.mkdir(parents=True, exist_ok=True)
            sources["cache"] = self.shared_cache
        mounts = " && ".join(
            f"mkdir -p {target} && mount --bind {sources[sub]} {target}"
            for sub, target in LIBVIRT_DIRS.items()
        )
        logd = "{ virtlogd -d -p /run/libvirt/virtlogd.pid || true; } && " if self.stock else ""
        script = (
            f"{mounts} && {logd}exec libvirtd --listen -p /run/libvirt/libvirtd.pid "
            "-f /etc/libvirt/libvirtd.conf"
        )
        log = open(self.base / "libvirtd.stderr", "ab")  # noqa: SIM115
        env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        self.libvirtd = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        try:
            _wait_port(self.libvirt_port, timeout, self.libvirtd)
            self._wait_libvirt(timeout)
        except HarnessError as e:
            raise HarnessError(
                f"libvirtd of {self.name} did not start: {e}\n{self.log_tail(20)}"
            ) from e

    def _wait_libvirt(self, timeout: float) -> None:
        import libvirt

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.libvirtd is not None and self.libvirtd.poll() is not None:
                break
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                last = str(e)
                time.sleep(0.05)
                continue
            conn.close()
            return
        raise HarnessError(f"libvirtd does not answer: {last}")

    # -- hostd ----------------------------------------------------------------------------

    def start_hostd(self, timeout: float = 20.0, extra: list[str] | None = None) -> None:
        if not self.hostd_port:
            self.hostd_port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A stock host's hostd lives in the host's mount namespace, on libvirt's socket.
        enter = []
        if self.stock and self.libvirtd is not None:
            enter = ["nsenter", f"--mount=/proc/{self.libvirtd.pid}/ns/mnt", "--"]
        if self.enroll is not None and not (self.tls_dir / "host.crt").exists():
            # Enrolled under a name unique on this machine (its directory), so enrolling
            # another harness's host0 does not revoke this one's certificate.
            self.enroll(f"{self.name} {self.base}", "127.0.0.1", self.tls_dir)
        tls = ["--tls-dir", str(self.tls_dir)] if self.enroll is not None else ["--plain"]
        args = [
            *enter,
            sys.executable,
            "-m",
            "hostd",
            "--listen",
            f"127.0.0.1:{self.hostd_port}",
            "--libvirt",
            "qemu:///system" if enter else self.uri,
            "--public-libvirt-uri",
            self.uri,
            "--data-dir",
            str(self.data_dir),
            "--host-id",
            self.host_uuid,
            "--migration-port-min",
            str(self.migration_port_min),
            *tls,
            *self.hostd_args,
            *(extra or []),
        ]
        log = open(self.base / "hostd.log", "ab")  # noqa: SIM115
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, ORRERY_HOSTD_TOKEN=self.token)
        env["PYTHONPATH"] = root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.hostd = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=root
        )
        log.close()
        try:
            _wait_port(self.hostd_port, timeout, self.hostd)
        except HarnessError as e:
            out = (self.base / "hostd.log").read_text(errors="replace")[-3000:]
            raise HarnessError(f"hostd of {self.name} did not start: {e}\n{out}") from e

    def stop_hostd(self, timeout: float = 10.0) -> None:
        p, self.hostd = self.hostd, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def restart_hostd(self) -> None:
        self.stop_hostd()
        self.start_hostd()

    # -- teardown -------------------------------------------------------------------------

    def destroy_domains(self) -> None:
        if self.libvirtd is None or self.libvirtd.poll() is not None:
            return
        try:
            import libvirt

            conn = libvirt.open(self.uri)
        except Exception:
            return
        try:
            for dom in conn.listAllDomains():
                with contextlib.suppress(Exception):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(Exception):
                    dom.undefineFlags(
                        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                    )
        finally:
            conn.close()

    def qemu_pids(self) -> list[int]:
        pids = []
        for pidfile in (self.base / "run" / "qemu").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pidfile.read_text().strip()))
        return pids

    def restart_libvirtd(self) -> None:
        """Stop libvirtd but leave its guests running, then start it again (same port,
        same state directories): libvirt reattaches to the running QEMU processes."""
        self.stop_libvirtd(keep_domains=True)
        self.start_libvirtd()

    def stop_libvirtd(self, timeout: float = 10.0, keep_domains: bool = False) -> None:
        if not keep_domains:
            self.destroy_domains()
        p, self.libvirtd = self.libvirtd, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if keep_domains:
            return
        logd = self.base / "run" / "virtlogd.pid"
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(logd.read_text().strip()), signal.SIGTERM)
        for pid in self.qemu_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"qemu" in cmdline:
                    os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.stop_hostd()
        self.stop_libvirtd()
        self.remove_created_bridges()

    def log_tail(self, lines: int = 12) -> str:
        """The last lines of this host's hostd and libvirtd logs, for a test that timed
        out to say what the host saw."""
        out = []
        for f in (
            self.base / "hostd.log",
            self.base / "log" / "libvirtd.log",
            self.base / "libvirtd.stderr",
        ):
            with contextlib.suppress(OSError):
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                if tail:
                    out.append(f"--- {self.name} {f.name}:\n" + "\n".join(tail))
        return "\n".join(out)

    def remove_created_bridges(self) -> list[str]:
        """The bridges this host's hostd created (it records them) are removed, so a
        test leaves nothing behind in the machine's network namespace."""
        return network.remove_created(self.data_dir) if self.data_dir.is_dir() else []


class Cluster:
    """N hosts on this machine. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        n: int = 2,
        base: str | os.PathLike | None = None,
        token: str | None = None,
        bridges: tuple[str, ...] = (),
        hostd_args: list[str] | None = None,
        stock: bool = False,
        enroll: Callable[[str, str, Path], None] | None = None,
    ) -> None:
        self._own_base = base is None
        self.base = Path(base or tempfile.mkdtemp(prefix="orrery-hosts-"))
        self.token = token or uuid.uuid4().hex
        self.bridges = tuple(bridges)
        self.hosts = [
            Host(
                i,
                self.base / f"host{i}",
                self.token,
                hostd_args=list(hostd_args or []),
                stock=stock,
                enroll=enroll,
            )
            for i in range(n)
        ]

    def start(self) -> Cluster:
        reason = libvirt_available()
        if reason:
            raise HarnessError(reason)
        try:
            # In parallel: a libvirtd takes ~1 s to answer, a hostd ~1.5 s (imports).
            with ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as pool:
                list(pool.map(Host.start_libvirtd, self.hosts))
                list(pool.map(Host.start_hostd, self.hosts))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for h in self.hosts:
            with contextlib.suppress(Exception):
                h.stop_hostd()
        for h in self.hosts:
            with contextlib.suppress(Exception):
                h.stop_libvirtd()
        for h in self.hosts:
            with contextlib.suppress(Exception):
                h.remove_created_bridges()
        for br in self.bridges:
            subprocess.run(["ip", "link", "del", br], capture_output=True, check=False)
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 12) -> str:
        return "\n".join(h.log_tail(lines) for h in self.hosts)

    def describe(self) -> list[dict]:
        return [
            {
                "name": h.name,
                "host_id": h.host_uuid,
                "hostd": f"127.0.0.1:{h.hostd_port}",
                "libvirt": h.uri,
                "data_dir": str(h.data_dir),
            }
            for h in self.hosts
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run N hosts (libvirtd + hostd) on this machine.")
    p.add_argument("--hosts", type=int, default=2)
    p.add_argument("--base", default=None, help="directory for the hosts' state")
    p.add_argument("--token", default=os.environ.get("ORRERY_HOSTD_TOKEN"))
    args = p.parse_args(argv)
    cluster = Cluster(args.hosts, base=args.base, token=args.token)
    cluster.start()
    print(json.dumps({"token": cluster.token, "hosts": cluster.describe()}), flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop:
            time.sleep(0.5)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
