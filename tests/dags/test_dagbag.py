"""Every DAG file imports cleanly, quickly, and without touching the network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Enforced by Airflow itself (dagbag_import_timeout turns a slow file into an import error); the
# parse-time *target* is measured in bench/, tests never assert on time.
PARSE_BUDGET_SECONDS = 30


def dagbag(dag_folder: Path = ROOT / "dags"):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dag_folder))


def test_project_dags_import_without_errors() -> None:
    bag = dagbag()
    assert bag.import_errors == {}
    assert "appdb.healthcheck" in bag.dag_ids
    for dag in bag.dags.values():
        database, _, concern = dag.dag_id.partition(".")
        assert {"pgwarden", f"db:{database}"} <= set(dag.tags)
        assert dag.doc_md and "When it fails" in dag.doc_md
        assert dag.max_active_runs == 1 and not dag.catchup


def test_broken_database_entry_is_an_import_error_and_a_stand_in_for_that_database_only(tmp_path,
                                                                                        monkeypatch) -> None:
    config = tmp_path / "pgwarden.yaml"
    config.write_text(textwrap.dedent("""
        databases:
          good:
            conn_id: pg_good
            repository: {url: "s3://bucket/good"}
          broken:
            conn_id: pg_broken
            repository: {url: "ftp://nowhere/x"}
    """))
    monkeypatch.setenv("PGWARDEN_CONFIG", str(config))
    bag = dagbag()
    assert "good.healthcheck" in bag.dag_ids
    assert [d for d in bag.dag_ids if d.startswith("broken.")] == ["broken.config_error"]
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("pgwarden_config_errors.py")
    assert "database 'broken'" in message and "databases.broken.repository.url" in message
    assert "1 database entry is invalid and has no DAGs but a failing" in message


def test_parse_does_no_network_io_and_stays_in_budget() -> None:
    """Parse in a fresh interpreter with sockets disabled: any connection attempt fails the parse."""
    script = textwrap.dedent(f"""
        import socket
        def refuse(*a, **k):
            raise RuntimeError("network I/O at DAG parse time")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(ROOT / "dags")!r})
        assert not bag.import_errors, bag.import_errors
        assert bag.dag_ids, "no DAGs"
    """)
    env = {**os.environ, "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(PARSE_BUDGET_SECONDS)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
