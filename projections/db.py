"""Where the read side keeps its tables: the log's PostgreSQL database (own tables, same
schema) or, for the embedded default, the SQLite file ``data_dir/orrery-view.sqlite``.

SQL is written once with ``?`` placeholders and ``{t}``-style table names; ``ViewDB``
turns the placeholders into psycopg's ``%s`` on PostgreSQL. Values only ever travel as
parameters. Table names get a prefix (``orrery_view`` by default) so a rebuild can run
beside the live tables (``orrery_verify``) in the same database.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

VIEW_FILE = "orrery-view.sqlite"
DEFAULT_PREFIX = "orrery_view"


def split_schema(database_url: str) -> tuple[str, str]:
    """The connection URL without our ``schema`` query parameter, and the schema."""
    u = urlparse(database_url)
    q = parse_qs(u.query)
    schema = q.pop("schema", ["public"])[0]
    rest = urlencode({k: v[0] for k, v in q.items()})
    return urlunparse(u._replace(query=rest)), schema


class ViewDB:
    """One connection to the view database, used by one thread at a time.

    ``dialect`` is ``"pg"`` or ``"sqlite"``. ``name(x)`` is the quoted, prefixed and (on
    PostgreSQL) schema-qualified table name. ``transaction()`` commits or rolls back.
    """

    def __init__(
        self,
        database_url: str | None = None,
        data_dir: Path | str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        autocommit_reads: bool = False,
    ) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
            raise ValueError(f"bad table prefix {prefix!r}")
        self.prefix = prefix
        self.database_url = database_url
        self.data_dir = data_dir
        self._lock = threading.RLock()
        if database_url:
            import psycopg

            conninfo, self.schema = split_schema(database_url)
            self.dialect = "pg"
            self.conn: Any = psycopg.connect(conninfo, autocommit=True)
            # The view is derived data: rows and position commit atomically, so a
            # server crash can only lose a suffix of whole batches, which the runner
            # re-absorbs from the log. No need to wait for the WAL flush.
            self.conn.execute("SET synchronous_commit TO off")
            self._qual = f'"{self.schema}".'
        else:
            base = Path(data_dir or "./data")
            base.mkdir(parents=True, exist_ok=True)
            self.path = base / VIEW_FILE
            self.dialect = "sqlite"
            self.schema = ""
            self.conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._qual = ""
        self._in_tx = False
        self._pipeline: Any = None

    # -- naming --------------------------------------------------------------------
    def name(self, table: str) -> str:
        return f'{self._qual}"{self.prefix}_{table}"'

    def bare(self, table: str) -> str:
        return f"{self.prefix}_{table}"

    def sql(self, text: str) -> str:
        """Fills ``{objects}``-style table names and converts placeholders."""
        text = _TABLE.sub(lambda m: self.name(m.group(1)), text)
        if self.dialect == "pg":
            text = text.replace("?", "%s")
        return text

    # -- running -------------------------------------------------------------------
    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self.conn.execute(self.sql(text), params)

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self.conn.execute(self.sql(text), params)
            return list(cur.fetchall())

    def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._lock:
            if self.dialect == "pg":
                with self.conn.cursor() as cur:
                    cur.executemany(self.sql(text), rows)
            else:
                self.conn.executemany(self.sql(text), rows)

    @contextmanager
    def transaction(self) -> Iterator[ViewDB]:
        with self._lock:
            if self._in_tx:  # nested: join the outer transaction
                yield self
                return
            self._in_tx = True
            try:
                if self.dialect == "pg":
                    # Pipeline mode: the whole transaction travels in one round trip
                    # (each extra round trip is a GIL hand-off, i.e. latency, under load).
                    with self.conn.pipeline() as pipeline, self.conn.transaction():
                        self._pipeline = pipeline
                        try:
                            yield self
                        finally:
                            self._pipeline = None
                else:
                    self.conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield self
                    except BaseException:
                        self.conn.execute("ROLLBACK")
                        raise
                    self.conn.execute("COMMIT")
            finally:
                self._in_tx = False

    def sync(self) -> None:
        """Inside a transaction: wait for the statements sent so far (PostgreSQL
        pipeline), so their results (rowcount) can be read."""
        if self._pipeline is not None:
            self._pipeline.sync()

    def table_exists(self, table: str) -> bool:
        if self.dialect == "pg":
            rows = self.query(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                (self.schema, self.bare(table)),
            )
        else:
            rows = self.query(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name = ?", (self.bare(table),)
            )
        return bool(rows)

    def drop(self, tables: Sequence[str]) -> None:
        with self.transaction():
            for t in tables:
                self.execute(f"DROP TABLE IF EXISTS {self.name(t)}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def __enter__(self) -> ViewDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TABLE = re.compile(r"\{([a-z_]+)\}")


def json_field(db: ViewDB, column: str = "data") -> str:
    """SQL for the text of a top-level JSON field whose path is a parameter."""
    if db.dialect == "pg":
        return f"(({column})::jsonb ->> ?)"
    return f"json_extract({column}, ?)"


def json_path_param(db: ViewDB, field: str) -> str:
    return field if db.dialect == "pg" else f'$."{field}"'
