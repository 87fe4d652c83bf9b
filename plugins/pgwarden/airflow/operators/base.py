"""What every pgwarden operator shares: the database it serves, skipping before the first backup, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from pgwarden.airflow.operating.metrics import Metric


def take_fields(operator: BaseOperator, kwargs: dict[str, Any], names: Sequence[str]) -> bool:
    """Move the keyword arguments ``names`` (all required) out of ``kwargs`` onto ``operator``'s attributes,
    as an ``__init__`` storing them would; True on the call that took them.

    Called from ``_hook_apply_defaults``, the hook Airflow's ``apply_defaults`` calls before each wrapped
    ``__init__`` of the task's class hierarchy (the outermost first), rather than from an ``__init__`` of
    pgwarden's own: BaseOperatorMeta wraps every class's own ``__init__``, and each wrapped level deep-copies
    the DAG's params and merges its default_args again. Over a fleet's thousands of tasks those levels were
    a measurable part of the DAG parse (BENCHMARKS.md, ``dag_parse``).
    """
    if all(name in vars(operator) for name in names):
        return False  # an inner level: the outermost one took them
    missing = [name for name in names if name not in kwargs]
    if missing:  # what apply_defaults says for a missing argument of a signature
        raise TypeError(f"missing keyword argument{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(name) for name in sorted(missing))}")
    for name in names:
        # Before BaseOperator.__init__ ran: its __setattr__'s bookkeeping needs state it has not set yet
        # (and has nothing to do for an attribute set during __init__).
        object.__setattr__(operator, name, kwargs.pop(name))
    return True


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
    # The keyword arguments a subclass's tasks carry besides database and db_config (all required), stored
    # as attributes of the same names. A subclass that only stores fields declares them here rather than
    # defining its own __init__ (see take_fields: each class's own __init__ costs the DAG parse).
    task_fields: tuple[str, ...] = ()

    def _hook_apply_defaults(self, **kwargs: Any) -> tuple[tuple[()], dict[str, Any]]:
        from pgwarden.airflow.operating.retry import RETRY_POLICY

        if take_fields(self, kwargs, ("database", "db_config", *self.task_fields)):
            object.__setattr__(self, "postgres_conn_id", self.db_config.conn_id)
            kwargs.setdefault("retry_policy", RETRY_POLICY)  # also outside pgwarden_dag: one rule for our errors
        return (), kwargs

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
