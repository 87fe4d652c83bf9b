"""The rehearsal task of a ``<database>.migrate.<NNN_name>`` DAG: the migration on a restored copy, before expand.

Drop it in front of expand. When the run rehearses (``should_rehearse``: the run Param ``rehearse``, else
``rehearse:`` in the migration file), it restores the newest backup into a scratch server, runs the
whole migration and its rollback paths there (``engine/migrations/rehearsal.py``) and fails the run
with a ``PermanentError`` when anything failed, so production is never touched. Otherwise it succeeds
without doing anything (a skip would skip expand behind it too).

XCom: the return value is the report (``RehearsalReport.to_json_dict()``, or ``{"rehearsed": false}``);
key ``rehearsal_markdown`` holds the Markdown for the first gate's body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.airflow.operators.base import PgwardenOperator
from pgwarden.airflow.operators.restore import drill_parent

REHEARSAL_MARKDOWN_KEY = "rehearsal_markdown"


class RehearseMigrationOperator(PgwardenOperator):
    """Rehearse the expand/contract migration ``migration_path`` on a restored copy; fail the run if it fails."""

    template_fields = (*PgwardenOperator.template_fields, "migration_path")
    task_fields = ("migration_path",)  # a str or a Path, stored as a str
    _scratch_parent: Path | None = None  # set while a rehearsal runs (on_kill)

    def _hook_apply_defaults(self, **kwargs: Any) -> tuple[tuple[()], dict[str, Any]]:
        if "migration_path" in kwargs:
            kwargs["migration_path"] = str(kwargs["migration_path"])
        return super()._hook_apply_defaults(**kwargs)

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.core.migrations.rehearsal import NOT_REHEARSED, rehearsal_markdown, should_rehearse
        from pgwarden.engine.errors import PermanentError
        from pgwarden.engine.migrations.expand_contract import read_spec
        from pgwarden.engine.migrations.rehearsal import rehearse

        path = Path(self.migration_path)
        spec = read_spec(path)
        ti = context["ti"]
        if not should_rehearse(spec, context.get("params")):
            self.log.info("not rehearsing %s (rehearse is off in the file and the run's params)", path.name)
            ti.xcom_push(key=REHEARSAL_MARKDOWN_KEY, value=NOT_REHEARSED)
            return {"rehearsed": False, "migration": path.name}
        self._scratch_parent = drill_parent(self.database)
        report = rehearse(self.repository(), self.database, path, dbname=self.pg_target().dbname,
                          scratch_parent=self._scratch_parent, log=self.log.info)
        self._scratch_parent = None
        result = {"rehearsed": True, **report.to_json_dict()}
        ti.xcom_push(key=REHEARSAL_MARKDOWN_KEY, value=rehearsal_markdown(report.to_json_dict()))
        if not report.passed:
            raise PermanentError(f"{report.summary()}. Production was not touched: fix the migration file "
                                 f"{path.name} (or the cause named) and run again")
        return result

    def metrics(self, result: dict[str, Any]) -> list[Metric]:
        if not result.get("rehearsed"):
            return []
        figures = [Metric(f"migrate.rehearsal.{phase}_seconds", seconds, "timing") for phase, seconds in result["phases"].items()]
        if result.get("backfill_rows_per_second") is not None:
            figures.append(Metric("migrate.rehearsal.backfill_rows_per_second", result["backfill_rows_per_second"]))
        return figures

    def on_kill(self) -> None:
        """Airflow stopped the task (timeout, marked failed): do not leave a scratch server running."""
        from pgwarden.engine.drill import clean_stale_scratch
        from pgwarden.engine.migrations.rehearsal import SCRATCH_PREFIX

        if self._scratch_parent is not None:
            clean_stale_scratch(self._scratch_parent, self.log.info, prefix=SCRATCH_PREFIX)
