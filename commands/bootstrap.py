"""The one place that wires the write side together: log + engine + bus (+ first-start data).

On PostgreSQL with an owner's URL (``ORRERY_DATABASE_OWNER_URL``), the owner sets the log
up first (schema, tables, the guard of ``commands/logguard.py``, the Manager's grants) and
the Manager then opens it as the role of its own URL, which may only read and append.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
from psycopg.sql import SQL, Identifier

import commands.all  # noqa: F401  (fills the handler registry)
from commands import logguard
from commands.bus import CommandBus
from commands.checkpoints import CHECKPOINT_EVERY, CheckpointWriter
from commands.snapshots import SnapshotWriter
from commands.store import EventLog, libpq_url, with_schema


def database_url_from_env(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("ORRERY_DATABASE_URL") or None


def owner_url_from_env(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("ORRERY_DATABASE_OWNER_URL") or None


def prepare_log(owner_url: str, database_url: str) -> None:
    """As the log's owner: the schema of ``database_url``, the log's tables and guard
    (idempotent), and the rights of ``database_url``'s role on them."""
    u = urlparse(database_url)
    schema = parse_qs(u.query).get("schema", ["public"])[0]
    manager = unquote(u.username or "")
    with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
        me = conn.execute("SELECT current_user").fetchone()
    EventLog(with_schema(owner_url, schema)).close()  # creates what is missing, installs
    if manager and me is not None and manager != me[0]:
        with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn:
            logguard.grant(conn, schema, manager)


def open_bus(
    database_url: str | None = None,
    data_dir: Path | str | None = None,
    *,
    owner_url: str | None = None,
    start: bool = True,
    progress: Callable[[int], None] | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    **bus_options: object,
) -> CommandBus:
    """Opens the log (PostgreSQL when a URL is given, else SQLite under data_dir),
    rebuilds the Engine from it (from its newest checkpoint plus the log after it), and
    starts the writer, the snapshot writer and the checkpoint writer (a full checkpoint
    every ``checkpoint_every`` events, deltas between; 0: none written). ``owner_url``
    (default ``$ORRERY_DATABASE_OWNER_URL``): see ``prepare_log``."""
    url = database_url_from_env(database_url)
    owner = owner_url_from_env(owner_url)
    if url and owner:
        prepare_log(owner, url)
    log = EventLog(url, data_dir)
    bus = CommandBus(log, **bus_options)  # type: ignore[arg-type]
    if progress is not None:
        bus.catch_up(progress=progress)
    if not start:
        return bus
    snapshots = SnapshotWriter(log, engine=bus.engine).start()
    bus.subscribe(snapshots.on_committed)
    bus.on_stop(snapshots.stop)
    bus.snapshot_writer = snapshots  # type: ignore[attr-defined]
    if checkpoint_every:
        # Registered after the snapshot writer: stopped (its final row written) first.
        bus.checkpoint_writer = CheckpointWriter(bus, every=checkpoint_every).start()  # type: ignore[attr-defined]
    return bus.start()


def tune_gc() -> None:
    """For a long-running Manager, once the log is loaded: what exists now (the Engine,
    imported modules) moves out of the collector's sight, and young collections run
    every 50,000 allocations instead of 700. Events and aggregates are not tracked at
    all (msgspec ``gc=False``); a command allocates ~40 short-lived objects, so with
    the default threshold a collection ran every ~17 commands."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
