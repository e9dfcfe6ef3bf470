"""Run the host daemon (hostd, Orrery's VDSM) on this hypervisor."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """hostd's own options (``hostd.cli.add_arguments``: one list, also for ``python -m
    hostd``)."""
    from hostd.cli import add_arguments as hostd_arguments

    hostd_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hostd.cli import run as run_hostd

    return run_hostd(args)
