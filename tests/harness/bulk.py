"""Bulk data and bulk WAL for fault tests: enough that an upload or a stream is still running when
the test strikes."""

from __future__ import annotations

from psycopg import sql

from pgwarden.core.lsn import Lsn
from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.postgres import connect

ROW_BYTES = 128  # four md5 hex strings: compresses about 2x, like real text columns


def fill_table(server: LocalCluster, megabytes: int, table: str = "bulk") -> None:
    """A table of about ``megabytes`` MB of random-ish text (and as much WAL)."""
    rows = megabytes * 2**20 // (ROW_BYTES + 40)  # + tuple header and line pointer
    with connect(server.target(), statement_timeout="10min") as conn:
        ident = sql.Identifier(table)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigint, note text)").format(ident))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, md5(g::text) || md5((g * 3)::text) || md5((g * 7)::text)"
                    " || md5((g * 11)::text) FROM generate_series(1, %s) g").format(ident),
            (rows,),
        )


def emit_wal(server: LocalCluster, megabytes: int) -> Lsn:
    """About ``megabytes`` MB of WAL, fast (non-transactional logical messages); returns the new end."""
    with connect(server.target(), statement_timeout="10min") as conn:
        conn.execute(
            "SELECT pg_logical_emit_message(false, 'pgwarden-test', repeat('w', 4 * 1024 * 1024))"
            " FROM generate_series(1, %s)",
            (max(1, megabytes // 4),),
        )
        return Lsn.parse(str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]))


def slot_restart_lsn(server: LocalCluster, slot: str) -> tuple[Lsn | None, str | None]:
    """``(restart_lsn, wal_status)`` of a slot, ``(None, None)`` when there is no such slot."""
    with connect(server.target()) as conn:
        row = conn.execute(
            "SELECT restart_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    if row is None:
        return None, None
    return (Lsn.parse(row[0]) if row[0] else None), row[1]
