"""Helpers for running pgwarden's DAGs with dag.test() against real servers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pgwarden.airflow.operating.dag_test_fix import accept_alert_definitions_in_get_by_id


@pytest.fixture(autouse=True, scope="session")
def _dag_test_runs_dags_with_deadlines():
    """Airflow 3.3.2's dag.test() fails a successful run of a DAG with a deadline alert (pgwarden/airflow/operating/dag_test_fix.py)."""
    accept_alert_definitions_in_get_by_id()


@pytest.fixture
def pgwarden_config(tmp_path: Path, monkeypatch):
    """Write a config file and point PGWARDEN_CONFIG at it; dag.test() re-parses dags/ with it.

    Retries are off so a failing task fails the run at once instead of waiting out retry_delay.
    """

    def write(databases_yaml: str) -> Path:
        path = tmp_path / "pgwarden.yaml"
        path.write_text("defaults: {retries: 0, retry_delay: 1s}\ndatabases:\n"
                        + textwrap.indent(textwrap.dedent(databases_yaml), "  "))
        monkeypatch.setenv("PGWARDEN_CONFIG", str(path))
        return path

    return write


def run_dag(dag_id: str, **test_kwargs):
    """dag.test() of a DAG built from the current config (``test_kwargs``: e.g. ``logical_date``, ``run_after``);
    returns {task_id: state} and the run."""
    from airflow.logging_config import configure_logging

    from pgwarden.airflow.dag_factory import build_dags

    # Airflow binds its log stream to the sys.stdout of the moment it was imported; when a test module
    # imported it at collection, that is pytest's collection-time capture, and the task log would miss
    # capfd. Binding it again here sends the task log to this test's stdout.
    configure_logging()
    dag = build_dags()[dag_id]
    run = dag.test(**test_kwargs)
    return {ti.task_id: ti.state for ti in run.get_task_instances()}, run
