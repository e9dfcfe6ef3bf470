"""The engine view: one row per live object (any aggregate type), shaped for the API's
lists and lookups, plus a tombstone row per deleted object.

Rows carry the columns lists filter and sort on (kind, name, status and the parent ids
``data_center_id``, ``cluster_id``, ``host_id``, ``storage_domain_id``, ``template_id``,
derived through the engine when the object only knows its cluster) and the whole object
as JSON. Changes are coalesced per batch: an object updated 50 times in a batch is
written once. The rows also restore the runner's Engine on restart (no replay).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec

from domain.base import AGGREGATE_TYPES, Aggregate
from domain.engine import Engine
from projections.db import ViewDB
from projections.runner import Change, Projection

_enc = msgspec.json.Encoder(order="deterministic")
_dec = msgspec.json.Decoder()

PARENT_COLUMNS = ("data_center_id", "cluster_id", "host_id", "storage_domain_id", "template_id")
OBJECT_COLUMNS = (
    "id",
    "type",
    "kind",
    "name",
    "status",
    *PARENT_COLUMNS,
    "version",
    "position",
    "updated_at",
    "data",
)
TOMBSTONE_COLUMNS = ("id", "type", "kind", "name", "version", "position", "deleted_at", "data")


class ObjectRow(msgspec.Struct, frozen=True, gc=False):
    """A row of ``objects`` (fields in OBJECT_COLUMNS order); ``data`` the object's JSON."""

    id: str
    type: str
    kind: str
    name: str | None
    status: str | None
    data_center_id: str | None
    cluster_id: str | None
    host_id: str | None
    storage_domain_id: str | None
    template_id: str | None
    version: int
    position: int
    updated_at: str
    data: msgspec.Raw


class TombstoneRow(msgspec.Struct, frozen=True, gc=False):
    """A row of ``tombstones`` (fields in TOMBSTONE_COLUMNS order)."""

    id: str
    type: str
    kind: str
    name: str | None
    version: int
    position: int
    deleted_at: str
    data: msgspec.Raw


assert ObjectRow.__struct_fields__ == OBJECT_COLUMNS
assert TombstoneRow.__struct_fields__ == TOMBSTONE_COLUMNS
_rows_enc = msgspec.json.Encoder()


def kinds() -> dict[str, list[str]]:
    """REST kind -> aggregate class names (several classes may share a kind)."""
    out: dict[str, list[str]] = {}
    for cls_name, cls in AGGREGATE_TYPES.items():
        out.setdefault(cls.KIND, []).append(cls_name)
    return out


def object_name(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    if name is None:
        name = getattr(obj, "user_name", None)
    return None if name is None else str(name)


def parent_ids(obj: Any, engine: Engine) -> dict[str, Any]:
    """The parent ids of an object, derived through its cluster / storage domain."""
    dc = getattr(obj, "data_center_id", None)
    cluster = getattr(obj, "cluster_id", None)
    host = getattr(obj, "run_on_host_id", None) or getattr(obj, "host_id", None)
    sd = getattr(obj, "storage_domain_id", None)
    template = getattr(obj, "template_id", None)
    if dc is None and cluster is not None:
        c = engine.objects.get(cluster)
        dc = getattr(c, "data_center_id", None)
    if dc is None and sd is not None:
        s = engine.objects.get(sd)
        dc = getattr(s, "data_center_id", None)
    if cluster is None and host is not None and type(obj).KIND != "vm":
        h = engine.objects.get(host)
        cluster = getattr(h, "cluster_id", None)
    return {
        "data_center_id": dc,
        "cluster_id": cluster,
        "host_id": host,
        "storage_domain_id": sd,
        "template_id": template,
    }


class EngineView(Projection):
    name = "engine_view"
    tables = ("objects", "tombstones")
    coalesces = True  # only each object's last change of a batch makes its row
    digest_order = {"objects": "id", "tombstones": "id"}

    def __init__(self) -> None:
        super().__init__()
        self._dirty: dict[UUID, Change] = {}
        self._engine = Engine()

    # -- schema ------------------------------------------------------------------------
    def create_tables(self, db: ViewDB) -> None:
        parents = ", ".join(f"{c} TEXT" for c in PARENT_COLUMNS)
        # Rows are rewritten batch after batch: room left in each page lets PostgreSQL
        # update them in place (HOT: no new index entries while kind, name and parents
        # stay), about a third off a catch-up's upserts.
        room = " WITH (fillfactor = 70)" if db.dialect == "pg" else ""
        db.execute(
            "CREATE TABLE IF NOT EXISTS {objects} ("
            "id TEXT PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, "
            f"status TEXT, {parents}, version BIGINT NOT NULL, position BIGINT NOT NULL, "
            f"updated_at TEXT, data TEXT NOT NULL){room}"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS {tombstones} ("
            "id TEXT PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, "
            "version BIGINT NOT NULL, position BIGINT NOT NULL, deleted_at TEXT, "
            "data TEXT NOT NULL)"
        )
        b = db.bare
        db.execute(
            f'CREATE INDEX IF NOT EXISTS "{b("objects_kind_name")}" ON {{objects}} (kind, name)'
        )
        db.execute(
            f'CREATE INDEX IF NOT EXISTS "{b("objects_kind_cluster")}" '
            "ON {objects} (kind, cluster_id)"
        )

    # -- absorbing ---------------------------------------------------------------------
    def load(self, db: ViewDB) -> None:
        self._dirty = {}

    def observe(self, change: Change, engine: Engine) -> None:
        self._dirty[change.event.originator_id] = change
        self._engine = engine

    def prepare(self) -> Callable[[ViewDB], None]:
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return _nothing
        # The runner's engine is at the batch's end; parents derive from it.
        engine = self._engine
        upserts: list[ObjectRow] = []
        removed: list[TombstoneRow] = []
        encode = _enc.encode
        for oid, ch in dirty.items():
            obj = ch.after
            ts = ch.event.timestamp.isoformat()
            if obj is None:
                # Deleted: the last state we knew (``before`` of the deleting event).
                last = ch.before
                if last is None:
                    continue
                removed.append(
                    TombstoneRow(
                        str(oid),
                        type(last).__name__,
                        type(last).KIND,
                        object_name(last),
                        ch.event.originator_version,
                        ch.position,
                        ts,
                        msgspec.Raw(encode(last)),
                    )
                )
                continue
            par = parent_ids(obj, engine)
            status = getattr(obj, "status", None)
            upserts.append(
                ObjectRow(
                    str(oid),
                    type(obj).__name__,
                    type(obj).KIND,
                    object_name(obj),
                    None if status is None else str(status),
                    *[None if v is None else str(v) for v in par.values()],
                    obj.version,
                    ch.position,
                    ts,
                    msgspec.Raw(encode(obj)),
                )
            )

        def write(db: ViewDB) -> None:
            if removed:
                _delete_ids(db, "objects", [r.id for r in removed])
                _upsert(db, "tombstones", TOMBSTONE_COLUMNS, removed)
            if upserts:
                _upsert(db, "objects", OBJECT_COLUMNS, upserts)

        return write

    def restore_engine(self, db: ViewDB) -> Engine | None:
        engine = Engine()
        for type_name, data in db.query("SELECT type, data FROM {objects}"):
            cls = AGGREGATE_TYPES.get(type_name)
            if cls is None:
                return None  # an aggregate type this code does not know: replay instead
            try:
                obj: Aggregate = msgspec.json.decode(data, type=cls)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return None  # stored by an older shape of the class: replay instead
            engine.restore(obj.id, obj, None)
        for oid, version in db.query("SELECT id, version FROM {tombstones}"):
            engine.restore(UUID(oid), None, int(version))
        engine.position = self.position
        return engine


def _delete_ids(db: ViewDB, table: str, ids: Sequence[str]) -> None:
    if db.dialect == "pg":
        db.execute(f"DELETE FROM {{{table}}} WHERE id = ANY(?)", (list(ids),))
    else:
        db.executemany(f"DELETE FROM {{{table}}} WHERE id = ?", [(i,) for i in ids])


def _nothing(db: ViewDB) -> None:
    return None


def _upsert(db: ViewDB, table: str, columns: Sequence[str], rows: Sequence[Any]) -> None:
    cols = ", ".join(columns)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "id")
    if db.dialect == "pg":
        # One JSON parameter, encoded in C by msgspec (rows are Structs, the object's
        # JSON embedded as is) and unpacked by the server, which keeps a json value's
        # text verbatim in the TEXT column: no per-row Python work, no escaping.
        db.execute(
            f"INSERT INTO {{{table}}} ({cols}) SELECT {cols} FROM "
            f"json_populate_recordset(NULL::{{{table}}}, ?::json) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}",
            (_rows_enc.encode(rows).decode(),),
        )
    else:
        marks = ", ".join("?" for _ in columns)
        db.executemany(
            f"INSERT INTO {{{table}}} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}",
            [(*msgspec.structs.astuple(r)[:-1], bytes(r.data).decode()) for r in rows],
        )


# -- reading ---------------------------------------------------------------------------
def decode_row_data(data: str | bytes) -> dict[str, Any]:
    return _dec.decode(data)


def get_object(db: ViewDB, kind: str | None, obj_id: Any) -> dict[str, Any] | None:
    """The object as a plain dict, or None. ``kind`` None accepts any kind."""
    try:
        key = str(UUID(str(obj_id)))
    except ValueError:
        return None
    if kind is None:
        rows = db.query("SELECT data FROM {objects} WHERE id = ?", (key,))
    else:
        rows = db.query("SELECT data FROM {objects} WHERE id = ? AND kind = ?", (key, kind))
    return decode_row_data(rows[0][0]) if rows else None


def get_deleted(db: ViewDB, obj_id: Any) -> dict[str, Any] | None:
    try:
        key = str(UUID(str(obj_id)))
    except ValueError:
        return None
    rows = db.query(
        "SELECT kind, name, version, position, deleted_at, data FROM {tombstones} WHERE id = ?",
        (key,),
    )
    if not rows:
        return None
    kind, name, version, position, deleted_at, data = rows[0]
    return {
        "id": key,
        "kind": kind,
        "name": name,
        "version": int(version),
        "position": int(position),
        "deleted_at": deleted_at,
        "last_state": decode_row_data(data),
    }


def kind_of(db: ViewDB, obj_id: Any) -> str | None:
    try:
        key = str(UUID(str(obj_id)))
    except ValueError:
        return None
    rows = db.query("SELECT kind FROM {objects} WHERE id = ?", (key,))
    if not rows:
        rows = db.query("SELECT kind FROM {tombstones} WHERE id = ?", (key,))
    return rows[0][0] if rows else None
