"""The phases of a gated expand/contract migration, recorded in ``pgwarden.schema_history``.

Each phase (``restore_point``, ``expand``, ``backfill``, ``contract``, ``rollback``) first checks the
migration file against the history (an edited file is refused, naming it), then records its start with
:func:`history.start_phase` (which claims the migration's tables: a second migration on the same table
is refused while this one is active), runs the engine's phase from :mod:`expand_contract` and records
its end: ``running`` between phases, ``applied`` after contract, ``rolled_back`` after a rollback (both
release the table claim). Every phase is idempotent in the engine, so a killed or cleared task converges
when it runs again.

The gates' figures come from here too: rows that still differ (:func:`mismatches`), statements that
touched an old column (:func:`old_column_calls`, from ``pg_stat_statements``), the approvals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgwarden.core.migrations.config import MigrationsConfig
from pgwarden.core.migrations.file import MigrationFile
from pgwarden.core.migrations.gates import old_columns
from pgwarden.core.migrations.planner import tables_named
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.migrations import expand_contract
from pgwarden.engine.migrations.history import (
    HISTORY,
    RunInfo,
    add_event,
    ensure_history,
    fail_phase,
    finish_phase_statement,
    read_history,
    start_phase,
)
from pgwarden.engine.migrations.loader import check_history, load_migrations, migrations_folder
from pgwarden.engine.postgres import PgTarget, connect

ENDS = {"contract": "applied", "rollback": "rolled_back"}


@dataclass(frozen=True)
class Gated:
    """One expand/contract migration of a database's folder, checked against the history."""

    file: MigrationFile
    path: Path

    @property
    def tables(self) -> list[str]:
        spec = expand_contract.read_spec(self.path)
        return [f"{t.schema}.{t.name}" for t in tables_named(spec)]


def _session(target: PgTarget):
    return connect(target, statement_timeout="60s", lock_timeout="5s")


def checked(conn: psycopg.Connection, config: MigrationsConfig, label: str) -> Gated:
    """The migration ``label`` (``NNN_name``), refused when its file changed since a phase of it ran."""
    migrations = load_migrations(config)
    found = [m for m in migrations if m.label == label]
    if not found or found[0].kind != "expand_contract":
        raise PermanentError(f"{migrations_folder(config)}/{label}.yaml is missing (the DAG was built from it): "
                             f"restore the file, or remove the DAG by removing the file only before its expand ran")
    history = read_history(conn)
    check_history(config, migrations, history)
    migration = found[0]
    in_effect = {row.version for row in history if row.record.in_effect}
    if migration.version not in in_effect:
        # Versions apply in order. Started past a pending one, this migration's first phase would make that
        # one out of order: refused by every later check (its own DAG's, the plain migrate DAG's, this one's next
        # task) with this migration stuck half-way, claiming its tables.
        earlier = [m.label for m in migrations if m.version < migration.version and m.version not in in_effect]
        if earlier:
            raise PermanentError(
                f"{migration.up_file} cannot start: {', '.join(earlier)} before it is not applied yet (versions "
                f"apply in order). Apply {earlier[0]} first (a plain migration: the <database>.migrate DAG; an "
                f"expand/contract one: its own DAG), then run this one again")
    return Gated(migration, migrations_folder(config) / migration.up_file)


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


@contextmanager
def recorded(target: PgTarget, config: MigrationsConfig, label: str, phase: str, run: RunInfo, **start: Any):
    """Check the file, record ``phase`` starting (claiming the tables), yield, record its end or failure."""
    with _session(target) as conn:
        ensure_history(conn)
        gated = checked(conn, config, label)
        start_phase(conn, gated.file, phase, run, tables=gated.tables, **start)
        try:
            yield gated
        except BaseException as exc:
            if not conn.broken:
                fail_phase(conn, gated.file.version, phase, run, _sqlstate(exc))
            raise
        with conn.transaction():
            conn.execute(finish_phase_statement(gated.file.version, phase, ENDS.get(phase, "running"), run))


def guard(target: PgTarget, config: MigrationsConfig, label: str) -> Gated:
    """The file check alone (tasks that change nothing: plan, sensors, gates)."""
    with _session(target) as conn:
        ensure_history(conn)
        return checked(conn, config, label)


def run_phase(target: PgTarget, config: MigrationsConfig, label: str, phase: str, run: RunInfo,
              action: Callable[[Path], Any]) -> Any:
    with recorded(target, config, label, phase, run) as gated:
        return action(gated.path)


def mismatches(target: PgTarget, path: Path) -> int:
    """Rows where a new column differs from what the old one implies (the backfills' pending rows)."""
    from pgwarden.engine.migrations.backfill import _Walk

    spec = expand_contract.read_spec(path)
    with _session(target) as conn:
        migration = expand_contract.plan(conn, spec)
        total = 0
        for _, job in migration.backfills():
            with conn.transaction():
                total += int(conn.execute(_Walk(job).pending_count()).fetchone()[0])
    return total


def old_column_calls(target: PgTarget, path: Path) -> dict[str, int] | None:
    """Calls so far of statements naming each old column (and its table), from ``pg_stat_statements``.

    None when the extension is not installed in the database. Only counts and column names: no query text.
    """
    spec = expand_contract.read_spec(path)
    with _session(target) as conn:
        with conn.transaction():
            if conn.execute("SELECT to_regclass('pg_stat_statements') IS NULL").fetchone()[0]:
                return None
            counts = {}
            for table, column in old_columns(spec):
                relname = table.rsplit(".", 1)[-1].strip('"')
                counts[f"{table}.{column}"] = int(conn.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND query ~* %s AND query ~* %s AND query !~* 'pgwarden'",
                    (r"\m" + re.escape(column) + r"\M", r"\m" + re.escape(relname) + r"\M")).fetchone()[0])
            return counts


def record_approval(target: PgTarget, version: int, entry: dict[str, Any]) -> None:
    with _session(target) as conn:
        ensure_history(conn)
        with conn.transaction():
            conn.execute(sql.SQL("UPDATE {} SET approvals = approvals || %s WHERE version = %s").format(HISTORY),
                         (Jsonb([entry]), version))


def set_restore_point(target: PgTarget, version: int, name: str, lsn: str) -> None:
    """The row's restore point: the PITR target of the moment before expand."""
    with _session(target) as conn, conn.transaction():
        conn.execute(sql.SQL("UPDATE {} SET restore_point = %s, restore_point_lsn = %s::pg_lsn WHERE version = %s")
                     .format(HISTORY), (name, lsn, version))


def timeline(target: PgTarget, version: int) -> dict[str, Any]:
    """The row's status and phase events, and seconds since expand first started (None before)."""
    with _session(target) as conn:
        ensure_history(conn)
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT status, phase, phases, approvals, now() FROM {} WHERE version = %s")
                               .format(HISTORY), (version,)).fetchone()
    if row is None:
        return {"status": None, "phases": [], "approvals": [], "since_expand_seconds": None}
    status, phase, phases, approvals, now = row
    expand_at = next((e.get("at") for e in phases if e.get("phase") == "expand"), None)
    since = (now - datetime.fromisoformat(expand_at)).total_seconds() if expand_at else None
    return {"status": status, "phase": phase, "phases": phases, "approvals": approvals,
            "since_expand_seconds": since}


def safety_net(target: PgTarget, repo, database: str, db_config, label: str, version: int, run: RunInfo,
               *, workdir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """A named restore point before contract, then (by config) a WAL collection or a full backup plus one.

    The restore point is recorded in the repository and in the history's timeline: the dropped column is
    one PITR to it away once the WAL up to it is collected.
    """
    from pgwarden.engine import compress
    from pgwarden.engine.wal import collect_wal, create_restore_point

    mode = db_config.migrations.gates.safety_net
    name = f"pgwarden_{label}_precontract_{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    lsn = str(create_restore_point(target, repo, database, name))
    result: dict[str, Any] = {"mode": mode, "restore_point": name, "lsn": lsn}
    if mode == "full_backup":
        from pgwarden.engine.backup_full import take_full_backup

        manifest = take_full_backup(target, repo, database, db_config.backup, db_config.repository,
                                    workdir=workdir / "full", log=log)
        result["backup_id"] = manifest.backup_id
    if mode in ("wal", "full_backup"):
        backup = db_config.backup
        collected = collect_wal(target, repo, database, slot=backup.slot_for(database), workdir=workdir / "wal",
                                compression=compress.resolve(backup.compression), restore_point=name,
                                warn_bytes=backup.slot_warn_size, log=log)
        result["wal_segments_uploaded"] = collected.to_json_dict().get("segments_uploaded")
    with _session(target) as conn:
        add_event(conn, version, "safety_net", "done", run, restore_point=name, lsn=lsn, mode=mode)
    return result


__all__ = ["Gated", "guard", "mismatches", "old_column_calls", "record_approval", "recorded", "run_phase",
           "safety_net", "timeline"]
