"""One parser, two back ends: every query runs through the in-memory back end (the API's
``compile_search`` over the write side's objects, read through the collections' own
search lookups) and through the SQL back end (the read side's ``list`` over the engine
view a real bus's log was projected into, on SQLite and PostgreSQL), and both must
select the same objects in the same order: a fixed table whose answers are written out,
and generated queries (hypothesis) over the same objects.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.faults import ApiError
from api.reads import EngineReads
from api.resources import RESOURCES, search_values
from api.search import compile_search
from commands.bootstrap import open_bus
from commands.cluster import AddCluster
from commands.datacenter import AddDataCenter
from commands.system import InitializeSystem
from commands.vm import AddVm
from projections.read import open_read_side
from projections.search import SearchError
from projections.search.memory import sort_value

pytestmark = pytest.mark.integration

GiB = 1 << 30
# kind -> (API collection, fields both back ends search and sort by)
KINDS = {
    "data_center": ("datacenters", ["name", "description", "local", "status", "id"]),
    "cluster": (
        "clusters",
        ["name", "description", "memory_overcommit", "datacenter", "ha_reservation"],
    ),
    "vm": (
        "vms",
        ["name", "description", "memory", "stateless", "status", "cluster", "host"],
    ),
}
NUMERIC = {"memory_overcommit", "memory"}


def _world(bus: Any) -> None:
    bus.execute(InitializeSystem())
    dcs = {}
    for name, desc, local in [
        ("prod", "Production", False),
        ("Prod-East", "east of prod", False),
        ("lab", "", True),
        ("lab2", "the LAB, again", False),
        ("web_1", "a_b", False),
        ("x%y", "100% odd", False),
    ]:
        dcs[name] = bus.execute(AddDataCenter(name=name, description=desc, local=local)).value
    clusters = {}
    for name, dc, oc, desc in [
        ("c1", "prod", 100, "ab"),
        ("C2", "prod", 150, ""),
        ("big", "Prod-East", 200, "Big one"),
        ("small", "lab", 100, "ab*"),
        ("c3", "lab2", 120, "x"),
    ]:
        clusters[name] = bus.execute(
            AddCluster(name=name, data_center_id=dcs[dc], memory_overcommit=oc, description=desc)
        ).value
    for name, cl, mem, desc, stateless in [
        ("web1", "c1", 2, "front", False),
        ("web2", "c1", 4, "front end", True),
        ("db", "C2", 8, "", False),
        ("DB-2", "big", 8, "Back", False),
        ("my-vm", "small", 1, "mine", True),
        ("x_y", "c3", 16, "front", False),
    ]:
        bus.execute(
            AddVm(
                name=name,
                cluster_id=clusters[cl],
                memory=mem * GiB,
                description=desc,
                stateless=stateless,
            )
        )


class Both:
    """The two back ends over one bus and its read side."""

    def __init__(self, bus: Any, read: Any) -> None:
        self.reads = EngineReads(bus)
        self.read = read

    def memory(
        self, kind: str, text: str, cs: bool = False, max: int | None = None
    ) -> list[str] | str:
        """What the API's search answers: ids in list order, or the error."""
        res = RESOURCES[KINDS[kind][0]]
        try:
            q = compile_search(text, cs)
            objs = list(self.reads.list(res.cls))
            # The SQL back end's order without a sortby key: name, then id.
            objs.sort(key=lambda o: (sort_value(o.name), str(o.id)))

            def values(o: Any, k: str) -> list[str]:
                return search_values(res, o, k, self.reads)

            hits = [o for o in objs if q.matches(lambda k, o=o: values(o, k))]
            hits = q.page_of(q.order(hits, values), max or 100)
        except ApiError as e:
            return f"error: {e.detail}"
        return [str(o.id) for o in (hits if max is None else hits[:max])]

    def sql(
        self, kind: str, text: str, cs: bool = False, max: int | None = None
    ) -> list[str] | str:
        """What the read side's view answers: ids in list order, or the error."""
        try:
            rows = self.read.list(kind, text, max=max, case_sensitive=cs)
        except SearchError as e:
            return f"error: {e}"
        return [r["id"] for r in rows]

    def names(self, ids: list[str] | str) -> list[str] | str:
        if isinstance(ids, str):
            return ids
        return [self.read.get(None, i)["name"] for i in ids]


@pytest.fixture
def both(store_location: dict) -> Any:
    bus = open_bus(**store_location)
    read = open_read_side(**store_location, bus=bus)
    try:
        _world(bus)
        assert read.wait_for(bus.log.head(), 10)
        yield Both(bus, read)
    finally:
        read.close()
        bus.stop()


# (kind, query, case sensitive, the names it selects, in order)
TABLE: list[tuple[str, str, bool, list[str]]] = [
    ("data_center", "", False, ["Default", "lab", "lab2", "prod", "Prod-East", "web_1", "x%y"]),
    ("data_center", "name=prod", False, ["prod"]),
    ("data_center", "name=PROD", True, []),
    ("data_center", 'name="Prod-East"', False, ["Prod-East"]),
    ("data_center", "prod", False, ["prod", "Prod-East"]),  # free text: name contains
    ("data_center", '"rod-E"', True, ["Prod-East"]),
    ("data_center", "Datacenters: name=lab*", False, ["lab", "lab2"]),
    ("data_center", "Datacenters:name=lab*", False, ["lab", "lab2"]),
    ("data_center", "name=*_1", False, ["web_1"]),
    ("data_center", "name=x%*", False, ["x%y"]),
    ("data_center", "name=x_y", False, []),
    ("data_center", "name=lab* and local=true", False, ["lab"]),
    ("data_center", "name=lab* local=false", False, ["lab2"]),
    ("data_center", "name=prod or name=lab", False, ["lab", "prod"]),
    ("data_center", "name=lab* and (local=true or name=nothing)", False, ["lab"]),
    ("data_center", "name!=*a* and name!=*e*", False, ["prod", "x%y"]),
    ("data_center", "description=*prod*", False, ["prod", "Prod-East"]),
    ("data_center", "description=", False, "error"),
    ("data_center", 'description=""', False, ["lab"]),
    ("data_center", "sortby name desc", False, ["x%y", "web_1", "Prod-East", "prod", "lab2"]),
    ("cluster", "datacenter=prod", False, ["c1", "C2"]),
    ("cluster", "datacenter=PROD*", False, ["big", "c1", "C2"]),
    ("cluster", "datacenter!=prod and datacenter!=Default", False, ["big", "c3", "small"]),
    ("cluster", "memory_overcommit>100", False, ["big", "C2", "c3"]),
    ("cluster", "memory_overcommit<=120 and name=c*", False, ["c1", "c3"]),
    ("cluster", "description=ab*", False, ["c1", "small"]),
    (
        "cluster",
        "sortby memory_overcommit desc, name",
        False,
        ["big", "C2", "c3", "c1", "Default", "small"],
    ),
    (
        "cluster",
        "name=*  sortby description",
        False,
        ["C2", "c1", "small", "big", "Default", "c3"],
    ),
    ("vm", "password_hash=x", False, "error"),
    ("data_center", "sortby PASSWORD_HASH", False, "error"),
    ("vm", "Vms: name=web*", False, ["web1", "web2"]),
    ("vm", "web", False, ["web1", "web2"]),
    ("vm", "name=db*", False, ["db", "DB-2"]),
    ("vm", "name=db*", True, ["db"]),
    ("vm", "status=down and memory>=8589934592", False, ["db", "DB-2", "x_y"]),
    ("vm", "memory<4294967296 sortby memory desc", False, ["web1", "my-vm"]),
    ("vm", "stateless=true", False, ["my-vm", "web2"]),
    ("vm", "cluster=c1 or cluster=big", False, ["DB-2", "web1", "web2"]),
    ("vm", "description=front*", False, ["web1", "web2", "x_y"]),
    ("vm", "description=front sortby name desc", False, ["x_y", "web1"]),
    ("vm", "host=*", False, []),  # no host: no value, matches no pattern
    ("vm", "host!=h1", False, ["db", "DB-2", "my-vm", "web1", "web2", "x_y"]),
    ("vm", "name=* sortby memory desc page 2", False, ["DB-2", "web2"]),
    ("vm", "page 0", False, "error"),
    ("vm", "name<abc", False, "error"),
]


def _expect(rows: list[str] | str, want: list[str] | str) -> None:
    if want == "error":
        assert isinstance(rows, str) and rows.startswith("error: "), rows
    else:
        assert rows == want


@pytest.mark.parametrize("store_location", ["sqlite", "postgres"], indirect=True)
def test_both_back_ends_answer_the_table_and_generated_queries_alike(both) -> None:
    for kind, text, cs, want in TABLE:
        max = 2 if "page" in text else (5 if text == "sortby name desc" else None)
        mem = both.memory(kind, text, cs, max)
        sql = both.sql(kind, text, cs, max)
        _expect(both.names(mem), want)
        if want != "error":
            assert sql == mem, (kind, text, both.names(sql), both.names(mem))
        else:
            assert isinstance(sql, str), (kind, text, sql)
    _generated(both)


def _values_of(kind: str) -> st.SearchStrategy[str]:
    words = {
        "data_center": ["prod", "Prod-East", "lab", "LAB", "web_1", "x%y", "Default", "odd"],
        "cluster": ["c1", "C2", "big", "prod", "lab", "ab", "AB", "Default"],
        "vm": ["web1", "WEB", "db", "DB-2", "my-vm", "front", "x_y", "c1", "down", "true"],
    }[kind]
    piece = st.sampled_from(["", "*", "a", "b", "_", "-", "%", "1", "2"])
    word = st.sampled_from(words)
    mangled = st.tuples(piece, word, piece).map("".join)
    return st.one_of(word, mangled, st.text(alphabet="abAB*_-1", max_size=4))


@st.composite
def _queries(draw: Any) -> tuple[str, str, bool, int | None]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    fields = KINDS[kind][1]
    conds = []
    for _ in range(draw(st.integers(0, 4))):
        f = draw(st.sampled_from(fields))
        if f in NUMERIC and draw(st.booleans()):
            op = draw(st.sampled_from(["<", "<=", ">", ">=", "=", "!="]))
            base = GiB if f == "memory" else 1
            value = str(base * draw(st.sampled_from([0, 1, 2, 4, 8, 100, 120, 150, 200])))
        else:
            op = draw(st.sampled_from(["=", "!="]))
            value = draw(_values_of(kind))
        quoted = f'"{value}"' if not value or draw(st.booleans()) else value
        bare = op == "=" and f == "name" and value and draw(st.integers(0, 4)) == 0
        conds.append(quoted if bare else f"{f}{op}{quoted}")
    text = ""
    for i, c in enumerate(conds):
        text += (draw(st.sampled_from([" and ", " ", " or "])) if i else "") + c
    if len(conds) > 2 and draw(st.booleans()):
        text = f"({text})"
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True))
        text += " sortby " + ", ".join(
            k + draw(st.sampled_from(["", " asc", " desc"])) for k in keys
        )
    max = draw(st.sampled_from([None, 2, 3]))
    if max is not None and draw(st.booleans()):
        text += f" page {draw(st.integers(1, 3))}"
    prefix = draw(st.sampled_from(["", "", "Vms: ", "Things:"]))
    return kind, prefix + text, draw(st.booleans()), max


def _generated(both: Any) -> None:
    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    @given(q=_queries())
    def run(q: tuple[str, str, bool, int | None]) -> None:
        kind, text, cs, max = q
        mem = both.memory(kind, text, cs, max)
        sql = both.sql(kind, text, cs, max)
        assert isinstance(mem, list) and isinstance(sql, list), (q, mem, sql)
        assert sql == mem, (q, both.names(sql), both.names(mem))

    run()
