"""Operators of the restore pipelines: the verify-restore drill and manual point-in-time recovery."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.airflow.operators.base import PgwardenOperator
from pgwarden.airflow.operators.lifecycle import run_cutoff
from pgwarden.core.drill import old_backup_due
from pgwarden.core.units import format_size

VERIFY_SQL_ROOT = Path(__file__).resolve().parents[4] / "include" / "sql" / "verify"


def drill_parent(database: str) -> Path:
    from pgwarden.engine.workdir import work_root

    return work_root() / database


class ReappliesErasures:
    """For restore tasks of a database with ``lifecycle.erasure``: the key and who re-applies, for the ledger."""

    def erasure_key(self) -> bytes | None:
        from pgwarden.airflow.hooks.secrets import erasure_key

        erasure = self.db_config.lifecycle.erasure  # type: ignore[attr-defined]
        return None if erasure is None else erasure_key(erasure.hmac_key)

    def record_context(self, context: Any):
        from pgwarden.engine.lifecycle.erasure import RecordContext

        return RecordContext(database=self.database, dag_id=self.dag_id,  # type: ignore[attr-defined]
                             run_id=str(context["run_id"]), task_id=self.task_id,  # type: ignore[attr-defined]
                             try_number=int(context["ti"].try_number), kind="reapply")


class PrepareScratchOperator(PgwardenOperator):
    """Setup task: remove scratch servers a killed drill left behind, make a fresh directory."""

    def run(self, context: Any) -> str:
        from pgwarden.engine.drill import clean_stale_scratch

        parent = drill_parent(self.database)
        parent.mkdir(parents=True, exist_ok=True)
        removed = clean_stale_scratch(parent, self.log.info)
        scratch = parent / f"drill-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
        scratch.mkdir()
        scratch.chmod(0o755)
        self.log.info("scratch directory %s (%d stale removed)", scratch, removed)
        return str(scratch)


class RemoveScratchOperator(PgwardenOperator):
    """Teardown task: stop the scratch server and remove the directory, whatever happened before."""

    template_fields = (*PgwardenOperator.template_fields, "scratch")
    task_fields = ("scratch",)

    def run(self, context: Any) -> None:
        import shutil

        from pgwarden.engine.restore import remove_restore

        if not self.scratch:  # the setup task failed before making one
            return
        path = Path(self.scratch)
        remove_restore(path / "data")
        shutil.rmtree(path, ignore_errors=True)
        self.log.info("removed %s", path)


class RestoreDrillOperator(ReappliesErasures, PgwardenOperator):
    """Restore the newest backup to the newest restore point in the scratch directory and check it.

    Also restores the oldest monthly/yearly backup every ``verify.old_backup_every`` months (or when
    the ``old_backup`` param is set). Writes evidence to the repository and fails when a check fails
    or RTO/RPO miss their targets.

    Reads the DAG run's params ``backup_id`` (null: the newest valid backup) and ``old_backup``.
    """

    template_fields = (*PgwardenOperator.template_fields, "scratch")
    task_fields = ("scratch",)

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.drill import run_drill
        from pgwarden.engine.errors import CheckFailed

        params = context["params"]
        repo = self.repository()
        dbname = self.pg_target().dbname
        smoke = VERIFY_SQL_ROOT / self.database
        # The run's own date decides, not the clock, so a cleared, retried or backfilled drill decides as its first
        # try did: data_interval_end (the scheduled time; a backfill's logical date), or for a manual run without
        # a logical date its run_after, the moment it was triggered. Not dag_run.start_date: a clear resets it.
        run_date = run_cutoff(context)
        every = self.db_config.verify.old_backup_every
        want_old = bool(params["old_backup"]) or old_backup_due(run_date, every)
        if want_old and not params["old_backup"]:
            self.log.info("also drilling the oldest monthly/yearly backup: the run's date %s is in a month "
                          "verify.old_backup_every (%d) divides", run_date.date().isoformat(), every)
        drills = [("newest", params["backup_id"] or None)] + ([("old", None)] if want_old else [])
        results = []
        for kind, backup_id in drills:
            scratch = Path(self.scratch) / kind
            scratch.mkdir(parents=True, exist_ok=True)
            self._drilling = scratch
            evidence = run_drill(repo, self.database, self.db_config, scratch=scratch, dbname=dbname, kind=kind,
                                 backup_id=backup_id, smoke_dir=smoke, log=self.log.info,
                                 erasure_key=self.erasure_key(), record_context=self.record_context(context))
            results.append(evidence)
        self._drilling = None
        failed = [e for e in results if not e.passed]
        if failed:
            lines = [f"{e.drill_id}: " + "; ".join(e.failures()) for e in failed]
            raise CheckFailed("restore drill failed (evidence written to drills/ in the repository):\n"
                                       + "\n".join(lines))
        return {"drills": [e.to_json_dict() for e in results]}

    def metrics(self, result: dict[str, Any]) -> list[Metric]:
        """Measured RTO and RPO of each drill; the oldest-backup drill's under ``verify_restore.old.``."""
        figures = []
        for drill in result["drills"]:
            prefix = "verify_restore" if drill["kind"] == "newest" else f"verify_restore.{drill['kind']}"
            figures += [Metric(f"{prefix}.{name}", drill[name], tags={"kind": drill["kind"]})
                        for name in ("rto_seconds", "rpo_seconds") if drill.get(name) is not None]
        return figures


    def on_kill(self) -> None:
        """Airflow stopped the task (timeout, marked failed): do not leave a scratch server running."""
        from pgwarden.engine.restore import remove_restore

        scratch = getattr(self, "_drilling", None)
        if scratch is not None:
            remove_restore(Path(scratch) / "data")


class PlanRestoreOperator(PgwardenOperator):
    """Decide what a PITR restore will do and check it can reach the target, before anyone approves.

    Reads the DAG run's params ``target_kind``, ``target_value`` and ``backup_id`` (null: the best
    backup for the target), as the run's conf gave them: the same values the restore task reads later.
    """

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.restore import plan_restore

        target, backup_id = requested_target(context["params"])
        plan = plan_restore(self.repository(), self.database, target, backup_id=backup_id)
        summary = plan.to_json_dict()
        self.log.info("restore plan: %s", summary)
        # What the approval shows a person; the return value stays the machine-readable plan.
        context["ti"].xcom_push(key=PLAN_MARKDOWN_KEY, value=plan_markdown(summary))
        return summary


PLAN_MARKDOWN_KEY = "plan_markdown"


def plan_markdown(summary: dict[str, Any]) -> str:
    """A restore plan (``RestorePlan.to_json_dict()``) as a short Markdown list for the approval page."""
    lines = [
        f"- **Target:** {summary['target']}"
        + (f" (LSN {summary['target_lsn']})" if summary.get("target_lsn") else ""),
        f"- **Base backup:** `{summary['backup_id']}`, started {_when(summary['backup_started_at'])}, "
        f"consistent at LSN {summary['backup_consistent_at_lsn']}",
        f"- **Size:** {format_size(summary['backup_stored_bytes'])} to download, "
        f"about {format_size(summary['database_size_bytes'])} of data once restored",
        "- **Newest WAL in the repository:** "
        + (f"LSN {summary['newest_wal_lsn']}" if summary.get("newest_wal_lsn") else "none"),
        "- **Newest restore point:** "
        + (f"`{summary['newest_restore_point']}`" if summary.get("newest_restore_point") else "none"),
        f"- **From:** `{summary['repository']}`",
    ]
    return "\n".join(lines)


def _when(iso: str) -> str:
    moment = datetime.fromisoformat(iso).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class PitrRestoreOperator(ReappliesErasures, PgwardenOperator):
    """Restore to the approved target into ``destination`` and leave it running (or paused).

    Reads the same target params as the plan task, and ``destination``, ``port`` (null: any free
    port) and ``action`` (``promote`` or ``pause``), from the DAG run's params.
    """

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.restore import next_steps, restore

        params = context["params"]
        target, backup_id = requested_target(params)
        action = params["action"]
        repo = self.repository()
        result = restore(repo, self.database, Path(params["destination"]), target,
                         backup_id=backup_id, port=params["port"], start=True, action=action, log=self.log.info)
        summary = result.to_json_dict()
        if self.db_config.lifecycle.erasure is not None:
            summary["erasures"] = self.reapply(context, repo, result, action)
        self.log.info("%s", next_steps(result, action))
        return summary

    def reapply(self, context: Any, repo: Any, result: Any, action: str) -> dict[str, object]:
        """Before the server is handed over: erase again whoever the restore brought back (from the exported
        ledger). A server paused at its target is read-only: then the log says how to do it after promotion."""
        from pgwarden.engine.errors import PermanentError
        from pgwarden.engine.lifecycle.reapply import reapply_and_check
        from pgwarden.engine.restore.server import restored_server

        if action != "promote":
            self.log.warning("%s is paused at the target (read-only): erasures made after it are NOT re-applied "
                             "yet. After promoting, run `pgwarden ledger reapply %s --to-dsn-env VAR` before "
                             "anyone uses it", self.database, self.database)
            return {"reapplied": None, "pending": True}
        server = restored_server(Path(result.datadir), result.port or 0)
        config = self.db_config.lifecycle.erasure
        report, check = reapply_and_check(server.target(self.pg_target().dbname), repo, self.database, config,
                                          self.erasure_key() or b"", self.record_context(context),
                                          log=self.log.info)
        if not check.ok:
            raise PermanentError(f"the restored {self.database} still holds personal data of erased subjects "
                                 f"after re-applying erasures: {check.detail()}; do not hand it over")
        return {**report.to_json_dict(), "check": check.detail()}


def requested_target(params: Any):
    """The recovery target and forced backup id a ``pitr_restore`` run asks for, from its params."""
    from pgwarden.core.recovery import parse_target
    from pgwarden.engine.errors import PermanentError

    try:
        target = parse_target(params["target_kind"], params["target_value"])
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    return target, params["backup_id"] or None
