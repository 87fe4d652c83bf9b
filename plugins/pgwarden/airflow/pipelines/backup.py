"""``<database>.backup_full`` (nightly) and ``<database>.backup_incremental`` (hourly WAL)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset

from pgwarden.airflow.operators.backup import FullBackupOperator
from pgwarden.airflow.operators.offsite import OffsiteCopyOperator
from pgwarden.airflow.operators.retention import RetentionOperator
from pgwarden.airflow.operators.wal import CheckWalChainOperator, CollectWalOperator
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults

FULL_DOC = """\
### {database}.backup_full

**What it does.** Takes a full base backup of `{database}` with `pg_basebackup` over the replication
protocol (tar format, WAL included so the backup is consistent on its own, {compression} compression,
`backup_manifest` with SHA-256 of every file, checkpoint `{checkpoint}`), verifies every file against
that manifest, records a row-count snapshot of {tables} beside a named restore point, uploads it to
`{repository}`{dump}, and writes the small `pgwarden.json` manifest **last** — a backup without it does not
exist. The first run creates the replication slot `{slot}` that guards WAL for point-in-time recovery.

Then applies GFS retention ({daily} daily, {monthly} monthly, {yearly} yearly; WAL needed for PITR in
the daily window and for every kept backup stays; objects of backups that never got a manifest go
after a day){offsite_full}.

**What it touches.** Reads the whole database through a replication connection (one checkpoint, two
WAL senders for the duration); writes under `{database}/base/<backup_id>/` in the repository; local disk
on the worker about the size of the compressed backup.

**Run it by hand.** Trigger the DAG. Every run is a new backup; re-running is always safe.

**When it fails.** Read the task log's last lines: a refused replication connection or a full set of WAL
senders says what to change on the server (the `{database}.healthcheck` DAG checks all of it). A run
killed midway leaves an orphan folder with no `pgwarden.json`; it is never listed, never restored from,
and retention removes it after a day. Clear the task to try again.
"""

INCREMENTAL_DOC = """\
### {database}.backup_incremental

**What it does.** Creates a named restore point (`pgwarden_{database}_<UTC time>`, a clean target for
point-in-time recovery), switches WAL, streams every WAL segment since the last run from the server with
`pg_receivewal` and uploads finished segments and timeline `.history` files to `{repository}`. Only then
does it advance the replication slot `{slot}`, so WAL is never released before it is stored.

**What it touches.** One replication connection; the slot `{slot}`; `{database}/wal/` and
`{database}/restore_points/` in the repository.

**Run it by hand.** Trigger it any time, e.g. right before a risky change, to get a fresh restore point.

**When it fails.** "slot was invalidated" or "already removed" means WAL was lost before collection:
trigger `{database}.backup_full` to start a new chain (the log says exactly what to run). Connection
errors retry by themselves; a killed run is safe to clear: it re-streams from the slot.
"""


def backups_asset(database: str) -> Asset:
    """The full backups of ``database``, wherever the repository is.

    Named after the database only: Airflow knows an asset by its name and URI, so a URI holding
    the repository URL would turn into a new, inactive asset when the repository moves. ``x-``
    marks a scheme of our own, which Airflow leaves unvalidated.
    """
    return Asset(name=f"pgwarden.{database}.backups", uri=f"x-pgwarden://{database}/backups")


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    backup = db_config.backup
    if not backup.enabled:
        return []
    fmt = {
        "database": database,
        "repository": db_config.repository.url,
        "slot": backup.slot_for(database),
        "compression": "zstd (gzip where zstd is missing)" if backup.compression == "auto" else backup.compression,
        "checkpoint": backup.checkpoint,
        "tables": ", ".join(f"`{t}`" for t in backup.count_rows) or "no tables (set backup.count_rows)",
        "daily": backup.retention.daily, "monthly": backup.retention.monthly, "yearly": backup.retention.yearly,
        "offsite_full": f", and copies every kept backup to `{backup.offsite.url}` (verified by SHA-256)"
        if backup.offsite else "",
        "dump": f" with a logical dump (`pg_dump -Fd -j {backup.logical_dump.jobs}`) under `dump/`"
        if backup.logical_dump.enabled else "",
        "offsite_inc": f", and copies new WAL to `{backup.offsite.url}`" if backup.offsite else "",
    }
    with pgwarden_dag(
        database=database, concern="backup_full", db_config=db_config, defaults=defaults,
        schedule=backup.full_schedule, doc_md=FULL_DOC.format(**fmt),
        description=f"Nightly full base backup of {database} into {db_config.repository.url}",
        dagrun_timeout=timedelta(hours=12),
    ) as full:
        base = FullBackupOperator(
            task_id="base_backup", database=database, db_config=db_config,
            outlets=[backups_asset(database)], execution_timeout=timedelta(hours=8),
        )
        # Retention runs after a good backup only, so a failing backup never shrinks history.
        base >> RetentionOperator(task_id="retention", database=database, db_config=db_config)
        if backup.offsite is not None:
            base >> OffsiteCopyOperator(task_id="offsite_copy", database=database, db_config=db_config,
                                        execution_timeout=timedelta(hours=8))

    with pgwarden_dag(
        database=database, concern="backup_incremental", db_config=db_config, defaults=defaults,
        schedule=backup.incremental_schedule, doc_md=INCREMENTAL_DOC.format(**fmt),
        description=f"Hourly WAL collection and restore point for {database}",
        dagrun_timeout=timedelta(hours=2),
    ) as incremental:
        collect = CollectWalOperator(task_id="collect_wal", database=database, db_config=db_config,
                                     execution_timeout=timedelta(hours=1))
        chain = CheckWalChainOperator(task_id="check_chain", database=database, db_config=db_config)
        collect >> chain
        if backup.offsite is not None:
            collect >> OffsiteCopyOperator(task_id="offsite_copy", database=database, db_config=db_config,
                                           execution_timeout=timedelta(hours=1))
    return [full, incremental]
