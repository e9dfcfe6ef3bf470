"""The warehouse fed from the real log (SQLite and PostgreSQL): rebuild gives the same
configuration history, and a crash between batch and commit loses and repeats nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from api.cli import main as cli_main
from commands.store import EventLog
from domain.engine import Engine
from history.samples import GiB, VmSample
from history.warehouse import Warehouse, path_in
from tests.unit.test_history_config import Gen

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def fill_log(log: EventLog, seed: int = 11, steps: int = 300) -> int:
    g = Gen(seed)
    rnd = random.Random(seed)
    for _ in range(steps):
        g.step(rnd.randrange(50), rnd.randrange(50), rnd.randrange(50), rnd.choice([0, 1, 5]))
    for i in range(0, len(g.events), 7):
        log.append(g.events[i : i + 7])
    return len(g.events)


def config_rows(path: Path) -> list[tuple]:
    with Warehouse(path) as w:
        return w.query("SELECT * FROM config_history ORDER BY history_id")[1]


def clean_build(log: EventLog, path: Path) -> list[tuple]:
    with Warehouse(path) as w:
        w.catch_up(log.read, batch=1000)
    return config_rows(path)


def test_feed_from_the_log_and_rebuild(store_location, tmp_path):
    log = EventLog(**store_location)
    n = fill_log(log)
    path = tmp_path / "a.duckdb"
    with Warehouse(path) as w:
        pos = 0
        for upto in (10, 50, 51, n * 2):  # the Manager catches up as the log grows
            pos = w.catch_up(log.read, batch=13, upto=upto)
        assert pos == log.head()
        kinds = dict(w.query("SELECT kind, count(*) FROM config_history GROUP BY kind")[1])
        assert {"data_center", "cluster", "vm", "vm_interface"} <= set(kinds)
        engine = Engine()
        engine.apply_all(e for _, e in log.iter_all())
        _, latest = w.query("SELECT vm_id, vm_name FROM v4_4_latest_configuration_vms")
        assert sorted(latest) == sorted(
            (o.id, o.name) for o in engine.objects.values() if o.KIND == "vm"
        )
    # rebuild: a fresh file replayed from the log has exactly the same rows
    assert clean_build(log, tmp_path / "b.duckdb") == config_rows(path)


def test_raise_inside_the_transaction_loses_nothing(store_location, tmp_path, monkeypatch):
    log = EventLog(**store_location)
    fill_log(log, seed=12)
    want = clean_build(log, tmp_path / "clean.duckdb")
    path = tmp_path / "crash.duckdb"
    calls = {"n": 0}
    real = Warehouse._advance

    def flaky(self, name, new):
        calls["n"] += 1
        if calls["n"] in (3, 7):
            raise RuntimeError("crash before commit")
        return real(self, name, new)

    monkeypatch.setattr(Warehouse, "_advance", flaky)
    with Warehouse(path) as w:
        for _ in range(10):
            try:
                w.catch_up(log.read, batch=20)
                break
            except RuntimeError:
                continue
    monkeypatch.setattr(Warehouse, "_advance", real)
    assert calls["n"] > 7
    assert config_rows(path) == want


CHILD = """
import sys, time
from commands.store import EventLog
from domain.engine import Engine
from history.warehouse import Warehouse
url = sys.argv[1] or None
log = EventLog(url, sys.argv[2])
def slow(after, limit):
    time.sleep(0.01)
    return log.read(after, limit)
with Warehouse(sys.argv[3]) as w:
    w.catch_up(slow, batch=3)
print("finished", flush=True)
"""


def test_killed_mid_ingest_resumes_exactly(store_location, tmp_path):
    log = EventLog(**store_location)
    fill_log(log, seed=13)
    want = clean_build(log, tmp_path / "clean.duckdb")
    path = tmp_path / "killed.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    url = store_location["database_url"] or ""
    for delay in (0.8, 1.5):  # kill it twice, at different points
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(store_location["data_dir"]), str(path)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
    with Warehouse(path) as w:
        partial = w.position("config")
        assert 0 <= partial < log.head()
        w.catch_up(log.read)
    assert config_rows(path) == want


SAMPLE_CHILD = """
import sys, uuid
from datetime import datetime, timedelta
from history.samples import VmSample
from history.warehouse import Warehouse
vms = [uuid.UUID(int=i + 1) for i in range(500)]
with Warehouse(sys.argv[1]) as w:
    for m in range(10_000):
        t = datetime(2026, 1, 1) + timedelta(minutes=m)
        w.ingest_samples([VmSample(time=t, vm_id=v, cpu_usage_percent=m % 100) for v in vms])
        print(m, flush=True)
"""


def test_killed_sample_ingest_loses_and_duplicates_nothing(tmp_path):
    path = tmp_path / "s.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", SAMPLE_CHILD, str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for _ in range(20):  # let it write a few minutes' batches
        child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait()
    vms = [uuid.UUID(int=i + 1) for i in range(500)]
    with Warehouse(path) as w:
        done = w.query("SELECT count(*) FROM vm_samples_history")[1][0][0]
        assert done % 500 == 0 and done >= 20 * 500  # whole batches only
        for m in range(40):  # the feeder re-sends everything from the start
            t = datetime(2026, 1, 1) + timedelta(minutes=m)
            w.ingest_samples(
                [
                    VmSample(time=t, vm_id=v, cpu_usage_percent=m % 100, memory_total=GiB)
                    for v in vms
                ]
            )
        _, rows = w.query(
            "SELECT count(*), count(DISTINCT (vm_id, history_datetime)), "
            "count(DISTINCT history_id) FROM vm_samples_history"
        )
        assert rows == [(40 * 500, 40 * 500, 40 * 500)]


def test_cli(store_location, tmp_path, capsys):
    log = EventLog(**store_location)
    fill_log(log, seed=14, steps=80)
    data_dir = str(store_location["data_dir"])
    store = ["--data-dir", data_dir]
    if store_location["database_url"]:
        store += ["--database-url", store_location["database_url"]]
    assert cli_main(["history", *store, "rebuild", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["position"] == log.head() and out["config_rows"] > 0
    with Warehouse(path_in(data_dir)) as w:
        w.ingest_samples(
            [
                VmSample(
                    time=datetime(2026, 1, 1) + timedelta(minutes=m),
                    vm_id=uuid.UUID(int=5),
                    cpu_usage_percent=50,
                )
                for m in range(5)
            ]
        )
    q = "SELECT count(*) AS n FROM v4_4_configuration_history_datacenters"
    assert cli_main(["history", *store, "sql", q, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] > 0
    assert cli_main(["history", *store, "sql", "DELETE FROM config_history"]) == 1
    assert "read-only" in capsys.readouterr().err
    pq = tmp_path / "s.parquet"
    q = "SELECT * FROM v4_4_statistics_vms_resources_usage_samples"
    assert cli_main(["history", *store, "sql", q, "--format", "parquet", "--out", str(pq)]) == 0
    assert pq.read_bytes()[:4] == b"PAR1"
    csv_out = tmp_path / "top.csv"
    png = tmp_path / "top.png"
    args = ["report", "top-vms", "--from", "2026-01-01T00:00", "--to", "2026-01-02T00:00"]
    assert (
        cli_main(
            [
                "history",
                *store,
                *args,
                "--format",
                "csv",
                "--out",
                str(csv_out),
                "--chart",
                str(png),
            ]
        )
        == 0
    )
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("vm_id,vm_name,avg_cpu_percent") and len(lines) == 2
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_against_postgres(pg_schema_url):
    import argparse

    from bench import history as bench_history

    p = argparse.ArgumentParser()
    p.add_argument("--database-url", default=None)
    bench_history.add_arguments(p)
    args = p.parse_args(
        [
            "--vms",
            "40",
            "--days",
            "0.2",
            "--repeat",
            "1",
            "--database-url",
            pg_schema_url.split("?", 1)[0],
        ]
    )
    out = bench_history.run(args)
    assert out["baseline_equals_ours"] is True and out["baseline_query_ms"] > 0


def test_cli_sql_takes_the_apis_lock_down(tmp_path, capsys):
    """`orrery history sql` reads no file of the machine, runs one read-only statement
    only, and its parquet export writes the --out file and no other."""
    data_dir = tmp_path / "data"
    with Warehouse(path_in(data_dir)) as w:
        w.ingest_samples([VmSample(time=datetime(2026, 1, 1), vm_id=uuid.UUID(int=5))])
    store = ["--data-dir", str(data_dir)]

    def sql(q: str, *extra: str) -> tuple[int, str, str]:
        rc = cli_main(["history", *store, "sql", q, *extra])
        got = capsys.readouterr()
        return rc, got.out, got.err

    rc, out, err = sql("SELECT content FROM read_text('/etc/passwd')")
    assert rc == 1 and "root:x:0:0" not in out + err and "disabled" in err
    rc, _, err = sql("WITH d AS (DELETE FROM vm_samples_history RETURNING 1) SELECT * FROM d")
    assert rc == 1 and "read-only" in err
    rc, _, err = sql("SELECT 1; SELECT 2")
    assert rc == 1 and "one statement" in err
    rc, _, err = sql("SET enable_external_access = true")
    assert rc == 1 and "SET" in err
    rc, out, _ = sql("SELECT count(*) AS n FROM vm_samples_history", "--format", "json")
    assert rc == 0 and json.loads(out) == [{"n": 1}]
    other = tmp_path / "other.csv"
    pq = tmp_path / "s.parquet"
    q = f"SELECT * FROM vm_samples_history) TO '{other}' (FORMAT CSV); SELECT (1"
    rc, _, err = sql(q, "--format", "parquet", "--out", str(pq))
    assert rc == 1 and not other.exists() and not pq.exists()
    rc, _, err = sql("SELECT * FROM vm_samples_history", "--format", "parquet", "--out", str(pq))
    assert rc == 0 and pq.read_bytes()[:4] == b"PAR1"
