"""Rehearse an expand/contract migration on a restored copy of production before production sees it.

1. The newest valid backup is restored, with every WAL segment the repository holds (the newest point
   available), into a scratch server: the restore drill's path (``engine/restore.restore`` then
   ``drill.scratch_server``: off the network, private socket and hba). Leftovers of a killed rehearsal
   (``rehearsal-*`` directories, their servers still running) are stopped and removed first.
2. On the copy, with every gate taken as approved and the backfill unthrottled, the migration's rollback
   paths and its whole run are each exercised once, on ONE restore:

   - pass A: expand (timed) -> rollback                       -> check "after expand"
   - pass B: expand -> backfill (timed) -> consistency (timed) -> rollback -> check "after backfill"
   - pass C: expand -> backfill -> consistency -> contract (timed)

   Rollback removes its state rows, so each later pass plans from the pre-migration catalog again: a
   rollback that does not leave the table as it was makes the next expand (or the check) fail. Running
   expand again is cheaper than a restore per path; the price is one extra backfill (pass C), and the
   rows pass B left dead, which only touch the contract's timing (metadata-only DDL). Each check compares
   ``pg_dump --schema-only -t <table>`` of every table the migration touches with the dump taken before
   pass A. A phase that fails records its error, its rollback is tried and checked, and nothing after it
   runs.
3. The scratch server is always stopped and removed.

Nothing here connects to the source database: only the repository is read.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.migrations.rehearsal import RehearsalReport, RollbackCheck
from pgwarden.core.migrations.spec import SpecError
from pgwarden.core.migrations.steps import PlanError
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.engine import pgtools
from pgwarden.engine.batches import BatchSettings
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.drill import clean_stale_scratch, scratch_server
from pgwarden.engine.errors import PermanentError, PgwardenError, TransientError
from pgwarden.engine.migrations import expand_contract as ec
from pgwarden.engine.migrations.backfill import BackfillSettings, pending_rows
from pgwarden.engine.migrations.online_ddl import DEFAULT_DDL, DdlSettings
from pgwarden.engine.postgres import PgTarget, connect, table_identifier
from pgwarden.engine.restore.cleanup import remove_restore
from pgwarden.engine.restore.run import restore
from pgwarden.engine.restore.server import wait_for_target

Log = Callable[[str], None]

SCRATCH_PREFIX = "rehearsal"

# Nobody else uses the copy: large batches, no pause, no standby or session throttle, no time limit.
UNTHROTTLED = BackfillSettings(
    batch=BatchSettings(time_budget=timedelta(milliseconds=500), lock_timeout=timedelta(seconds=1),
                        initial_size=10_000, max_size=1_000_000, pause=timedelta(0),
                        max_run_time=timedelta(hours=24)),
    standby=None, max_active_sessions=None)


def _psycopg_cause(exc: BaseException) -> psycopg.Error | None:
    """The server error behind ``exc`` when it was raised ``from`` one (``classify`` keeps its full text).

    Errors raised ``from None`` (the executor's, a ``PlanError``) wrote a safe message of their own."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, psycopg.Error):
            return seen
        seen = seen.__cause__
    return None


_QUOTED = re.compile(r'"[^"]*"')
_ELIDED = '"…"'


def error_text(exc: BaseException) -> str:
    """What failed, safe for XCom and a gate body: a server error's condition and its message with quoted
    literals elided (``invalid input syntax for type integer: "…"`` would otherwise carry a row value)."""
    cause = _psycopg_cause(exc)
    if cause is not None and cause.sqlstate:
        primary = cause.diag.message_primary or ""
        return f"{type(cause).__name__} (SQLSTATE {cause.sqlstate}): {_QUOTED.sub(_ELIDED, primary)}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def schema_dump(target: PgTarget, cluster: LocalCluster, tables: tuple[QualifiedName, ...]) -> str:
    """``pg_dump --schema-only`` of ``tables``, without the lines that differ between two dumps of one schema."""
    argv = [pgtools.tool("pg_dump"), "--schema-only", "-h", str(cluster.socket_dir), "-p", str(cluster.port),
            "-U", cluster.superuser, "-d", target.dbname]
    for table in tables:
        argv += ["-t", table_identifier(table).as_string()]  # a double-quoted pattern matches literally
    out = pgtools.run(argv, timeout=600).stdout
    return "\n".join(line for line in out.splitlines()
                     if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict")))


def _first_difference(before: str, after: str) -> str:
    for number, (a, b) in enumerate(zip(before.splitlines(), after.splitlines(), strict=False), 1):
        if a != b:
            return f"schema dump differs from line {number} on"
    return f"schema dump has {len(after.splitlines())} lines instead of {len(before.splitlines())}"


class _Copy:
    """The migration run against the restored copy, timing and counting into the report."""

    def __init__(self, target: PgTarget, cluster: LocalCluster, path: Path, report: RehearsalReport,
                 ddl: DdlSettings, log: Log) -> None:
        self.target, self.cluster, self.path, self.report, self.ddl, self.log = target, cluster, path, report, ddl, log
        spec = ec.read_spec(path)
        with connect(target) as conn:
            self.tables = ec.tables_touched(conn, spec)
        self.before = schema_dump(target, cluster, self.tables)

    def _count_ddl(self, result: ec.PhaseResult) -> None:
        if result.ddl:
            self.report.lock_retries += result.ddl.lock_retries
            self.report.lock_wait_seconds = round(self.report.lock_wait_seconds + result.ddl.lock_wait_s, 3)

    def expand(self) -> None:
        self._count_ddl(ec.expand(self.target, self.path, ddl=self.ddl, log=self.log))

    def backfill(self) -> int:
        rows = 0
        while True:  # a backfill stops at its run-time limit; the copy has all the time it needs
            result = ec.backfill(self.target, self.path, settings=UNTHROTTLED, log=self.log)
            rows = sum(b.rows_walked for b in result.backfills)
            self.report.lock_retries += sum(b.batches.lock_timeout_retries for b in result.backfills if b.batches)
            if all(b.finished for b in result.backfills):
                return rows

    def consistency(self) -> int:
        spec = ec.read_spec(self.path)
        with connect(self.target) as conn:
            migration = ec.plan(conn, spec)
            return sum(pending_rows(conn, job) for _, job in migration.backfills())

    def contract(self) -> None:
        self._count_ddl(ec.contract(self.target, self.path, ddl=self.ddl, log=self.log))

    def rollback_and_check(self, name: str) -> bool:
        try:
            self._count_ddl(ec.rollback(self.target, self.path, ddl=self.ddl, log=self.log))
            after = schema_dump(self.target, self.cluster, self.tables)
        except (PgwardenError, PlanError, SpecError, psycopg.Error) as exc:
            self.report.rollback_checks.append(RollbackCheck(name, False, f"rollback failed: {error_text(exc)}"))
            return False
        same = after == self.before
        self.report.rollback_checks.append(RollbackCheck(
            name, same, f"schema of {len(self.tables)} table(s) identical to before" if same
            else _first_difference(self.before, after)))
        self.log(f"rehearsal: rollback {name}: {'schema as before' if same else 'schema DIFFERS'}")
        return same


def _timed(report: RehearsalReport, phase: str, action: Callable[[], object]) -> object:
    started = time.monotonic()
    result = action()
    report.phases[phase] = round(time.monotonic() - started, 3)
    return result


def _passes(copy: _Copy, report: RehearsalReport, log: Log) -> None:
    phase = "expand"
    try:
        # Pass A: rollback after expand.
        _timed(report, "expand", copy.expand)
        if not copy.rollback_and_check("after expand"):
            return
        # Pass B: rollback after backfill, with the measured backfill and consistency check.
        phase = "expand"
        copy.expand()
        phase = "backfill"
        started = time.monotonic()
        report.backfill_rows = copy.backfill()
        seconds = time.monotonic() - started
        report.phases["backfill"] = round(seconds, 3)
        report.backfill_rows_per_second = round(report.backfill_rows / seconds, 1) if seconds > 0 else None
        phase = "consistency"
        report.inconsistent_rows = _timed(report, "consistency", copy.consistency)  # type: ignore[assignment]
        if report.inconsistent_rows:
            raise PermanentError(f"{report.inconsistent_rows} rows where the new column differs from what the old "
                                 "one implies after the backfill")
        if not copy.rollback_and_check("after backfill"):
            return
        # Pass C: the whole migration to its end.
        phase = "expand"
        copy.expand()
        phase = "backfill"
        copy.backfill()
        phase = "consistency"
        left = copy.consistency()
        if left:
            raise PermanentError(f"{left} rows where the new column differs after the second backfill")
        phase = "contract"
        _timed(report, "contract", copy.contract)
        log(f"rehearsal: contract done on the copy in {report.phases['contract']}s")
    except (PgwardenError, PlanError, SpecError, psycopg.Error) as exc:
        report.failed_phase, report.error = phase, error_text(exc)
        log(f"rehearsal: {phase} failed on the copy: {report.error}")
        if phase != "contract":
            copy.rollback_and_check(f"after failed {phase}")


def rehearse(
    repo,
    database: str,
    path: Path,
    *,
    dbname: str,
    scratch_parent: Path,
    backup_id: str | None = None,
    ddl: DdlSettings = DEFAULT_DDL,
    log: Log = print,
) -> RehearsalReport:
    """Rehearse migration file ``path`` on a restored copy of ``database`` (the module's docstring).

    ``dbname`` is the database inside the server the migration runs in; ``scratch_parent`` holds the
    scratch directory (one rehearsal per database at a time). Never raises for a failed restore or
    phase: the report says what failed (``passed`` is False) and the caller fails its task.
    """
    spec = ec.read_spec(path)  # a broken file fails before anything is restored
    report = RehearsalReport(database=database, migration=path.name)
    scratch_parent.mkdir(parents=True, exist_ok=True)
    clean_stale_scratch(scratch_parent, log, prefix=SCRATCH_PREFIX)
    scratch = scratch_parent / f"{SCRATCH_PREFIX}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
    scratch.mkdir()
    scratch.chmod(0o755)  # the server user (not root) must reach its data directory
    datadir = scratch / "data"
    try:
        catalog = read_catalog(repo, database)
        backup = catalog.backup(backup_id) if backup_id else catalog.newest_valid
        if backup is None:
            raise PermanentError(f"no valid backup of {database} to rehearse {spec.file} on; run "
                                 f"{database}.backup_full first (or turn rehearsal off for this run)")
        report.backup_id = backup.id
        wal_past_backup = catalog.wal_end is not None and catalog.wal_end.lsn > backup.stop_lsn
        target = RecoveryTarget("latest") if wal_past_backup else RecoveryTarget("immediate")
        report.restore_target = target.describe()
        started = time.monotonic()
        restore(repo, database, datadir, target, backup_id=backup.id, start=False, log=log, catalog=catalog)
        cluster = scratch_server(datadir, backup)
        cluster.start(timeout=24 * 3600)
        wait_for_target(cluster, "promote")
        report.phases["restore"] = round(time.monotonic() - started, 3)
        log(f"rehearsal: {database} backup {backup.id} restored to {target.describe()} in "
            f"{report.phases['restore']}s (scratch server on socket {cluster.socket_dir})")
        copy = _Copy(cluster.target(dbname), cluster, path, report, ddl, log)
        _passes(copy, report, log)
    except KeyError as exc:
        report.failed_phase = "restore"
        report.error = f"{exc.args[0]}; `pgwarden catalog {database}` lists the backup ids"
    except TransientError:
        raise  # an S3 hiccup or a lost connection during the restore: the task's retry runs it all again
    except PgwardenError as exc:  # no backup, a corrupt object, recovery stopping short: nothing was rehearsed
        # after the restore: reading the copy's tables or dumping their schema before pass A
        report.failed_phase = "restore" if "restore" not in report.phases else "schema snapshot"
        report.error = error_text(exc)
    finally:
        remove_restore(datadir)
        shutil.rmtree(scratch, ignore_errors=True)
        report.scratch_removed = not scratch.exists()
    log(report.summary())
    return report


__all__ = ["SCRATCH_PREFIX", "UNTHROTTLED", "error_text", "rehearse", "schema_dump"]
