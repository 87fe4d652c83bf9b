"""Apply a database's pending plain migrations, and roll them back to a version, safely to kill and re-run.

Each plain migration, in version order:

1. lint (squawk) its up and down files: a finding refuses it, naming rule, file and line;
2. a restore point ``pgwarden_migrate_NNN_<time>`` (``pg_create_restore_point``, also recorded in the
   repository), written into its history row with status ``running``, so a PITR target is one copy away;
3. its SQL and the history row's ``applied`` mark in ONE transaction, each statement with ``lock_timeout``
   and ``statement_timeout``, retried on lock timeout (55P03) with backoff and jitter (online_ddl.run_ddl).

A migration is therefore applied exactly once: killed before the commit, nothing of it stays and the
row says ``running``; a re-run (holding the applier lock, so no other applier is alive) redoes it.
An expand/contract migration (``.yaml``) is not applied here: the run stops before it, because it needs
its own gated DAG, and the plain ones after it wait for it (versions apply in order).

``rollback_to(N)`` runs the down files of the applied plain migrations above ``N``, newest first, each
in one transaction with its history row turned ``rolled_back``, after one restore point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.core.migrations.config import MigrationsConfig
from pgwarden.core.migrations.file import MigrationFile, pending
from pgwarden.core.migrations.statements import Statement, split_statements
from pgwarden.engine.errors import PermanentError, TransientError
from pgwarden.engine.migrations import history as hist
from pgwarden.engine.migrations.lint import lint_migration, require_clean
from pgwarden.engine.migrations.loader import check_history, load_migrations
from pgwarden.engine.migrations.online_ddl import DdlSettings, run_ddl
from pgwarden.engine.postgres import PgTarget, classify, connect, end_with_client
from pgwarden.engine.wal import create_restore_point

Log = Callable[[str], None]
CLI_RUN = hist.RunInfo()  # applied from a shell: no Airflow run to record


@dataclass
class MigrateResult:
    """What a run did: versions applied or rolled back, each with its restore point; ids only."""

    database: str
    applied: list[dict[str, Any]] = field(default_factory=list)
    rolled_back: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: str | None = None  # an expand/contract migration the plain run may not pass
    pending: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {"database": self.database, "applied": self.applied, "rolled_back": self.rolled_back,
                "stopped_at": self.stopped_at, "pending": self.pending}

    def summary(self) -> str:
        parts = [f"{self.database}: applied {len(self.applied)}", f"rolled back {len(self.rolled_back)}"]
        if self.stopped_at:
            parts.append(f"stopped before {self.stopped_at} (expand/contract: runs in its own DAG)")
        parts.append(f"{self.pending} still pending")
        return ", ".join(parts)


def ddl_settings(config: MigrationsConfig) -> DdlSettings:
    return DdlSettings(lock_timeout=config.lock_timeout, statement_timeout=config.statement_timeout,
                       max_attempts=config.lock_retries + 1)


def _session(conn: psycopg.Connection) -> str:
    """Prepare the applier's session; returns the server version for squawk (``15.0``)."""
    conn.execute("SELECT set_config('application_name', 'pgwarden migrate', false)")
    # A killed applier's backend notices within a second even mid-statement, aborts, frees the lock.
    version = end_with_client(conn)
    return f"{version // 10000}.0"


def _restore_point(target: PgTarget, repo, database: str, label: str) -> tuple[str, str]:
    name = f"pgwarden_{label}_{datetime.now(UTC):%Y%m%dT%H%M%S}"
    try:
        lsn = create_restore_point(target, repo, database, name)
    except psycopg.Error as exc:
        raise classify(exc, f"creating restore point {name} (needs wal_level replica or logical)") from exc
    return name, str(lsn)


class _Tracked(sql.SQL):
    """One statement of a migration file that notes when it is sent, so a failure names its line.

    The online DDL runner executes a list of statements in one transaction and re-raises the server's
    error; psycopg renders each statement just before sending it, so the last one rendered is the one
    that failed.
    """

    def __init__(self, statement: Statement, sent: list[Statement]):
        super().__init__(statement.text)
        self._statement, self._sent = statement, sent

    def as_bytes(self, context=None) -> bytes:
        self._sent.append(self._statement)
        return super().as_bytes(context)


def _statements(text: str, sent: list[Statement]) -> list[sql.Composable]:
    return [_Tracked(statement, sent) for statement in split_statements(text)]


def _failure(exc: psycopg.Error, file: str, sent: list[Statement]) -> PermanentError:
    """The failing statement's file and line, SQLSTATE and primary message (never DETAIL: it quotes rows)."""
    diag = exc.diag
    line = ""
    if sent:
        statement = sent[-1]
        inside = int(diag.statement_position or 1) - 1
        line = f":{statement.line + statement.text.count(chr(10), 0, inside)}"
    primary = diag.message_primary or type(exc).__name__
    if (exc.sqlstate or "").startswith("22"):
        # Data exceptions quote the offending value ('invalid input syntax for type integer: "..."').
        primary = f"{type(exc).__name__} (a value in the table does not fit; the message is withheld: it quotes it)"
    hint = ""
    if exc.sqlstate == "25001":
        hint = " Statements that cannot run in a transaction (CONCURRENTLY) belong in an expand/contract " \
               "migration (NNN_name.yaml, e.g. create_index)."
    return PermanentError(
        f"{file}{line}: failed with SQLSTATE {exc.sqlstate}: {primary}; "
        f"nothing of this file's changes stayed (one transaction), so the file may still change: fix it and "
        f"run again.{hint}")


def apply_pending(
    target: PgTarget,
    repo,
    database: str,
    config: MigrationsConfig,
    run: hist.RunInfo = CLI_RUN,
    *,
    log: Log = print,
) -> MigrateResult:
    """Apply every pending plain migration in order (see module doc). Safe to kill and re-run."""
    result = MigrateResult(database)
    migrations = load_migrations(config)
    settings = ddl_settings(config)
    with connect(target, autocommit=True) as conn:
        pg_version = _session(conn)
        hist.ensure_history(conn)
        with hist.applier_lock(conn, database, config.statement_timeout):
            history = hist.read_history(conn)
            check_history(config, migrations, history)
            todo = pending(migrations, [row.record for row in history])
            for index, migration in enumerate(todo):
                if migration.kind != "plain":
                    result.stopped_at = migration.label
                    log(f"{migration.label} is an expand/contract migration: it runs in its own DAG; "
                        f"{len(todo) - index} migration(s) wait for it")
                    break
                require_clean(lint_migration(migration, config, pg_version=pg_version))
                result.applied.append(_apply_one(conn, target, repo, database, migration, settings, run, log))
            result.pending = len(todo) - len(result.applied)
    log(result.summary())
    return result


def _apply_one(conn, target, repo, database, migration: MigrationFile, settings: DdlSettings,
               run: hist.RunInfo, log: Log) -> dict[str, Any]:
    point, lsn = _restore_point(target, repo, database, f"migrate_{migration.version:03d}")
    hist.start_phase(conn, migration, "apply", run, restore_point=point, restore_point_lsn=lsn)
    log(f"{migration.label}: restore point {point} at {lsn}; applying")
    sent: list[Statement] = []
    try:
        outcome = run_ddl(conn, [*_statements(migration.up_text, sent),
                                 hist.finish_phase_statement(migration.version, "apply", "applied", run)],
                          table=None, settings=settings, log=log)
    except TransientError:
        hist.fail_phase(conn, migration.version, "apply", run, "55P03")
        raise
    except psycopg.Error as exc:
        if conn.broken:
            raise classify(exc, f"applying {migration.up_file}") from exc
        hist.fail_phase(conn, migration.version, "apply", run, exc.sqlstate)
        raise _failure(exc, migration.up_file, sent) from None  # the chained error's DETAIL may quote rows
    log(f"{migration.label}: applied ({outcome.attempts} attempt(s))")
    return {"version": migration.version, "name": migration.name, "restore_point": point,
            "restore_point_lsn": lsn, "attempts": outcome.attempts}


def rollback_to(
    target: PgTarget,
    repo,
    database: str,
    config: MigrationsConfig,
    version: int,
    run: hist.RunInfo = CLI_RUN,
    *,
    log: Log = print,
) -> MigrateResult:
    """Run the down files of the applied migrations above ``version``, newest first (see module doc)."""
    result = MigrateResult(database)
    migrations = {m.version: m for m in load_migrations(config)}
    settings = ddl_settings(config)
    with connect(target, autocommit=True) as conn:
        pg_version = _session(conn)
        hist.ensure_history(conn)
        with hist.applier_lock(conn, database, config.statement_timeout):
            history = hist.read_history(conn)
            check_history(config, list(migrations.values()), history)
            undo = sorted((row for row in history if row.record.in_effect and row.version > version),
                          key=lambda row: row.version, reverse=True)
            blocking = [row for row in undo if row.kind != "plain"]
            if blocking:
                raise PermanentError(
                    f"rollback_to {version:03d} would pass the expand/contract migration "
                    f"{blocking[0].version:03d}_{blocking[0].name}: roll it back in its own DAG first")
            if not undo:
                log(f"{database}: nothing applied above {version:03d}; nothing to roll back")
                return result
            for row in undo:
                require_clean(lint_migration(migrations[row.version], config, pg_version=pg_version))
            point, lsn = _restore_point(target, repo, database, f"rollback_to_{version:03d}")
            log(f"restore point {point} at {lsn}; rolling back {', '.join(f'{r.version:03d}' for r in undo)}")
            for row in undo:
                migration = migrations[row.version]
                hist.add_event(conn, row.version, "rollback", "running", run, restore_point=point)
                sent: list[Statement] = []
                try:
                    run_ddl(conn, [*_statements(migration.down_text or "", sent),
                                   hist.finish_phase_statement(row.version, "rollback", "rolled_back", run)],
                            table=None, settings=settings, log=log)
                except psycopg.Error as exc:
                    if conn.broken:
                        raise classify(exc, f"running {migration.down_file}") from exc
                    hist.add_event(conn, row.version, "rollback", "failed", run, sqlstate=exc.sqlstate)
                    raise _failure(exc, migration.down_file or "", sent) from None
                log(f"{migration.label}: rolled back with {migration.down_file}")
                result.rolled_back.append({"version": row.version, "name": row.name, "restore_point": point,
                                           "restore_point_lsn": lsn})
    log(result.summary())
    return result
