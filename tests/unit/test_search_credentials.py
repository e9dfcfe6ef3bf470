"""No search back end searches, filters or sorts by a credential field (issue 11, item 4).

Both the SQL one over the engine view (``projections.search``) and the API's in-memory
one (``api.search``) refuse any query naming a field of ``domain.base.CREDENTIAL_FIELDS``
(the union of the aggregates' ``SECRET_FIELDS``), wherever it stands in the query and
however it is spelt, with an error naming the field; other searches still run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import domain.base
from api.faults import ApiError
from api.search import compile_search
from commands.datacenter import AddDataCenter
from commands.store import EventLog
from commands.user import AddUser
from domain.user import User
from projections.db import ViewDB
from projections.engine_view import EngineView
from projections.runner import ProjectionRunner
from projections.search import SearchError, search_objects
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

# The user's password hash is named as well: the tests run on it whatever base.py says.
FIELDS = sorted({"password_hash", *getattr(domain.base, "CREDENTIAL_FIELDS", ())})


@pytest.fixture(scope="module")
def view() -> Any:
    w = World()
    w.run(AddDataCenter(name="dc1"))
    for n in ("ann", "bob"):
        w.run(AddUser(user_name=n, password=f"pw-{n}-secret"))
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(None, Path(tmp))
        log.append(w.log)
        db = ViewDB(None, Path(tmp))
        ProjectionRunner(log, db, [EngineView()]).catch_up()
        yield db, w
        db.close()


def test_the_user_declares_its_password_hash_a_credential() -> None:
    assert {"password_hash"} == set(User.SECRET_FIELDS)
    assert "password_hash" in domain.base.CREDENTIAL_FIELDS
    assert domain.base.redacted({"password_hash": "$argon2id$x", "name": "a"}) == {
        "password_hash": "***",
        "name": "a",
    }


def test_the_view_holds_the_hash_and_other_user_searches_run(view) -> None:
    db, _ = view
    users = search_objects(db, "user", "user_name=ann* sortby user_name desc")
    assert [u["user_name"] for u in users] == ["ann@internal"]
    # What the refusal protects: the view has the hash a prefix search could probe.
    assert users[0]["password_hash"].startswith("$argon2id$")


def _spelling(draw: Any, field: str) -> str:
    mixed = "".join(
        c.upper() if up else c
        for c, up in zip(
            field,
            draw(st.lists(st.booleans(), min_size=len(field), max_size=len(field))),
            strict=True,
        )
    )
    return draw(st.sampled_from(["", "user.", "a.b."])) + mixed


_VALUE = st.text(
    alphabet=st.characters(blacklist_characters='"\\\x00', blacklist_categories=("Cs",)),
    max_size=12,
)


@st.composite
def credential_queries(draw: Any) -> tuple[str, str]:
    """(query text, field) with the field as a condition or a sort key, among others."""
    field = draw(st.sampled_from(FIELDS))
    name = _spelling(draw, field)
    value = draw(_VALUE)
    prefix = draw(st.sampled_from(["$argon2id$", "$argon2id$v=19$m=", "", "*"]))
    others = draw(st.sampled_from(["", "name=* and ", "name=x or ", "Users: ", "user_name=a* "]))
    where = f'{name}{draw(st.sampled_from(["=", "!="]))}"{prefix}{value}*"'
    if draw(st.booleans()):
        return f"{others}{where}", field
    order = draw(st.sampled_from(["", " asc", " desc"]))
    return (
        f"{others.removesuffix(' and ').removesuffix(' or ') or 'name=*'} sortby {name}{order}",
        field,
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=credential_queries(), kind=st.sampled_from(["user", None, "data_center"]))
def test_the_sql_back_end_refuses_a_credential_field(view, q, kind) -> None:
    db, _ = view
    text, field = q
    with pytest.raises(SearchError) as err:
        search_objects(db, kind, text)
    assert field in str(err.value).lower() and "credential" in str(err.value), (text, err.value)


@settings(max_examples=300, deadline=None)
@given(q=credential_queries())
def test_the_api_back_end_refuses_a_credential_field(q) -> None:
    text, field = q
    with pytest.raises(ApiError) as err:
        compile_search(text)
    assert err.value.status == 400 and err.value.field == field, (text, err.value)
    assert field in err.value.detail.lower() and "credential" in err.value.detail


def test_the_sql_back_end_refuses_a_credential_among_sort_keys(view) -> None:
    db, _ = view
    for text in ("sortby name, password_hash desc", "(name=a or PASSWORD_HASH<1)"):
        with pytest.raises(SearchError, match="password_hash"):
            search_objects(db, "user", text)
