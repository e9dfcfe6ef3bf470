"""Run the Manager: the command bus and the oVirt-compatible REST API in one process.

Listens on 127.0.0.1:8443 by default over HTTPS, with a certificate signed by the
Manager's CA (made at the first start under DATA_DIR/pki; clients fetch it from
/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA), or with
--tls-cert and --tls-key; --http serves plain HTTP (tests, or behind a proxy that does
TLS). On first start it initializes the system (admin@internal, whose password comes
from $ORRERY_ADMIN_PASSWORD or is generated and printed once; the Default data center
and cluster; the Blank template).
"""

from __future__ import annotations

import argparse

from api.cli import add_store_arguments

CHECKPOINT_EVERY = (
    50_000  # commands.checkpoints.CHECKPOINT_EVERY (not imported: --help stays light)
)


def _events(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--checkpoint-every wants a number, got {text!r}"
        ) from None
    if n < 0:
        raise argparse.ArgumentTypeError("--checkpoint-every must be 0 or more")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (default 127.0.0.1:8443)")
    p.add_argument(
        "--tls-cert",
        default=None,
        help="PEM certificate to serve HTTPS with instead of one from the Manager's CA",
    )
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument(
        "--http",
        action="store_true",
        help="serve plain HTTP, not HTTPS (tests, or behind a proxy that does TLS)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    p.add_argument(
        "--local-hosts",
        type=int,
        default=0,
        metavar="N",
        help="start N hosts on this machine (own libvirtd + hostd each, needs root and KVM "
        "or QEMU) and register them in the Default cluster with a local posixfs data "
        "domain under DATA_DIR/storage; they stop with the Manager",
    )
    p.add_argument(
        "--as-of-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long an as_of read (a replay of the log) may take, including the wait "
        "for the same user's previous one, before it is answered with a 503 fault "
        "(default 5)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_events,
        default=CHECKPOINT_EVERY,
        metavar="N",
        help=f"write a full checkpoint of the write side every N events, deltas between "
        f"(default {CHECKPOINT_EVERY:,}; 0: none); a start loads the newest one",
    )
    p.add_argument(
        "--reads",
        choices=("engine", "projections"),
        default="engine",
        help="where GETs read: the write side's Engine in memory (default) or the read "
        "side's projected engine view",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import time

    from api.serving import initialize, serve, ssl_context
    from commands.bootstrap import open_bus, tune_gc

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO))
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"--listen wants HOST:PORT, got {args.listen!r}")
        return 2
    if args.as_of_timeout is not None and not args.as_of_timeout > 0:
        print(f"--as-of-timeout wants a positive number of seconds, got {args.as_of_timeout}")
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("--tls-cert and --tls-key go together")
        return 2
    if args.http and args.tls_cert:
        print("--http serves plain HTTP: it does not go with --tls-cert and --tls-key")
        return 2
    from api.reads import open_reads

    t0 = time.perf_counter()
    bus = open_bus(args.database_url, args.data_dir, checkpoint_every=args.checkpoint_every)
    logging.getLogger("orrery.serve").info(
        "write side at position %d in %.2f s: checkpoint at %d, then %d events of the log",
        bus.engine.position,
        time.perf_counter() - t0,
        bus.checkpoint_position,
        bus.replayed_at_start,
    )
    try:
        initialize(bus)
        reads = open_reads(bus, args.reads, args.data_dir)
        tune_gc()
        asyncio.run(
            serve(
                bus,
                host.strip("[]"),
                int(port),
                ssl=ssl_context(args.tls_cert, args.tls_key),
                http=args.http,
                reads=reads,
                data_dir=args.data_dir,
                local_hosts=args.local_hosts,
                as_of_timeout=args.as_of_timeout,
            )
        )
    except KeyboardInterrupt:
        pass
    finally:
        bus.stop()
    return 0
