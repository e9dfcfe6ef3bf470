"""The in-memory back end of oVirt's search: a parsed ``Query`` (``projections.search.
syntax``) filtering, ordering and paging Python objects (what the API does over its reads).

    s = InMemorySearch(parse(text), case_sensitive=False)
    hits = [o for o in objs if s.matches(lambda key, o=o: values(o, key))]
    hits = s.order(hits, values)        # by the sortby keys; unchanged without any
    hits = s.page_of(hits, size)        # the ``page N`` of the search, if it has one

A lookup gives the object's values of a key as text (several for a reference: its id and
the referenced object's name; ``""`` for no value) and raises for a key it does not know.
Its rules are the SQL back end's (``projections.search.sql``), checked against it by
tests/integration/test_search_conformance.py:

- ``=``/``!=`` match any of the values against the pattern, ``*`` any run of characters,
  case-insensitive unless asked; ``!=`` is "matches none".
- ``< <= > >=`` compare numbers (a search value that is not one is a SearchError, an
  object's value that is not one does not match).
- ordering: the first value of each key, numbers before text and by value, text by its
  lower case then exactly; descending reverses a key; ties keep their order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from projections.search.syntax import (
    ORDERING_OPS,
    And,
    Cond,
    Or,
    Query,
    conditions,
    number,
    ordering_number,
)

T = TypeVar("T")
Lookup = Callable[[str], list[str]]


def _pattern(value: str, case_sensitive: bool) -> re.Pattern[str]:
    body = ".*".join(re.escape(p) for p in value.split("*"))
    return re.compile(f"{body}\\Z", re.DOTALL | (0 if case_sensitive else re.IGNORECASE))


def _test(c: Cond, pattern: re.Pattern[str] | None, values: list[str]) -> bool:
    if pattern is not None:  # = and !=
        hit = any(pattern.match(v) for v in values)
        return hit if c.op == "=" else not hit
    want = ordering_number(c)
    for v in values:
        have = number(v)
        if have is None:
            continue
        if (
            (c.op == "<" and have < want)
            or (c.op == "<=" and have <= want)
            or (c.op == ">" and have > want)
            or (c.op == ">=" and have >= want)
        ):
            return True
    return False


def _converted(n: Any, convert: Mapping[str, Callable[[str], str]]) -> Any:
    if isinstance(n, Cond):
        fn = convert.get(n.field)
        return n if fn is None else replace(n, value=fn(n.value))
    if isinstance(n, And | Or):
        return type(n)(tuple(_converted(i, convert) for i in n.items))
    return n


def sort_value(value: str) -> tuple[bool, float, str, str]:
    """The ordering key of one value: numbers first (by value), then text (lower, exact)."""
    n = number(value)
    return (n is None, n or 0.0, value.lower(), value)


class InMemorySearch:
    """A parsed search, ready to test objects through a lookup."""

    def __init__(
        self,
        query: Query,
        case_sensitive: bool = False,
        convert: Mapping[str, Callable[[str], str]] | None = None,
    ) -> None:
        """``convert`` maps a key to what turns the values its conditions name into the
        values the lookup gives (the event feed compares severities by rank:
        ``severity>normal``)."""
        if convert:
            query = replace(query, where=_converted(query.where, convert))
        for c in conditions(query.where):
            if c.op in ORDERING_OPS:
                ordering_number(c)
        self.query = query
        self.case_sensitive = case_sensitive
        self._patterns: dict[Cond, re.Pattern[str]] = {
            c: _pattern(c.value, case_sensitive)
            for c in conditions(query.where)
            if c.op not in ORDERING_OPS
        }

    @property
    def empty(self) -> bool:
        return self.query.where is None

    @property
    def sort_key(self) -> str | None:
        return self.query.sort[0][0] if self.query.sort else None

    @property
    def sort_desc(self) -> bool:
        return bool(self.query.sort) and self.query.sort[0][1]

    @property
    def page(self) -> int | None:
        return self.query.page

    def keys(self) -> set[str]:
        return {c.field for c in conditions(self.query.where)}

    def matches(self, lookup: Lookup) -> bool:
        """Whether the object ``lookup`` describes passes the search's conditions."""
        if self.query.where is None:
            return True
        cache: dict[str, list[str]] = {}

        def values(key: str) -> list[str]:
            v = cache.get(key)
            if v is None:
                v = cache[key] = lookup(key)
            return v

        def ok(n: Any) -> bool:
            if isinstance(n, Cond):
                return _test(n, self._patterns.get(n), values(n.field))
            if isinstance(n, And):
                return all(ok(i) for i in n.items)
            return any(ok(i) for i in n.items)

        return ok(self.query.where)

    def order(self, objs: list[T], values: Callable[[T, str], list[str]]) -> list[T]:
        """The objects ordered by the search's ``sortby`` keys (unchanged without any)."""
        out = list(objs)
        for key, desc in reversed(self.query.sort):  # stable sorts, last key first
            out.sort(key=lambda o: sort_value((values(o, key) or [""])[0]), reverse=desc)
        return out

    def page_of(self, objs: Sequence[T], size: int) -> list[T]:
        """The search's ``page N`` of ``size`` objects (all of them without a page)."""
        if self.query.page is None:
            return list(objs)
        return list(objs[(self.query.page - 1) * size : self.query.page * size])
