"""The log's protection on PostgreSQL: an audit trail the Manager cannot rewrite.

Two roles. The *owner* creates the schema and the log's tables; the *Manager's* role (the
one in the database URL) may only read and append to the log: ``SELECT`` and ``INSERT``
on ``orrery_events``, ``USAGE`` on its notification id sequence, and the right to take
the append lock through ``orrery_events_lock()``, a ``SECURITY DEFINER`` function of the
owner (``LOCK TABLE ... IN EXCLUSIVE MODE`` would otherwise need ``UPDATE`` or ``DELETE``
on the table). Snapshots, tracking positions and the read side's tables are not the log
and stay writable. On top of the grants, triggers refuse ``UPDATE``, ``DELETE`` and
``TRUNCATE`` of the log for everyone, the owner included.

``install`` is idempotent and runs whenever the log is opened by its owner; ``grant``
gives a Manager's role its rights. Statements only: no connection is kept.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

LOG_TABLE = "orrery_events"
SNAPSHOTS_TABLE = "orrery_snapshots"
REFUSE_FUNCTION = "orrery_log_append_only"
TRIGGERS = ("orrery_log_no_update_delete", "orrery_log_no_truncate")


def _one(conn: Any, query: Any, params: Any = None) -> Any:
    """One row as a tuple, whatever the connection's row factory (the library's: dicts)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchone()


def lock_function(table: str = LOG_TABLE) -> str:
    return f"{table}_lock"


def log_owner(conn: Any, schema: str, table: str = LOG_TABLE) -> str | None:
    """The role that owns the log table, None while it does not exist."""
    row = _one(
        conn,
        "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = %s",
        (schema, table),
    )
    return None if row is None else str(row[0])


def is_installed(conn: Any, schema: str, table: str = LOG_TABLE) -> bool:
    """The triggers and the lock function are there."""
    row = _one(
        conn,
        "SELECT (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "        JOIN pg_namespace n ON n.oid = c.relnamespace "
        "        WHERE n.nspname = %s AND c.relname = %s AND t.tgname = ANY(%s)), "
        "       (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "        WHERE n.nspname = %s AND p.proname = %s)",
        (schema, table, list(TRIGGERS), schema, lock_function(table)),
    )
    return row is not None and row[0] == len(TRIGGERS) and row[1] == 1


def install(conn: Any, schema: str, table: str = LOG_TABLE) -> None:
    """As the log's owner: the refusing triggers and the append lock function, in one
    transaction (serialized by an advisory lock, so concurrent openers do not collide)."""
    s, t = Identifier(schema), Identifier(table)
    refuse = SQL("{0}.{1}").format(s, Identifier(REFUSE_FUNCTION))
    lock = SQL("{0}.{1}").format(s, Identifier(lock_function(table)))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"orrery-guard:{schema}",))
        if is_installed(conn, schema, table):
            return
        conn.execute(
            SQL(
                "CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'the event log is append-only: % refused on %.%', "
                "TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; "
                "END $$"
            ).format(refuse)
        )
        conn.execute(
            SQL(
                "CREATE OR REPLACE TRIGGER {0} BEFORE UPDATE OR DELETE ON {1}.{2} "
                "FOR EACH ROW EXECUTE FUNCTION {3}()"
            ).format(Identifier(TRIGGERS[0]), s, t, refuse)
        )
        conn.execute(
            SQL(
                "CREATE OR REPLACE TRIGGER {0} BEFORE TRUNCATE ON {1}.{2} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {3}()"
            ).format(Identifier(TRIGGERS[1]), s, t, refuse)
        )
        conn.execute(
            SQL(
                "CREATE OR REPLACE FUNCTION {0}() RETURNS void LANGUAGE plpgsql "
                "SECURITY DEFINER SET search_path = pg_catalog AS $$ "
                "BEGIN LOCK TABLE {1}.{2} IN EXCLUSIVE MODE; END $$"
            ).format(lock, s, t)
        )
        conn.execute(SQL("REVOKE ALL ON FUNCTION {0}() FROM PUBLIC").format(lock))


def grant(conn: Any, schema: str, role: str, table: str = LOG_TABLE) -> None:
    """As the owner: the Manager's ``role`` may read and append to the log (nothing
    more), use the schema for the read side's tables, and write snapshots."""
    s, r = Identifier(schema), Identifier(role)
    log = SQL("{0}.{1}").format(s, Identifier(table))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"orrery-guard:{schema}",))
        conn.execute(SQL("GRANT USAGE, CREATE ON SCHEMA {0} TO {1}").format(s, r))
        conn.execute(SQL("REVOKE ALL ON {0} FROM PUBLIC, {1}").format(log, r))
        conn.execute(SQL("GRANT SELECT, INSERT ON {0} TO {1}").format(log, r))
        seq = _one(
            conn,
            "SELECT pg_get_serial_sequence(%s, 'notification_id')",
            (f'"{schema}"."{table}"',),
        )
        if seq is not None and seq[0]:
            conn.execute(SQL("GRANT USAGE, SELECT ON SEQUENCE {0} TO {1}").format(SQL(seq[0]), r))
        conn.execute(
            SQL("GRANT EXECUTE ON FUNCTION {0}.{1}() TO {2}").format(
                s, Identifier(lock_function(table)), r
            )
        )
        if log_owner(conn, schema, SNAPSHOTS_TABLE) is not None:
            conn.execute(
                SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {0}.{1} TO {2}").format(
                    s, Identifier(SNAPSHOTS_TABLE), r
                )
            )


__all__ = ["LOG_TABLE", "grant", "install", "is_installed", "lock_function", "log_owner"]
