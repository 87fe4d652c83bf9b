"""What every pgwarden operator shares: the database it serves, skipping before the first backup, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.core.config import DatabaseConfig


class PgwardenOperator(BaseOperator):
    """Base for pgwarden operators.

    Subclasses implement ``run(context)``. ``NoBackupYet`` skips the task (a new database has nothing
    to collect or drill until its first full backup). Every other error is raised as it is: the retry
    policy every pgwarden task carries (``airflow/operating/retry.py``) fails a ``PermanentError`` (bad
    config, missing permission, checksum mismatch) at once and retries a ``TransientError`` with backoff.

    What a run measured is sent to Airflow's Stats here, in one place: a subclass returns its figures
    from ``metrics(result)`` (``airflow/operating/metrics.py`` has the naming).
    """

    template_fields: Sequence[str] = ("postgres_conn_id",)
    ui_color = "#336791"  # PostgreSQL blue

    def __init__(self, *, database: str, db_config: DatabaseConfig, **kwargs: Any) -> None:
        from pgwarden.airflow.operating.retry import RETRY_POLICY

        kwargs.setdefault("retry_policy", RETRY_POLICY)  # also outside pgwarden_dag: one rule for our errors
        super().__init__(**kwargs)
        self.database = database
        self.db_config = db_config
        self.postgres_conn_id = db_config.conn_id

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        from pgwarden.airflow.operating.metrics import emit
        from pgwarden.engine.errors import NoBackupYet

        try:
            result = self.run(context)
        except NoBackupYet as exc:
            self.log.warning("skipped: %s", exc)  # Airflow does not log a skip's reason itself
            raise AirflowSkipException(str(exc)) from exc
        emit(lambda: self.metrics(result), database=self.database, dag_id=self.dag_id)
        return result

    def run(self, context: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def metrics(self, result: Any) -> list[Metric]:
        """The figures of a successful run worth a time series (``result`` is what ``run`` returned)."""
        return []

    # Resolved lazily, inside the task: never at DAG parse time.
    def pg_target(self):
        from pgwarden.airflow.hooks import pg_target

        return pg_target(self.postgres_conn_id)

    def repository(self):
        from pgwarden.airflow.hooks import open_repository

        return open_repository(self.db_config.repository)
