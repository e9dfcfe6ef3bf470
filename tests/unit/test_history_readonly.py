"""history.readonly on a real DuckDB file: the lock-down holds for every connection of the
warehouse (the writer's too, which goes on writing), the allow-list takes DuckDB's own
parse, and a query is read-only, interrupted at its time limit and cut at its rows."""

from __future__ import annotations

import uuid
from datetime import datetime

import duckdb
import numpy as np
import pytest

from history.readonly import (
    QueryLimits,
    QueryTimeout,
    ReadOnlyError,
    check_read_only,
    lock_down,
    run_read_only,
)
from history.samples import VmSample
from history.warehouse import Warehouse

pytestmark = pytest.mark.unit


def test_lock_down_stops_python_scans_and_setting_changes() -> None:
    frame = {"a": np.array([1, 2, 3])}  # a Python variable DuckDB would scan by its name
    con = duckdb.connect()
    assert con.execute("SELECT sum(a) FROM frame").fetchall() == [(6,)]
    lock_down(con)
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT sum(a) FROM frame")
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    assert frame  # still there: it is the scan that is off


def test_the_writer_is_locked_down_and_still_writes(tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not the warehouse's")
    with Warehouse(tmp_path / "h.duckdb") as w:
        with pytest.raises(duckdb.PermissionException):
            w.con.execute(f"SELECT * FROM read_text('{outside}')")
        with pytest.raises(duckdb.Error, match="locked"):
            w.con.execute("SET autoload_known_extensions = true")
        vm = uuid.uuid4()
        n = w.ingest_samples(
            [VmSample(time=datetime(2026, 1, 1, 0, m), vm_id=vm) for m in range(3)]
        )
        assert n == 3
        assert w.query("SELECT count(*) FROM vm_samples_history")[1] == [(3,)]
        assert w.rollup(datetime(2026, 1, 1, 2))["hourly:vm"] == 1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select 1 ;",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1)",
        "FROM config_history",
        "TABLE config_history",
        "DESCRIBE config_history",
        "SHOW TABLES",
        "SUMMARIZE config_history",
        "EXPLAIN SELECT 1",
        "explain analyze SELECT 1",
    ],
)
def test_read_forms_pass(sql: str) -> None:
    assert check_read_only(sql) == sql.strip().rstrip(";").strip()


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("", "exactly one"),
        ("-- nothing", "exactly one"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("PRAGMA version", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("COPY config_history TO 'x.csv'", "COPY"),
        ("ATTACH 'x.duckdb'", "ATTACH"),
        ("DETACH x", "DETACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET threads = 1", "SET"),
        ("RESET threads", "SET"),
        ("USE memory", "SET"),
        ("CREATE TABLE t (a INT)", "CREATE"),
        ("CREATE MACRO m() AS 1", "CREATE"),
        ("INSERT INTO history_tracking VALUES ('x', 1)", "INSERT"),
        ("UPDATE history_tracking SET position = 0", "UPDATE"),
        ("DELETE FROM config_history", "DELETE"),
        ("DROP TABLE config_history", "DROP"),
        ("BEGIN", "TRANSACTION"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("EXPORT DATABASE 'x'", "EXPORT"),
        ("VACUUM", "VACUUM"),
        ("CHECKPOINT", "CALL"),
        ("PIVOT config_history ON kind", "MULTI"),
        ("EXPLAIN ANALYZE DELETE FROM config_history", "EXPLAIN"),
        ("EXPLAIN (FORMAT json) SELECT 1", "EXPLAIN"),
        ("/* c */ EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
        ("UPDATE EXTENSIONS", "parse"),
        ("SELEC 1", "parse"),
    ],
)
def test_everything_else_is_refused(sql: str, why: str) -> None:
    with pytest.raises(ReadOnlyError, match=why):
        check_read_only(sql)


def test_a_query_is_read_only_and_limited(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE t AS SELECT * FROM range(10); CREATE SEQUENCE s")
    lock_down(con)
    cur = con.cursor()
    limits = QueryLimits(seconds=0.5, rows=4)
    for sql in ("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", "SELECT nextval('s')"):
        with pytest.raises(ReadOnlyError, match="tried to write"):
            run_read_only(cur, sql, None, limits)
    res = run_read_only(cur, "SELECT * FROM t ORDER BY 1", None, limits)
    assert res.rows == [(0,), (1,), (2,), (3,)] and res.truncated
    res = run_read_only(cur, "SELECT * FROM t WHERE range < 4", None, limits)
    assert len(res.rows) == 4 and not res.truncated
    with pytest.raises(QueryTimeout, match=r"0\.5 s"):
        run_read_only(
            cur, "SELECT count(*) FROM range(100000000) a, range(100000000) b", [], limits
        )
    assert run_read_only(cur, "SELECT count(*) FROM t", None, limits).rows == [(10,)]
