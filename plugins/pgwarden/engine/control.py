"""The ``pgwarden`` schema in a managed database: where pgwarden keeps its own state there.

The erasure ledger, the migration history and backfill checkpoints live in it, beside the data they
describe, so they are in every backup and every restore of that database. Each feature creates its
own tables through its own module; this one only makes sure the schema exists.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

CONTROL_SCHEMA = "pgwarden"


def control_table(name: str) -> sql.Composed:
    """``pgwarden.<name>``, quoted."""
    return sql.Identifier(CONTROL_SCHEMA, name)


def ensure_control_schema(conn: psycopg.Connection) -> None:
    """Create the schema if it is missing. Idempotent; the caller owns the transaction.

    ``IF NOT EXISTS`` still races with a concurrent creator (unique violation on the namespace), so a
    transaction-scoped advisory lock serializes the first creations.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('pgwarden.control_schema', 0))")
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(CONTROL_SCHEMA)))
