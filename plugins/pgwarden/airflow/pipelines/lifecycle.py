"""``<database>.ttl_purge``: delete what each lifecycle policy says has expired, in short batches."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from pgwarden.airflow.operators.lifecycle import (
    ActiveViewsOperator,
    DropDetachedPartitionsOperator,
    LifecyclePlanOperator,
    PurgePolicyOperator,
)
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults

DOC = """\
### {database}.ttl_purge

**What it does.** For each lifecycle policy ({policies}) deletes the rows that expired by the run's
`data_interval_end` (never `now()`: a cleared or retried run selects the same rows, a run for an old
interval deletes nothing newer), children found through foreign keys first, in batches that walk the
key's index, each its own short transaction sized to the policy's time budget. Lock timeouts back off and
retry; a policy stops cleanly at its `max_run_time` and the next run continues. Partition-mode policies
detach whole expired partitions (`DETACH PARTITION ... CONCURRENTLY`) and the last task drops them.
Soft-delete policies with `active_view` get their `<table>_active` view kept.

**What it touches.** Deletes rows of the configured tables and their foreign-key children through
`{conn_id}`; may detach and drop partitions, create `<table>_active` views, and `VACUUM (ANALYZE)` after
a large purge. A session advisory lock per table keeps two runs off one table. The XCom summary holds
counts only (rows, batches, batch times, lock-timeout retries, WAL bytes), never row data.

**Run it by hand.** Trigger the DAG; the cutoff is the run's data interval end. The `policies` param
limits a run to some policies. Clearing a finished run deletes nothing new.

**When it fails.** `plan` fails before any row is touched, naming the policy and what to change (a
missing table or column, a wrong column type, a predicate the server cannot plan, a table without a
usable key). A purge task that fails on a lock or connection problem is safe to clear: committed
batches stay done and the rest is found again. "another pgwarden run is purging" means a run is
still working on that table; it retries.
"""


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    lifecycle = db_config.lifecycle
    if not lifecycle.policies:
        return []
    names = [p.name for p in lifecycle.policies]
    with pgwarden_dag(
        database=database,
        concern="ttl_purge",
        db_config=db_config,
        defaults=defaults,
        schedule=lifecycle.schedule,
        description=f"Purges expired rows of {database} in short batches ({len(names)} policies)",
        doc_md=DOC.format(database=database, conn_id=db_config.conn_id, policies=", ".join(f"`{n}`" for n in names)),
        params={"policies": Param(None, type=["null", "array"], items={"type": "string", "enum": names},
                                  description="only these policies (empty: all)")},
    ) as dag:
        common = {"database": database, "db_config": db_config}
        plan = LifecyclePlanOperator(task_id="plan", **common)
        upstream = plan
        if any(p.soft_delete and p.soft_delete.active_view for p in lifecycle.policies):
            upstream = ActiveViewsOperator(task_id="active_views", **common)
            plan >> upstream
        purges = [PurgePolicyOperator(task_id=f"purge_{name}", policy=name, **common) for name in names]
        upstream >> purges
        if any(p.mode == "partition_drop" for p in lifecycle.policies):
            purges >> DropDetachedPartitionsOperator(task_id="drop_detached_partitions", trigger_rule="all_done",
                                                     **common)
    return [dag]
