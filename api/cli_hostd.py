"""Run the host daemon (hostd, Orrery's VDSM) on this hypervisor."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="127.0.0.1:54321", help="ADDR:PORT (default %(default)s)")
    p.add_argument("--libvirt", default="qemu:///system", help="libvirt URI (default %(default)s)")
    p.add_argument(
        "--data-dir", default="/var/lib/orrery-hostd", help="hooks, token file, NFS mounts"
    )
    p.add_argument("--token", default=None, help="enrollment secret (default $ORRERY_HOSTD_TOKEN)")
    p.add_argument("--host-id", default=None, help="host UUID (default: libvirt's host UUID)")
    p.add_argument("--stats-interval", type=float, default=15.0, help="seconds between samples")
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--migration-port-min", type=int, default=49152)
    p.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    from hostd.cli import run as run_hostd

    return run_hostd(args)
