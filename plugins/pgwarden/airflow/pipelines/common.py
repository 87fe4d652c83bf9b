"""The DAG settings every pgwarden pipeline shares, so every DAG looks and behaves alike."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from pgwarden.core.config import DatabaseConfig, Defaults

# A fixed start in the past with catchup off: the first run is the next scheduled one.
START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)


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
    """A DAG with pgwarden's naming, tags, ownership, retry policy and no overlapping runs."""
    default_args = {
        "owner": db_config.owner if db_config else defaults.owner,  # None: a broken entry's stand-in
        "retries": defaults.retries,
        "retry_delay": defaults.retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    }
    default_args.update(kwargs.pop("default_args", {}))
    return DAG(
        dag_id=dag_id(database, concern),
        description=description,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["pgwarden", concern.split(".")[0], f"db:{database}"],
        doc_md=doc_md,
        default_args=default_args,
        **kwargs,
    )
