"""oVirt's search language, as clients send it in ``?search=``, compiled to SQL over the
engine view.

Accepted::

    ""                                  everything
    name=web1     name="web 1"          exact (case-insensitive unless asked)
    name=web*     *db*                  ``*`` matches any run of characters; a bare word
                                        means ``name=word``
    status=up and cluster=Default       ``and`` (or just a space) binds tighter than ``or``
    host=h1 or host=h2  (a or b) and c  parentheses group
    name!=x   memory>=1073741824        ``!= < <= > >=`` (the ordering ones need numbers)
    Vms: name=x                         a leading ``Type:`` is accepted and ignored
    ... sortby name desc[, status]      ordering (default: name ascending)
    ... page 2                          with the list's ``max`` as page size

Reference attributes resolve names to ids through the view: ``datacenter``, ``cluster``,
``host``, ``storage`` and ``template`` match objects whose parent of that kind has a
matching name. Any other attribute is a field of the object (checked against the
aggregate classes of the kind); credential fields (``domain.base.is_credential_field``)
are refused. Values only ever reach SQL as parameters; a query that cannot be understood
raises ``SearchError`` naming the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import domain.model  # noqa: F401  (every aggregate class: CREDENTIAL_FIELDS complete)
from domain.base import is_credential_field
from projections.db import ViewDB


class SearchError(ValueError):
    """A malformed search; ``str(e)`` says what is wrong (oVirt answers 400)."""

    status = 400


# -- the syntax tree ----------------------------------------------------------------------
@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class And:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    where: Any = None  # Cond | And | Or | None
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    page: int | None = None
    prefix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- tokens -------------------------------------------------------------------------------
_OPS = ("!=", "<=", ">=", "=", "<", ">")
_KEYWORDS = {"and", "or", "sortby", "page", "asc", "desc"}
_WORD_STOP = set(" \t\r\n\"'()=!<>,")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
MAX_QUERY = 10_000


@dataclass(frozen=True)
class Tok:
    kind: str  # word | str | op | ( | ) | , | end
    text: str
    at: int


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    i, n = 0, len(text)
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
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, t: Tok, *words: str) -> bool:
        return t.kind == "word" and t.text.lower() in words

    def parse(self) -> Query:
        prefix = None
        t = self.peek()
        if t.kind == "word" and t.text.endswith(":") and len(t.text) > 1:
            prefix = t.text[:-1]
            self.next()
        elif (
            t.kind == "word"
            and self.toks[self.i + 1].kind == "word"
            and self.toks[self.i + 1].text == ":"
        ):
            prefix = t.text
            self.i += 2
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
                if p.kind not in ("word", "str") or not p.text.isdigit() or int(p.text) < 1:
                    raise SearchError(
                        f"'page' needs a positive whole number, got {p.text or 'nothing'!r}."
                    )
                page = int(p.text)
            elif t.kind == "end":
                break
            else:
                raise SearchError(f"Unexpected {_show(t)} at position {t.at + 1}.")
        return Query(where=where, sort=tuple(sort), page=page, prefix=prefix)

    def sort_keys(self) -> list[tuple[str, bool]]:
        keys = []
        while True:
            t = self.next()
            if t.kind != "word" or not _FIELD.match(t.text) or t.text.lower() in _KEYWORDS:
                raise SearchError(f"'sortby' needs a field name, got {_show(t)}.")
            desc = False
            nt = self.peek()
            if self.is_kw(nt, "asc", "desc"):
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
            return Cond("name", "=", t.text)
        if t.kind != "word" or t.text.lower() in _KEYWORDS:
            raise SearchError(f"Expected a condition at position {t.at + 1}, got {_show(t)}.")
        nt = self.peek()
        if nt.kind != "op":
            return Cond("name", "=", t.text)  # a bare word matches names
        if not _FIELD.match(t.text):
            raise SearchError(f"{t.text!r} is not a field name.")
        op = self.next().text
        v = self.next()
        if v.kind not in ("word", "str"):
            raise SearchError(f"Missing value after '{t.text}{op}' at position {v.at + 1}.")
        return Cond(t.text.lower(), op, v.text)


def _show(t: Tok) -> str:
    return "the end of the query" if t.kind == "end" else repr(t.text)


def parse(text: str | None) -> Query:
    """Parses a search; never raises anything but SearchError."""
    if text is None:
        return Query()
    if not isinstance(text, str):
        raise SearchError("The search must be text.")
    if len(text) > MAX_QUERY:
        raise SearchError(f"The search is too long (over {MAX_QUERY} characters).")
    if "\x00" in text:
        raise SearchError("The search contains a NUL character.")
    try:
        return _Parser(tokenize(text)).parse()
    except SearchError:
        raise
    except RecursionError:
        raise SearchError("The search nests too deeply.") from None


# -- compiling ----------------------------------------------------------------------------
# search attribute -> (view column, kind of the referenced object)
REFERENCES = {
    "datacenter": ("data_center_id", "data_center"),
    "data_center": ("data_center_id", "data_center"),
    "dc": ("data_center_id", "data_center"),
    "cluster": ("cluster_id", "cluster"),
    "host": ("host_id", "host"),
    "storage": ("storage_domain_id", "storage_domain"),
    "storage_domain": ("storage_domain_id", "storage_domain"),
    "storagedomain": ("storage_domain_id", "storage_domain"),
    "template": ("template_id", "template"),
}
COLUMNS = {
    "name": "name",
    "id": "id",
    "status": "status",
    "kind": "kind",
    "version": "version",
    "data_center_id": "data_center_id",
    "cluster_id": "cluster_id",
    "host_id": "host_id",
    "storage_domain_id": "storage_domain_id",
    "template_id": "template_id",
}
NUMERIC_COLUMNS = {"version"}
PAGE_SIZE = 100


def fields_of_kind(kind: str | None) -> set[str] | None:
    """Every field the aggregate classes of ``kind`` have; None when the kind is unknown."""
    from domain.base import AGGREGATE_TYPES

    if kind is None:
        return None
    out: set[str] = set()
    found = False
    for cls in AGGREGATE_TYPES.values():
        if kind == cls.KIND:
            found = True
            out.update(cls.__struct_fields__)
    return out if found else None


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


class Compiler:
    """Turns a Query into SQL text (``?`` placeholders) and parameters for one kind."""

    def __init__(self, db: ViewDB, kind: str | None, case_sensitive: bool = False) -> None:
        self.db = db
        self.kind = kind
        self.cs = case_sensitive
        self.params: list[Any] = []
        self.fields = fields_of_kind(kind)

    # text matching ------------------------------------------------------------------
    def _match(self, expr: str, value: str) -> str:
        if not self.cs:
            expr = f"lower({expr})"
            value = value.lower()
        if "*" not in value:
            self.params.append(value)
            return f"{expr} = ?"
        if self.db.dialect == "pg":
            pat = (value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")).replace(
                "*", "%"
            )
            self.params.append(pat)
            return f"{expr} LIKE ? ESCAPE '\\'"
        pat = "".join({"*": "*", "?": "[?]", "[": "[[]", "]": "]"}.get(ch, ch) for ch in value)
        self.params.append(pat)
        return f"{expr} GLOB ?"

    def _json_text(self, name: str) -> str:
        if self.db.dialect == "pg":
            self.params.append(name)
            return "((data)::jsonb ->> ?)"
        path = f'$."{name}"'
        self.params.extend([path, path])
        return (
            "(CASE json_type(data, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            "ELSE CAST(json_extract(data, ?) AS TEXT) END)"
        )

    def _json_number(self, name: str) -> str:
        if self.db.dialect == "pg":
            self.params.extend([name, name])
            return (
                "(CASE WHEN jsonb_typeof((data)::jsonb -> ?) = 'number' "
                "THEN ((data)::jsonb ->> ?)::double precision END)"
            )
        path = f'$."{name}"'
        self.params.extend([path, path])
        return (
            "(CASE WHEN json_type(data, ?) IN ('integer', 'real') "
            "THEN CAST(json_extract(data, ?) AS REAL) END)"
        )

    def _check_field(self, name: str) -> None:
        if self.fields is not None and name not in self.fields:
            label = self.kind or "objects"
            raise SearchError(f"Unknown search field {name!r} for {label}.")

    # conditions -----------------------------------------------------------------------
    def cond(self, c: Cond) -> str:
        name = c.field.split(".")[-1] if "." in c.field else c.field
        if c.op in ("<", ">", "<=", ">="):
            num = _number(c.value)
            if num is None:
                raise SearchError(f"Operator '{c.op}' needs a number, got {c.value!r}.")
            if name in NUMERIC_COLUMNS:
                expr = name
            elif name in COLUMNS or name in REFERENCES:
                raise SearchError(f"Operator '{c.op}' cannot compare {name!r}.")
            else:
                self._check_field(name)
                expr = self._json_number(name)
            self.params.append(num)
            return f"COALESCE({expr} {c.op} ?, FALSE)"
        if name in REFERENCES:
            column, ref_kind = REFERENCES[name]
            self.params.append(ref_kind)
            inner = self._match("r.name", c.value)
            sql = f"{column} IN (SELECT r.id FROM {{objects}} r WHERE r.kind = ? AND {inner})"
        elif name in COLUMNS:
            sql = self._match(COLUMNS[name], c.value)
        else:
            self._check_field(name)
            sql = self._match(self._json_text(name), c.value)
        sql = f"COALESCE({sql}, FALSE)"
        return f"NOT {sql}" if c.op == "!=" else sql

    def node(self, n: Any) -> str:
        if isinstance(n, Cond):
            return self.cond(n)
        if isinstance(n, And):
            return "(" + " AND ".join(self.node(i) for i in n.items) + ")"
        if isinstance(n, Or):
            return "(" + " OR ".join(self.node(i) for i in n.items) + ")"
        raise SearchError("Malformed search.")  # pragma: no cover

    def order(self, sort: tuple[tuple[str, bool], ...]) -> str:
        coll = ' COLLATE "C"' if self.db.dialect == "pg" else ""
        parts = []
        for name, desc in sort or (("name", False),):
            d = " DESC" if desc else ""
            if name in REFERENCES:
                col = REFERENCES[name][0]
                parts.append(f"{col}{coll}{d}")
            elif name in NUMERIC_COLUMNS:
                parts.append(f"{name}{d}")
            elif name in COLUMNS:
                col = COLUMNS[name]
                parts.append(f"lower({col}){coll}{d}, {col}{coll}{d}")
            else:
                self._check_field(name)
                if self.db.dialect == "pg":
                    parts.append(f"((data)::jsonb -> '{_literal(name)}'){d}")
                else:
                    parts.append(f"json_extract(data, '$.\"{_literal(name)}\"'){d}")
        parts.append("id")
        return ", ".join(parts)


def refuse_credentials(q: Query) -> None:
    """SearchError when the query searches or sorts by a credential field, wherever it
    names one (a search or sort by a credential would reveal it a character at a time)."""
    names = [name for name, _ in q.sort]
    todo = [q.where]
    while todo:
        n = todo.pop()
        if isinstance(n, Cond):
            names.append(n.field)
        elif isinstance(n, And | Or):
            todo.extend(n.items)
    for name in names:
        if is_credential_field(name):
            raise SearchError(f"Cannot search or sort by {name!r}: it holds a credential.")


def _literal(name: str) -> str:
    # Field names are checked against the aggregate classes, and match _FIELD anyway.
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SearchError(f"{name!r} is not a field name.")
    return name


def search_objects(
    db: ViewDB,
    kind: str | None,
    search: str | None = None,
    *,
    max: int | None = None,
    page: int | None = None,
    case_sensitive: bool = False,
) -> list[dict[str, Any]]:
    """The objects of ``kind`` matching ``search``, as plain dicts, in list order."""
    from projections.engine_view import decode_row_data

    rows = search_rows(db, kind, search, max=max, page=page, case_sensitive=case_sensitive)
    return [decode_row_data(data) for _, data in rows]


def search_rows(
    db: ViewDB,
    kind: str | None,
    search: str | None = None,
    *,
    max: int | None = None,
    page: int | None = None,
    case_sensitive: bool = False,
) -> list[tuple[str, str]]:
    """(aggregate class name, object JSON) of the matching objects, in list order."""
    q = parse(search)
    refuse_credentials(q)
    comp = Compiler(db, kind, case_sensitive)
    clauses = []
    params: list[Any] = []
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    if q.where is not None:
        clauses.append(comp.node(q.where))
    where_params = comp.params
    comp.params = []
    order = comp.order(q.sort)
    sql = "SELECT type, data FROM {objects}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY {order}"
    if max is not None and max < 0:
        max = None  # oVirt: max=-1 means no limit
    page = q.page or page
    if page is not None and page < 1:
        raise SearchError("'page' must be a positive whole number.")
    limit = max if max is not None else (PAGE_SIZE if page else None)
    tail: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        tail.append(limit)
        if page and page > 1:
            sql += " OFFSET ?"
            tail.append((page - 1) * limit)
    rows = db.query(sql, [*params, *where_params, *comp.params, *tail])
    return [(r[0], r[1]) for r in rows]
