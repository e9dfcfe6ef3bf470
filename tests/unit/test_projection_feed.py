"""The audit feed: oVirt codes and wording, related names, the generic fallback,
folding of repeats within 30 s, the ``from`` cursor and filters, resume after restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from commands.cluster import AddCluster
from commands.datacenter import AddDataCenter, RemoveDataCenter, UpdateDataCenter
from commands.host import AddHost
from commands.store import EventLog
from commands.system import InitializeSystem
from commands.vm import AddVm
from domain.base import Ctx, Event, Meta, Tx
from domain.datacenter import DataCenter
from domain.host import HostStatusChanged
from domain.statuses import HostStatus
from domain.vm import VmScheduled, VmStartRequested
from projections.db import ViewDB
from projections.feed import AuditFeed, describe, topic_phrase
from projections.runner import Change, ProjectionRunner
from tests.unit.helpers import World

pytestmark = pytest.mark.unit


class DataCenterPolishedForTest(Event, frozen=True, kw_only=True):
    """An event type no feed rule knows: the generic fallback must describe it."""

    description: str = ""


def emit(w: World, cls: type[Event], oid: UUID, actor: str | None = "admin@internal", **kw):
    tx = Tx(
        w.engine, Ctx(now=w.now, meta=Meta(actor=actor, command_id=kw.pop("cid", None))), w.next_id
    )
    tx.emit(cls, oid, **kw)
    for e in tx.events:
        w.engine.apply(e)
    w.log.extend(tx.events)


def feed_of(w: World, d: Path, batch: int = 1000) -> tuple[ViewDB, ProjectionRunner]:
    log = EventLog(None, d)
    log.append(w.log)
    db = ViewDB(None, d)
    runner = ProjectionRunner(log, db, [AuditFeed()], batch=batch)
    runner.catch_up()
    return db, runner


def events(db: ViewDB, **kw: Any) -> list[dict]:
    from projections.feed import list_events

    return list_events(db, max=None, **kw)


@pytest.fixture
def world() -> tuple[World, dict[str, UUID]]:
    w = World()
    w.run(InitializeSystem())
    n = len(w.log)
    dc = w.run(AddDataCenter(name="dc1", actor="admin@internal", correlation_id="c-1"))
    cl = w.run(AddCluster(name="cl1", data_center_id=dc, actor="admin@internal"))
    host = w.run(AddHost(name="h1", address="10.0.0.1", cluster_id=cl, actor="admin@internal"))
    vm = w.run(AddVm(name="web1", cluster_id=cl, actor="admin@internal"))
    return w, {"dc": dc, "cluster": cl, "host": host, "vm": vm, "skip": n}


def test_codes_and_descriptions_for_adds_updates_removes(world, tmp_path: Path) -> None:
    w, ids = world
    w.run(UpdateDataCenter(data_center_id=ids["dc"], description="x", actor="bob"))
    gone = w.run(AddDataCenter(name="gone", actor="bob"))
    w.run(RemoveDataCenter(data_center_id=gone, actor="carol"))
    db, _ = feed_of(w, tmp_path)
    mine = events(db, object_id=ids["dc"])
    assert [(e["code"], e["description"]) for e in mine] == [
        (950, "Data Center dc1 was added by admin@internal."),
        (952, "Data Center dc1 was updated by bob."),
    ]
    assert mine[0]["data_center_name"] == "dc1" and mine[0]["severity"] == "normal"
    cl = events(db, object_id=ids["cluster"])[0]
    assert (cl["code"], cl["description"]) == (809, "Cluster cl1 was added by admin@internal.")
    assert cl["data_center_id"] == str(ids["dc"]) and cl["data_center_name"] == "dc1"
    host = events(db, object_id=ids["host"])[0]
    assert (host["code"], host["host_name"], host["cluster_name"]) == (42, "h1", "cl1")
    vm = events(db, object_id=ids["vm"])[0]
    assert (vm["code"], vm["vm_name"], vm["data_center_name"]) == (34, "web1", "dc1")
    removed = events(db, object_id=gone)
    assert [(e["code"], e["user_name"]) for e in removed] == [(950, "bob"), (954, "carol")]
    assert removed[-1]["description"] == "Data Center gone was removed by carol."
    # The index is monotonic and the cursor works like oVirt's ?from=.
    every = events(db)
    assert [e["id"] for e in every] == list(range(1, len(every) + 1))
    assert events(db, from_=every[-3]["id"]) == every[-2:]
    assert [e["id"] for e in events(db, descending=True)][:2] == [every[-1]["id"], every[-2]["id"]]
    assert {e["user_name"] for e in events(db, user_name="bob")} == {"bob"}


def test_vm_start_names_the_user_and_host(world, tmp_path: Path) -> None:
    w, ids = world
    emit(w, VmStartRequested, ids["vm"], cid="start-1")
    w.tick(2)
    emit(w, VmScheduled, ids["vm"], host_id=ids["host"])
    db, _ = feed_of(w, tmp_path)
    mine = events(db, vm_id=ids["vm"])
    assert [(e["code"], e["description"]) for e in mine[1:]] == [
        (150, "Starting VM web1 was initiated by admin@internal."),
        (32, "VM web1 was started by admin@internal (Host: h1)."),
    ]
    assert mine[-1]["host_id"] == str(ids["host"]) and mine[-1]["host_name"] == "h1"
    assert mine[-1]["cluster_name"] == "cl1"


def test_status_rules_set_severity(world, tmp_path: Path) -> None:
    w, ids = world
    emit(w, HostStatusChanged, ids["host"], actor=None, status=HostStatus.NON_RESPONSIVE)
    db, _ = feed_of(w, tmp_path)
    e = events(db, object_id=ids["host"])[-1]
    assert (e["code"], e["severity"], e["description"]) == (
        12,
        "error",
        "Host h1 is non responsive.",
    )
    assert e["user_name"] is None


def test_generic_fallback_for_unknown_event_types(world, tmp_path: Path) -> None:
    w, ids = world
    emit(w, DataCenterPolishedForTest, ids["dc"], actor="bob", description="shiny")
    db, _ = feed_of(w, tmp_path)
    e = events(db, object_id=ids["dc"])[-1]
    assert e["description"] == "Data Center dc1 was polished for test by bob."
    assert e["code"] == 952 and e["topic"] == "DataCenterPolishedForTest"
    assert topic_phrase("VmStartRequested", None) == "vm start requested"
    dc = w.engine.get(DataCenter, ids["dc"])
    ch = Change(1, w.log[-1], dc, dc)
    assert describe(ch, w.engine)["data_center_name"] == "dc1"


def test_repeats_within_30_seconds_fold_into_one(world, tmp_path: Path) -> None:
    w, ids = world
    for _ in range(3):
        emit(w, VmStartRequested, ids["vm"])
        w.tick(10)
    w.tick(31)
    emit(w, VmStartRequested, ids["vm"])
    emit(w, VmStartRequested, ids["vm"], actor="someone-else")
    db, runner = feed_of(w, tmp_path, batch=2)  # folds across batches too
    starts = [e for e in events(db, vm_id=ids["vm"]) if e["code"] == 150]
    assert [(e["repeat_count"], e["user_name"]) for e in starts] == [
        (3, "admin@internal"),
        (1, "admin@internal"),
        (1, "someone-else"),
    ]
    assert starts[0]["last_time"] > starts[0]["time"]
    runner.close()
    # After a restart the fold window is rebuilt from the table.
    w.tick(5)
    emit(w, VmStartRequested, ids["vm"], actor="someone-else")
    log = EventLog(None, tmp_path)
    log.append(w.log[-1:])
    runner2 = ProjectionRunner(log, db, [AuditFeed()])
    runner2.catch_up()
    starts = [e for e in events(db, vm_id=ids["vm"]) if e["code"] == 150]
    assert [e["repeat_count"] for e in starts] == [3, 1, 2]
    runner2.close()


def test_events_of_one_command_share_an_entry(world, tmp_path: Path) -> None:
    from commands.vm import UpdateVm

    w, ids = world
    emit(w, VmStartRequested, ids["vm"], cid="cmd-7")
    w.run(UpdateVm(vm_id=ids["vm"], name="web2", actor="admin@internal"))
    w.tick(45)  # beyond the fold window: only the command id joins them
    emit(w, VmStartRequested, ids["vm"], cid="cmd-7")
    w.tick(40)
    emit(w, VmStartRequested, ids["vm"], cid="cmd-8")
    db, _ = feed_of(w, tmp_path, batch=1)
    starts = [e for e in events(db, vm_id=ids["vm"]) if e["code"] == 150]
    assert [(e["command_id"], e["description"]) for e in starts] == [
        ("cmd-7", "Starting VM web2 was initiated by admin@internal."),
        ("cmd-8", "Starting VM web2 was initiated by admin@internal."),
    ]
    assert starts[0]["last_time"] > starts[0]["time"]


def test_time_window_filters_accept_z_times(world, tmp_path: Path) -> None:
    w, ids = world
    w.tick(3600)
    w.run(UpdateDataCenter(data_center_id=ids["dc"], description="later", actor="bob"))
    db, _ = feed_of(w, tmp_path)
    later = events(db, object_id=ids["dc"])[-1]
    t = later["time"]
    assert events(db, since=t.replace("+00:00", "Z"), object_id=ids["dc"]) == [later]
    assert later not in events(db, until="2026-01-01T00:30:00Z")
    assert events(db, since="2026-01-01T00:30:00+00:00") == [later]


def test_descriptions_render_as_string_formatter_did() -> None:
    """``_render`` uses ``str.format_map`` (C) where it used ``string.Formatter.vformat``
    (pure Python): the same text for every rule's template, with all, some or none of
    the names given (missing ones read "N/A"), and the template itself when it is bad."""
    import re
    import string

    from projections import feed

    fmt = string.Formatter()

    def before(text: str, fields: dict[str, Any]) -> str:
        try:
            return fmt.vformat(text, (), feed._Fields(fields))
        except (IndexError, ValueError, AttributeError, KeyError):
            return text

    rules = [*feed.TOPIC_RULES.values(), *feed.COMMAND_RULES.values()]
    rules += list(feed.STATUS_RULES.values())
    texts = {r.text for r in rules} | {feed._BY}
    texts |= {"{}", "{0}", "{a.b}", "{a!r}", "{a:>5}", "{", "}", "{{x}}", "{a[0]}", "{x}{y}"}
    names = sorted({n for t in texts for n in re.findall(r"{(\w+)", t)})
    full = {n: f"v-{n}" for n in names}
    for fields in (full, {}, dict(list(full.items())[::2])):
        for text in texts:
            assert feed._render(text, fields) == before(text, fields), text


def test_topic_phrase_is_cached_and_unchanged() -> None:
    from projections import feed

    assert topic_phrase("VmStartRequested", None) == feed._topic_phrase("VmStartRequested", None)
    assert ("VmStartRequested", None) in feed._PHRASES
