"""``<database>.migrate``: apply the database's pending plain migrations by hand, or roll back to a version."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Param

from pgwarden.airflow.operators.migrate import (
    ApplyMigrationsOperator,
    MigrationCheckOperator,
    MigrationLintOperator,
    RollbackMigrationsOperator,
)
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults

DOC = """\
### {database}.migrate

**What it does.** Applies the pending plain migrations of `{folder}` (`NNN_name.sql`, each with its
`NNN_name.down.sql`) in version order. `lint` runs squawk on every plain migration and refuses unsafe DDL
(rule, file, line). `check` compares the folder with `pgwarden.schema_history` and refuses an applied
migration whose content changed (SHA-256 of the LF-normalised file), was removed or renamed, a version gap,
a duplicate version, a missing down file. `apply` takes a restore point before each migration (recorded
in `schema_history` and the backup repository: a PITR target is one copy away), then runs the migration
and its history row in one transaction with `lock_timeout` {lock_timeout} per statement, retried on lock
timeout. An expand/contract migration (`NNN_name.yaml`) is never applied here: the run stops before it.

**What it touches.** The schema of `{database}` through `{conn_id}`, the `pgwarden.schema_history` table,
restore points in the server's WAL and `restore_points/` in the repository. A session advisory lock
serializes appliers of this database.

**Run it by hand.** Trigger it (it has no schedule); one run at a time. To roll back, trigger with
`rollback_to: NNN`: the down files of the applied migrations above NNN run newest first (`0` undoes all),
after one restore point; `apply` is skipped in that run. `pgwarden migrate status|plan|lint {database}`
shows the same from a shell.

**When it fails.** `lint` and `check` fail before anything changes, naming the file and what to do. A
failing migration names its file, line and SQLSTATE; nothing of it was applied (one transaction): fix
the file (it is not applied, so it may change) and clear the task. A lock that could not be had in time is
retried; when retries run out, the message names the blocking sessions. Clearing any task is safe: a
migration is applied exactly once.
"""


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    # Built only for a database that has a migrations folder; a plain stat, no engine import at parse time.
    if not db_config.migrations.path or not Path(db_config.migrations.path).is_dir():
        return []
    with pgwarden_dag(
        database=database,
        concern="migrate",
        db_config=db_config,
        defaults=defaults,
        schedule=None,
        description=f"Applies {database}'s pending plain migrations (or rolls back to a version)",
        doc_md=DOC.format(database=database, conn_id=db_config.conn_id, folder=db_config.migrations.path,
                          lock_timeout=db_config.migrations.lock_timeout),
        params={"rollback_to": Param(None, type=["null", "integer"], minimum=0,
                                     description="roll back the migrations above this version (empty: apply)")},
    ) as dag:
        common = {"database": database, "db_config": db_config}
        check = MigrationCheckOperator(task_id="check", **common)
        MigrationLintOperator(task_id="lint", **common) >> check
        check >> [ApplyMigrationsOperator(task_id="apply", **common),
                  RollbackMigrationsOperator(task_id="rollback", **common)]
    return [dag]
