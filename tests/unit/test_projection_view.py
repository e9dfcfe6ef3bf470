"""The read side on an embedded (SQLite) log: engine view, history, time travel, resume,
and the property that incremental == replay == as-of, over random command sequences."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.cluster import AddCluster, RemoveCluster, UpdateCluster
from commands.datacenter import AddDataCenter, RemoveDataCenter, UpdateDataCenter
from commands.store import EventLog
from commands.system import InitializeSystem
from domain.base import DomainError
from projections import timetravel
from projections.db import ViewDB
from projections.engine_view import EngineView
from projections.read import ReadSide
from projections.replay import default_projections, rebuild
from projections.runner import ProjectionRunner
from tests.unit.helpers import World

pytestmark = pytest.mark.unit


def _log_of(world: World, data_dir: Path) -> EventLog:
    log = EventLog(None, data_dir)
    if world.log:
        log.append(world.log)
    return log


def _view_objects(db: ViewDB) -> dict[str, dict]:
    return {r[0]: msgspec.json.decode(r[1]) for r in db.query("SELECT id, data FROM {objects}")}


def _plain(data: object) -> object:
    """JSON-shaped (tuples become lists), as the view stores objects."""
    return msgspec.json.decode(msgspec.json.encode(data))


def _world() -> tuple[World, dict[str, UUID]]:
    w = World()
    w.run(InitializeSystem())
    dc = w.run(AddDataCenter(name="dc1", actor="admin@internal"))
    w.tick()
    cl = w.run(AddCluster(name="c1", data_center_id=dc, actor="admin@internal"))
    w.tick()
    w.run(UpdateDataCenter(data_center_id=dc, description="first", actor="bob"))
    w.tick(3600)
    w.run(UpdateDataCenter(data_center_id=dc, description="second", actor="bob"))
    gone = w.run(AddDataCenter(name="gone", actor="admin@internal"))
    w.tick()
    w.run(RemoveDataCenter(data_center_id=gone, actor="carol"))
    return w, {"dc": dc, "cluster": cl, "gone": gone}


def test_view_equals_engine_and_survives_restart(tmp_path: Path) -> None:
    w, ids = _world()
    log = _log_of(w, tmp_path)
    read = ReadSide(log, None, tmp_path, batch=3)
    read.runner.catch_up()
    try:
        assert read.position == log.head()
        assert _view_objects(read.db()) == _plain(w.engine.snapshot())
        dc = read.get("data_center", ids["dc"])
        assert dc is not None and dc["description"] == "second"
        assert read.get("cluster", ids["dc"]) is None  # wrong kind
        assert read.get(None, "not-an-id") is None
        assert read.get("data_center", ids["gone"]) is None
        tomb = read.get_deleted(ids["gone"])
        assert tomb is not None and tomb["name"] == "gone" and tomb["kind"] == "data_center"
        # The cluster's parent ids are columns the lists filter on.
        rows = read.db().query(
            "SELECT data_center_id FROM {objects} WHERE id = ?", (str(ids["cluster"]),)
        )
        assert rows == [(str(ids["dc"]),)]
    finally:
        read.close()
    # A new runner resumes from the stored position and the restored engine.
    w.run(UpdateDataCenter(data_center_id=ids["dc"], name="renamed", actor="bob"))
    log.append(w.log[-1:])
    read2 = ReadSide(log, None, tmp_path)
    try:
        assert read2.runner.engine.digest() != w.engine.digest()
        assert read2.runner.catch_up() == 1
        assert read2.runner.engine.digest() == w.engine.digest()
        assert read2.get("data_center", ids["dc"])["name"] == "renamed"
        assert _view_objects(read2.db()) == _plain(w.engine.snapshot())
    finally:
        read2.close()


def test_history_keeps_every_action_with_diffs_even_after_deletion(tmp_path: Path) -> None:
    w, ids = _world()
    read = ReadSide(_log_of(w, tmp_path), None, tmp_path)
    read.runner.catch_up()
    try:
        h = read.history(ids["dc"])
        assert [x["action"] for x in h] == ["created", "changed", "changed"]
        assert h[1]["diff"] == {"description": ["", "first"]}
        assert h[2]["diff"] == {"description": ["first", "second"]}
        assert h[2]["user_name"] == "bob"
        assert h[1]["version"] == 2
        gone = read.history(ids["gone"])
        assert [x["action"] for x in gone] == ["created", "deleted"]
        assert gone[-1]["user_name"] == "carol"
        assert gone[-1]["diff"]["name"] == ["gone", None]
        assert read.history("nonsense") == []
    finally:
        read.close()


def test_time_travel_by_position_and_time(tmp_path: Path) -> None:
    w, ids = _world()
    log = _log_of(w, tmp_path)
    read = ReadSide(log, None, tmp_path)
    read.runner.catch_up()
    try:
        h = read.history(ids["dc"])
        first_change = h[1]["position"]
        obj = read.object_as_of(ids["dc"], first_change)
        assert obj is not None and obj["description"] == "first"
        assert read.object_as_of(ids["dc"], first_change - 1)["description"] == ""
        # By time: between the two updates (an hour apart) the first one holds.
        t1 = timetravel.parse_when(h[1]["time"]) + timedelta(minutes=30)
        assert read.object_as_of(ids["dc"], when=t1)["description"] == "first"
        snap = read.state_as_of(when=t1)
        assert snap["objects"][str(ids["dc"])]["description"] == "first"
        assert str(ids["gone"]) not in snap["objects"]
        assert snap["position"] == timetravel.position_at(log, t1)
        # A deleted object is gone at the end but visible before its deletion.
        assert read.object_as_of(ids["gone"]) is None
        before_delete = read.history(ids["gone"])[-1]["position"] - 1
        assert read.object_as_of(ids["gone"], before_delete)["name"] == "gone"
        # The whole engine at the head equals the live engine.
        assert read.state_as_of()["digest"] == w.engine.digest()
    finally:
        read.close()


# -- the property: incremental == full replay == as-of at the final position -----------
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add_dc", "upd_dc", "rm_dc", "add_cl", "upd_cl", "rm_cl"]),
        st.integers(0, 5),
        st.integers(0, 5),
    ),
    max_size=25,
)


def _apply(w: World, ops: list[tuple[str, int, int]]) -> None:
    for op, a, b in ops:
        dcs = sorted(o.id for o in w.engine.objects.values() if type(o).KIND == "data_center")
        cls = sorted(o.id for o in w.engine.objects.values() if type(o).KIND == "cluster")
        try:
            if op == "add_dc":
                w.run(AddDataCenter(name=f"dc{a}", description=f"d{b}", actor=f"u{b}"))
            elif op == "upd_dc" and dcs:
                w.run(UpdateDataCenter(data_center_id=dcs[a % len(dcs)], description=f"x{b}"))
            elif op == "rm_dc" and dcs:
                w.run(RemoveDataCenter(data_center_id=dcs[a % len(dcs)]))
            elif op == "add_cl" and dcs:
                w.run(AddCluster(name=f"cl{b}", data_center_id=dcs[a % len(dcs)]))
            elif op == "upd_cl" and cls:
                w.run(UpdateCluster(cluster_id=cls[a % len(cls)], description=f"y{b}"))
            elif op == "rm_cl" and cls:
                w.run(RemoveCluster(cluster_id=cls[a % len(cls)]))
        except DomainError:
            pass
        w.tick(b * 7)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_OPS, second=_OPS, batch=st.integers(1, 9))
def test_incremental_equals_replay_equals_as_of(first, second, batch) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        w = World()
        w.run(InitializeSystem())
        _apply(w, first)
        log = _log_of(w, d)
        db = ViewDB(None, d)
        runner = ProjectionRunner(log, db, default_projections(), batch=batch)
        runner.catch_up()
        n = len(w.log)
        _apply(w, second)
        if len(w.log) > n:
            log.append(w.log[n:])
        runner.catch_up()  # incremental, in small batches, across two appends
        incremental = runner.digest()
        assert _view_objects(db) == _plain(w.engine.snapshot())
        runner.close()
        db.close()
        replayed = rebuild(log, None, d, prefix="fresh", batch=10_000)
        assert replayed == incremental
        as_of = timetravel.snapshot_at(log, log.head())
        assert as_of["digest"] == w.engine.digest()
        as_of_objects = {
            k: {f: x for f, x in v.items() if f != "kind"} for k, v in as_of["objects"].items()
        }
        with ViewDB(None, d) as db2:
            assert _plain(as_of_objects) == _view_objects(db2)


def test_engine_view_restores_engine_equal_to_replay(tmp_path: Path) -> None:
    w, _ = _world()
    log = _log_of(w, tmp_path)
    db = ViewDB(None, tmp_path)
    runner = ProjectionRunner(log, db, [EngineView()])
    runner.catch_up()
    restored = EngineView()
    restored.position = runner.position
    engine = restored.restore_engine(db)
    assert engine is not None and engine.digest() == w.engine.digest()
    # Tombstones come back too, so a deleted id keeps its version.
    for oid, obj in w.replayed().objects.items():
        assert engine.version_of(oid) == obj.version
    runner.close()
    db.close()


def test_typed_reads_return_aggregates(tmp_path: Path) -> None:
    from domain.cluster import Cluster
    from domain.datacenter import DataCenter

    w, ids = _world()
    read = ReadSide(_log_of(w, tmp_path), None, tmp_path)
    read.runner.catch_up()
    try:
        dc = read.get_aggregate("DataCenter", ids["dc"])
        assert dc == w.engine.get(DataCenter, ids["dc"])
        assert read.get_aggregate("cluster", ids["dc"]) is None
        cls = read.list_aggregates("Cluster", "datacenter=dc1")
        assert cls == [w.engine.get(Cluster, ids["cluster"])]
        assert read.list("Cluster", "name=c1")[0]["id"] == str(ids["cluster"])
    finally:
        read.close()


def test_history_diff_masks_credentials_and_compares_plain_data() -> None:
    """``history.diff`` copies an object's data for masking only when it has a
    credential field; the diff is the same either way."""
    import uuid

    from domain.base import REDACTED, redacted
    from domain.user import User
    from projections.history import diff

    uid = uuid.uuid4()
    a = User(id=uid, version=1, user_name="ann", password_hash="h1")
    b = msgspec.structs.replace(a, version=2, password_hash="h2", email="a@x")
    assert diff(a, b) == {"email": ["", "a@x"]}  # a new hash: both masked, no difference
    assert diff(None, a)["password_hash"] == [None, REDACTED]
    c = msgspec.structs.replace(a, password_hash=None)
    assert diff(a, c) == {"password_hash": [REDACTED, None]}
    # The same as masking every object's data, as it did before.
    plain_a, plain_b = (redacted(msgspec.to_builtins(o)) for o in (a, b))
    keys = sorted((set(plain_a) | set(plain_b)) - {"version", "id"})
    assert diff(a, b) == {
        k: [plain_a.get(k), plain_b.get(k)] for k in keys if plain_a.get(k) != plain_b.get(k)
    }
