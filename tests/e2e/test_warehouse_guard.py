"""The warehouse SQL endpoint as an attacker sees it: no file, extension or setting is
reachable, only read-only statements run, a query has a time and a row limit, only a
superuser may use it; the canned reports show a user only the objects it may see."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ovirtsdk4.types as types
import pytest

from tests.e2e.api_server import ADMIN_PASSWORD, connection, running_server

pytestmark = pytest.mark.e2e

PASSWD_MARK = b"root:x:0:0"  # the first line of /etc/passwd on this machine


def _get(srv: Any, path: str, user: str | None = "admin@internal", password: str = ADMIN_PASSWORD):
    url = srv.url.replace("/ovirt-engine/api", "") + path
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _sql(srv: Any, query: str, **kw: Any) -> tuple[int, bytes]:
    return _get(srv, "/orrery/warehouse/sql?query=" + urllib.parse.quote(query), **kw)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from history.readonly import QueryLimits

    with running_server(tmp_path_factory.mktemp("whguard"), warehouse=True) as srv:
        srv.api.warehouse.sql_limits = QueryLimits(seconds=2.0, rows=50)
        c = connection(srv)
        system = c.system_service()
        vms = system.vms_service()
        out: dict[str, Any] = {"srv": srv}
        for name in ("alice-vm", "other-vm"):
            out[name] = vms.add(
                types.Vm(
                    name=name,
                    cluster=types.Cluster(name="Default"),
                    template=types.Template(name="Blank"),
                )
            ).id
        users = system.users_service()
        for name in ("alice", "carol", "dave"):
            out[name] = users.add(
                types.User(
                    user_name=name, domain=types.Domain(name="internal"), password=f"pw-{name}"
                )
            ).id
        vms.vm_service(out["alice-vm"]).permissions_service().add(
            types.Permission(role=types.Role(name="UserRole"), user=types.User(id=out["alice"]))
        )
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).permissions_service().add(
            types.Permission(role=types.Role(name="ClusterAdmin"), user=types.User(id=out["carol"]))
        )
        c.close()
        deadline = time.monotonic() + 30  # the runner catches the warehouse up every 5 s
        while time.monotonic() < deadline:
            status, body = _sql(srv, "SELECT vm_name FROM v4_4_latest_configuration_vms")
            assert status == 200, body
            if len(json.loads(body)["rows"]) == 2:
                break
            time.sleep(0.5)
        yield out


def _fault(body: bytes) -> str:
    doc = json.loads(body)
    return f"{doc.get('reason', '')} {doc.get('detail', '')}"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT content FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd', header=false, sep='|')",
        "SELECT * FROM glob('/etc/pass*')",
        "SELECT * FROM read_blob('/etc/passwd')",
    ],
)
def test_no_file_of_the_manager_is_readable(site: dict[str, Any], query: str) -> None:
    status, body = _sql(site["srv"], query)
    assert status == 400, body
    assert PASSWD_MARK not in body
    assert "not allowed" in _fault(body).lower() or "disabled" in _fault(body).lower(), body


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("COPY (SELECT 1) TO '/tmp/orrery-wh-copy.csv'", "COPY"),
        ("ATTACH '/tmp/orrery-wh-attach.duckdb' AS x", "ATTACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("SELECT 1; SELECT 2", "one statement"),
        ("SELECT 1; DROP TABLE config_history", "one statement"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("INSERT INTO history_tracking VALUES ('x', 1)", "INSERT"),
        ("EXPLAIN ANALYZE DELETE FROM config_history", "EXPLAIN"),
        ("EXPORT DATABASE '/tmp/orrery-wh-export'", "EXPORT"),
        ("CHECKPOINT", "CALL"),
        ("UPDATE EXTENSIONS", "parse"),
    ],
)
def test_only_read_only_statements_run(site: dict[str, Any], query: str, why: str) -> None:
    srv = site["srv"]
    status, body = _sql(srv, query)
    assert status == 400, body
    assert why.lower() in _fault(body).lower(), body
    assert not Path("/tmp/orrery-wh-copy.csv").exists()
    assert not Path("/tmp/orrery-wh-attach.duckdb").exists()
    assert not Path("/tmp/orrery-wh-export").exists()


def test_a_select_that_writes_is_refused(site: dict[str, Any]) -> None:
    srv = site["srv"]
    count = "SELECT count(*) FROM config_history"
    status, body = _sql(srv, count)
    assert status == 200, body
    before = json.loads(body)["rows"][0][0]
    assert before > 0
    # DuckDB parses a data-modifying CTE as a SELECT statement
    status, body = _sql(srv, "WITH d AS (DELETE FROM config_history RETURNING 1) SELECT * FROM d")
    assert status == 400, body
    assert "read-only" in _fault(body).lower()
    status, body = _sql(srv, "SELECT nextval('rollup_history_id')")
    assert status == 400, body
    status, body = _sql(srv, count)
    assert json.loads(body)["rows"][0][0] >= before


def test_reads_still_work(site: dict[str, Any]) -> None:
    srv = site["srv"]
    for q in (
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "VALUES (1), (2)",
        "DESCRIBE config_history",
        "EXPLAIN SELECT * FROM config_history",
        "SELECT datacenter_name FROM v4_4_latest_configuration_datacenters;",
    ):
        status, body = _sql(srv, q)
        assert status == 200, (q, body)
        doc = json.loads(body)
        assert doc["rows"] and doc["truncated"] is False, (q, doc)


def test_row_limit_is_stated(site: dict[str, Any]) -> None:
    srv = site["srv"]
    limit = srv.api.warehouse.sql_limits.rows
    status, body = _sql(srv, f"SELECT * FROM range({limit + 5})")
    assert status == 200, body
    doc = json.loads(body)
    assert len(doc["rows"]) == limit and doc["row_limit"] == limit and doc["truncated"] is True
    assert doc["rows"][-1] == [limit - 1]
    status, body = _sql(srv, f"SELECT * FROM range({limit})")
    doc = json.loads(body)
    assert len(doc["rows"]) == limit and doc["truncated"] is False


def test_a_slow_query_is_interrupted(site: dict[str, Any]) -> None:
    srv = site["srv"]
    limits = srv.api.warehouse.sql_limits
    t0 = time.monotonic()
    status, body = _sql(
        srv, "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range <> b.range"
    )
    took = time.monotonic() - t0
    assert status == 400, body
    assert "time limit" in _fault(body).lower(), body
    assert limits.seconds <= took < limits.seconds + 15
    # the server and the warehouse go on answering
    status, body = _sql(srv, "SELECT 42")
    assert status == 200 and json.loads(body)["rows"] == [[42]]
    status, _ = _get(srv, "/ovirt-engine/api/datacenters")
    assert status == 200


def test_sql_is_for_superusers_only(site: dict[str, Any]) -> None:
    srv = site["srv"]
    q = "SELECT 1"
    assert _sql(srv, q, user=None)[0] == 401
    # a user with no permission cannot log in at all (as in oVirt)
    assert _sql(srv, q, user="dave@internal", password="pw-dave")[0] == 401
    status, body = _sql(srv, q, user="alice@internal", password="pw-alice")
    assert status == 403, body
    assert "superuser" in _fault(body).lower() or "not authorized" in _fault(body).lower()
    # an administrator, but not of the whole system
    status, body = _sql(srv, q, user="carol@internal", password="pw-carol")
    assert status == 403, body
    status, body = _sql(srv, q)
    assert status == 200 and json.loads(body)["rows"] == [[1]]


def _feed_samples(site: dict[str, Any]) -> None:
    from uuid import UUID

    from history.samples import VmSample

    wh = site["srv"].api.warehouse
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    samples = [
        VmSample(
            time=now - timedelta(minutes=m),
            vm_id=UUID(site[name]),
            cpu_usage_percent=cpu,
            memory_used=1 << 30,
            memory_total=2 << 30,
        )
        for m in range(1, 4)
        for name, cpu in (("alice-vm", 10.0), ("other-vm", 90.0))
    ]
    wh.ingest_samples(samples)


def test_reports_show_a_user_only_its_objects(site: dict[str, Any]) -> None:
    srv = site["srv"]
    _feed_samples(site)
    status, body = _get(srv, "/orrery/warehouse/reports/top-vms?hours=2")
    assert status == 200, body
    assert {r[1] for r in json.loads(body)["rows"]} == {"alice-vm", "other-vm"}
    alice = {"user": "alice@internal", "password": "pw-alice"}
    for report in ("top-vms", "vm-availability"):
        status, body = _get(srv, f"/orrery/warehouse/reports/{report}?hours=2", **alice)
        assert status == 200, body
        doc = json.loads(body)
        ids = {r[doc["columns"].index("vm_id")] for r in doc["rows"]}
        assert ids == {site["alice-vm"]}, doc
    for report in ("host-utilisation", "storage-growth"):
        status, body = _get(srv, f"/orrery/warehouse/reports/{report}?hours=2", **alice)
        assert status == 200, body
    status, body = _get(srv, "/orrery/warehouse/reports/top-vms?hours=2&format=png", **alice)
    assert status == 200 and body.startswith(b"\x89PNG")
    assert _get(srv, "/orrery/warehouse/reports/top-vms", user=None)[0] == 401
    dave = {"user": "dave@internal", "password": "pw-dave"}
    assert _get(srv, "/orrery/warehouse/reports/top-vms", **dave)[0] == 401


def test_slow_queries_do_not_pile_up(site: dict[str, Any]) -> None:
    import threading

    srv = site["srv"]
    slots = srv.api.warehouse.sql_concurrency
    slow = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range <> b.range"
    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.append(_sql(srv, slow)[0])) for _ in range(slots + 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == [400] * slots + [503], got
    status, body = _sql(srv, "SELECT 42")
    assert status == 200 and json.loads(body)["rows"] == [[42]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("top-vms?limit=-1", "limit"),
        ("top-vms?limit=many", "limit"),
        ("top-vms?hours=0", "hours"),
        ("top-vms?metric=disk", "metric"),
        ("top-vms?format=xml", "format"),
        ("host-utilisation?metric=memory", "metric"),
        ("vm-availability?from=yesterday", "from"),
    ],
)
def test_report_parameters_are_checked(site: dict[str, Any], query: str, field: str) -> None:
    status, body = _get(site["srv"], f"/orrery/warehouse/reports/{query}")
    assert status == 400, body
    assert f"'{field}'" in _fault(body), body
