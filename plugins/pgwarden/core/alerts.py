"""Who hears about a failed task or a late run, and when a run counts as late: the ``notify`` and
``deadlines`` config sections and the alert text, without Airflow.

Both sections live under ``defaults`` and may be set again per database: a database's ``notify``
replaces the default one whole (its own recipients), its ``deadlines`` override the defaults key by key.
Secrets never appear here: channels name Airflow connections (SMTP, HTTP) that hold hosts and passwords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator

from pgwarden.core.config_types import ConnId, Strict
from pgwarden.core.schedule import shortest_interval
from pgwarden.core.units import parse_duration

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class EmailChannel(Strict):
    """E-mail through Airflow's SMTP provider; the connection holds host, port, TLS and password."""

    to: list[str] = Field(min_length=1)
    smtp_conn_id: ConnId = "smtp_default"
    from_email: str | None = Field(default=None, description="default: the connection's from_email")

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if not EMAIL.match(a)]
        if bad:
            raise ValueError(f"not e-mail addresses: {', '.join(map(repr, bad))}")
        return value


class WebhookChannel(Strict):
    """JSON POSTed to the URL of an Airflow HTTP connection (a Slack/Mattermost incoming webhook works too:
    the body carries ``text``). The URL, with any token in it, lives in the connection, not here."""

    http_conn_id: ConnId
    endpoint: str = Field(default="", description="path appended to the connection's URL (no secret here)")


class NotifyConfig(Strict):
    """Where failures and missed deadlines are reported; no channel means Airflow's UI and logs only."""

    email: EmailChannel | None = None
    webhook: WebhookChannel | None = None

    @property
    def channels(self) -> list[str]:
        return [name for name in ("email", "webhook") if getattr(self, name) is not None]


def _window(value: Any) -> Any:
    """A duration, or ``off`` (YAML reads a bare ``off`` as false), or unset."""
    if value is None or isinstance(value, timedelta):
        return value
    if value is False or value == "off":
        return "off"
    return parse_duration(value)


Window = Annotated[timedelta | Literal["off"] | None, BeforeValidator(_window),
                   PlainSerializer(lambda v: v.total_seconds() if isinstance(v, timedelta) else v, when_used="json")]


class DeadlinesConfig(Strict):
    """How long after its logical date a scheduled run may still be running before it alerts.

    Unset keys take the built-in default: ``backup_full`` 4 h, ``verify_restore`` the drill's
    ``verify.rto_target``, every other concern one interval of its schedule (a run still going when the
    next one is due blocks it: runs never overlap). ``off`` disables the alert of that concern.
    """

    backup_full: Window = None
    backup_incremental: Window = None
    verify_restore: Window = None
    healthcheck: Window = None
    ttl_purge: Window = None
    gdpr_erasure: Window = None
    migrate: Window = None

    def merged_over(self, base: DeadlinesConfig) -> DeadlinesConfig:
        """These keys where set, ``base``'s elsewhere (a database's section over the defaults)."""
        return base.model_copy(update={k: v for k, v in self if v is not None})

    def configured(self, concern: str) -> Window:
        return getattr(self, concern.split(".")[0], None)


BUILT_IN_WINDOWS = {"backup_full": timedelta(hours=4)}


def deadline_window(concern: str, schedule: str | None, configured: Window,
                    rto_target: timedelta | None = None) -> timedelta | None:
    """The time after a run's logical date at which a still-running run alerts; ``None``: no alert.

    Manual DAGs (no schedule) have none: nobody expects them at a time.
    """
    if schedule is None or configured == "off":
        return None
    if isinstance(configured, timedelta):
        return configured
    family = concern.split(".")[0]
    if family == "verify_restore" and rto_target is not None:
        return rto_target
    return BUILT_IN_WINDOWS.get(family) or shortest_interval(schedule)


@dataclass(frozen=True)
class Alert:
    """One message for every channel: ids, a class name and where to look, never row data or messages
    (an exception's text could quote a value; its class and the task log say enough to start)."""

    subject: str
    lines: tuple[str, ...]
    facts: dict[str, Any]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_json_dict(self) -> dict[str, Any]:
        """The webhook body: ``text`` for chat webhooks (Slack, Mattermost), the facts for machines."""
        return {"source": "pgwarden", "subject": self.subject, "text": f"{self.subject}\n{self.text}", **self.facts}


def task_failed(*, dag_id: str, task_id: str, run_id: str, try_number: int | None, error_class: str,
                log_url: str | None) -> Alert:
    facts = {"event": "task_failed", "dag_id": dag_id, "task_id": task_id, "run_id": run_id,
             "try_number": try_number, "error_class": error_class, "log_url": log_url}
    lines = (
        f"DAG: {dag_id}",
        f"Task: {task_id}",
        f"Run: {run_id}",
        f"Try: {try_number}",
        f"Error: {error_class}",
        f"Log: {log_url}" if log_url else f"Log: Airflow UI > DAG {dag_id} > run {run_id} > task {task_id} > Logs",
        "The task log's last lines say what broke and what to do; the DAG's docs say how to run it again.",
    )
    return Alert(subject=f"[pgwarden] {dag_id}.{task_id} failed ({error_class})", lines=lines, facts=facts)


def deadline_missed(*, dag_id: str, run_id: str, logical_date: str | None, deadline_time: str | None,
                    window: timedelta) -> Alert:
    facts = {"event": "deadline_missed", "dag_id": dag_id, "run_id": run_id, "logical_date": logical_date,
             "deadline_time": deadline_time, "window_seconds": window.total_seconds()}
    lines = (
        f"DAG: {dag_id}",
        f"Run: {run_id} (logical date {logical_date})",
        f"Still running at {deadline_time}: more than {window} after its logical date.",
        f"Look: Airflow UI > DAG {dag_id} > run {run_id}: which task is running or queued, and its log.",
    )
    return Alert(subject=f"[pgwarden] {dag_id} is late: still running {window} after its logical date",
                 lines=lines, facts=facts)
