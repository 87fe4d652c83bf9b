"""What every pgwarden operator shares: the database it serves and error translation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from pgwarden.core.config import DatabaseConfig


class PgwardenOperator(BaseOperator):
    """Base for pgwarden operators.

    Subclasses implement ``run(context)``. ``NoBackupYet`` skips the task (a new database has nothing
    to collect or drill until its first full backup). A ``PermanentError`` (bad config, missing permission,
    checksum mismatch) fails the task at once, without retries, with the engine's message that says
    what to do; a ``TransientError`` is raised as-is so Airflow retries it with backoff.
    """

    template_fields: Sequence[str] = ("postgres_conn_id",)
    ui_color = "#336791"  # PostgreSQL blue

    def __init__(self, *, database: str, db_config: DatabaseConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = database
        self.db_config = db_config
        self.postgres_conn_id = db_config.conn_id

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from pgwarden.engine.errors import NoBackupYet, PermanentError

        try:
            return self.run(context)
        except NoBackupYet as exc:
            self.log.warning("skipped: %s", exc)  # Airflow does not log a skip's reason itself
            raise AirflowSkipException(str(exc)) from exc
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc

    def run(self, context: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # Resolved lazily, inside the task: never at DAG parse time.
    def pg_target(self):
        from pgwarden.airflow.hooks import pg_target

        return pg_target(self.postgres_conn_id)

    def repository(self):
        from pgwarden.airflow.hooks import open_repository

        return open_repository(self.db_config.repository)
