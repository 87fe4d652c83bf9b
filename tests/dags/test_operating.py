"""Operating pgwarden DAGs, through dag.test() and local receivers started here: a permanent error fails at
once and a transient one retries; failures reach an SMTP sink and an HTTP webhook; a real purge's metric
reaches a StatsD listener; a run's deadline alert is recorded and its callback delivers."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from pgwarden.engine.postgres import connect
from tests.harness.airflow_conns import conn_var, set_postgres_conn
from tests.harness.receivers import (
    send_airflow_metrics_to,
    smtp_sink,
    statsd_listener,
    wait_for,
    webhook_receiver,
)

pytestmark = pytest.mark.integration

LOGICAL = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # long past: a run's deadline is missed by the time it ends


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def channels(monkeypatch):
    """An SMTP sink and a webhook receiver, and the Airflow connections naming them (no secret in YAML)."""
    with smtp_sink() as sink, webhook_receiver() as hook:
        monkeypatch.setenv(conn_var("pgw_smtp"), json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "pgwarden@example.test"}}))
        monkeypatch.setenv(conn_var("pgw_hook"), json.dumps({"conn_type": "http", "host": hook.url}))
        yield sink, hook


NOTIFY = """\
notify:
  email: {to: oncall@example.test, smtp_conn_id: pgw_smtp}
  webhook: {http_conn_id: pgw_hook, endpoint: /alerts}
"""


def write_config(tmp_path, monkeypatch, defaults: str, databases: str) -> None:
    path = tmp_path / "pgwarden.yaml"
    path.write_text("defaults:\n" + textwrap.indent(defaults, "  ") + "databases:\n"
                    + textwrap.indent(textwrap.dedent(databases), "  "))
    monkeypatch.setenv("PGWARDEN_CONFIG", str(path))


def tries(run, task_id: str) -> list[int]:
    """The try numbers a task ran (earlier tries live in task_instance_history) and its final state."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        earlier = session.scalars(select(TaskInstanceHistory).where(
            TaskInstanceHistory.dag_id == run.dag_id, TaskInstanceHistory.run_id == run.run_id,
            TaskInstanceHistory.task_id == task_id).order_by(TaskInstanceHistory.try_number)).all()
        numbers = [h.try_number for h in earlier]
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    return [*numbers, f"{ti.try_number}:{ti.state}"]


def test_permanent_error_fails_at_once_transient_retries_and_the_failure_is_notified(
        pg, tmp_path, monkeypatch, file_repo, channels, capfd) -> None:
    sink, hook = channels
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL)")
    set_postgres_conn(monkeypatch, "pg_perm", pg)
    monkeypatch.setenv(conn_var("pg_gone"), json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                         "port": closed_port(), "login": "postgres"}))
    write_config(tmp_path, monkeypatch, "retries: 1\nretry_delay: 1s\n" + NOTIFY, f"""\
        permdb:
          conn_id: pg_perm
          repository: {{url: "{file_repo}"}}
          lifecycle: {{policies: [{{name: old, table: no_such_table, expire: {{column: expires_at}}}}]}}
        transdb:
          conn_id: pg_gone
          repository: {{url: "{file_repo}"}}
          lifecycle: {{policies: [{{name: old, table: sessions, expire: {{column: expires_at}}}}]}}
    """)
    from airflow.logging_config import configure_logging

    from pgwarden.airflow.dag_factory import build_dags

    configure_logging()
    dags = build_dags()

    # A missing table: the plan's PlanError is permanent, so the one retry allowed is not used.
    capfd.readouterr()
    run = dags["permdb.ttl_purge"].test(logical_date=LOGICAL)
    log = capfd.readouterr().out
    assert tries(run, "plan") == ["1:failed"]
    assert "Retry policy decision" in log and "action=fail" in log and "new_state=up_for_retry" not in log
    wait_for(lambda: hook.requests and sink.messages, "the failure notification")
    path, headers, body = hook.requests[0]
    assert path == "/alerts" and headers["Content-Type"] == "application/json"
    assert {k: body[k] for k in ("event", "dag_id", "task_id", "run_id", "try_number", "error_class")} == {
        "event": "task_failed", "dag_id": "permdb.ttl_purge", "task_id": "plan", "run_id": run.run_id,
        "try_number": 1, "error_class": "PlanError"}
    assert "/dags/permdb.ttl_purge/runs/" in body["log_url"] and "text" in body
    mail = sink.messages[0]
    assert sink.envelopes[0] == ("pgwarden@example.test", ["oncall@example.test"])
    assert mail["Subject"] == "[pgwarden] permdb.ttl_purge.plan failed (PlanError)"
    text = "".join(part.get_payload(decode=True).decode() for part in mail.walk() if not part.is_multipart())
    assert run.run_id in text and "Try: 1" in text
    # Ids and a class name only: the error's own message (it names the table) stays in the task log.
    assert "no_such_table" not in text and "no_such_table" not in json.dumps(body)

    # An unreachable server is transient: the first try goes up_for_retry, the second fails for good, and
    # only that final failure is notified.
    run = dags["transdb.ttl_purge"].test(logical_date=LOGICAL)
    log = capfd.readouterr().out
    assert tries(run, "plan") == [1, "2:failed"]
    assert log.count("new_state=up_for_retry") == 1 and log.count("action=retry") == 2
    wait_for(lambda: len(hook.requests) == 2, "the second failure notification")
    body = hook.requests[1][2]
    assert (body["dag_id"], body["try_number"], body["error_class"]) == ("transdb.ttl_purge", 2, "TransientError")
    assert len(hook.requests) == 2


def test_a_purge_sends_its_metric_and_its_missed_deadline_alerts(
        pg, tmp_path, monkeypatch, file_repo, channels) -> None:
    sink, hook = channels
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO sessions SELECT g, %s::timestamptz + (g - 38) * interval '1 min' "
                     "FROM generate_series(1, 100) g", (LOGICAL,))  # 37 expired by the run's cutoff
    set_postgres_conn(monkeypatch, "pg_metrics", pg)
    write_config(tmp_path, monkeypatch, "retries: 0\ndeadlines: {ttl_purge: 3h}\n" + NOTIFY, f"""\
        mdb:
          conn_id: pg_metrics
          repository: {{url: "{file_repo}"}}
          deadlines: {{ttl_purge: 2h}}
          lifecycle: {{policies: [{{name: expired, table: sessions, expire: {{column: expires_at}}}}]}}
    """)
    with statsd_listener() as statsd:
        send_airflow_metrics_to(statsd, monkeypatch)
        from pgwarden.airflow.dag_factory import build_dags

        dag = build_dags()["mdb.ttl_purge"]
        run = dag.test(logical_date=LOGICAL)
        assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"plan": "success",
                                                                            "purge_expired": "success"}
        name = "airflow.pgwarden.ttl_purge.rows_deleted.mdb"
        assert wait_for(lambda: statsd.values(name), name) == [(37.0, "c")]

    # The deadline the scheduler recorded for the run: the database's 2 h over the defaults' 3 h.
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from pgwarden.airflow.operating.deadlines import CALLBACK

    with create_session() as session:
        dagrun = session.scalar(select(DagRun).where(DagRun.dag_id == run.dag_id, DagRun.run_id == run.run_id))
        deadline = session.scalar(select(Deadline).where(Deadline.dagrun_id == dagrun.id))
        assert deadline is not None and deadline.deadline_time == LOGICAL + timedelta(hours=2)
        # What the scheduler does when the time is up: queue the callback for the triggerer, with context.
        deadline.handle_miss(session)
        data = dict(deadline.callback.data)
    assert data["path"] == CALLBACK

    # What the triggerer then runs (the scheduler's timer and the triggerer's loop are not part of dag.test).
    from airflow.triggers.callback import CallbackTrigger

    async def trigger_events():
        return [event.payload async for event in CallbackTrigger(data["path"], dict(data["kwargs"])).run()]

    events = asyncio.run(trigger_events())
    assert events[-1]["state"] == "success", events
    wait_for(lambda: hook.requests and sink.messages, "the deadline notification")
    body = hook.requests[0][2]
    assert (body["event"], body["dag_id"], body["run_id"], body["window_seconds"]) == (
        "deadline_missed", "mdb.ttl_purge", run.run_id, 7200.0)
    assert sink.messages[0]["Subject"].startswith("[pgwarden] mdb.ttl_purge is late")
