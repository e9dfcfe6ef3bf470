"""oVirt's search language, the part clients use: ``name=x``, ``name="x y"``, ``k=v and
k2!=v2 or k3>5``, ``*`` wildcards, a ``Vms:`` prefix, ``sortby KEY [asc|desc]``, ``page N``.

``compile_search(text)`` gives a Query; ``query.matches(lookup)`` asks ``lookup(key)`` for
the object's values of a key (a list of strings; KeyError for an unknown key). A search
or sort on a credential field (``domain.base.is_credential_field``) is a 400 fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import domain.model  # noqa: F401  (every aggregate class: CREDENTIAL_FIELDS complete)
from api.faults import ApiError, bad_request
from domain.base import is_credential_field

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(!=|<=|>=|=|<|>)|([^\s=<>!"]+))')
_OPS = ("=", "!=", "<", ">", "<=", ">=")


class Cond:
    __slots__ = ("key", "op", "pattern", "value")

    def __init__(self, key: str, op: str, value: str, case_sensitive: bool) -> None:
        self.key = key.lower()
        self.op = op
        self.value = value
        flags = 0 if case_sensitive else re.IGNORECASE
        self.pattern = re.compile(
            "^" + ".*".join(re.escape(p) for p in value.split("*")) + "$", flags
        )

    def test(self, values: list[str]) -> bool:
        op = self.op
        if op == "=":
            return any(self.pattern.match(v) for v in values)
        if op == "!=":
            return not any(self.pattern.match(v) for v in values)
        for v in values:
            a: Any
            b: Any
            try:
                a, b = float(v), float(self.value)
            except ValueError:
                a, b = v, self.value
            if (
                (op == "<" and a < b)
                or (op == ">" and a > b)
                or (op == "<=" and a <= b)
                or (op == ">=" and a >= b)
            ):
                return True
        return False


class Query:
    def __init__(self) -> None:
        self.groups: list[list[Cond]] = []  # OR of ANDs
        self.sort_key: str | None = None
        self.sort_desc = False
        self.page: int | None = None

    @property
    def empty(self) -> bool:
        return not self.groups

    def keys(self) -> set[str]:
        return {c.key for g in self.groups for c in g}

    def matches(self, lookup: Callable[[str], list[str]]) -> bool:
        if not self.groups:
            return True
        cache: dict[str, list[str]] = {}

        def values(key: str) -> list[str]:
            v = cache.get(key)
            if v is None:
                v = cache[key] = lookup(key)
            return v

        return any(all(c.test(values(c.key)) for c in g) for g in self.groups)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise bad_request(f"Invalid search text near {text[pos : pos + 20]!r}.", "search")
        pos = m.end()
        if m.group(1) is not None:
            out.append(("str", m.group(1).replace('\\"', '"')))
        elif m.group(2) is not None:
            out.append(("op", m.group(2)))
        elif m.group(3) is not None:
            out.append(("word", m.group(3)))
    return out


def compile_search(text: str | None, case_sensitive: bool = False) -> Query:
    q = Query()
    if not text or not text.strip():
        return q
    text = text.strip()
    m = re.match(r"^[A-Za-z_]+\s*:\s*", text)
    if m and not re.match(r"^[A-Za-z_]+\s*:\s*(=|!=)", text):
        text = text[m.end() :]
    toks = _tokens(text)
    group: list[Cond] = []
    i = 0
    while i < len(toks):
        kind, val = toks[i]
        low = val.lower() if kind == "word" else ""
        if low == "and":
            i += 1
            continue
        if low == "or":
            if group:
                q.groups.append(group)
            group = []
            i += 1
            continue
        if low == "sortby":
            if i + 1 >= len(toks):
                raise bad_request("Invalid search text: sortby needs a key.", "search")
            q.sort_key = toks[i + 1][1].lower()
            i += 2
            if i < len(toks) and toks[i][1].lower() in ("asc", "desc"):
                q.sort_desc = toks[i][1].lower() == "desc"
                i += 1
            continue
        if low == "page":
            try:
                q.page = int(toks[i + 1][1])
            except (IndexError, ValueError):
                raise bad_request("Invalid search text: page needs a number.", "search") from None
            if q.page < 1:
                raise bad_request("Invalid search text: page starts at 1.", "search")
            i += 2
            continue
        if kind == "op":
            raise bad_request(f"Invalid search text: unexpected {val!r}.", "search")
        if i + 1 < len(toks) and toks[i + 1][0] == "op":
            op = toks[i + 1][1]
            if i + 2 < len(toks) and toks[i + 2][0] in ("word", "str"):
                value = toks[i + 2][1]
                i += 3
            else:
                value = ""
                i += 2
            group.append(Cond(val, op, value, case_sensitive))
        else:
            # A bare word searches names.
            group.append(Cond("name", "=", f"*{val}*", case_sensitive))
            i += 1
    if group:
        q.groups.append(group)
    for key in [*q.keys(), *([q.sort_key] if q.sort_key else [])]:
        if is_credential_field(key):
            raise credential_refused(key)
    return q


def credential_refused(key: str) -> ApiError:
    """The fault for a search or sort on a credential field (the message names it)."""
    return bad_request(
        f"Cannot search or sort by '{key}': it holds a credential.", key.rsplit(".", 1)[-1]
    )
