"""Operators of ``<database>.gdpr_erasure``: check the PII map against the catalog, then erase the due subjects."""

from __future__ import annotations

from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator
from pgwarden.airflow.operators.lifecycle import run_cutoff


class ErasurePlanOperator(PgwardenOperator):
    """Check the PII map against the live catalog; fail naming every problem before any row changes."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.lifecycle.erasure_plan import plan_erasure
        from pgwarden.engine.postgres import connect

        assert self.db_config.lifecycle.erasure is not None
        with connect(self.pg_target()) as conn:
            plan = plan_erasure(conn, self.db_config.lifecycle.erasure)
        for warning in plan.warnings:
            self.log.warning("%s", warning)
        return {"policy_version": plan.policy_version, "order": [str(s.table) for s in plan.steps],
                "methods": {str(s.table): s.method for s in plan.steps}, "warnings": list(plan.warnings)}


class EraseSubjectsOperator(PgwardenOperator):
    """Erase every subject due at the run's data interval end, one transaction each; counts and ids only out."""

    def run(self, context: Any) -> dict[str, object]:
        # Inside the task, like every hook: importing the hooks at parse time pulls in boto3 (~0.3 s per parse).
        from pgwarden.airflow.hooks.secrets import erasure_key
        from pgwarden.engine.lifecycle.erasure import RecordContext, erase_subjects
        from pgwarden.engine.lifecycle.erasure_plan import plan_erasure
        from pgwarden.engine.postgres import connect

        config = self.db_config.lifecycle.erasure
        assert config is not None
        dry_run = bool((context.get("params") or {}).get("dry_run", False))
        key = erasure_key(config.hmac_key)
        ti = context["ti"]
        record = RecordContext(database=self.database, dag_id=self.dag_id, run_id=str(context["run_id"]),
                               task_id=self.task_id, try_number=int(ti.try_number))
        cutoff = run_cutoff(context)
        lock_timeout = f"{int(config.lock_timeout.total_seconds() * 1000)}ms"
        with connect(self.pg_target(), lock_timeout=lock_timeout, statement_timeout="5min") as conn:
            plan = plan_erasure(conn, config)
            report = erase_subjects(conn, plan, cutoff, key, record, dry_run=dry_run, log=self.log.info)
        return report.to_json_dict()
