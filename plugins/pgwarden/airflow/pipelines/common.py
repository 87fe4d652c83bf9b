"""The DAG settings every pgwarden pipeline shares, so every DAG looks and behaves alike."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable

from pgwarden.airflow.operating.deadlines import deadline_alerts
from pgwarden.airflow.operating.notify import FailureNotifier
from pgwarden.airflow.operating.retry import RETRY_POLICY
from pgwarden.core.alerts import deadline_window
from pgwarden.core.config import DatabaseConfig, Defaults


def timetable(schedule: str | None) -> CronTriggerTimetable | None:
    """The first run of a new DAG (also when it is unpaused later) is its next scheduled time, not the
    one that just passed: a monthly drill must not start the moment it is deployed, on last month's date.

    Airflow creates the most recent past run at once when the DAG has a start_date (whatever
    ``catchup``), so there is none. Without one, CronTriggerTimetable's ``run_immediately`` decides;
    its ``False`` still runs the past one within 10 % of the interval (Airflow 3.3's code, despite its
    docstring), a zero delta never does. Once a DAG has run, a run missed while the scheduler was
    down or the DAG paused runs once when it is back (``catchup`` off), as usual.
    """
    if schedule is None:
        return None
    return CronTriggerTimetable(schedule, timezone="UTC", run_immediately=timedelta(0))


def dag_id(database: str, concern: str) -> str:
    return f"{database}.{concern}"


def pgwarden_dag(
    *,
    database: str,
    concern: str,
    db_config: DatabaseConfig | None,
    defaults: Defaults,
    schedule: str | None,
    doc_md: str,
    description: str,
    **kwargs: Any,
) -> DAG:
    """A DAG with pgwarden's naming, tags, ownership and no overlapping runs, and what operating it needs
    (``airflow/operating``): on every task the retry policy (permanent errors fail at once, transient ones
    retry with exponential backoff) and the failure notifier; on a scheduled DAG a deadline alert.

    ``db_config`` None is a broken entry's stand-in: it is reported through the defaults' ``notify``.
    """
    notify = db_config.notify if db_config is not None and db_config.notify is not None else defaults.notify
    deadlines = defaults.deadlines
    if db_config is not None and db_config.deadlines is not None:
        deadlines = db_config.deadlines.merged_over(defaults.deadlines)
    window = deadline_window(concern, schedule, deadlines.configured(concern),
                             rto_target=db_config.verify.rto_target if db_config else None)
    default_args = {
        "owner": db_config.owner if db_config else defaults.owner,  # None: a broken entry's stand-in
        "retries": defaults.retries,
        "retry_delay": defaults.retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "retry_policy": RETRY_POLICY,
        "on_failure_callback": FailureNotifier(notify),
    }
    default_args.update(kwargs.pop("default_args", {}))
    kwargs.setdefault("deadline", deadline_alerts(dag_id(database, concern), window, notify) or None)
    return DAG(
        dag_id=dag_id(database, concern),
        description=description,
        schedule=timetable(schedule),
        catchup=False,
        max_active_runs=1,
        tags=["pgwarden", concern.split(".")[0], f"db:{database}"],
        doc_md=doc_md,
        default_args=default_args,
        **kwargs,
    )
