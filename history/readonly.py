"""What SQL from outside may do to the warehouse: the DuckDB lock-down, the statement
allow-list, and queries run read-only under a time and a row limit.

- ``lock_down(con)``: once the warehouse file is open, the instance reads and writes no
  other file, loads and installs no extension, scans no Python variable, and its settings
  can no longer be changed (``lock_configuration``). It applies to every connection and
  cursor of that DuckDB instance, the writer's too (which needs none of these).
- ``check_read_only(sql)``: exactly one statement, a SELECT in DuckDB's parse (which
  covers WITH, VALUES, FROM-first, TABLE, DESCRIBE, SHOW, SUMMARIZE) or ``EXPLAIN
  [ANALYZE]`` of one; returns its text. Everything else is a ``ReadOnlyError``.
- ``run_read_only(cursor, sql, params, limits)``: checks the statement, runs it inside a
  ``READ ONLY`` transaction (DuckDB parses a data-modifying CTE as a SELECT; the
  transaction refuses its write), interrupts it (``interrupt()`` from a timer) once
  ``limits.seconds`` have passed, and keeps at most ``limits.rows`` rows.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

# The instance settings lock_down sets, in order; lock_configuration comes last.
LOCKDOWN: tuple[tuple[str, Any], ...] = (
    ("enable_external_access", False),
    ("autoinstall_known_extensions", False),
    ("autoload_known_extensions", False),
    ("python_enable_replacements", False),
    ("lock_configuration", True),
)
_READ_TYPES = frozenset({duckdb.StatementType.SELECT})
_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?:ANALYZE\s+)?", re.IGNORECASE)


class ReadOnlyError(Exception):
    """A statement that would change the warehouse, or reach outside it, was refused."""


class QueryTimeout(Exception):
    """A query ran past its time limit and was interrupted."""


class QueryBusy(Exception):
    """As many queries from outside as allowed at once are running already."""


@dataclass(frozen=True)
class QueryLimits:
    """How long one query may run and how many rows it may return."""

    seconds: float = 10.0
    rows: int = 10_000


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool  # more rows than limits.rows were there


def lock_down(con: duckdb.DuckDBPyConnection, allowed_paths: Sequence[str] = ()) -> None:
    """Closes the DuckDB instance behind ``con`` to everything but the files it has open
    (and ``allowed_paths``, e.g. a file the local CLI is asked to write)."""
    if allowed_paths:
        con.execute("SET allowed_paths = ?", [list(allowed_paths)])
    for name, value in LOCKDOWN:
        con.execute(f"SET {name} = {str(value).lower()}")


def _one_statement(sql: str) -> tuple[duckdb.StatementType, str]:
    """(type, text) of the only statement in ``sql``, as DuckDB's parser sees it."""
    try:
        stmts = duckdb.extract_statements(sql)
        if len(stmts) != 1:
            raise ReadOnlyError(f"give exactly one statement (found {len(stmts)})")
        return stmts[0].type, stmts[0].query.strip().rstrip(";").strip()
    except ReadOnlyError:
        raise
    except Exception as e:  # a parse error, or a statement type the client cannot name
        raise ReadOnlyError(f"cannot parse the query: {str(e)[:300]}") from None


def check_read_only(sql: str) -> str:
    """The text of the one read-only statement in ``sql``; else raises ReadOnlyError."""
    kind, text = _one_statement(sql)
    if kind == duckdb.StatementType.EXPLAIN:
        head = _EXPLAIN.match(text)
        try:
            inner = _one_statement(text[head.end() :])[0] if head else None
        except ReadOnlyError:
            inner = None
        if inner not in _READ_TYPES:
            raise ReadOnlyError("EXPLAIN is allowed only as EXPLAIN [ANALYZE] SELECT ...")
        return text
    if kind not in _READ_TYPES:
        raise ReadOnlyError(
            f"the history warehouse is read-only here: {kind.name} statements are "
            "refused (use SELECT)"
        )
    return text


def run_read_only(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | None = None,
    limits: QueryLimits | None = None,
) -> QueryResult:
    """Runs one checked statement on ``cur`` (a cursor of its own, closed by the caller)
    in a READ ONLY transaction that is always rolled back."""
    text = check_read_only(sql)
    timer = None
    if limits is not None:
        timer = threading.Timer(limits.seconds, cur.interrupt)
        timer.daemon = True
    cur.execute("BEGIN TRANSACTION READ ONLY")
    try:
        if timer is not None:
            timer.start()
        try:
            res = cur.execute(text, list(params or []))
            cols = [d[0] for d in res.description or []]
            if limits is None:
                return QueryResult(cols, res.fetchall(), False)
            rows = res.fetchmany(limits.rows + 1)
        except duckdb.InterruptException:
            assert limits is not None
            raise QueryTimeout(
                f"the query ran past the time limit of {limits.seconds:g} s and was stopped"
            ) from None
        except duckdb.TransactionException as e:
            if "read-only" in str(e):
                raise ReadOnlyError(
                    "the history warehouse is read-only here: the query tried to write"
                ) from None
            raise
        return QueryResult(cols, rows[: limits.rows], len(rows) > limits.rows)
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()  # an interrupt already on its way lands before the rollback
        with contextlib.suppress(duckdb.Error):  # closing the cursor rolls back too
            cur.execute("ROLLBACK")
