"""Small, deterministic data for backup and restore tests."""

from __future__ import annotations

from dataclasses import replace

from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.postgres import PgTarget, connect


def _target(server: LocalCluster | PgTarget, dbname: str) -> PgTarget:
    """A server the tests started, or a login to one (e.g. with a password)."""
    return server.target(dbname) if isinstance(server, LocalCluster) else replace(server, dbname=dbname)


def create_items(server: LocalCluster | PgTarget, rows: int, dbname: str = "postgres") -> None:
    with connect(_target(server, dbname)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, note text NOT NULL)")
        add_items(server, rows, dbname)


def add_items(server: LocalCluster | PgTarget, rows: int, dbname: str = "postgres") -> int:
    """Append ``rows`` rows; returns the new total."""
    with connect(_target(server, dbname)) as conn:
        start = conn.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
        conn.execute(
            "INSERT INTO items SELECT g, md5(g::text) || repeat(' filler', 5) FROM generate_series(%s::bigint, %s::bigint) g",
            (start + 1, start + rows),
        )
        return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])


def count_items(server: LocalCluster | PgTarget, dbname: str = "postgres") -> int:
    with connect(_target(server, dbname)) as conn:
        return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])
