"""dag.test() of <database>.healthcheck against real PostgreSQL servers."""

from __future__ import annotations

import pytest

from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import set_postgres_conn


@pytest.mark.integration
def test_healthcheck_dag_passes_on_a_ready_server(pg, file_repo, pgwarden_config, monkeypatch) -> None:
    set_postgres_conn(monkeypatch, "pg_t1", pg)
    pgwarden_config(f"""
        t1:
          conn_id: pg_t1
          repository: {{url: "{file_repo}"}}
    """)
    states, run = run_dag("t1.healthcheck")
    assert states == {"healthcheck": "success"}
    assert run.state == "success"


@pytest.mark.integration
def test_healthcheck_dag_fails_saying_what_to_change(pg_factory, file_repo, pgwarden_config, monkeypatch,
                                                      capfd) -> None:
    server = pg_factory({"wal_level": "minimal", "max_wal_senders": "0"})
    set_postgres_conn(monkeypatch, "pg_t2", server)
    pgwarden_config(f"""
        t2:
          conn_id: pg_t2
          repository: {{url: "{file_repo}"}}
    """)
    states, run = run_dag("t2.healthcheck")
    assert states == {"healthcheck": "failed"}
    output = "".join(capfd.readouterr())
    assert "requirement(s) not met" in output
    assert "wal_level is 'minimal'" in output
    assert "ALTER SYSTEM SET wal_level = 'replica'" in output


@pytest.mark.integration
def test_healthcheck_dag_fails_on_a_missing_connection(file_repo, pgwarden_config, capfd) -> None:
    pgwarden_config(f"""
        t3:
          conn_id: pg_not_defined
          repository: {{url: "{file_repo}"}}
    """)
    states, _ = run_dag("t3.healthcheck")
    assert states == {"healthcheck": "failed"}
    assert "AIRFLOW_CONN_PG_NOT_DEFINED" in "".join(capfd.readouterr())
