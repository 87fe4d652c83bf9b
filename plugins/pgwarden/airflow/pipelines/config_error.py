"""``<database>.config_error``: stands in for the DAGs of a database entry that does not validate.

Without it a typo in the entry would only make its DAGs disappear: no run fails, so no failure alert
fires while the database goes without backups. The stand-in fails every run on the entry's backup
schedule with the validation message until the entry is fixed.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG

from pgwarden.airflow.operators.config_error import ConfigErrorOperator
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import BackupConfig, ConfigIssue, Defaults
from pgwarden.core.schedule import validate_cron

DOC = """\
### {database}.config_error

**What it does.** Nothing but fail: the entry `databases.{database}` of `{source}` does not validate, so
none of `{database}`'s DAGs (backups, WAL collection, drills, healthcheck) exist. This DAG runs on the
entry's full-backup schedule (`{schedule}`) and fails every run with the problems below, so the failure
alerts fire instead of backups silently stopping.

{issues}

**What it touches.** Nothing: no server, no repository, no connection is used.

**Run it by hand.** There is nothing to run: fix the entry; a manual run fails like a scheduled one.

**When it fails.** Always, until the entry is fixed. Fix the keys named above, check the file with
`pgwarden config validate`, and at the next parse this DAG disappears and `{database}`'s DAGs return.
"""


def stand_in_schedule(entry: Any) -> str:
    """The entry's own ``backup.full_schedule`` when it parses, else the default (daily) one."""
    backup = entry.get("backup") if isinstance(entry, dict) else None
    written = backup.get("full_schedule") if isinstance(backup, dict) else None
    if written is not None:
        try:
            return validate_cron(str(written))
        except ValueError:
            pass
    return BackupConfig.model_fields["full_schedule"].default


def failure_message(database: str, issues: list[ConfigIssue]) -> str:
    lines = [f"database entry {database!r} is invalid, so it has no backups, WAL collection or drills "
             f"until it is fixed:"]
    lines += [f"  {issue}" for issue in issues]
    lines.append("Fix the entry and check the file with `pgwarden config validate`.")
    return "\n".join(lines)


def build(database: str, issues: list[ConfigIssue], entry: Any, defaults: Defaults) -> list[DAG]:
    schedule = stand_in_schedule(entry)
    source = issues[0].source if issues else "the config"
    with pgwarden_dag(
        database=database, concern="config_error", db_config=None, defaults=defaults, schedule=schedule,
        doc_md=DOC.format(database=database, source=source, schedule=schedule,
                          issues="\n".join(f"- `{i.path}`: {i.message}" for i in issues)),
        description=f"{database}'s config entry is invalid: fails every run until it is fixed",
        default_args={"retries": 0},
    ) as dag:
        ConfigErrorOperator(task_id="config_error", message=failure_message(database, issues))
    return [dag]
