"""``pgwarden.schema_history``: which migrations a database has, in which phase, applied by which run.

One row per version. ``phases`` is the timeline (JSON list): every phase start and end, with the Airflow
``dag_id``/``run_id``/``try_number`` that ran it, its restore point and the outcome (an error's SQLSTATE,
never its text: messages can quote row values). ``approvals`` holds each gate's approver (filled by the
gated expand/contract DAGs). ``target_table`` lists the tables an expand/contract migration changes; only
one such migration may be active on a table at a time, enforced by the primary key of
``pgwarden.schema_history_tables`` (one claim row per active migration and table, written with the
migration's first phase and released in the transaction that completes or rolls it back), so two
starters racing each other cannot both win.

Appliers of one database are serialized by a session-level advisory lock held on the connection that
runs the migrations (:func:`applier_lock`), so the lock lives exactly as long as the backend that could
still commit one: a killed applier's backend ends (``client_connection_check_interval``) and frees it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgwarden.core.migrations.file import AppliedRecord, MigrationFile
from pgwarden.engine.control import control_table, ensure_control_schema
from pgwarden.engine.errors import PermanentError, TransientError
from pgwarden.engine.postgres import session_advisory_lock

HISTORY = control_table("schema_history")
CLAIMS = control_table("schema_history_tables")
APPLIER_LOCK_KEY = "pgwarden.migrate"

_CREATE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {history} (
    version            integer PRIMARY KEY,
    name               text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('plain', 'expand_contract')),
    checksum           text NOT NULL,
    down_checksum      text,
    target_table       text,
    phase              text NOT NULL,
    status             text NOT NULL CHECK (status IN ('running', 'failed', 'applied', 'rolled_back')),
    restore_point      text,
    restore_point_lsn  pg_lsn,
    dag_id             text,
    run_id             text,
    try_number         integer,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    phases             jsonb NOT NULL DEFAULT '[]',
    approvals          jsonb NOT NULL DEFAULT '[]',
    applied_by         text NOT NULL DEFAULT current_user
)""")

_CREATE_CLAIMS = sql.SQL("""
CREATE TABLE IF NOT EXISTS {claims} (
    table_name  text PRIMARY KEY,
    version     integer NOT NULL REFERENCES {history} (version)
)""")


@dataclass(frozen=True)
class RunInfo:
    """Who is applying: the Airflow run (``dag_id``/``run_id``/``try_number``) or the CLI (all None)."""

    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None

    def stamp(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "try_number": self.try_number}


@dataclass(frozen=True)
class HistoryRow:
    version: int
    name: str
    kind: str
    checksum: str
    phase: str
    status: str
    target_table: str | None
    restore_point: str | None
    restore_point_lsn: str | None
    started_at: datetime | None
    finished_at: datetime | None
    dag_id: str | None
    run_id: str | None
    phases: list[dict[str, Any]]

    @property
    def record(self) -> AppliedRecord:
        return AppliedRecord(self.version, self.name, self.kind, self.checksum, self.status)  # type: ignore[arg-type]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "name": self.name, "kind": self.kind, "checksum": self.checksum,
            "phase": self.phase, "status": self.status, "target_table": self.target_table,
            "restore_point": self.restore_point, "restore_point_lsn": self.restore_point_lsn,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "dag_id": self.dag_id, "run_id": self.run_id,
        }


def ensure_history(conn: psycopg.Connection) -> None:
    """Create ``pgwarden.schema_history`` if missing (serialized with other creators)."""
    with conn.transaction():
        ensure_control_schema(conn)
        conn.execute(_CREATE.format(history=HISTORY))
        conn.execute(_CREATE_CLAIMS.format(claims=CLAIMS, history=HISTORY))


def history_exists(conn: psycopg.Connection) -> bool:
    with conn.transaction():
        return conn.execute("SELECT to_regclass('pgwarden.schema_history') IS NOT NULL").fetchone()[0]


_COLUMNS = ("version, name, kind, checksum, phase, status, target_table, restore_point, "
            "restore_point_lsn::text, started_at, finished_at, dag_id, run_id, phases")


def read_history(conn: psycopg.Connection) -> list[HistoryRow]:
    """Every row, by version; empty when the table does not exist yet (read-only: creates nothing)."""
    if not history_exists(conn):
        return []
    with conn.transaction():
        rows = conn.execute(
            sql.SQL("SELECT " + _COLUMNS + " FROM {} ORDER BY version").format(HISTORY)  # noqa: S608
        ).fetchall()
    return [HistoryRow(*row) for row in rows]


@contextmanager
def applier_lock(conn: psycopg.Connection, database: str, wait: timedelta) -> Iterator[None]:
    """Hold the database's applier lock on ``conn`` (autocommit) for the block; waits up to ``wait``.

    A second applier waits here, then finds the migrations the first one applied already in the history.
    """
    def busy(holders: str) -> TransientError:
        return TransientError(
            f"another migration applier for {database} (backend pid {holders}) still holds the lock "
            f"after {wait}; it is applying migrations: wait for it, then retry")

    with session_advisory_lock(conn, f"{APPLIER_LOCK_KEY}.{database}", wait, busy):
        yield


def _event(phase: str, status: str, run: RunInfo, **extra: Any) -> Jsonb:
    return Jsonb([{"phase": phase, "status": status, **run.stamp(), **extra}])


def start_phase(
    conn: psycopg.Connection,
    migration: MigrationFile,
    phase: str,
    run: RunInfo,
    *,
    restore_point: str | None = None,
    restore_point_lsn: str | None = None,
    tables: Sequence[str] = (),
) -> None:
    """Record that ``phase`` of ``migration`` starts now (status ``running``), committed at once.

    ``tables`` (an expand/contract migration's tables, as ``schema.name``) are claimed in the same
    transaction; a table another active expand/contract migration holds refuses the start.
    """
    event = _event(phase, "running", run, restore_point=restore_point)
    target_table = ", ".join(tables) or None
    with conn.transaction():
        conn.execute(
            sql.SQL("""
            INSERT INTO {h} AS h (version, name, kind, checksum, down_checksum, target_table, phase, status,
                                  restore_point, restore_point_lsn, dag_id, run_id, try_number, started_at,
                                  phases)
            VALUES (%(version)s, %(name)s, %(kind)s, %(checksum)s, %(down)s, %(table)s, %(phase)s, 'running',
                    %(rp)s, %(lsn)s::pg_lsn, %(dag_id)s, %(run_id)s, %(try)s, clock_timestamp(),
                    jsonb_set(%(event)s, '{{0,at}}', to_jsonb(clock_timestamp())))
            ON CONFLICT (version) DO UPDATE SET
                name = EXCLUDED.name, kind = EXCLUDED.kind, checksum = EXCLUDED.checksum,
                down_checksum = EXCLUDED.down_checksum, target_table = EXCLUDED.target_table,
                phase = EXCLUDED.phase, status = 'running',
                restore_point = coalesce(EXCLUDED.restore_point, h.restore_point),
                restore_point_lsn = coalesce(EXCLUDED.restore_point_lsn, h.restore_point_lsn),
                dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id, try_number = EXCLUDED.try_number,
                started_at = clock_timestamp(), finished_at = NULL,
                phases = h.phases || jsonb_set(%(event)s, '{{0,at}}', to_jsonb(clock_timestamp()))
            """).format(h=HISTORY),
            {"version": migration.version, "name": migration.name, "kind": migration.kind,
             "checksum": migration.checksum, "down": migration.down_checksum, "table": target_table,
             "phase": phase, "rp": restore_point, "lsn": restore_point_lsn, **_run_params(run),
             "event": event},
        )
        if tables:
            _claim(conn, migration, list(tables))


def _claim(conn: psycopg.Connection, migration: MigrationFile, tables: list[str]) -> None:
    # A racing starter's INSERT waits on the primary key until the first commits, then sees its claim.
    conn.execute(sql.SQL("INSERT INTO {} (table_name, version) SELECT unnest(%s::text[]), %s "
                         "ON CONFLICT (table_name) DO NOTHING").format(CLAIMS), (tables, migration.version))
    held = conn.execute(
        sql.SQL("SELECT c.table_name, h.version, h.name, h.phase, h.status FROM {} c JOIN {} h USING (version) "
                "WHERE c.table_name = ANY(%s) AND c.version <> %s ORDER BY 1").format(CLAIMS, HISTORY),
        (tables, migration.version)).fetchall()
    if held:
        table, version, name, phase, status = held[0]
        raise PermanentError(
            f"{migration.up_file} changes {table}, but {version:03d}_{name} is still active on it (phase "
            f"{phase}, {status}): complete or roll back {version:03d} first (one expand/contract migration "
            f"per table at a time)")


def _run_params(run: RunInfo) -> dict[str, Any]:
    return {"dag_id": run.dag_id, "run_id": run.run_id, "try": run.try_number}


def finish_phase_statement(version: int, phase: str, status: str, run: RunInfo) -> sql.Composed:
    """The UPDATE that ends a phase, to run as the last statement of the phase's own transaction.

    It is composed (not bound) because the online DDL runner takes statements, not parameters; every
    value is a ``sql.Literal`` made from our own ints and names, never from row data.

    A migration that ends releases its table claims in the same statement: ``applied`` (a plain one, or an
    expand/contract one after its last phase: it stays ``running`` between its phases) or ``rolled_back``.
    """
    event = json.dumps([{"phase": phase, "status": status, **run.stamp()}])
    ends = status in ("applied", "rolled_back")
    return sql.SQL(
        "WITH released AS (DELETE FROM {claims} WHERE version = {version} AND {ends}) "
        "UPDATE {h} SET status = {status}, phase = {phase}, finished_at = clock_timestamp(), "
        "phases = phases || jsonb_set({event}::jsonb, '{{0,at}}', to_jsonb(clock_timestamp())) "
        "WHERE version = {version}"
    ).format(h=HISTORY, claims=CLAIMS, status=sql.Literal(status), phase=sql.Literal(phase),
             event=sql.Literal(event), version=sql.Literal(version), ends=sql.Literal(ends))


def add_event(conn: psycopg.Connection, version: int, phase: str, status: str, run: RunInfo, **extra: Any) -> None:
    """Append one event to a migration's timeline without changing its status (e.g. a rollback starts)."""
    with conn.transaction():
        conn.execute(
            sql.SQL("UPDATE {h} SET phases = phases || jsonb_set(%(event)s, '{{0,at}}', to_jsonb(clock_timestamp())) "
                    "WHERE version = %(version)s").format(h=HISTORY),
            {"event": _event(phase, status, run, **extra), "version": version},
        )


def fail_phase(conn: psycopg.Connection, version: int, phase: str, run: RunInfo, sqlstate: str | None) -> None:
    """Record a failed phase (the error's SQLSTATE only)."""
    with conn.transaction():
        conn.execute(
            sql.SQL("UPDATE {h} SET status = 'failed', finished_at = clock_timestamp(), "
                    "phases = phases || jsonb_build_array(jsonb_build_object("
                    "'phase', %(phase)s::text, 'status', 'failed', 'sqlstate', %(sqlstate)s::text, "
                    "'dag_id', %(dag_id)s::text, 'run_id', %(run_id)s::text, 'try_number', %(try)s::int, "
                    "'at', clock_timestamp())) WHERE version = %(version)s").format(h=HISTORY),
            {"phase": phase, "sqlstate": sqlstate, "version": version, **_run_params(run)},
        )


def read_history_readonly(target) -> list[HistoryRow]:
    """The history through a read-only session (``pgwarden migrate status|plan``: no change to the database)."""
    from pgwarden.engine.postgres import connect

    with connect(target, statement_timeout="30s") as conn:
        conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
        return read_history(conn)
