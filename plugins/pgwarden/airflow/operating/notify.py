"""Failure and deadline notifications through Airflow's notifiers, as ``pgwarden.yaml``'s ``notify`` says.

- e-mail: the SMTP provider's ``SmtpNotifier`` (host, port, TLS and password in the SMTP connection);
- webhook: ``WebhookNotifier`` below, JSON POSTed through the HTTP provider's ``HttpHook`` to the URL of
  an HTTP connection (a Slack or Mattermost incoming webhook is such a URL: the body has ``text``).

``FailureNotifier`` is every pgwarden task's ``on_failure_callback`` (it runs when a task fails for good,
not on a try that will be retried); ``deadline_missed`` is every deadline alert's callback. Both build one
``core.alerts.Alert`` and send it through the same ``send``: one message, every channel. A channel that
fails is logged and does not stop the others, and never changes the task's own outcome.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseNotifier

from pgwarden.core.alerts import Alert, NotifyConfig, task_failed
from pgwarden.core.alerts import deadline_missed as deadline_alert

log = logging.getLogger(__name__)


class WebhookNotifier(BaseNotifier):
    """POST ``payload`` as JSON to the URL of the HTTP connection ``http_conn_id`` (+ ``endpoint``).

    The URL (and any token in it, as in a Slack incoming webhook) and headers live in the connection:
    ``AIRFLOW_CONN_PGWARDEN_ALERTS='{"conn_type": "http", "host": "https://hooks.example.com/T0/B0/xyz"}'``.
    """

    def __init__(self, *, http_conn_id: str, payload: dict[str, Any], endpoint: str = "") -> None:
        super().__init__()
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.payload = payload

    def notify(self, context: Any) -> None:
        from airflow.providers.http.hooks.http import HttpHook

        HttpHook(method="POST", http_conn_id=self.http_conn_id).run(
            self.endpoint or None, json=self.payload, headers={"Content-Type": "application/json"},
            extra_options={"timeout": 30},
        )


def notifiers(notify: NotifyConfig, alert: Alert) -> Iterator[tuple[str, BaseNotifier]]:
    """A fresh notifier per channel for this one alert (notifiers keep what they rendered)."""
    if notify.email is not None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        body = f"<pre>{html.escape(alert.text)}</pre>"
        yield "email", SmtpNotifier(to=notify.email.to, from_email=notify.email.from_email,
                                    smtp_conn_id=notify.email.smtp_conn_id, subject=alert.subject,
                                    html_content=body)
    if notify.webhook is not None:
        yield "webhook", WebhookNotifier(http_conn_id=notify.webhook.http_conn_id,
                                         endpoint=notify.webhook.endpoint, payload=alert.to_json_dict())


def send(notify: NotifyConfig, alert: Alert, context: Any) -> list[str]:
    """Send ``alert`` through every configured channel; returns the channels that took it.

    ``notify()`` is called directly rather than through the notifier's ``__call__``: that would render the
    text as a Jinja template, and pgwarden's text is final.
    """
    sent = []
    for channel, notifier in notifiers(notify, alert):
        try:
            notifier.notify(context)
            sent.append(channel)
        except Exception:  # one dead channel must not silence the others
            log.exception("pgwarden could not send %r through its %s channel", alert.subject, channel)
    return sent


class FailureNotifier:
    """``on_failure_callback`` of every pgwarden task: names DAG, task, run, try, the error class and where
    the log is; never the error's message, which could quote a value."""

    def __init__(self, notify: NotifyConfig) -> None:
        self.notify = notify

    def __call__(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        exception = context.get("exception")
        alert = task_failed(
            dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, try_number=ti.try_number,
            error_class=type(exception).__name__ if exception is not None else "unknown (see the log)",
            log_url=getattr(ti, "log_url", None),
        )
        if not self.notify.channels:
            log.info("%s: no notify channel configured in pgwarden.yaml (defaults.notify)", alert.subject)
            return
        sent = send(self.notify, alert, context)
        log.info("failure of %s.%s reported through %s", ti.dag_id, ti.task_id, ", ".join(sent) or "no channel")


async def deadline_missed(*, notify: dict[str, Any], window_seconds: float, context: dict[str, Any] | None = None,
                          **_: Any) -> list[str]:
    """The callback of every pgwarden deadline alert, run by the triggerer when a run is still going at its
    deadline. ``notify`` is the database's ``notify`` section as JSON (it travels in the serialized DAG)."""
    import asyncio

    context = context or {}
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    alert = deadline_alert(dag_id=str(run.get("dag_id")), run_id=str(run.get("dag_run_id") or run.get("run_id")),
                           logical_date=_text(run.get("logical_date")),
                           deadline_time=_text(deadline.get("deadline_time")),
                           window=timedelta(seconds=window_seconds))
    config = NotifyConfig.model_validate(notify)
    if not config.channels:
        log.warning("%s (no notify channel configured in pgwarden.yaml)", alert.subject)
        return []
    # The senders block (smtplib, requests): off the triggerer's event loop.
    return await asyncio.to_thread(send, config, alert, context)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
