"""oVirt's search language: the one tokenizer, parser and syntax tree, shared by both back
ends (``projections.search.memory`` over Python objects, ``projections.search.sql`` over
the engine view).

Accepted::

    ""                                  everything
    name=web1     name="web 1"          exact (case-insensitive unless asked)
    name=web*     *db*                  ``*`` matches any run of characters
    web           "web 1"               a bare value is free text: names containing it
    status=up and cluster=Default       ``and`` (or just a space) binds tighter than ``or``
    host=h1 or host=h2  (a or b) and c  parentheses group
    name!=x   memory>=1073741824        ``!= < <= > >=`` (the ordering ones need numbers)
    Vms: name=x   Vms:name=x            a leading ``Type:`` is accepted and ignored
    ... sortby name desc[, status]      ordering
    ... page 2                          with the list's ``max`` as page size

``parse(text)`` gives a ``Query``; it also refuses a search or sort naming a credential
field (``domain.base.is_credential_field``), so every back end refuses it. Anything it
cannot understand raises ``SearchError`` naming the problem (oVirt answers 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import domain.model  # noqa: F401  (every aggregate class: CREDENTIAL_FIELDS complete)
from domain.base import is_credential_field


class SearchError(ValueError):
    """A malformed or refused search; ``str(e)`` says what is wrong, ``field`` names the
    query parameter or field at fault (oVirt answers 400)."""

    status = 400

    def __init__(self, message: str, field: str = "search") -> None:
        super().__init__(message)
        self.field = field


# -- the syntax tree ----------------------------------------------------------------------
@dataclass(frozen=True)
class Cond:
    field: str
    op: str  # = != < <= > >=
    value: str  # ``*`` is the wildcard of = and !=


@dataclass(frozen=True)
class And:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Any, ...]


Node = Cond | And | Or


@dataclass(frozen=True)
class Query:
    where: Any = None  # Node | None
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    page: int | None = None
    prefix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def conditions(node: Any) -> list[Cond]:
    """Every condition of a tree, left to right."""
    if isinstance(node, Cond):
        return [node]
    if isinstance(node, And | Or):
        return [c for item in node.items for c in conditions(item)]
    return []


# -- tokens -------------------------------------------------------------------------------
ORDERING_OPS = ("<", "<=", ">", ">=")
_OPS = ("!=", "<=", ">=", "=", "<", ">")
_KEYWORDS = {"and", "or", "sortby", "page", "asc", "desc"}
_WORD_STOP = set(" \t\r\n\"'()=!<>,")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_PREFIX = re.compile(r"\s*([A-Za-z][A-Za-z_]*)\s*:")
MAX_QUERY = 10_000


@dataclass(frozen=True)
class Tok:
    kind: str  # word | str | op | ( | ) | , | end
    text: str
    at: int


def tokenize(text: str, start: int = 0) -> list[Tok]:
    out: list[Tok] = []
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "(),":
            out.append(Tok(c, c, i))
            i += 1
            continue
        if c in "\"'":
            j = i + 1
            buf = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n and text[j + 1] in (c, "\\"):
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise SearchError(f"Unterminated quoted value starting at position {i + 1}.")
            out.append(Tok("str", "".join(buf), i))
            i = j + 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            out.append(Tok("op", op, i))
            i += len(op)
            continue
        if c == "!":
            raise SearchError(f"Unexpected '!' at position {i + 1}; did you mean '!='?")
        j = i
        while j < n and text[j] not in _WORD_STOP and not text[j].isspace():
            j += 1
        out.append(Tok("word", text[i:j], i))
        i = j
    out.append(Tok("end", "", n))
    return out


# -- parsing ------------------------------------------------------------------------------
class _Parser:
    def __init__(self, toks: list[Tok], prefix: str | None) -> None:
        self.toks = toks
        self.i = 0
        self.prefix = prefix

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, t: Tok, *words: str) -> bool:
        return t.kind == "word" and t.text.lower() in words

    def parse(self) -> Query:
        where = None
        t = self.peek()
        if t.kind != "end" and not self.is_kw(t, "sortby", "page"):
            where = self.expr()
        sort: list[tuple[str, bool]] = []
        page = None
        while True:
            t = self.peek()
            if self.is_kw(t, "sortby"):
                self.next()
                sort.extend(self.sort_keys())
            elif self.is_kw(t, "page"):
                self.next()
                p = self.next()
                if (
                    p.kind not in ("word", "str")
                    or not (p.text.isascii() and p.text.isdigit())
                    or int(p.text) < 1
                ):
                    raise SearchError(
                        f"'page' needs a positive whole number, got {p.text or 'nothing'!r}."
                    )
                page = int(p.text)
            elif t.kind == "end":
                break
            else:
                raise SearchError(f"Unexpected {_show(t)} at position {t.at + 1}.")
        return Query(where=where, sort=tuple(sort), page=page, prefix=self.prefix)

    def sort_keys(self) -> list[tuple[str, bool]]:
        keys = []
        while True:
            t = self.next()
            if t.kind != "word" or not _FIELD.match(t.text) or t.text.lower() in _KEYWORDS:
                raise SearchError(f"'sortby' needs a field name, got {_show(t)}.")
            desc = False
            if self.is_kw(self.peek(), "asc", "desc"):
                desc = self.next().text.lower() == "desc"
            keys.append((t.text.lower(), desc))
            if self.peek().kind == ",":
                self.next()
                continue
            return keys

    def expr(self) -> Any:
        items = [self.term()]
        while self.is_kw(self.peek(), "or"):
            self.next()
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Any:
        items = [self.factor()]
        while True:
            t = self.peek()
            if self.is_kw(t, "and"):
                self.next()
                items.append(self.factor())
            elif t.kind in ("word", "str", "(") and not self.is_kw(t, "or", "sortby", "page"):
                items.append(self.factor())  # implicit and
            else:
                break
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> Any:
        t = self.next()
        if t.kind == "(":
            inner = self.expr()
            close = self.next()
            if close.kind != ")":
                raise SearchError(f"Missing ')' for the '(' at position {t.at + 1}.")
            return inner
        if t.kind == "str":
            return free_text(t.text)
        if t.kind != "word" or t.text.lower() in _KEYWORDS:
            raise SearchError(f"Expected a condition at position {t.at + 1}, got {_show(t)}.")
        if self.peek().kind != "op":
            return free_text(t.text)
        if not _FIELD.match(t.text):
            raise SearchError(f"{t.text!r} is not a field name.")
        op = self.next().text
        v = self.next()
        if v.kind not in ("word", "str"):
            raise SearchError(f"Missing value after '{t.text}{op}' at position {v.at + 1}.")
        return Cond(t.text.lower(), op, v.text)


def free_text(value: str) -> Cond:
    """A bare value: oVirt's free-text search, the objects whose name contains it."""
    return Cond("name", "=", f"*{value}*")


def _show(t: Tok) -> str:
    return "the end of the query" if t.kind == "end" else repr(t.text)


def parse(text: str | None) -> Query:
    """Parses and checks a search; never raises anything but SearchError."""
    if text is None:
        return Query()
    if not isinstance(text, str):
        raise SearchError("The search must be text.")
    if len(text) > MAX_QUERY:
        raise SearchError(f"The search is too long (over {MAX_QUERY} characters).")
    if "\x00" in text:
        raise SearchError("The search contains a NUL character.")
    prefix = None
    m = _PREFIX.match(text)
    if m is not None:
        prefix, start = m.group(1), m.end()
    else:
        start = 0
    try:
        q = _Parser(tokenize(text, start), prefix).parse()
    except RecursionError:
        raise SearchError("The search nests too deeply.") from None
    refuse_credentials(q)
    return q


def refuse_credentials(q: Query) -> None:
    """SearchError when the query searches or sorts by a credential field, wherever it
    names one (a search or sort by a credential would reveal it a character at a time)."""
    for name in [c.field for c in conditions(q.where)] + [name for name, _ in q.sort]:
        if is_credential_field(name):
            raise credential_refused(name)


def credential_refused(name: str) -> SearchError:
    """The error for a search or sort on a credential field (the message names it)."""
    return SearchError(
        f"Cannot search or sort by {name!r}: it holds a credential.", name.rsplit(".", 1)[-1]
    )


def ordering_number(c: Cond) -> float:
    """The number an ordering condition (``< <= > >=``) compares with; SearchError if its
    value is not one (oVirt orders numbers only)."""
    n = number(c.value)
    if n is None:
        raise SearchError(f"Operator '{c.op}' needs a number, got {c.value!r}.")
    return n


def number(text: str) -> float | None:
    """The finite number a value spells, or None."""
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None
