"""Operators of ``<database>.ttl_purge``: plan every policy, keep soft-delete views, purge, drop partitions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.airflow.operators.base import PgwardenOperator


def run_cutoff(context: Any) -> datetime:
    """The run's logical "now": ``data_interval_end``, fixed for the run (a clear or retry selects the same rows).

    A manual run without a data interval uses its ``run_after``, also fixed once the run exists.
    """
    cutoff = context.get("data_interval_end") or context["dag_run"].run_after
    return cutoff


def selected(context: Any, policy: str) -> bool:
    chosen = (context.get("params") or {}).get("policies")
    return not chosen or policy in chosen


class LifecyclePlanOperator(PgwardenOperator):
    """Check every policy against the live catalog; fail naming each problem before any row is touched."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.lifecycle.plan import plan_policies
        from pgwarden.engine.postgres import connect

        with connect(self.pg_target()) as conn:
            plans = plan_policies(conn, self.db_config.lifecycle.policies)
        summary: dict[str, object] = {}
        for plan in plans:
            for warning in plan.warnings:
                self.log.warning("policy %s: %s", plan.policy.name, warning)
            summary[plan.policy.name] = {"table": str(plan.main.table), "key": list(plan.main.selection.key),
                                         "children": [str(c.table) for c in plan.children],
                                         "warnings": list(plan.warnings)}
        return summary


class ActiveViewsOperator(PgwardenOperator):
    """Create or refresh the ``<table>_active`` view of every soft-delete policy that asks for one."""

    def run(self, context: Any) -> list[str]:
        from pgwarden.engine.lifecycle.views import ensure_active_view
        from pgwarden.engine.postgres import connect

        with connect(self.pg_target()) as conn:
            return [ensure_active_view(conn, p, log=self.log.info) for p in self.db_config.lifecycle.policies
                    if p.soft_delete and p.soft_delete.active_view]


class PurgePolicyOperator(PgwardenOperator):
    """Purge one policy's expired rows at the run's cutoff; the XCom summary holds counts only."""

    task_fields = ("policy",)

    def run(self, context: Any) -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pgwarden.engine.lifecycle.purge import purge

        if not selected(context, self.policy):
            raise AirflowSkipException(f"policy {self.policy} is not in this run's `policies` param")
        policy = self.db_config.lifecycle.policy(self.policy)
        if policy.mode == "archive_then_delete":
            summary = self.archive_then_delete(context, policy)
        else:
            summary = purge(self.pg_target(), policy, run_cutoff(context), log=self.log.info)
            if not summary["finished"]:
                self.log.warning("policy %s stopped at its max_run_time (%s); the next run continues",
                                 self.policy, policy.batch.max_run_time)
        self.record(context, summary)
        return summary

    def record(self, context: Any, summary: dict[str, Any]) -> None:
        """The try's count in ``pgwarden.lifecycle_runs`` (engine/lifecycle/runs.py): the pgwarden page's
        "rows purged per day" reads it there, not from XCom."""
        from pgwarden.engine.lifecycle.runs import record_purge
        from pgwarden.engine.postgres import connect

        ti = context["ti"]
        with connect(self.pg_target(), statement_timeout="30s") as conn:
            record_purge(conn, str(context["run_id"]), self.policy, int(ti.try_number or 1),
                         int(summary["rows_total"]), bool(summary["finished"]))

    def metrics(self, result: dict[str, Any]) -> list[Metric]:
        """Rows deleted by this policy's run, foreign-key children included (a counter: add them up)."""
        return [Metric("ttl_purge.rows_deleted", result["rows_total"], "incr", tags={"policy": self.policy})]

    def archive_then_delete(self, context: Any, policy: Any) -> dict[str, object]:
        """The purge with the main table archived to the repository first (engine/lifecycle/archive.py)."""
        from pgwarden.engine.lifecycle.archive import Archiver, ArchiveRequest, hmac_key_from_env
        from pgwarden.engine.lifecycle.purge import purge
        from pgwarden.engine.workdir import scratch

        cutoff = run_cutoff(context)
        request = ArchiveRequest(database=self.database, policy=policy, data_interval_end=cutoff,
                                 run_id=str(context["run_id"]))
        with scratch(self.database, f"archive-{policy.name}") as workdir:
            archiver = Archiver(self.repository(), request, workdir, hmac_key_from_env(), log=self.log.info)
            return purge(self.pg_target(), policy, cutoff, log=self.log.info, archiver=archiver)


class DropDetachedPartitionsOperator(PgwardenOperator):
    """Drop the partitions earlier tasks detached (a run killed in between is finished here, or next time)."""

    def run(self, context: Any) -> dict[str, list[str]]:
        from pgwarden.engine.lifecycle.partitions import drop_detached_partitions
        from pgwarden.engine.postgres import connect

        with connect(self.pg_target()) as conn:
            return {p.name: drop_detached_partitions(conn, p, log=self.log.info)
                    for p in self.db_config.lifecycle.policies
                    if p.mode == "partition_drop" and selected(context, p.name)}
