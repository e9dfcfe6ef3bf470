"""Host network interface statistics: samples, rates from counters, rollups, retention."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from api.telemetry import TelemetrySink
from history.samples import HostInterfaceSample, host_interface_id
from history.warehouse import Retention, Warehouse

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1)
H1 = uuid.UUID(int=1)
H2 = uuid.UUID(int=2)
NAMES = ("eth0", "eth1")


def make_samples(seed: int, minutes: int = 60 * 30) -> list[HostInterfaceSample]:
    """Counters that grow by a random amount each minute; rates are the deltas / 60 s."""
    rnd = random.Random(seed)
    counters = {(h, n): [0, 0] for h in (H1, H2) for n in NAMES}
    out = []
    for m in range(minutes):
        for (h, n), c in counters.items():
            drx, dtx = rnd.randrange(0, 10**8), rnd.randrange(0, 10**7)
            c[0] += drx
            c[1] += dtx
            out.append(
                HostInterfaceSample(
                    time=T0 + timedelta(minutes=m),
                    host_interface_id=host_interface_id(h, n),
                    host_id=h,
                    name=n,
                    receive_rate=drx // 60,
                    transmit_rate=dtx // 60,
                    received_bytes=c[0],
                    transmitted_bytes=c[1],
                    received_dropped=m,
                    transmitted_dropped=2 * m,
                )
            )
    return out


def test_interface_ids_are_stable_per_host_and_name():
    assert host_interface_id(H1, "eth0") == host_interface_id(H1, "eth0")
    assert host_interface_id(H1, "eth0") != host_interface_id(H2, "eth0")
    assert host_interface_id(H1, "eth0") != host_interface_id(H1, "eth1")


def test_samples_view_has_the_rates(tmp_path):
    samples = make_samples(1, minutes=5)
    with Warehouse(tmp_path / "h.duckdb") as w:
        assert w.ingest_samples(samples) == len(samples)
        assert w.ingest_samples(samples[-4:]) == 0  # re-sent: skipped
        cols, rows = w.query(
            "SELECT * FROM v4_4_statistics_hosts_interfaces_resources_usage_samples "
            "ORDER BY history_id"
        )
        for c in (
            "history_id",
            "history_datetime",
            "host_interface_id",
            "receive_rate_percent",
            "transmit_rate_percent",
            "received_total_byte",
            "transmitted_total_byte",
            "received_dropped_total_packets",
            "transmitted_dropped_total_packets",
            "host_interface_configuration_version",
            "receive_rate_bytes_per_second",
            "transmit_rate_bytes_per_second",
            "host_id",
            "host_interface_name",
        ):
            assert c in cols
        got = {
            (r[cols.index("host_interface_id")], r[1]): dict(zip(cols, r, strict=True))
            for r in rows
        }
        assert len(got) == len(samples)
        for s in samples:
            r = got[(s.host_interface_id, s.time)]
            assert r["receive_rate_bytes_per_second"] == s.receive_rate
            assert r["transmit_rate_bytes_per_second"] == s.transmit_rate
            assert r["received_total_byte"] == s.received_bytes
            assert r["host_id"] == s.host_id and r["host_interface_name"] == s.name
        for period in ("hourly", "daily"):
            cols, _ = w.query(
                f"SELECT * FROM v4_4_statistics_hosts_interfaces_resources_usage_{period}"
            )
            assert {"max_receive_rate_percent", "max_receive_rate_bytes_per_second"} <= set(cols)


def test_hourly_rollup_equals_a_direct_computation(tmp_path):
    samples = make_samples(2, minutes=60 * 5)
    want: dict = defaultdict(list)
    for s in samples:
        want[(s.host_interface_id, s.time.replace(minute=0))].append(s)
    with Warehouse(tmp_path / "h.duckdb", retention=Retention(None, None, None)) as w:
        for i in range(0, len(samples), 97):
            w.ingest_samples(samples[i : i + 97])
        w.rollup(T0 + timedelta(hours=6))
        _, rows = w.query(
            "SELECT host_interface_id, history_datetime, sample_count, "
            "receive_rate_bytes_per_second, max_receive_rate_bytes_per_second, "
            "transmit_rate_bytes_per_second, max_transmit_rate_bytes_per_second, "
            "received_total_byte, transmitted_dropped_total_packets, host_interface_name "
            "FROM v4_4_statistics_hosts_interfaces_resources_usage_hourly"
        )
    got = {(r[0], r[1]): r[2:] for r in rows}
    assert set(got) == set(want)
    for k, ss in want.items():
        n, rx, mrx, tx, mtx, total, drop, name = got[k]
        last = max(ss, key=lambda s: s.time)
        assert n == len(ss)
        assert rx == pytest.approx(sum(s.receive_rate for s in ss) / len(ss))
        assert mrx == max(s.receive_rate for s in ss)
        assert tx == pytest.approx(sum(s.transmit_rate for s in ss) / len(ss))
        assert mtx == max(s.transmit_rate for s in ss)
        assert (total, drop, name) == (
            last.received_bytes,
            last.transmitted_dropped,
            last.name,
        )


def test_retention_removes_old_rows(tmp_path):
    samples = make_samples(3, minutes=60 * 30)
    ret = Retention(samples=timedelta(hours=24), hourly=timedelta(days=1), daily=timedelta(days=2))
    with Warehouse(tmp_path / "h.duckdb", retention=ret) as w:
        w.ingest_samples(samples)
        now = T0 + timedelta(hours=30)
        assert w.apply_retention(now) == {}  # nothing rolled up yet
        w.rollup(now)
        deleted = w.apply_retention(now)
        assert deleted["host_interface_samples_history"] == 4 * 6 * 60
        first = w.query("SELECT min(history_datetime) FROM host_interface_samples_history")
        assert first[1][0][0] == T0 + timedelta(hours=6)
        later = T0 + timedelta(days=2, hours=6)
        w.rollup(later)
        w.apply_retention(later)
        assert w.query("SELECT count(*) FROM host_interface_hourly_history")[1][0][0] == 0
        assert w.query("SELECT count(*) FROM host_interface_daily_history")[1][0][0] > 0
        w.apply_retention(T0 + timedelta(days=10))
        assert w.query("SELECT count(*) FROM host_interface_daily_history")[1][0][0] == 0


class _Runner:
    def __init__(self) -> None:
        self.seen: list = []

    def observe(self, s) -> None:
        self.seen.append(s)


def _fact(ts: float, rx: int, tx: int) -> SimpleNamespace:
    nic = {"rx_bytes": rx, "tx_bytes": tx, "rx_dropped": 3, "tx_errors": 1}
    host = SimpleNamespace(
        cpu_user=1.0,
        cpu_sys=1.0,
        cpu_load=0.1,
        mem_total_mib=1024,
        mem_free_mib=512,
        swap_total_mib=0,
        swap_free_mib=0,
        vms_running=0,
        nics={"lo": {"rx_bytes": rx}, "eth0": nic},
    )
    return SimpleNamespace(ts=ts, interval_s=10.0, host=host, vms=[])


def test_telemetry_observes_host_interfaces_with_rates():
    runner = _Runner()
    engine = SimpleNamespace(find=lambda *_: None, all=lambda *_: [])
    sink = TelemetrySink(SimpleNamespace(engine=engine), runner)
    t = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    sink(H1, _fact(t, 1000, 500))
    sink(H1, _fact(t + 10, 21000, 2500))
    nics = [s for s in runner.seen if isinstance(s, HostInterfaceSample)]
    assert [s.name for s in nics] == ["eth0", "eth0"]  # no "lo"
    first, second = nics
    assert first.host_interface_id == second.host_interface_id == host_interface_id(H1, "eth0")
    assert (first.receive_rate, first.transmit_rate) == (0, 0)  # no previous counters
    assert (second.receive_rate, second.transmit_rate) == (2000, 200)
    assert second.received_bytes == 21000 and second.received_dropped == 3
    assert second.transmitted_errors == 1
    # the warehouse's interface id is the one the API gives GET /hosts/{id}/nics
    api_nics = sink.nics_of(SimpleNamespace(id=H1, networks=()))
    assert [n.id for n in api_nics] == [host_interface_id(H1, "eth0")]
