"""The restore drill: prove a backup restores, the data is intact, and RTO/RPO meet their targets.

1. restore the backup (verified downloads) into a scratch directory, without starting it;
2. ``pg_verifybackup`` on the unpacked directory (files against backup_manifest, and its WAL);
3. start recovery paused at the backup's row-count restore point and compare counts exactly;
4. retarget to the newest restore point, promote, and time the first successful query (RTO);
5. ``pg_amcheck`` (heap + all indexes) on the configured tables, amcheck created in the scratch
   server only; the database's own smoke queries (``include/sql/verify/<database>/*.sql``, each
   returning true);
6. with a ``lifecycle.erasure`` config: re-apply, from the exported ledger, the erasures made after the
   backup and check no erased subject's personal data is present (``erased_subjects``);
7. write the evidence JSON into the repository (``drills/``), pass or fail.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pgwarden
from pgwarden.core import layout
from pgwarden.core.catalog import BackupEntry, Catalog
from pgwarden.core.config import DatabaseConfig
from pgwarden.core.drill import DrillEvidence
from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.walchain import newest_point_before
from pgwarden.engine import pgtools
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.cluster import LocalCluster, free_port
from pgwarden.engine.errors import NoBackupYet, PermanentError, PgwardenError
from pgwarden.engine.lifecycle.erasure import RecordContext
from pgwarden.engine.postgres import connect, count_rows, table_identifier
from pgwarden.engine.restore.cleanup import remove_restore
from pgwarden.engine.restore.recovery import recovery_tuning, write_recovery
from pgwarden.engine.restore.run import restore
from pgwarden.engine.restore.server import reached, restored_server, wait_for_target

Log = Callable[[str], None]


def clean_stale_scratch(parent: Path, log: Log, prefix: str = "drill") -> int:
    """Stop and remove scratch servers left by drills (or rehearsals) that were killed (kill -9, lost worker).

    Any ``<prefix>-*`` directory under ``parent`` is stale (one drill, or one rehearsal, per database runs
    at a time); every data directory inside it with a ``postmaster.pid`` has its server stopped first.
    """
    removed = 0
    for stale in sorted(parent.glob(f"{prefix}-*")) if parent.exists() else []:
        if not stale.is_dir():
            continue
        # <drill dir>/data (engine layout) or <drill dir>/<kind>/data (the DAG's); listed before removing.
        for pid_file in [*stale.glob("*/postmaster.pid"), *stale.glob("*/*/postmaster.pid")]:
            remove_restore(pid_file.parent)
        shutil.rmtree(stale, ignore_errors=True)
        removed += 1
        log(f"removed stale scratch server directory {stale}")
    return removed


def scratch_server(datadir: Path, backup: BackupEntry) -> LocalCluster:
    """The server on a restored scratch copy (not started), with fast-replay settings.

    Off the network: a restored copy of production data is reachable only through pgwarden's socket.
    """
    return restored_server(datadir, free_port(), {**recovery_tuning(backup.manifest.database_size_bytes),
                                                  "listen_addresses": ""})


def pick_old_backup(catalog: Catalog) -> BackupEntry | None:
    """The oldest valid backup retention keeps as monthly or yearly (proves old backups restore)."""
    for entry in catalog.valid_backups:
        if catalog.plan.classes(entry.id) & {"monthly", "yearly"} and entry is not catalog.newest_valid:
            return entry
    return None


def _counts(cluster: LocalCluster, dbname: str, tables: list[str]) -> dict[str, int]:
    """Row counts keyed like the manifest's snapshot (table names as written there)."""
    with connect(cluster.target(dbname), statement_timeout="1h") as conn:
        return {table: count_rows(conn, QualifiedName.parse(table)) for table in tables}


def _amcheck(cluster: LocalCluster, dbname: str, tables: list[QualifiedName], evidence: DrillEvidence) -> None:
    if not tables:
        evidence.add("amcheck", True, "no tables configured (verify.amcheck_tables / backup.count_rows)")
        return
    with connect(cluster.target(dbname)) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")  # scratch server only
    argv = [pgtools.tool("pg_amcheck"), "-h", str(cluster.socket_dir), "-p", str(cluster.port), "-U", cluster.superuser,
            "-d", dbname, "--heapallindexed", "--parent-check", "--no-dependent-toast"]
    for table in tables:
        # A pattern in double quotes matches literally (psql pattern rules, as SQL quotes them).
        argv += ["-t", table_identifier(table).as_string()]
    try:
        pgtools.run(argv, timeout=6 * 3600)
        evidence.add("amcheck", True, f"heap and all indexes of {len(tables)} table(s) are consistent")
    except pgtools.ToolError as exc:
        first = exc.stderr.splitlines()[0] if exc.stderr else f"exit status {exc.returncode}"
        evidence.add("amcheck", False, f"pg_amcheck found corruption: {first}")


def _smoke_queries(cluster: LocalCluster, dbname: str, directory: Path | None, evidence: DrillEvidence) -> None:
    files = sorted(directory.glob("*.sql")) if directory and directory.is_dir() else []
    if not files:
        return
    for path in files:
        try:
            with connect(cluster.target(dbname), statement_timeout="10min") as conn:
                row = conn.execute(path.read_text()).fetchone()  # the project's own SQL, from include/
            ok = bool(row and row[0] is True)
            evidence.add(f"smoke:{path.stem}", ok, "returned true" if ok else f"returned {row[0] if row else 'no row'}")
        except PgwardenError as exc:
            evidence.add(f"smoke:{path.stem}", False, f"failed: {str(exc).splitlines()[0]}")


def _erased_subjects(cluster: LocalCluster, dbname: str, repo, database: str, db_config: DatabaseConfig,
                     key: bytes | None, record_context: RecordContext, evidence: DrillEvidence, log: Log) -> None:
    """No erased person comes back with a restore: re-apply the erasures the backup predates (from the
    exported ledger) on the scratch server, then prove no erased subject's personal data is present."""
    from pgwarden.engine.lifecycle.reapply import reapply_and_check

    if key is None:
        evidence.add("erased_subjects", False, "not checked: no erasure HMAC key was given to the drill")
        return
    try:
        report, check = reapply_and_check(cluster.target(dbname), repo, database, db_config.lifecycle.erasure,
                                          key, record_context, log=log)
    except PgwardenError as exc:
        evidence.add("erased_subjects", False, f"re-applying erasures failed: {str(exc).splitlines()[0]}")
        return
    evidence.add("erased_subjects", check.ok,
                 f"re-applied {report.reapplied} of {report.undone_erasures} erasure(s) made after the backup "
                 f"({report.not_present} subject(s) not in it); {check.detail()}")


def run_drill(
    repo,
    database: str,
    db_config: DatabaseConfig,
    *,
    scratch: Path,
    dbname: str,
    kind: str = "newest",
    backup_id: str | None = None,
    smoke_dir: Path | None = None,
    log: Log = print,
    now: datetime | None = None,
    erasure_key: bytes | None = None,
    record_context: RecordContext | None = None,
) -> DrillEvidence:
    """Run one drill in ``scratch`` (an empty directory) and write its evidence. Never raises for a
    failed check: the evidence says what failed; the caller decides to fail the task."""
    started_at = now or datetime.now(timezone.utc)
    clock = time.monotonic()
    verify = db_config.verify
    evidence = DrillEvidence(
        database=database, drill_id=f"{layout.backup_id_for(started_at)}-{kind}", kind=kind,
        started_at=started_at, rto_target_seconds=verify.rto_target.total_seconds(),
        rpo_target_seconds=verify.rpo_target.total_seconds(), pgwarden_version=pgwarden.__version__,
    )
    datadir = scratch / "data"
    try:
        catalog = read_catalog(repo, database)
        if kind == "old" and backup_id is None:
            old = pick_old_backup(catalog)
            if old is None:
                evidence.add("old_backup", True, "no monthly or yearly backup older than the newest yet")
                return _finish(repo, evidence, log)
            backup_id = old.id
        if not catalog.backups and not catalog.orphans and backup_id is None:
            raise NoBackupYet(f"{database} has no backup to drill yet: run {database}.backup_full first")
        try:
            backup = catalog.backup(backup_id) if backup_id else catalog.newest_valid
        except KeyError as exc:
            raise PermanentError(f"{exc.args[0]}; `pgwarden catalog {database}` lists the backup ids") from None
        if backup is None:
            raise PermanentError(f"no valid backup of {database} to drill; run {database}.backup_full")
        evidence.backup_id, evidence.backup_started_at = backup.id, backup.started_at

        final = _final_target(kind, backup, catalog)
        evidence.target = final.describe()
        result = restore(repo, database, datadir, final, backup_id=backup.id, start=False, log=log,
                         catalog=catalog)
        evidence.steps.update(result.steps)

        # pg_verifybackup on the unpacked directory: it ignores the recovery files written above.
        try:
            # A tablespace_map rewritten to point at the restored tablespaces differs on purpose.
            remapped = (datadir / "tablespace_map").exists() and (datadir / "tablespace_map").read_text().strip()
            ignore = ["--ignore=tablespace_map"] if remapped else []
            pgtools.run([pgtools.tool("pg_verifybackup"), *ignore, str(datadir)], timeout=6 * 3600)
            evidence.add("pg_verifybackup", True, "every file and the backup's WAL match backup_manifest")
        except pgtools.ToolError as exc:
            evidence.add("pg_verifybackup", False, exc.stderr.splitlines()[0] if exc.stderr else str(exc))
            return _finish(repo, evidence, log)

        cluster = scratch_server(datadir, backup)
        counts = backup.manifest.row_counts
        # Old backups keep only the WAL that makes them consistent, so counts are checked on the newest,
        # and only once WAL past the count's restore point has been collected.
        if counts is not None and kind == "newest" and final.kind == "immediate":
            evidence.add("row_counts", True, "not compared: no WAL collected past the backup's restore point yet "
                                             f"(run {database}.backup_incremental)")
        elif counts is not None and kind == "newest":
            write_recovery(datadir, RecoveryTarget("name", name=counts.restore_point), "pause")
            cluster.start(timeout=24 * 3600)
            wait_for_target(cluster, "pause")
            got = _counts(cluster, dbname, list(counts.counts))
            diff = {t: (counts.counts[t], got[t]) for t in counts.counts if got[t] != counts.counts[t]}
            evidence.add("row_counts", not diff,
                         f"{len(counts.counts)} table(s) match the backup's snapshot" if not diff else
                         "; ".join(f"{t}: expected {a}, restored {b}" for t, (a, b) in diff.items()))
            cluster.stop()
        write_recovery(datadir, final, "promote")
        cluster.start(timeout=24 * 3600)
        wait_for_target(cluster, "promote")
        with connect(cluster.target(dbname)) as conn:
            conn.execute("SELECT 1")
        evidence.rto_seconds = round(time.monotonic() - clock, 3)
        # pg_verifybackup, the paused row-count stop and the replay to the final target.
        evidence.steps["verify_and_replay"] = round(evidence.rto_seconds - sum(evidence.steps.values()), 3)
        where = reached(cluster)
        evidence.reached_lsn, evidence.reached_time, evidence.timeline = where.lsn, where.time, where.timeline
        reached_point = next((p for p in catalog.restore_points if final.kind == "name" and p.name == final.name),
                             None)
        if kind == "newest":
            point_time = reached_point.created_at if reached_point else (where.time or backup.manifest.finished_at)
            evidence.rpo_seconds = round(max(0.0, (started_at - point_time).total_seconds()), 3)

        _amcheck(cluster, dbname, verify.amcheck_tables if verify.amcheck_tables is not None
                 else db_config.backup.count_rows, evidence)
        _smoke_queries(cluster, dbname, smoke_dir, evidence)
        if db_config.lifecycle.erasure is not None:
            _erased_subjects(cluster, dbname, repo, database, db_config, erasure_key,
                             record_context or RecordContext(database=database), evidence, log)
        evidence.judge_targets()
    except NoBackupYet:
        raise  # nothing was drilled: no evidence to write
    except PgwardenError as exc:
        evidence.error = str(exc)
    finally:
        remove_restore(datadir)
    return _finish(repo, evidence, log)


def _final_target(kind: str, backup: BackupEntry, catalog: Catalog) -> RecoveryTarget:
    """The newest restore point the repository's WAL reaches; the backup's own end if none does."""
    if kind == "old" or catalog.wal_end is None:
        return RecoveryTarget("immediate")
    point = newest_point_before(catalog.restore_points, backup.stop_lsn, catalog.wal_end.lsn)
    return RecoveryTarget("name", name=point.name) if point else RecoveryTarget("immediate")


def _finish(repo, evidence: DrillEvidence, log: Log) -> DrillEvidence:
    evidence.finished_at = datetime.now(timezone.utc)
    key = layout.drill_key(evidence.database, evidence.drill_id)
    repo.put_bytes(key, evidence.model_dump_json(indent=2).encode())
    log(evidence.summary())
    if evidence.reached_lsn is not None:
        log(f"drill {evidence.drill_id} reached LSN {evidence.reached_lsn} (last replayed transaction "
            f"{evidence.reached_time.isoformat() if evidence.reached_time else 'none'}, timeline {evidence.timeline})")
    log(f"drill {evidence.drill_id} evidence: {repo.uri(key)}")
    return evidence
