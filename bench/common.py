"""What every benchmark shares: the database, a private schema, memory and latency figures."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _dev_postgres(*args: str) -> str:
    out = subprocess.run(
        [str(ROOT / "deploy" / "dev-postgres.sh"), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def database_url(explicit: str | None = None) -> str:
    """The given URL, else $ORRERY_DATABASE_URL, else the private dev server (started)."""
    return explicit or os.environ.get("ORRERY_DATABASE_URL") or _dev_postgres()


def owner_url(url: str) -> str:
    """Who creates the benchmarks' schemas and logs: $ORRERY_DATABASE_OWNER_URL, else the
    dev server's owner when ``url`` is the dev server's Manager, else ``url`` itself."""
    from commands.store import libpq_url

    given = os.environ.get("ORRERY_DATABASE_OWNER_URL")
    if given:
        return given
    if libpq_url(url) == _dev_postgres():
        return _dev_postgres("--owner")
    return url


@contextmanager
def fresh_schema(url: str, prefix: str = "bench") -> Iterator[str]:
    """A URL (``url``'s role) whose tables live in a new schema that the owner set up as
    ``orrery serve`` does at start; the schema is dropped afterwards."""
    import psycopg

    from commands.bootstrap import prepare_log
    from commands.store import libpq_url, with_schema

    owner = owner_url(url)
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    prepare_log(owner, with_schema(url, schema))
    try:
        yield with_schema(url, schema)
    finally:
        with psycopg.connect(libpq_url(owner), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0  # pragma: no cover


class LatencyHistogram:
    """Latencies in log-spaced buckets (1 % wide): constant memory however long the run.
    Samples are bucketed a few thousand at a time with numpy, so timing a command
    takes little from the client being timed."""

    _PER_DECADE = 230  # ln(10) / ln(1.01)
    _CHUNK = 4096

    def __init__(self) -> None:
        self.counts = np.zeros(self._PER_DECADE * 8, dtype=np.int64)  # 1 us .. 100 s
        self.n = 0
        self.max_s = 0.0
        self._fresh: list[float] = []

    def add(self, seconds: float) -> None:
        fresh = self._fresh
        fresh.append(seconds)
        if len(fresh) >= self._CHUNK:
            self.flush()

    def flush(self) -> None:
        """Buckets the samples not yet bucketed (a finished client calls it)."""
        if not self._fresh:
            return
        us = np.asarray(self._fresh) * 1e6
        self._fresh.clear()
        # ln(1.01) ~ 1/100.5; below 1 us everything goes to the first bucket
        idx = (np.log(np.maximum(us, 1.0)) * 100.5).astype(np.int64)
        np.add.at(self.counts, np.minimum(idx, len(self.counts) - 1), 1)
        self.n += len(us)
        self.max_s = max(self.max_s, float(us.max()) / 1e6)

    def merge(self, other: LatencyHistogram) -> None:
        self.flush()
        other.flush()
        self.counts += other.counts
        self.n += other.n
        self.max_s = max(self.max_s, other.max_s)

    def percentile_ms(self, p: float) -> float:
        self.flush()
        if self.n == 0:
            return 0.0
        rank = math.ceil(self.n * p / 100)
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return round(math.exp((i + 0.5) / 100.5) / 1000, 3)
        return round(self.max_s * 1000, 3)  # pragma: no cover


def datacenter_event(
    oid: uuid.UUID,
    version: int,
    now: Any,
    meta: Any,
    *,
    name: str,
    description: str,
    created_at: str = "",
) -> Any:
    """The benches' generated load: a data center's creation (version 1) or an update of
    its description (any later version)."""
    from domain.datacenter import DataCenterAdded, DataCenterUpdated

    if version == 1:
        return DataCenterAdded(
            originator_id=oid,
            originator_version=1,
            timestamp=now,
            meta=meta,
            name=name,
            created_at=created_at,
        )
    return DataCenterUpdated(
        originator_id=oid,
        originator_version=version,
        timestamp=now,
        meta=meta,
        description=description,
    )


def format_table(name: str, result: dict[str, Any]) -> str:
    width = max((len(k) for k in result), default=0)
    lines = [f"bench {name}", "-" * (width + 24)]
    for key, value in result.items():
        if isinstance(value, float):
            shown = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            shown = f"{value:,}"
        else:
            shown = str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)
