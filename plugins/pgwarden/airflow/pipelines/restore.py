"""``<database>.verify_restore`` (monthly drill) and ``<database>.pitr_restore`` (manual, approved)."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param

from pgwarden.airflow.operators.restore import (
    PLAN_MARKDOWN_KEY,
    PitrRestoreOperator,
    PlanRestoreOperator,
    PrepareScratchOperator,
    RemoveScratchOperator,
    RestoreDrillOperator,
)
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults
from pgwarden.engine.workdir import restore_root

VERIFY_DOC = """\
### {database}.verify_restore

**What it does.** A restore drill. Restores the newest full backup of `{database}` from `{repository}`
into a scratch server on this worker (downloads verified by SHA-256), runs `pg_verifybackup`, replays WAL
to the backup's row-count restore point and compares the counts exactly, replays on to the newest restore
point and promotes, then runs `pg_amcheck` (heap and all indexes) and the smoke queries in
`include/sql/verify/{database}/*.sql` (each must return true). With a GDPR erasure config it re-applies,
from the exported erasure ledger, the erasures made after the backup and checks that no erased subject's
personal data is present (`erased_subjects`). {old_drill} It measures **RTO** (drill start to first successful query; target
{rto}) and **RPO** (how far the newest restorable point was behind the drill's start; target {rpo}).

**Evidence.** `{database}/drills/<drill_id>.json` in the repository: every check, RTO, RPO, LSNs,
times, pass or fail. The DAG run history is the audit trail of drills.

**What it touches.** Read-only on the repository except the evidence file; local disk on the worker.
The scratch server listens on no TCP port (only pgwarden's private socket). The production database
is never contacted.

**Run it by hand.** Trigger with params: `backup_id` to drill a specific backup, `old_backup` to also
restore the oldest monthly/yearly one.

**Reading the log.** One line per drill: PASSED or FAILED, measured RTO and RPO against their targets, and
each failed check with its value; then the LSN, time and timeline reached and the evidence object's URL.
Before the first full backup there is nothing to drill and `restore_and_check` is skipped.

**When it fails.** The task log lists each failed check: a checksum mismatch names the object; a WAL
gap names the missing segment and the newest reachable point; missed RTO/RPO targets give the
measured values. The teardown task always removes the scratch server; the next run's setup removes any
left by a killed run.
"""

PITR_DOC = """\
### {database}.pitr_restore

**What it does.** Point-in-time recovery of `{database}` from `{repository}` into a directory on the
worker, on demand. `plan` picks the base backup for the target and checks the WAL reaches it;
`approve` shows that plan in **Required actions** and waits for a person; `restore` downloads and
verifies the backup and WAL, replays to the target and leaves a running server. With a GDPR erasure
config, a promoted server first gets every erasure made after its backup re-applied from the exported
erasure ledger (`pgwarden ledger reapply` does the same by hand; a paused server needs it after promotion).

**Params.** `target_kind`: latest, time, name (a restore point) or lsn; `target_value`: e.g.
`2026-11-24T09:30:00+00:00`, `pgwarden_{database}_20261124T090000Z` or `0/3000060`; `destination`: an
empty directory; `port`: a free port (empty = any); `action`: promote (writable) or pause (read-only at
the target).

**What it touches.** Reads the repository, writes `destination`. Production is never contacted and the
restored server never archives (`archive_mode = off`).

**Run it by hand.** It only runs by hand: Trigger DAG w/ config, fill in the params above, then approve the
plan under **Required actions** (or reject it: nothing is downloaded).

**When it fails.** The plan task says why the target is unreachable (before the oldest backup, beyond
the newest WAL — with the newest reachable point) before anything is downloaded. Without Airflow, the
same restore is `pgwarden restore {database} --to DIR ...` (README, "Restore runbook").
"""


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    if not db_config.backup.enabled:
        return []
    verify = db_config.verify
    fmt = {"database": database, "repository": db_config.repository.url, "rto": verify.rto_target,
           "rpo": verify.rpo_target,
           "old_drill": f"In the months {verify.old_backup_every} divides it also restores the oldest monthly/yearly "
                        "backup (by the run's logical date, so a cleared or retried drill decides alike)."
           if verify.old_backup_every else "It never restores the oldest monthly/yearly backup unasked."}
    dags = []
    if verify.enabled:
        with pgwarden_dag(
            database=database, concern="verify_restore", db_config=db_config, defaults=defaults,
            schedule=verify.schedule, doc_md=VERIFY_DOC.format(**fmt),
            description=f"Monthly restore drill of {database}: restore, check, measure RTO/RPO",
            params={
                "backup_id": Param(None, type=["null", "string"],
                                   description="drill this backup id; empty: the newest valid backup"),
                "old_backup": Param(False, type="boolean", description="also restore the oldest monthly/yearly"),
            },
            dagrun_timeout=timedelta(hours=24),
        ) as drill_dag:
            prepare = PrepareScratchOperator(task_id="prepare_scratch", database=database, db_config=db_config)
            drill = RestoreDrillOperator(
                task_id="restore_and_check", database=database, db_config=db_config,
                scratch=prepare.output, retries=0,
            )
            cleanup = RemoveScratchOperator(task_id="remove_scratch", database=database, db_config=db_config,
                                            scratch=prepare.output)
            prepare >> drill >> cleanup.as_teardown(setups=prepare)
        dags.append(drill_dag)

    with pgwarden_dag(
        database=database, concern="pitr_restore", db_config=db_config, defaults=defaults, schedule=None,
        doc_md=PITR_DOC.format(**fmt),
        description=f"Manual point-in-time recovery of {database} into a directory, after approval",
        # Optional params are null by default with a type that allows null: Airflow's trigger form marks a
        # param required (and disables Trigger) when its type excludes null and the value is empty.
        params={
            "target_kind": Param("latest", type="string", enum=["latest", "time", "name", "lsn"],
                                 description="latest, time, name (a restore point) or lsn"),
            "target_value": Param(None, type=["null", "string"],
                                  description="time (ISO 8601 with zone), restore point or LSN; empty: none (for latest)"),
            "backup_id": Param(None, type=["null", "string"],
                               description="force a base backup; empty: the best one for the target"),
            "destination": Param(str(restore_root() / database), type="string", minLength=1,
                                 description="a directory on the worker, missing or without files"),
            "port": Param(None, type=["null", "integer"], minimum=1, maximum=65535,
                          description="free port for the restored server; empty: any free port"),
            "action": Param("promote", type="string", enum=["promote", "pause"],
                            description="promote (writable) or pause (read-only at the target)"),
        },
        default_args={"retries": 0},
    ) as pitr_dag:
        # The operators read these params from the run's context as the values the form or conf gave.
        plan = PlanRestoreOperator(task_id="plan", database=database, db_config=db_config)
        approve = ApprovalOperator(
            task_id="approve",
            subject=(f"Restore {database} to {{{{ params.target_kind }}}}"
                     "{% if params.target_value %} {{ params.target_value }}{% endif %}?"),
            body=(f"**{database}** will be restored from `{db_config.repository.url}` into "
                  "`{{ params.destination }}` (port {{ params.port or 'any free' }}, action "
                  "{{ params.action }}).\n\n**Plan**\n\n"
                  f"{{{{ ti.xcom_pull(task_ids='plan', key='{PLAN_MARKDOWN_KEY}') }}}}"),
            response_timeout=timedelta(days=1),
        )
        restore = PitrRestoreOperator(task_id="restore", database=database, db_config=db_config)
        plan >> approve >> restore
    dags.append(pitr_dag)
    return dags
