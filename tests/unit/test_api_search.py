"""oVirt's search language as the API understands it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.faults import ApiError
from api.search import compile_search

pytestmark = pytest.mark.unit

VMS = [
    {"name": "web1", "status": "up", "memory": "1024"},
    {"name": "web2", "status": "down", "memory": "2048"},
    {"name": "db", "status": "up", "memory": "4096"},
    {"name": "My VM", "status": "down", "memory": "512"},
]


def names(text: str, case_sensitive: bool = False) -> list[str]:
    q = compile_search(text, case_sensitive)
    out = [v for v in VMS if q.matches(lambda k, v=v: [v[k]] if k in v else [""])]
    if q.sort_key:
        out.sort(key=lambda v: v[q.sort_key], reverse=q.sort_desc)
    return [v["name"] for v in out]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["web1", "web2", "db", "My VM"]),
        ("   ", ["web1", "web2", "db", "My VM"]),
        ("name=web1", ["web1"]),
        ('name="My VM"', ["My VM"]),
        ("name=web*", ["web1", "web2"]),
        ("name=WEB*", ["web1", "web2"]),
        ("name=web* and status=up", ["web1"]),
        ("name=web1 or name=db", ["web1", "db"]),
        ("status!=up", ["web2", "My VM"]),
        ("memory>1024", ["web2", "db"]),
        ("memory<=1024", ["web1", "My VM"]),
        ("Vms: name=db", ["db"]),
        ("status=up sortby name desc", ["web1", "db"]),
        ("status=up sortby name asc", ["db", "web1"]),
        ("web", ["web1", "web2"]),
    ],
)
def test_search(text, expected):
    assert names(text) == expected


def test_case_sensitive():
    assert names("name=WEB*", case_sensitive=True) == []


def test_page():
    q = compile_search("name=* page 2")
    assert q.page == 2


@pytest.mark.parametrize("bad", ["sortby", "page x", "page 0", "= x", 'name="open'])
def test_bad_search_is_a_400(bad):
    with pytest.raises(ApiError) as err:
        compile_search(bad)
    assert err.value.status == 400
    assert err.value.field == "search"


@given(st.text(max_size=60))
def test_any_text_compiles_or_is_a_400(text):
    try:
        q = compile_search(text)
    except ApiError as e:
        assert e.status == 400
        return
    q.matches(lambda k: ["x"])


def test_sortby_orders_numbers_by_value_and_text_by_lower_case():
    q = compile_search("sortby memory")
    by_memory = q.order(VMS, lambda v, k: [v[k]])
    assert [v["name"] for v in by_memory] == ["My VM", "web1", "web2", "db"]
    q = compile_search("sortby name desc")
    assert [v["name"] for v in q.order(VMS, lambda v, k: [v[k]])] == ["web2", "web1", "My VM", "db"]


def test_ordering_operators_need_a_number():
    with pytest.raises(ApiError) as err:
        compile_search("name<abc")
    assert err.value.status == 400 and "needs a number" in err.value.detail


def test_no_value_matches_no_pattern_but_every_negation():
    q = compile_search("host=*")
    assert not q.matches(lambda k: [])
    assert compile_search("host!=h1").matches(lambda k: [])


def test_converted_values_compare_as_the_lookup_gives_them():
    ranks = {"normal": "0", "warning": "1", "error": "2"}
    q = compile_search("severity>normal", False, {"severity": lambda v: ranks.get(v, v)})
    assert [r for r in ("0", "1", "2") if q.matches(lambda k, r=r: [r])] == ["1", "2"]
