"""The history benchmark runs end to end at a small size (no PostgreSQL)."""

from __future__ import annotations

import argparse

import pytest

from bench import history as bench_history

pytestmark = pytest.mark.unit


def test_bench_small():
    p = argparse.ArgumentParser()
    p.add_argument("--database-url", default=None)
    bench_history.add_arguments(p)
    out = bench_history.run(
        p.parse_args(["--vms", "30", "--days", "0.25", "--no-baseline", "--repeat", "1"])
    )
    assert out["sample_rows"] == 30 * 360
    assert out["ingest_samples_per_s"] > 0 and out["query_ms"] > 0
    assert out["result_rows"] == 6 * 4  # 6 hours x 4 clusters
    assert out["ours_hourly_equals_raw"] is True
