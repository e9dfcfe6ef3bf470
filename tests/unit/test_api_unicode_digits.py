"""Characters Python calls digits but int() refuses ("¹", "٣") are bad input, answered
with a 400 naming the field, never a 500 (found by the API fuzz test)."""

from __future__ import annotations

import pytest

from api.faults import ApiError
from api.reads import parse_moment
from api.search import compile_search

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["¹", "٣", "12³"])
def test_as_of_with_non_ascii_digits_is_a_fault_naming_as_of(text: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_moment(text)
    assert e.value.status == 400
    assert e.value.field == "as_of"


@pytest.mark.parametrize("text", ["¹", "٣"])
def test_page_with_non_ascii_digits_is_a_fault(text: str) -> None:
    with pytest.raises(ApiError) as e:
        compile_search(f"name=x page {text}", False)
    assert e.value.status == 400


def test_ascii_positions_still_parse() -> None:
    assert parse_moment(" 42 ") == 42
