"""``pgwarden.lifecycle_runs``: rows each TTL purge try removed, kept in the database it purged.

The purge's summary only lives in XCom, which Airflow may clean up and which a page should not have to
query per run. One small row per (run, policy, try), written by the purge operator after its try ended,
makes "rows purged per day" one cheap aggregate. A re-run of the same try replaces its row (idempotent);
a try killed before it recorded is missing, so a day's figure is a lower bound by what such a try removed
(the next try only counts what it removes itself).
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg
from psycopg import sql

from pgwarden.engine.control import control_table, ensure_control_schema

RUNS = control_table("lifecycle_runs")

_CREATE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {} (
    run_id       text NOT NULL,
    policy       text NOT NULL,
    try_number   integer NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    rows_deleted bigint NOT NULL CHECK (rows_deleted >= 0),
    finished     boolean NOT NULL,
    PRIMARY KEY (run_id, policy, try_number)
)""")


def record_purge(conn: psycopg.Connection, run_id: str, policy: str, try_number: int, rows_deleted: int,
                 finished: bool) -> None:
    """Upsert one try's count (creates the table on first use, under ``lock_timeout``)."""
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', '5s', true)")
        ensure_control_schema(conn)
        conn.execute(_CREATE.format(RUNS))
        conn.execute(sql.SQL(
            "INSERT INTO {} (run_id, policy, try_number, rows_deleted, finished) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (run_id, policy, try_number) DO UPDATE SET rows_deleted = EXCLUDED.rows_deleted, "
            "finished = EXCLUDED.finished, finished_at = clock_timestamp()").format(RUNS),
            (run_id, policy, try_number, rows_deleted, finished))


def purged_per_day(conn: psycopg.Connection, since: datetime) -> list[tuple[date, str, int]]:
    """(UTC day, policy, rows) since ``since``; empty when no purge has recorded yet. Reads only."""
    exists = conn.execute("SELECT to_regclass('pgwarden.lifecycle_runs') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        return []
    rows = conn.execute(sql.SQL(
        "SELECT (finished_at AT TIME ZONE 'UTC')::date, policy, sum(rows_deleted)::bigint FROM {} "
        "WHERE finished_at >= %s GROUP BY 1, 2 ORDER BY 1, 2").format(RUNS), (since,)).fetchall()
    return [(day, policy, int(n)) for day, policy, n in rows]
