"""The one retry policy of every pgwarden task: permanent errors fail at once, transient ones retry.

It is the single mechanism that decides. Operators raise the engine's own errors unchanged (they are
not wrapped in ``AirflowFailException``), so the policy sees the real class, Airflow logs the decision
with its reason on the task instance, the failure callback can name the class (``ChecksumMismatch``,
``PlanError``...), and tasks that are not ours (the approval gate) follow the same rules.

Rules, first match wins:

- ``PermanentError`` and subclasses (bad config, missing table or permission, checksum mismatch, grace
  period not over, legal hold, a failed drill or healthcheck): FAIL now, retrying cannot help;
- ``TransientError`` (lost connection, lock timeout, S3 5xx, a server restarting) and a raw
  ``psycopg.OperationalError`` escaping a session mid-way: RETRY with the task's exponential backoff;
- anything else (a bug): Airflow's default, the task's ``retries``.

A RETRY never exceeds the task's ``retries``; the delay is the task's own (``retry_delay`` doubled per
try up to ``max_retry_delay``), so the backoff stays configured in one place, ``pgwarden_dag``.
"""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from pgwarden.engine.errors import PermanentError, TransientError


class LazyRetryRule(RetryRule):
    """A rule whose dotted exception paths are imported when a task fails, not when the DAG is parsed:
    ``RetryRule`` imports them up front to warn about typos, and psycopg alone costs 0.2 s of parse time
    per DAG file. Matching and serialization are ``RetryRule``'s own."""

    def __post_init__(self) -> None:
        pass


RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(exception=PermanentError, action=RetryAction.FAIL,
                  reason="permanent error: retrying cannot help, the log says what to change"),
        LazyRetryRule(exception=[TransientError, "psycopg.OperationalError"], action=RetryAction.RETRY,
                  reason="transient error: retrying with exponential backoff"),
    ],
    default=RetryAction.DEFAULT,
)
