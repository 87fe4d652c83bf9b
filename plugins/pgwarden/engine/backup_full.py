"""A full backup: pg_basebackup over the replication protocol, verified, uploaded, manifest last.

Runs on an Airflow worker that is not the database host. Each run gets a new backup id; a run
killed at any point leaves at most an orphan folder without ``pgwarden.json``, which no restore
or catalog counts and retention removes a day later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pgwarden
from pgwarden.core import layout
from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lsn import Lsn
from pgwarden.core.manifest import BackupManifest, RowCounts, StoredFile
from pgwarden.core.restore_point import RestorePoint
from pgwarden.engine import compress, pgtools
from pgwarden.engine.errors import PermanentError, TransientError
from pgwarden.engine.postgres import PgTarget, connect, count_rows, wal_segment_size
from pgwarden.engine.verify import read_backup_manifest, verify_tar_backup
from pgwarden.engine.wal import create_restore_point, ensure_slot, identify_system

Log = Callable[[str], None]


def _server_facts(target: PgTarget) -> dict[str, object]:
    with connect(target, statement_timeout="60s") as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " (SELECT sum(pg_database_size(oid))::bigint FROM pg_database WHERE datallowconn)"
        ).fetchone()
        segment = wal_segment_size(conn)
    return {"version": row[0], "version_num": row[1], "size": int(row[2] or 0), "wal_segment_size": segment}


def _compress_arg(method: str, tool_major: int) -> str:
    """pg_basebackup's --compress value. zstd level 1 with a worker per core: measured 2.3x faster than
    level 3 at the same size on backup data (BENCHMARKS.md). PostgreSQL 14's tool only knows gzip levels."""
    if tool_major < 15:
        return {"gzip": "6", "none": "0"}[method]
    workers = max(1, os.cpu_count() or 1)
    return {"zstd": f"client-zstd:level=1,workers={workers}", "gzip": "client-gzip:6", "none": "none"}[method]


def run_basebackup(target: PgTarget, dest: Path, *, checkpoint: str, compression: str, label: str,
                   server_major: int, timeout: float) -> None:
    tool = pgtools.tool("pg_basebackup", server_major)
    argv = [
        tool, "-D", str(dest), "-Ft", "-X", "stream",
        "-c", checkpoint, f"--compress={_compress_arg(compression, pgtools.tool_major(tool))}",
        "--manifest-checksums=SHA256",
        "-l", label, "--no-sync",
    ]
    try:
        pgtools.run(argv, env=target.tool_env(), timeout=timeout)
    except pgtools.ToolError as exc:
        message = exc.stderr.lower()
        if "no pg_hba.conf entry" in message or "must be superuser or replication" in message \
                or "permission denied" in message or "authentication failed" in message:
            raise PermanentError(
                f"pg_basebackup was refused: {exc.stderr.splitlines()[-1]}. The role needs REPLICATION and "
                f"pg_hba.conf a 'host replication <role> <worker-ip>/32 scram-sha-256' line; run the "
                f"healthcheck DAG for details."
            ) from exc
        if "number of requested standby connections exceeds" in message or "too many clients" in message:
            raise TransientError(f"server is out of WAL senders or connections: {exc.stderr[-300:]}") from exc
        raise TransientError(f"pg_basebackup failed: {exc.stderr[-800:]}") from exc


def take_logical_dump(target: PgTarget, repo, database: str, backup_id: str, dest: Path, *, jobs: int,
                      server_major: int, timeout: float, retain: datetime | None, log: Log) -> list[StoredFile]:
    """``pg_dump -Fd -j N`` of the connection's database, uploaded under ``dump/`` beside the base backup.

    A logical dump restores into any PostgreSQL version (``pg_restore -d newdb -j N dump/``) and lets
    a single table come back without a full restore; the physical backup is what PITR uses.
    """
    argv = [pgtools.tool("pg_dump", server_major), "-Fd", "-j", str(jobs), "-f", str(dest), "--no-sync",
            "-d", target.dbname]
    try:
        pgtools.run(argv, env=target.tool_env(), timeout=timeout)
    except pgtools.ToolError as exc:
        raise TransientError(f"pg_dump failed: {exc.stderr[-800:]}") from exc
    stored = []
    for path in sorted(dest.iterdir()):
        info = repo.put_file(f"{layout.backup_prefix(database, backup_id)}dump/{path.name}", path, retain_until=retain)
        stored.append(StoredFile(name=f"dump/{path.name}", size=info.size, sha256=info.sha256 or "", role="dump"))
        path.unlink()
    log(f"logical dump of {target.dbname}: {len(stored)} file(s), {sum(f.size for f in stored)} bytes")
    return stored


def snapshot_row_counts(target: PgTarget, tables: list[QualifiedName], restore_point: str, repo, database: str
                        ) -> RowCounts | None:
    """Counts under one REPEATABLE READ snapshot taken an instant before the named restore point.

    The snapshot is fixed by the statement that creates the restore point, so a restore to that
    restore point shows these counts (barring a commit inside that instant).
    """
    if not tables:
        return None
    with connect(target, autocommit=False, statement_timeout="1h") as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        lsn, taken_at = conn.execute("SELECT pg_create_restore_point(%s), now()", (restore_point,)).fetchone()
        counts = {}
        for table in tables:
            counts[str(table)] = count_rows(conn, table)
        conn.rollback()
    record = RestorePoint(restore_point, Lsn.parse(str(lsn)), taken_at)
    repo.put_bytes(layout.restore_point_key(database, restore_point), record.to_json())
    return RowCounts(restore_point=restore_point, lsn=str(lsn), taken_at=taken_at, counts=counts)


def retain_until(repo_config: RepositoryConfig, backup: BackupConfig, started: datetime) -> datetime | None:
    """S3 Object Lock never outlives GFS retention: lock for the daily window every backup gets."""
    if repo_config.object_lock_mode is None:
        return None
    return started + timedelta(days=backup.retention.daily)


def _snapshot_and_upload(target: PgTarget, repo, database: str, backup: BackupConfig,
                         repo_config: RepositoryConfig, dest: Path, backup_id: str, method: str,
                         started_at: datetime, log: Log):
    """What runs while the tars are verified: row counts beside a restore point, then the upload."""
    pg_manifest = read_backup_manifest(dest / "backup_manifest")
    restore_point = f"pgwarden_{database}_full_{backup_id}"
    row_counts = snapshot_row_counts(target, backup.count_rows, restore_point, repo, database)
    if not backup.count_rows:
        create_restore_point(target, repo, database, restore_point)

    # pg_basebackup before 16 leaves pg_wal.tar uncompressed whatever --compress says: compress it
    # here so every tar in the repository is stored the same way.
    suffix = layout.COMPRESSION_SUFFIX[method]
    for plain in [p for p in dest.iterdir() if p.name == "pg_wal.tar" and suffix]:
        compress.compress_file(plain, plain.with_name(plain.name + suffix), method)
        plain.unlink()

    lock_until = retain_until(repo_config, backup, started_at)
    stored: list[StoredFile] = []
    for path in sorted(dest.iterdir()):
        role = ("backup_manifest" if path.name == "backup_manifest" else "base" if path.name.startswith("base.")
                else "wal" if path.name.startswith("pg_wal.") else "tablespace")
        info = repo.put_file(layout.backup_prefix(database, backup_id) + path.name, path, retain_until=lock_until)
        stored.append(StoredFile(name=path.name, size=info.size, sha256=info.sha256 or "", role=role))
        log(f"uploaded {path.name}: {info.size} bytes")
    return stored, row_counts, lock_until, pg_manifest


def unused_backup_id(repo, database: str) -> tuple[datetime, str]:
    """A backup id is its UTC start second. A backup started in the same second as a complete one (two
    runs outside Airflow's max_active_runs, a test) would replace that one's pgwarden.json, so it waits
    for the next second instead."""
    while True:
        started_at = datetime.now(timezone.utc)
        backup_id = layout.backup_id_for(started_at)
        if not repo.exists(layout.manifest_key(database, backup_id)):
            return started_at, backup_id
        time.sleep(1 - started_at.microsecond / 1_000_000)


def take_full_backup(
    target: PgTarget,
    repo,
    database: str,
    backup: BackupConfig,
    repo_config: RepositoryConfig,
    *,
    workdir: Path,
    log: Log = print,
    timeout: float = 6 * 3600,
) -> BackupManifest:
    started_at, backup_id = unused_backup_id(repo, database)
    started = time.monotonic()
    slot = backup.slot_for(database)

    facts = _server_facts(target)
    server_major = int(facts["version_num"]) // 10000
    system = identify_system(target)
    # The guard slot must exist before the backup starts so every WAL segment from the backup's
    # start on is kept until the incremental task has collected it.
    slot_state = ensure_slot(target, slot, database, create=True)
    if slot_state.created:
        log(f"created replication slot {slot} to guard WAL for point-in-time recovery")

    method = compress.resolve(backup.compression, pgtools.tool("pg_basebackup", server_major))
    dest = workdir / backup_id
    log(f"backup {backup_id}: pg_basebackup of {target.describe()} (PostgreSQL {facts['version']}, "
        f"{facts['size']} bytes) with {method} compression, checkpoint={backup.checkpoint}")
    run_basebackup(target, dest, checkpoint=backup.checkpoint, compression=method,
                   label=f"pgwarden {database} {backup_id}", server_major=server_major, timeout=timeout)

    # Verification reads the tars while they upload: the wall time is the longer of the two, not the
    # sum. Nothing counts until pgwarden.json is written, and that waits for the verdict below.
    verifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgwarden-verify")
    verifying = verifier.submit(verify_tar_backup, dest)
    try:
        stored, row_counts, lock_until, pg_manifest = _snapshot_and_upload(
            target, repo, database, backup, repo_config, dest, backup_id, method, started_at, log)
        verification = verifying.result()
    finally:
        verifier.shutdown(wait=True)
    log(f"verified {verification.files_checked} files against backup_manifest ({verification.method})")
    wal_range = pg_manifest.wal_ranges[-1]
    start_lsn = min(Lsn.parse(str(r["Start-LSN"])) for r in pg_manifest.wal_ranges)
    stop_lsn = Lsn.parse(str(wal_range["End-LSN"]))

    if backup.logical_dump.enabled:
        stored += take_logical_dump(target, repo, database, backup_id, workdir / f"{backup_id}.dump",
                                    jobs=backup.logical_dump.jobs, server_major=server_major,
                                    timeout=timeout, retain=lock_until, log=log)

    finished_at = datetime.now(timezone.utc)
    manifest = BackupManifest(
        database=database, backup_id=backup_id, started_at=started_at, finished_at=finished_at,
        duration_seconds=round(time.monotonic() - started, 3), start_lsn=str(start_lsn), stop_lsn=str(stop_lsn),
        timeline=int(wal_range["Timeline"]), wal_segment_size=int(facts["wal_segment_size"]),
        system_identifier=system["systemid"], server_version=str(facts["version"]),
        server_version_num=int(facts["version_num"]), compression=method, checkpoint=backup.checkpoint,
        database_size_bytes=int(facts["size"]), stored_bytes=sum(f.size for f in stored), files=stored,
        verification=verification, row_counts=row_counts, pgwarden_version=pgwarden.__version__,
    )
    # Written last: until this object exists, the backup does not.
    repo.put_bytes(layout.manifest_key(database, backup_id), manifest.to_json(), retain_until=lock_until)
    log(f"backup {backup_id} complete: {manifest.stored_bytes} bytes stored, LSN {start_lsn} -> {stop_lsn}, "
        f"{manifest.duration_seconds}s")
    return manifest

