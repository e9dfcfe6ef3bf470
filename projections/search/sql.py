"""The SQL back end of oVirt's search: a parsed ``Query`` (``projections.search.syntax``)
compiled to SQL over the engine view, for SQLite and PostgreSQL.

    search_objects(db, "vm", "name=web* and cluster=Default sortby name desc page 2", max=10)

Its rules are the in-memory back end's (``projections.search.memory``), checked against it
by tests/integration/test_search_conformance.py. Reference attributes (``datacenter``,
``cluster``, ``host``, ``storage``, ``template``) match the referenced object's id or name
through the view; any other attribute is a column or a field of the object, checked
against the aggregate classes of the kind. A field with no value (NULL) matches no
pattern, so ``x!=...`` selects it and ``x=*`` does not (oVirt's SQL). The list's order
is its ``sortby`` keys, then name (the default), then id. Values only ever reach SQL as
parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from domain.base import AGGREGATE_TYPES
from projections.db import ViewDB
from projections.engine_view import decode_row_data
from projections.search.syntax import (
    ORDERING_OPS,
    And,
    Cond,
    Or,
    Query,
    SearchError,
    ordering_number,
    parse,
)

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
    if kind is None:
        return None
    out: set[str] = set()
    found = False
    for cls in AGGREGATE_TYPES.values():
        if kind == cls.KIND:
            found = True
            out.update(cls.__struct_fields__)
    return out if found else None


def _matches_empty(value: str) -> bool:
    return value.replace("*", "") == ""


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
        """``expr`` against the pattern ``value`` (NULL, no value, matches nothing)."""
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
        if c.op in ORDERING_OPS:
            num = ordering_number(c)
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
            # The reference's id or the referenced object's name (as the API's lookup).
            column, ref_kind = REFERENCES[name]
            own = self._match(column, c.value)
            self.params.append(ref_kind)
            inner = self._match("r.name", c.value)
            sql = (
                f"({own} OR {column} IN "
                f"(SELECT r.id FROM {{objects}} r WHERE r.kind = ? AND {inner}))"
            )
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

    # ordering -------------------------------------------------------------------------
    def _sort_parts(
        self, text: Callable[[], str], num: Callable[[], str] | None, d: str
    ) -> list[str]:
        """``memory.sort_value`` in SQL: numbers first by value, then text by its lower
        case, then exactly (byte order on PostgreSQL, as Python compares). ``text`` and
        ``num`` give a fresh expression (with its parameters) for each use."""
        coll = ' COLLATE "C"' if self.db.dialect == "pg" else ""
        parts = []
        if num is not None:
            parts += [f"({num()} IS NULL){d}", f"COALESCE({num()}, 0){d}"]
        return [
            *parts,
            f"lower(COALESCE({text()}, '')){coll}{d}",
            f"COALESCE({text()}, ''){coll}{d}",
        ]

    def order(self, sort: tuple[tuple[str, bool], ...]) -> str:
        parts = []
        for name, desc in (*sort, ("name", False)):
            d = " DESC" if desc else ""
            if name in NUMERIC_COLUMNS:
                parts.append(f"{name}{d}")
            elif name in REFERENCES or name in COLUMNS:
                column = REFERENCES[name][0] if name in REFERENCES else COLUMNS[name]
                parts += self._sort_parts(partial(str, column), None, d)
            else:
                self._check_field(name)
                parts += self._sort_parts(
                    partial(self._json_text, name), partial(self._json_number, name), d
                )
        parts.append("id")
        return ", ".join(parts)


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
    return run_query(db, kind, parse(search), max=max, page=page, case_sensitive=case_sensitive)


def run_query(
    db: ViewDB,
    kind: str | None,
    q: Query,
    *,
    max: int | None = None,
    page: int | None = None,
    case_sensitive: bool = False,
) -> list[tuple[str, str]]:
    """(aggregate class name, object JSON) of the objects a parsed query selects."""
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
