"""Operators of ``<database>.migrate.<NNN_name>``: the phases, the sensors between them and the gates.

Each task first checks the migration file against ``pgwarden.schema_history`` (an edited file is refused,
naming it) and records what it did there (``engine/migrations/gated.py``). The gates are the standard
provider's ``HITLBranchOperator``; :class:`MigrationGateOperator` also writes who answered, when and what
into ``schema_history.approvals`` before it branches.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import BaseSensorOperator

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.airflow.operators.base import PgwardenOperator, take_fields
from pgwarden.airflow.operators.migrate import run_info
from pgwarden.airflow.operators.rehearsal import REHEARSAL_MARKDOWN_KEY

BODY_KEY = "gate_body"
BASELINE_KEY = "old_column_baseline"
# The rehearsal task (RehearseMigrationOperator) runs before `restore_point`; its Markdown (phase
# durations, lock waits, backfill rate, rollback checks) closes the switch gate's body.
REHEARSAL_TASK = "rehearse"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return str(timedelta(seconds=int(seconds)))


class GatedPhaseOperator(PgwardenOperator):
    """One phase of the migration ``migration`` (``NNN_name``): restore_point, expand, backfill, contract,
    rollback or record; plan checks and lints only."""

    task_fields = ("migration", "phase")

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.migrations import gated

        return gated.execute(self.pg_target(), self.repository, self.database, self.db_config, self.migration,
                             self.phase, run_info(context), log=lambda line: self.log.info("%s", line))

    def metrics(self, result: dict[str, Any]) -> list[Metric]:
        """How long the phase took, its lock-timeout retries, the backfill's rows; counts only."""
        phase = self.phase
        found = [Metric(f"migrate_gated.{phase}.duration_seconds", result["duration_seconds"],
                        tags={"migration": self.migration})]
        if result.get("ddl"):
            found.append(Metric(f"migrate_gated.{phase}.lock_retries", result["ddl"]["lock_retries"], "incr",
                                tags={"migration": self.migration}))
        if phase == "backfill":
            backfills = result["backfills"]
            for measure, value in (("rows_updated", sum(b["rows_updated"] for b in backfills)),
                                   ("rows_walked", sum(b["rows_walked"] for b in backfills)),
                                   ("lock_retries", sum((b.get("batches") or {}).get("lock_timeout_retries", 0)
                                                        for b in backfills))):
                found.append(Metric(f"migrate_gated.backfill.{measure}", value, "incr",
                                    tags={"migration": self.migration}))
        return found


class _MigrationSensor(BaseSensorOperator):
    """A sensor of the migration (reschedule mode: it holds no worker slot between pokes)."""

    template_fields = ()

    # database, db_config, migration: keyword arguments taken by the hook, not an __init__ (base.take_fields)
    def _hook_apply_defaults(self, **kwargs: Any) -> tuple[tuple[()], dict[str, Any]]:
        if take_fields(self, kwargs, ("database", "db_config", "migration")):
            kwargs.setdefault("mode", "reschedule")
        return (), kwargs

    def pg_target(self):
        from pgwarden.airflow.hooks.postgres import pg_target

        return pg_target(self.db_config.conn_id)


class ConsistencySensor(_MigrationSensor):
    """Waits until no row's new column differs from what its old column implies; then writes the switch
    gate's body (rows backfilled, mismatches, lock retries, time since expand, rehearsal figures)."""

    def poke(self, context: Any) -> bool:
        from pgwarden.core.migrations.gates import switch_body
        from pgwarden.engine.migrations import gated

        target = self.pg_target()
        checked = gated.guard(target, self.db_config.migrations, self.migration)
        found = gated.mismatches(target, checked.path)
        self.log.info("%d rows where the new column differs from what the old one implies", found)
        if found:
            return False
        ti = context["ti"]
        backfill = ti.xcom_pull(task_ids="backfill") or {}
        expand = ti.xcom_pull(task_ids="expand") or {}
        point = ti.xcom_pull(task_ids="restore_point") or {}
        rehearsal = (ti.xcom_pull(task_ids=REHEARSAL_TASK, key=REHEARSAL_MARKDOWN_KEY)
                     if REHEARSAL_TASK in self.dag.task_dict else None)
        facts = {
            "rows_updated": sum(b.get("rows_updated", 0) for b in backfill.get("backfills", [])),
            "rows_walked": sum(b.get("rows_walked", 0) for b in backfill.get("backfills", [])),
            "mismatches": found,
            "lock_retries": (expand.get("ddl") or {}).get("lock_retries", 0),
            "since_expand": _duration(gated.timeline(target, checked.file.version)["since_expand_seconds"]),
            "restore_point": point.get("restore_point"),
            "rehearsal": rehearsal,
        }
        ti.xcom_push(key=BODY_KEY, value=switch_body(facts))
        return True


class ReadinessSensor(_MigrationSensor):
    """Before contract: no statement has touched the old column since the switch gate.

    With ``pg_stat_statements`` it compares the calls of statements naming the old column (and its table)
    with the switch gate's snapshot, then with its previous poke (``gated.quiet_since``: in the database, as
    a rescheduled poke starts with its task's XComs cleared): it passes once they stayed unchanged for
    ``gates.quiet_for``. Without it, it waits ``gates.min_soak`` after the switch gate.
    Either way it logs and reports what it saw, and writes the contract gate's body.
    """

    def poke(self, context: Any) -> bool:
        from datetime import UTC, datetime

        from pgwarden.core.migrations.gates import SWITCH_GATE, approver, contract_body
        from pgwarden.engine.migrations import gated

        gates = self.db_config.migrations.gates
        target = self.pg_target()
        checked = gated.guard(target, self.db_config.migrations, self.migration)
        ti = context["ti"]
        baseline = ti.xcom_pull(task_ids=SWITCH_GATE, key=BASELINE_KEY) or {}
        counts = gated.old_column_calls(target, checked.path)
        if counts is None:
            now = datetime.now(UTC)
            since = now - datetime.fromisoformat(baseline.get("at") or now.isoformat())
            saw = f"pg_stat_statements not installed; {_duration(since.total_seconds())} since the switch gate " \
                  f"(min_soak {gates.min_soak})"
            ready = since >= gates.min_soak
        else:
            quiet_since, now = gated.quiet_since(target, checked.file.version, context["run_id"], counts)
            quiet = now - quiet_since
            new_calls = {k: v - (baseline.get("counts") or {}).get(k, 0) for k, v in counts.items()}
            saw = (f"statements on the old column since the switch gate: {new_calls}; unchanged for "
                   f"{_duration(quiet.total_seconds())} (needs {gates.quiet_for})")
            ready = quiet >= gates.quiet_for
        self.log.info("readiness: %s -> %s", saw, "ready" if ready else "waiting")
        if not ready:
            return False
        info = gated.timeline(target, checked.file.version)
        switch = [a for a in info["approvals"] if a.get("gate") == SWITCH_GATE and a.get("run_id") == context["run_id"]]
        by = (approver(switch[-1]) or "nobody (timeout)") if switch else "?"
        mode = gates.safety_net
        net = ("a restore point `pgwarden_" + self.migration + "_precontract_<time>`"
               + {"wal": " and a WAL collection", "full_backup": ", a full backup and a WAL collection",
                  "restore_point": " only"}[mode])
        ti.xcom_push(key=BODY_KEY, value=contract_body({
            "readiness": saw, "since_expand": _duration(info["since_expand_seconds"]), "switch_by": by,
            "safety_net": net}))
        ti.xcom_push(key="readiness", value=saw)
        return True


class MigrationGateOperator(HITLBranchOperator):
    """A gate: Approve continues, Roll back (and the timeout default) runs the rollback branch.

    Before branching it writes the answer (the Airflow user's id and name, the time, the option, whether
    it timed out) to ``schema_history.approvals``; the switch gate also snapshots the old column's
    statement counts for the readiness sensor.
    """

    # database, db_config, migration: keyword arguments taken by the hook, not an __init__ (base.take_fields)
    def _hook_apply_defaults(self, **kwargs: Any) -> tuple[tuple[()], dict[str, Any]]:
        take_fields(self, kwargs, ("database", "db_config", "migration"))
        return (), kwargs

    def execute(self, context: Any) -> Any:
        from pgwarden.airflow.hooks.postgres import pg_target
        from pgwarden.engine.migrations import gated

        # Before asking: the file check (an edited file fails here, not after someone answered) and the
        # timeline's "waiting since" (this task's start, as Airflow shows it) for the pgwarden page.
        gated.gate_waiting(pg_target(self.db_config.conn_id), self.db_config.migrations, self.migration,
                           self.task_id, run_info(context), getattr(context["ti"], "start_date", None))
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from datetime import UTC, datetime

        from pgwarden.airflow.hooks.postgres import pg_target
        from pgwarden.airflow.operating.metrics import emit
        from pgwarden.core.migrations.gates import APPROVE, SWITCH_GATE, answer, approval_entry, approver
        from pgwarden.engine.migrations import gated

        if "error" not in event:
            target = pg_target(self.db_config.conn_id)
            checked = gated.guard(target, self.db_config.migrations, self.migration)
            at = event.get("responded_at")
            entry = approval_entry(self.task_id, event.get("chosen_options") or [], event.get("responded_by_user"),
                                   at.isoformat() if hasattr(at, "isoformat") else at, event.get("timedout", False))
            entry.update(run_info(context).stamp())  # which run answered (the audit export names its DAG)
            gated.record_approval(target, checked.file.version, entry)
            self.log.info("gate %s answered %s by %s", self.task_id, answer(entry), approver(entry) or "timeout")
            # The outcome only, never who answered (a person's name is no time series).
            outcome = "timed_out" if entry["timed_out"] else ("approved" if APPROVE in entry["chosen"] else "rolled_back")
            emit(lambda: [Metric(f"migrate_gated.{self.task_id}.{outcome}", 1, "incr",
                                 tags={"migration": self.migration})], database=self.database, dag_id=self.dag_id)
            if self.task_id == SWITCH_GATE:
                counts = gated.old_column_calls(target, checked.path)
                if counts is not None:  # readiness's quiet time counts from here
                    gated.quiet_since(target, checked.file.version, context["run_id"], counts)
                context["ti"].xcom_push(key=BASELINE_KEY, value={"counts": counts, "at": datetime.now(UTC).isoformat()})
        return super().execute_complete(context, event)
