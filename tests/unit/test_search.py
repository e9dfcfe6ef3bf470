"""oVirt search over the engine view: syntax, reference attributes, sorting, paging,
clear errors, and (hypothesis) the parser never crashes and a generated query returns
exactly what a brute-force filter over the objects returns."""

from __future__ import annotations

import fnmatch
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.cluster import AddCluster
from commands.datacenter import AddDataCenter
from commands.store import EventLog
from projections.db import ViewDB
from projections.engine_view import EngineView
from projections.runner import ProjectionRunner
from projections.search import And, Cond, Or, SearchError, parse, search_objects
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

DC_NAMES = ["Default", "prod", "Prod-East", "lab", "lab2", "web_1", "x%y", "Ωmega"]


def _build(world: World, d: Path) -> ViewDB:
    log = EventLog(None, d)
    log.append(world.log)
    db = ViewDB(None, d)
    runner = ProjectionRunner(log, db, [EngineView()])
    runner.catch_up()
    return db


@pytest.fixture(scope="module")
def view() -> Any:
    w = World()
    ids = {}
    for n in DC_NAMES:
        ids[n] = w.run(AddDataCenter(name=n, description=f"about {n.lower()}", local=n == "lab"))
    for dc, names in (("Default", ["c1", "C2"]), ("prod", ["big", "small"]), ("lab", ["c3"])):
        for c in names:
            w.run(
                AddCluster(
                    name=c, data_center_id=ids[dc], memory_overcommit=150 if c == "big" else 100
                )
            )
    with tempfile.TemporaryDirectory() as tmp:
        db = _build(w, Path(tmp))
        yield db, w
        db.close()


def names(rows: list[dict]) -> list[str]:
    return [r["name"] for r in rows]


def test_empty_and_exact_and_quoted(view) -> None:
    db, _ = view
    assert len(search_objects(db, "data_center", "")) == len(DC_NAMES)
    assert len(search_objects(db, "data_center", None)) == len(DC_NAMES)
    assert names(search_objects(db, "data_center", "name=prod")) == ["prod"]
    assert names(search_objects(db, "data_center", 'name="Prod-East"')) == ["Prod-East"]
    # A bare word is oVirt's free text: the names containing it (as the API always did).
    assert names(search_objects(db, "data_center", "prod")) == ["prod", "Prod-East"]
    assert names(search_objects(db, "data_center", '"rod-e"')) == ["Prod-East"]
    assert names(search_objects(db, "data_center", "Datacenters: name=lab")) == ["lab"]


def test_case_insensitive_by_default_sensitive_on_request(view) -> None:
    db, _ = view
    assert names(search_objects(db, "data_center", "name=PROD")) == ["prod"]
    assert search_objects(db, "data_center", "name=PROD", case_sensitive=True) == []
    assert names(search_objects(db, "data_center", "name=Prod*", case_sensitive=True)) == [
        "Prod-East"
    ]
    assert names(search_objects(db, "data_center", "name=prod*")) == ["prod", "Prod-East"]


def test_wildcards_escape_sql_specials(view) -> None:
    db, _ = view
    assert names(search_objects(db, "data_center", "name=lab*")) == ["lab", "lab2"]
    assert names(search_objects(db, "data_center", "name=*_1")) == ["web_1"]
    assert names(search_objects(db, "data_center", "name=x%*")) == ["x%y"]
    assert search_objects(db, "data_center", "name=x_y") == []  # _ is literal
    assert names(search_objects(db, "data_center", "name=*")) == names(
        search_objects(db, "data_center", "")
    )


def test_and_or_not_and_attributes(view) -> None:
    db, _ = view
    q = "name=lab* and local=true"
    assert names(search_objects(db, "data_center", q)) == ["lab"]
    q = "name=prod or name=lab"
    assert names(search_objects(db, "data_center", q)) == ["lab", "prod"]
    q = "name=lab* and (local=false or name=nothing)"
    assert names(search_objects(db, "data_center", q)) == ["lab2"]
    assert "prod" not in names(search_objects(db, "data_center", "name!=prod"))
    assert names(search_objects(db, "data_center", "description=*east")) == ["Prod-East"]
    assert names(search_objects(db, "cluster", "memory_overcommit>100")) == ["big"]
    assert names(search_objects(db, "cluster", "memory_overcommit<=100 and name=c*")) == [
        "c1",
        "C2",
        "c3",
    ]


def test_reference_attributes_resolve_names(view) -> None:
    db, _ = view
    assert names(search_objects(db, "cluster", "datacenter=Default")) == ["c1", "C2"]
    assert names(search_objects(db, "cluster", "datacenter=default")) == ["c1", "C2"]
    assert names(search_objects(db, "cluster", "datacenter=prod*")) == ["big", "small"]
    assert names(search_objects(db, "cluster", "datacenter=lab and name=c3")) == ["c3"]
    assert names(search_objects(db, "cluster", "datacenter!=Default")) == ["big", "c3", "small"]


def test_sorting_and_paging(view) -> None:
    db, _ = view
    all_asc = names(search_objects(db, "data_center", "sortby name asc"))
    assert all_asc == sorted(DC_NAMES, key=lambda n: (n.lower(), n))
    assert names(search_objects(db, "data_center", "sortby name desc")) == all_asc[::-1]
    assert names(search_objects(db, "data_center", "", max=3)) == all_asc[:3]
    assert names(search_objects(db, "data_center", "page 2", max=3)) == all_asc[3:6]
    assert names(search_objects(db, "data_center", "", max=3, page=3)) == all_asc[6:]
    q = "name=* sortby name desc page 2"
    assert names(search_objects(db, "data_center", q, max=2)) == all_asc[::-1][2:4]
    by_oc = search_objects(db, "cluster", "sortby memory_overcommit desc, name")
    assert names(by_oc)[0] == "big"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('name="open', "Unterminated quoted value"),
        ("name=", "Missing value after 'name='"),
        ("name=x and", "Expected a condition"),
        ("(name=x", "Missing ')'"),
        ("name=x)", "Unexpected ')'"),
        ("page x", "'page' needs a positive whole number"),
        ("page 0", "'page' needs a positive whole number"),
        ("sortby", "'sortby' needs a field name"),
        ("name<abc", "needs a number"),
        ("bogus_field=1", "Unknown search field 'bogus_field' for data_center"),
        ("name ! x", "did you mean '!='"),
        ("sortby nope", "Unknown search field 'nope'"),
    ],
)
def test_malformed_queries_name_the_problem(view, query, message) -> None:
    db, _ = view
    with pytest.raises(SearchError) as e:
        search_objects(db, "data_center", query)
    assert message in str(e.value)


def test_values_are_parameters_not_sql(view) -> None:
    db, _ = view
    evil = "name=\"x' OR '1'='1\" or name='; DROP TABLE orrery_view_objects; --'"
    assert search_objects(db, "data_center", evil) == []
    assert len(search_objects(db, "data_center", "")) == len(DC_NAMES)


def test_parse_tree_shape() -> None:
    q = parse("a=1 b=2 or c=3 sortby name desc page 3")
    assert q.where == Or((And((Cond("a", "=", "1"), Cond("b", "=", "2"))), Cond("c", "=", "3")))
    assert q.sort == (("name", True),)
    assert q.page == 3


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_parser_never_crashes(text: str) -> None:
    try:
        parse(text)
    except SearchError as e:
        assert str(e)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list(' =!<>()"*abcnmeAND or sortby page 12\\')), max_size=40)
)
def test_parser_never_crashes_on_near_miss_syntax(text: str) -> None:
    try:
        parse(text)
    except SearchError as e:
        assert str(e)


# -- generated queries == brute force ---------------------------------------------------
_ALPHA = "abAB*"
_values = st.text(alphabet=_ALPHA, min_size=1, max_size=4)
_conds = st.tuples(
    st.sampled_from(["name", "description", "datacenter"]), st.sampled_from(["=", "!="]), _values
)
_query = st.lists(st.lists(_conds, min_size=1, max_size=3), min_size=1, max_size=3)  # OR of ANDs


def _render(q: list[list[tuple[str, str, str]]]) -> str:
    return " or ".join(" and ".join(f'{f}{op}"{v}"' for f, op, v in conj) for conj in q)


def _like(value: str | None, pattern: str, cs: bool) -> bool:
    if value is None:
        return False
    if not cs:
        value, pattern = value.lower(), pattern.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]").replace("?", "[?]"))


def _brute(objs: list[Any], by_id: dict, q, cs: bool) -> list[str]:
    def attr(o: Any, f: str) -> str | None:
        if f == "datacenter":
            dc = by_id.get(getattr(o, "data_center_id", None))
            return getattr(dc, "name", None)
        return getattr(o, f, None)

    def cond(o: Any, f: str, op: str, v: str) -> bool:
        hit = _like(attr(o, f), v, cs)
        return hit if op == "=" else not hit

    keep = [o for o in objs if any(all(cond(o, *c) for c in conj) for conj in q)]
    return [str(o.id) for o in sorted(keep, key=lambda o: (o.name.lower(), o.name, str(o.id)))]


def _names_world() -> World:
    w = World()
    import itertools

    dcs = []
    for i, n in enumerate(["a", "A", "ab", "ba", "bab", "Abba", "aaa", "b"]):
        dcs.append(w.run(AddDataCenter(name=n, description=["", "ab", "B", "ba"][i % 4])))
    counter = itertools.count()
    for dc in dcs[:5]:
        for n in ("a", "bb")[: 1 + next(counter) % 2]:
            w.run(AddCluster(name=f"{n}{next(counter)}", data_center_id=dc, description="ab"))
    return w


_NW = _names_world()
_NW_DIR = tempfile.TemporaryDirectory()
_NW_DB = _build(_NW, Path(_NW_DIR.name))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=_query, kind=st.sampled_from(["data_center", "cluster"]), cs=st.booleans())
def test_generated_query_equals_brute_force(q, kind, cs) -> None:
    objs = [o for o in _NW.engine.objects.values() if kind == type(o).KIND]
    by_id = _NW.engine.objects
    got = [r["id"] for r in search_objects(_NW_DB, kind, _render(q), case_sensitive=cs)]
    assert got == _brute(objs, by_id, q, cs)
