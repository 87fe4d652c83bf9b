"""``<database>.healthcheck``: is the server ready for what pgwarden is asked to do?"""

from __future__ import annotations

from airflow.sdk import DAG

from pgwarden.airflow.operators.healthcheck import HealthcheckOperator
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults

DOC = """\
### {database}.healthcheck

**What it does.** Connects through the Airflow connection `{conn_id}` and checks what pgwarden's
enabled concerns need from the server: PostgreSQL version, `wal_level`, free `max_wal_senders` and
replication slots, whether the role may replicate *and* `pg_hba.conf` lets it (a real replication
connection runs `IDENTIFY_SYSTEM`), `archive_mode`, data checksums, `pg_wal` size, inactive or
invalidated replication slots, that the repository `{repository}` is reachable and writable, and
each configured hot standby's replay lag.

**What it touches.** Reads server settings and catalog views; writes and deletes one small probe
object under `_probe/` in the repository. Nothing in the database changes.

**Run it by hand.** Trigger the DAG; it is read-only and safe to run at any time.

**When it fails.** The task log lists each unmet requirement as `[FAIL]` with a `fix:` line saying
what to change (most need a server restart or a `pg_hba.conf` reload). Warnings (`[WARN]`) do not
fail the run but deserve a look.
"""


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    if not db_config.healthcheck.enabled:
        return []
    with pgwarden_dag(
        database=database,
        concern="healthcheck",
        db_config=db_config,
        defaults=defaults,
        schedule=db_config.healthcheck.schedule,
        description=f"Checks {database}'s server, repository and standbys against pgwarden's needs",
        doc_md=DOC.format(database=database, conn_id=db_config.conn_id, repository=db_config.repository.url),
        default_args={"retries": 1},
    ) as dag:
        HealthcheckOperator(task_id="healthcheck", database=database, db_config=db_config)
    return [dag]
