"""Samples, the interval sampler, hourly/daily rollups, retention, views, reports."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from domain.statuses import VmStatus, vm_history_bucket
from history import reports
from history.estimate import estimate
from history.readonly import ReadOnlyError
from history.samples import GiB, HostSample, NicSample, Sampler, StorageDomainSample, VmSample
from history.schema import VM_BUCKET_CODES
from history.warehouse import Retention, Warehouse, open_read_only

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1)
STATUSES = [VmStatus.UP, VmStatus.UP, VmStatus.UP, VmStatus.DOWN, VmStatus.PAUSED, VmStatus.UNKNOWN]


def make_samples(seed: int, vms: int = 4, minutes: int = 60 * 50) -> list[VmSample]:
    rnd = random.Random(seed)
    ids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(vms)]
    out = []
    status = {v: VmStatus.UP for v in ids}
    for m in range(minutes):
        for v in ids:
            if rnd.random() < 0.02:
                status[v] = rnd.choice(STATUSES)
            out.append(
                VmSample(
                    time=T0 + timedelta(minutes=m),
                    vm_id=v,
                    status=status[v],
                    cpu_usage_percent=round(rnd.uniform(0, 100), 2),
                    memory_used=rnd.randrange(1, 8) * GiB,
                    memory_total=8 * GiB,
                    seconds_in_status=rnd.choice([60, 60, 30]),
                )
            )
    return out


def direct(samples: list[VmSample], unit: str) -> dict:
    """(vm, period, bucket) -> (count, avg cpu, max cpu, minutes, avg mem) over raw samples."""
    acc: dict = defaultdict(list)
    for s in samples:
        t = s.time.replace(minute=0) if unit == "hour" else s.time.replace(hour=0, minute=0)
        code = VM_BUCKET_CODES[vm_history_bucket(VmStatus(s.status))]
        acc[(s.vm_id, t, code)].append(s)
    return {
        k: (
            len(v),
            sum(x.cpu_usage_percent for x in v) / len(v),
            max(x.cpu_usage_percent for x in v),
            sum(x.seconds_in_status for x in v) / 60,
            sum(100 * x.memory_used / x.memory_total for x in v) / len(v),
        )
        for k, v in acc.items()
    }


def table(w: Warehouse, name: str) -> dict:
    _, rows = w.query(
        f"SELECT vm_id, history_datetime, vm_status, sample_count, cpu_usage_percent, "
        f"max_cpu_usage, minutes_in_status, memory_usage_percent FROM {name}"
    )
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def assert_close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, w in want.items():
        g = got[k]
        assert g[0] == w[0]
        for a, b in zip(g[1:], w[1:], strict=True):
            assert abs(a - b) < 1e-3 * max(1.0, abs(b)), (k, g, w)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_direct_computation(tmp_path, seed):
    samples = make_samples(seed)
    rnd = random.Random(seed)
    end = T0 + timedelta(hours=50)
    with Warehouse(tmp_path / "h.duckdb", retention=Retention(None, None, None)) as w:
        i = 0
        now = T0
        while i < len(samples):  # random batch sizes, rollups at random moments in between
            n = rnd.randrange(1, 600)
            w.ingest_samples(samples[i : i + n])
            i += n
            now = max(now, samples[min(i, len(samples)) - 1].time)
            if rnd.random() < 0.2:
                w.rollup(now)
        w.rollup(end + timedelta(days=2))
        # only closed periods: the hourly table covers all 50 hours, the daily 3 days
        assert_close(table(w, "vm_hourly_history"), direct(samples, "hour"))
        assert_close(table(w, "vm_daily_history"), direct(samples, "day"))
        # rolling up again adds nothing
        assert set(w.rollup(end + timedelta(days=3)).values()) <= {0}


def test_rollup_waits_for_the_hour_to_close(tmp_path):
    samples = make_samples(5, vms=2, minutes=90)
    with Warehouse(tmp_path / "h.duckdb") as w:
        w.ingest_samples(samples)
        w.rollup(T0 + timedelta(minutes=61))  # within the grace period: nothing closed
        assert w.query("SELECT count(*) FROM vm_hourly_history")[1][0][0] == 0
        w.rollup(T0 + timedelta(minutes=95))
        _, rows = w.query("SELECT DISTINCT history_datetime FROM vm_hourly_history")
        assert rows == [(T0,)]
        assert w.query("SELECT count(*) FROM vm_daily_history")[1][0][0] == 0


def test_resent_samples_are_ignored(tmp_path):
    samples = make_samples(6, vms=3, minutes=10)
    with Warehouse(tmp_path / "h.duckdb") as w:
        assert w.ingest_samples(samples) == 30
        assert w.ingest_samples(samples[-3:]) == 0
        assert w.query("SELECT count(*) FROM vm_samples_history")[1][0][0] == 30


def test_retention_keeps_what_is_not_rolled_up(tmp_path):
    samples = make_samples(7, vms=2, minutes=60 * 30)
    ret = Retention(samples=timedelta(hours=24), hourly=timedelta(days=1), daily=timedelta(days=2))
    with Warehouse(tmp_path / "h.duckdb", retention=ret) as w:
        w.ingest_samples(samples)
        now = T0 + timedelta(hours=30)
        # nothing rolled up yet: retention must not delete samples
        assert w.apply_retention(now) == {}
        w.rollup(now)
        deleted = w.apply_retention(now)
        assert deleted["vm_samples_history"] == 2 * 6 * 60
        first = w.query("SELECT min(history_datetime) FROM vm_samples_history")[1][0][0]
        assert first == T0 + timedelta(hours=6)
        # later: hourly older than a day goes (the day it belongs to is rolled up)
        later = T0 + timedelta(days=2, hours=6)
        w.rollup(later)
        w.apply_retention(later)
        # every hour (the last was 29 h after T0) is older than a day and its day is rolled
        assert w.query("SELECT count(*) FROM vm_hourly_history")[1][0][0] == 0
        assert w.query("SELECT count(*) FROM vm_daily_history")[1][0][0] > 0
        much_later = T0 + timedelta(days=10)
        w.apply_retention(much_later)
        assert w.query("SELECT count(*) FROM vm_daily_history")[1][0][0] == 0


def test_sampler_emits_one_row_per_object_per_interval():
    s = Sampler(interval=60)
    vm, host = uuid.uuid4(), uuid.uuid4()
    t = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)

    def feed(ks: range) -> None:  # telemetry every 15 s
        for k in ks:
            now = t + timedelta(seconds=15 * k)
            st = VmStatus.UP if k < 6 else VmStatus.PAUSED  # paused from 00:01:35
            s.observe(VmSample(time=now, vm_id=vm, status=st, cpu_usage_percent=k))
            s.observe(HostSample(time=now, host_id=host, cpu_usage_percent=k))

    feed(range(8))  # up to 00:01:50
    got = s.collect(datetime(2026, 1, 1, 0, 2, 1, tzinfo=UTC))
    assert sorted((type(x).__name__, x.time) for x in got) == [
        ("HostSample", datetime(2026, 1, 1, 0, 2)),
        ("VmSample", datetime(2026, 1, 1, 0, 2)),
    ]
    v = next(x for x in got if isinstance(x, VmSample))
    assert v.status == VmStatus.PAUSED and v.cpu_usage_percent == 7
    assert v.seconds_in_status == 25  # paused since 00:01:35
    assert s.collect(datetime(2026, 1, 1, 0, 2, 30)) == []  # same interval: nothing more
    feed(range(8, 12))  # up to 00:02:50
    v = next(x for x in s.collect(datetime(2026, 1, 1, 0, 3, 1)) if isinstance(x, VmSample))
    assert (v.cpu_usage_percent, v.seconds_in_status) == (11, 60)
    # an object not heard of for 5 intervals stops being sampled
    assert s.collect(datetime(2026, 1, 1, 0, 10)) == []
    assert s.latest == {}


def test_views_have_ovirt_columns(tmp_path):
    with Warehouse(tmp_path / "h.duckdb") as w:
        names = {
            r[0] for r in w.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")[1]
        }
        for family in ("vms", "hosts", "storage_domains"):
            for period in ("samples", "hourly", "daily"):
                assert f"v4_4_statistics_{family}_resources_usage_{period}" in names
        for family in ("vms", "hosts", "storage_domains", "clusters", "datacenters"):
            assert f"v4_4_configuration_history_{family}" in names
            assert f"v4_4_latest_configuration_{family}" in names
        cols, _ = w.query("SELECT * FROM v4_4_statistics_vms_resources_usage_hourly")
        for c in (
            "history_datetime",
            "vm_id",
            "vm_status",
            "minutes_in_status",
            "cpu_usage_percent",
            "max_cpu_usage",
            "memory_usage_percent",
            "max_memory_usage",
            "vm_configuration_version",
        ):
            assert c in cols
        cols, _ = w.query("SELECT * FROM v4_4_configuration_history_vms")
        for c in (
            "history_id",
            "vm_id",
            "vm_name",
            "cluster_id",
            "memory_size_mb",
            "operating_system",
            "create_date",
            "update_date",
            "delete_date",
        ):
            assert c in cols
        for view in names:
            w.query(f"SELECT * FROM {view}")  # every view compiles


def test_writes_are_refused(tmp_path):
    path = tmp_path / "h.duckdb"
    with Warehouse(path) as w:
        with pytest.raises(ReadOnlyError, match="DELETE"):
            w.query("DELETE FROM vm_samples_history")
        with pytest.raises(ReadOnlyError):
            w.query("SELECT 1; DROP TABLE config_history")
    con = open_read_only(path)
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("INSERT INTO history_settings VALUES ('a', 'b')")
    con.close()


def test_reports_and_charts(tmp_path):
    a, b = uuid.uuid4(), uuid.uuid4()
    sd, host = uuid.uuid4(), uuid.uuid4()
    samples: list = []
    for m in range(180):
        t = T0 + timedelta(minutes=m)
        samples.append(
            VmSample(time=t, vm_id=a, cpu_usage_percent=80, memory_used=GiB, memory_total=4 * GiB)
        )
        samples.append(
            VmSample(
                time=t,
                vm_id=b,
                cpu_usage_percent=10,
                memory_used=3 * GiB,
                memory_total=4 * GiB,
                status=VmStatus.UP if m < 135 else VmStatus.DOWN,
            )
        )
        samples.append(
            HostSample(
                time=t, host_id=host, cpu_usage_percent=45, memory_used=GiB, memory_total=2 * GiB
            )
        )
        samples.append(
            StorageDomainSample(
                time=t, storage_domain_id=sd, used=(10 + m // 60) * GiB, available=90 * GiB
            )
        )
        samples.append(NicSample(time=t, nic_id=uuid.uuid4() if m == 0 else a))
    with Warehouse(tmp_path / "h.duckdb") as w:
        w.ingest_samples(samples)
        w.rollup(T0 + timedelta(hours=2, minutes=5))  # 2 hours rolled, the 3rd raw
        start, end = T0, T0 + timedelta(hours=3)
        top = reports.top_vms(w, start, end, metric="cpu")
        assert [r[0] for r in top.rows] == [a, b] and top.rows[0][2] == 80
        mem = reports.top_vms(w, start, end, metric="memory", limit=1)
        assert [r[0] for r in mem.rows] == [b]
        avail = {r[0]: r[-1] for r in reports.vm_availability(w, start, end).rows}
        assert avail == {a: 100.0, b: 75.0}
        hu = reports.host_utilisation(w, start, end)
        assert [(r[0], r[3], r[5]) for r in hu.rows] == [
            (T0 + timedelta(hours=h), 45.0, 50.0) for h in range(3)
        ]
        growth = reports.storage_growth(w, start, end)
        assert [r[-1] for r in growth.rows] == [0.0]  # one day: no growth yet
        assert growth.rows[0][3] == 11.0
        png = reports.save_chart(hu, tmp_path / "hosts.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        reports.save_chart(top, tmp_path / "top.png")
    con = open_read_only(tmp_path / "h.duckdb")  # reports work on a read-only connection
    assert reports.top_vms(con, start, end).rows[0][0] == a
    con.close()


def test_estimate_scales_with_the_installation():
    bpr = {
        "empty_file_bytes": 1000,
        "vm_samples_history": 50.0,
        "vm_hourly_history": 90.0,
        "vm_daily_history": 90.0,
        "host_samples_history": 60.0,
        "host_hourly_history": 100.0,
        "host_daily_history": 100.0,
    }
    one = estimate(1000, 10, 30, bytes_per_row=bpr)
    two = estimate(2000, 20, 30, bytes_per_row=bpr)
    assert one["rows"]["vm_samples_history"] == 1000 * 1440  # 24 h retention
    assert one["rows"]["vm_hourly_history"] == int(1000 * 24 * 30 * 1.1)
    assert two["total_bytes"] - 1000 == 2 * (one["total_bytes"] - 1000)
    longer = estimate(1000, 10, 365, bytes_per_row=bpr)
    assert longer["rows"]["vm_hourly_history"] == int(1000 * 24 * 60 * 1.1)  # 60 days kept


def test_runner_feeds_config_samples_and_rollups(tmp_path):
    from domain.datacenter import DataCenterAdded
    from history.runner import HistoryRunner

    dc = uuid.uuid4()
    events = [
        (
            1,
            DataCenterAdded(
                originator_id=dc,
                originator_version=1,
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                name="dc",
            ),
        )
    ]
    vm = uuid.uuid4()
    with Warehouse(tmp_path / "h.duckdb") as w:
        r = HistoryRunner(w, lambda after, limit: [e for e in events if e[0] > after][:limit])
        start = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
        for k in range(4 * 70):  # 70 minutes of telemetry every 15 s, ticking every 15 s
            now = start + timedelta(seconds=15 * k)
            r.observe(VmSample(time=now, vm_id=vm, cpu_usage_percent=k % 50))
            r.tick(now)
        assert w.position("config") == 1
        n = w.query("SELECT count(*), count(DISTINCT history_datetime) FROM vm_samples_history")
        assert n[1] == [(71, 71)]  # one row per minute, 00:00 to 01:10
        assert w.query("SELECT sample_count FROM vm_hourly_history")[1] == [(60,)]


def test_queries_run_beside_ingest(tmp_path):
    import threading

    samples = make_samples(9, vms=50, minutes=600)
    errors: list[Exception] = []
    with Warehouse(tmp_path / "h.duckdb") as w:

        def reader() -> None:
            try:
                for _ in range(30):
                    n = w.query("SELECT count(*) FROM vm_samples_history")[1][0][0]
                    assert n % 50 == 0  # a reader never sees half a batch
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        t = threading.Thread(target=reader)
        t.start()
        for i in range(0, len(samples), 50 * 20):
            w.ingest_samples(samples[i : i + 50 * 20])
        t.join()
    assert errors == []
