"""dag.test() of <database>.ttl_purge against a real server: the cutoff is the run's, not the clock's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgwarden.engine.postgres import connect
from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import set_postgres_conn

pytestmark = pytest.mark.integration

CUTOFF = datetime(2026, 11, 30, 19, 0, tzinfo=UTC)


def test_ttl_purge_dag_purges_and_a_cleared_run_deletes_nothing_new(pg, pgwarden_config, monkeypatch, file_repo) -> None:
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO sessions SELECT g, %s::timestamptz + (g - 500) * interval '1 min' "
                     "FROM generate_series(1, 1000) g", (CUTOFF,))
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, deleted_at timestamptz)")
        conn.execute("INSERT INTO notes VALUES (1, NULL), (2, %s), (3, %s)",
                     (CUTOFF - timedelta(days=100), CUTOFF - timedelta(days=1)))
    set_postgres_conn(monkeypatch, "pg_lcdag", pg)
    pgwarden_config(f"""
        lcdag:
          conn_id: pg_lcdag
          repository: {{url: "{file_repo}"}}
          lifecycle:
            policies:
              - {{name: expired_sessions, table: sessions, expire: {{column: expires_at}}}}
              - name: retracted_notes
                table: notes
                expire: {{column: deleted_at, after: 90d}}
                soft_delete: {{column: deleted_at, active_view: true}}
    """)
    from pgwarden.airflow.dag_factory import build_dags

    dag = build_dags()["lcdag.ttl_purge"]
    assert dag.max_active_runs == 1 and {"pgwarden", "ttl_purge", "db:lcdag"} <= set(dag.tags)
    run = dag.test(logical_date=CUTOFF)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"plan": "success", "active_views": "success", "purge_expired_sessions": "success",
                      "purge_retracted_notes": "success"}
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FILTER (WHERE expires_at < %s), count(*) FROM sessions",
                            (CUTOFF,)).fetchone() == (0, 501)
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM notes").fetchone()[0] == [1, 3]
        assert conn.execute("SELECT array_agg(id) FROM notes_active").fetchone()[0] == [1]
        # Rows that expire after the run's cutoff (already expired by the wall clock now, in 2026-11-30 20:xx
        # or later) must survive a clear of the same run.
        conn.execute("INSERT INTO sessions VALUES (5000, %s)", (CUTOFF + timedelta(seconds=1),))
        # Each try's count is kept in the database for the pgwarden page (engine/lifecycle/runs.py).
        assert dict(conn.execute("SELECT policy, rows_deleted FROM pgwarden.lifecycle_runs")) == {
            "expired_sessions": 499, "retracted_notes": 1}
    rerun = dag.test(logical_date=CUTOFF)
    assert {ti.task_id: ti.state for ti in rerun.get_task_instances()}["purge_expired_sessions"] == "success"
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 502

    # The page's status of this database: purged rows from lifecycle_runs; an unreachable server is said so.
    from pgwarden.engine.config_file import load_config
    from pgwarden.engine.repository import open_repository
    from pgwarden.engine.status import StatusSources

    db = load_config().databases["lcdag"]
    status = StatusSources(open_repository, lambda _conn_id: pg.target()).collect("lcdag", db)
    assert status["lifecycle"]["purged"]["total"] == 500 and status["migrations"] == []
    assert status["backups"]["last_full"] is None and status["drills"]["count"] == 0
    from dataclasses import replace

    from pgwarden.engine.cluster import free_port

    nowhere = replace(pg.target(), port=free_port(), connect_timeout=2)
    status = StatusSources(open_repository, lambda _conn_id: nowhere).collect("lcdag", db)
    assert status["migrations"]["unreachable"].startswith("database (connection pg_lcdag): connecting to")
    assert status["lifecycle"]["purged"] == status["migrations"] and status["backups"]["last_full"] is None


def test_ttl_purge_plan_fails_before_touching_a_row(pg, pgwarden_config, monkeypatch, file_repo) -> None:
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO sessions SELECT g, %s::timestamptz - interval '1 day' FROM generate_series(1, 10) g",
                     (CUTOFF,))
    set_postgres_conn(monkeypatch, "pg_lcdag2", pg)
    pgwarden_config(f"""
        lcdag2:
          conn_id: pg_lcdag2
          repository: {{url: "{file_repo}"}}
          lifecycle:
            policies:
              - {{name: good, table: sessions, expire: {{column: expires_at}}}}
              - {{name: bad, table: sessions, expire: {{column: expires_at}}, where: "no_such_column"}}
    """)
    states, _ = run_dag("lcdag2.ttl_purge")
    assert states["plan"] == "failed" and states["purge_good"] == "upstream_failed"
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 10
