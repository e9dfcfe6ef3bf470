"""Exactly-once under a crash: a projection process is SIGKILLed in the middle of a
batch (inside its transaction), restarted, and its view equals a fresh replay."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commands.cluster import AddCluster
from commands.datacenter import AddDataCenter, UpdateDataCenter
from commands.store import EventLog
from projections.db import ViewDB
from projections.replay import default_projections, rebuild
from projections.runner import ProjectionRunner, read_positions
from tests.unit.helpers import World

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, time
from commands.store import EventLog
from projections.db import ViewDB
from projections.feed import AuditFeed
from projections.replay import default_projections
from projections.runner import ProjectionRunner

loc = json.loads(sys.argv[1])
slow = AuditFeed.prepare
def prepare(self):
    write = slow(self)
    def slow_write(db):
        write(db)
        time.sleep(0.01)  # rows written, transaction still open: a kill lands here often
    return slow_write
AuditFeed.prepare = prepare
log = EventLog(loc["database_url"], loc["data_dir"])
runner = ProjectionRunner(log, ViewDB(loc["database_url"], loc["data_dir"]),
                          default_projections(), batch=97)
runner.on_commit.append(lambda p: print("pos", p, flush=True))
print("ready", runner.position, flush=True)
runner.catch_up()
print("done", runner.position, flush=True)
"""


def _make_log(loc: dict) -> EventLog:
    w = World()
    dcs = []
    for i in range(60):
        dcs.append(w.run(AddDataCenter(name=f"dc{i}", actor="admin@internal")))
        w.tick()
    for i, dc in enumerate(dcs[:20]):
        w.run(AddCluster(name=f"cl{i}", data_center_id=dc, actor="admin@internal"))
    for r in range(40):
        for dc in dcs:
            w.run(UpdateDataCenter(data_center_id=dc, description=f"r{r}", actor=f"u{r % 3}"))
        w.tick(11)
    log = EventLog(loc["database_url"], loc["data_dir"])
    for i in range(0, len(w.log), 500):
        log.append(w.log[i : i + 500])
    return log


def _start_child(loc: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    arg = json.dumps({"database_url": loc["database_url"], "data_dir": str(loc["data_dir"])})
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, arg],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_batch_then_resume_equals_fresh_replay(store_location) -> None:
    loc = store_location
    log = _make_log(loc)
    head = log.head()
    assert head > 2000
    rng = random.Random(7)
    kills = 0
    for _round in range(3):
        child = _start_child(loc)
        try:
            commits = 0
            target = rng.randint(2, 5)
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("pos"):
                    commits += 1
                    if commits >= target:
                        time.sleep(rng.uniform(0, 0.012))
                        child.send_signal(signal.SIGKILL)
                        kills += 1
                        break
                if line.startswith("done"):
                    break
        finally:
            child.wait(30)
            err = child.stderr.read() if child.stderr else ""
        assert child.returncode in (0, -signal.SIGKILL), err
    assert kills >= 1
    db = ViewDB(loc["database_url"], loc["data_dir"])
    positions = read_positions(db)
    assert 0 < min(positions.values()) < head  # really stopped part-way
    assert len(set(positions.values())) == 1  # all projections committed together
    # Resume in this process, then compare with a fresh replay into other tables.
    runner = ProjectionRunner(log, db, default_projections(), batch=500)
    runner.catch_up()
    assert runner.position == head
    resumed = runner.digest()
    runner.close()
    db.close()
    fresh = rebuild(log, loc["database_url"], loc["data_dir"], prefix="fresh_replay")
    assert resumed == fresh
    # No feed entry and no history row was written twice.
    with ViewDB(loc["database_url"], loc["data_dir"]) as v:
        n_hist = v.query("SELECT COUNT(*), COUNT(DISTINCT position) FROM {history}")[0]
        assert int(n_hist[0]) == int(n_hist[1]) == head
