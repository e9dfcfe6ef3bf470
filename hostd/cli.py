"""hostd's command line: ``python -m hostd`` / ``orrery hostd``. Parses the options into a
``Config`` (the enrollment token from --token, $ORRERY_HOSTD_TOKEN or the data
directory's token file, made on first start; the TLS directory the Manager enrolled the
host with, --tls-dir or <data-dir>/tls, unless --plain), sets up logging and runs ``Hostd`` until
SIGTERM/SIGINT.

May import ``hostd.daemon``, ``hostd.core`` and ``hostd.protocol``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

from hostd import protocol as P
from hostd import tls
from hostd.core import Config
from hostd.daemon import Hostd

log = logging.getLogger("hostd")

DESCRIPTION = (
    "hostd: the asyncio server. Authenticates the Manager, runs its requests against libvirt,\n"
    "and streams facts (VM status from libvirt lifecycle events, statistics, heartbeats,\n"
    "migration progress) back. Keeps no state of its own: after a restart it re-reads libvirt.\n"
)


class TokenError(ValueError):
    """The enrollment secret cannot be read safely (its file is missing or too open)."""


def load_token(explicit: str | None, data_dir: Path, token_file: str | Path | None = None) -> str:
    """The enrollment secret: --token-file, else --token (which every local user can read
    in the process list: a warning says so), else $ORRERY_HOSTD_TOKEN, else
    <data-dir>/token (created, mode 0600). A secret file another user could read is
    refused, as oVirt's installer refuses loose key files."""
    if token_file:
        return _read_secret(Path(token_file))
    if explicit:
        log.warning(
            "the enrollment secret was given with --token: any local user can read it in "
            "the process list; use --token-file or $ORRERY_HOSTD_TOKEN"
        )
        return explicit
    token = os.environ.get("ORRERY_HOSTD_TOKEN")
    if token:
        return token
    f = data_dir / "token"
    if f.exists():
        return _read_secret(f)
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.warning("no token given: generated the enrollment secret in %s", f)
    return token


def _read_secret(f: Path) -> str:
    try:
        mode = f.stat().st_mode
        text = f.read_text().strip()
    except OSError as e:
        raise TokenError(f"cannot read the enrollment secret from {f}: {e.strerror}") from None
    if mode & 0o077:
        raise TokenError(
            f"{f} is readable by other users (mode {mode & 0o777:04o}): chmod 600 it first"
        )
    if not text:
        raise TokenError(f"{f} holds no enrollment secret")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default=f"127.0.0.1:{P.DEFAULT_PORT}", help="ADDR:PORT")
    p.add_argument("--libvirt", default="qemu:///system", help="libvirt URI")
    p.add_argument("--data-dir", default="/var/lib/orrery-hostd", help="hooks, token, mounts")
    p.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help="file holding the enrollment secret (mode 0600); or $ORRERY_HOSTD_TOKEN",
    )
    p.add_argument(
        "--token",
        default=None,
        help="the enrollment secret itself (visible in the process list: prefer --token-file)",
    )
    p.add_argument(
        "--tls-dir",
        default=None,
        metavar="DIR",
        help="host.key (mode 0600), host.crt and ca.crt from the Manager's enrollment "
        "(default: <data-dir>/tls)",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="serve plain TCP without TLS (tests only: the link is then unauthenticated "
        "but for the token)",
    )
    p.add_argument("--host-id", default=None, help="host UUID (default: libvirt's host UUID)")
    p.add_argument("--stats-interval", type=float, default=15.0)
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--migration-port-min", type=int, default=49152)
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--public-libvirt-uri",
        default=None,
        help="libvirt URI other hosts migrate to (default: --libvirt when qemu+tcp://, "
        "else qemu+tcp://<listen address>/system)",
    )


def public_libvirt_uri(explicit: str | None, libvirt_uri: str, listen_host: str) -> str:
    if explicit:
        return explicit
    if libvirt_uri.startswith("qemu+tcp://"):
        return libvirt_uri
    host = listen_host or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = socket.getfqdn()
    return f"qemu+tcp://{host}/system"


def tls_dir_of(args: argparse.Namespace, data_dir: Path) -> str:
    """The TLS directory hostd serves with ('' with --plain); refused when it cannot be
    used (missing, or its key readable by others)."""
    if getattr(args, "plain", False):
        log.warning("serving plain TCP (--plain): the host link is not encrypted")
        return ""
    d = Path(getattr(args, "tls_dir", None) or data_dir / "tls")
    tls.server_context(d)  # raises TlsError naming the file at fault
    return str(d)


def config_from_args(args: argparse.Namespace) -> Config:
    host, _, port = args.listen.rpartition(":")
    data_dir = Path(args.data_dir)
    return Config(
        listen_host=host or "127.0.0.1",
        listen_port=int(port),
        libvirt_uri=args.libvirt,
        public_libvirt_uri=public_libvirt_uri(
            getattr(args, "public_libvirt_uri", None), args.libvirt, host or "127.0.0.1"
        ),
        data_dir=str(data_dir),
        token=load_token(args.token, data_dir, getattr(args, "token_file", None)),
        tls_dir=tls_dir_of(args, data_dir),
        host_id=args.host_id,
        stats_interval=args.stats_interval,
        heartbeat_interval=args.heartbeat_interval,
        migration_port_min=args.migration_port_min,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = config_from_args(args)
    except (TokenError, tls.TlsError) as e:
        print(f"hostd: {e}", file=sys.stderr)
        return 2
    asyncio.run(Hostd(cfg).serve_forever())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hostd", description=DESCRIPTION)
    add_arguments(p)
    return run(p.parse_args(argv))
