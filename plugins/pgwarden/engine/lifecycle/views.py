"""Soft-delete ``<table>_active`` views: the rows not soft-deleted, with the caller's own privileges.

``security_invoker`` (PostgreSQL 15) makes the view check the querying role's rights and row-level
security on the table, not the view owner's, so the view never widens access.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import MAX_IDENTIFIER_BYTES, QualifiedName
from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.postgres import table_identifier


def active_view_name(table: QualifiedName) -> QualifiedName:
    name = f"{table.name}_active"
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise PermanentError(f"{table}: the view name {name!r} would exceed PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte "
                             f"limit; create the view yourself and set soft_delete.active_view: false")
    return QualifiedName(table.schema, name)


def ensure_active_view(conn: psycopg.Connection, policy: PolicyConfig, *, log: Callable[[str], None]) -> str:
    """Create or refresh ``<table>_active`` (``CREATE OR REPLACE`` keeps its grants)."""
    assert policy.soft_delete is not None
    view = active_view_name(policy.table)
    with conn.transaction():
        kind = conn.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (view.schema, view.name)).fetchone()
        if kind is not None and kind[0] != "v":
            raise PermanentError(f"{view} exists and is not a view; rename it or set soft_delete.active_view: false")
        try:
            conn.execute(sql.SQL(
                "CREATE OR REPLACE VIEW {} WITH (security_invoker = true) AS SELECT * FROM {} WHERE {} IS NULL"
            ).format(table_identifier(view), table_identifier(policy.table), sql.Identifier(policy.soft_delete.column)))
        except psycopg.errors.InvalidTableDefinition as exc:
            raise PermanentError(
                f"{view} no longer matches {policy.table} (a column was dropped or renamed): "
                f"{str(exc).strip()}; DROP VIEW {view} and the next run recreates it (grants must be given again)"
            ) from exc
    log(f"view {view} kept: rows of {policy.table} where {policy.soft_delete.column} IS NULL")
    return str(view)
