"""dag.test() of <database>.migrate against a real server: apply in order, refuse unsafe SQL, roll back."""

from __future__ import annotations

import pytest

from pgwarden.engine.migrations.history import read_history
from pgwarden.engine.postgres import connect
from tests.harness.airflow_conns import set_postgres_conn

pytestmark = pytest.mark.integration

FILES = {
    "001_accounts.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n",
    "001_accounts.down.sql": "-- squawk-ignore ban-drop-table\nDROP TABLE accounts;\n",
    "002_nickname.sql": "ALTER TABLE accounts ADD COLUMN nickname text;\n",
    "002_nickname.down.sql": "-- squawk-ignore ban-drop-column\nALTER TABLE accounts DROP COLUMN nickname;\n",
}


def columns(pg) -> list[str]:
    with connect(pg.target()) as conn:
        return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_name = 'accounts' ORDER BY ordinal_position")]


def test_migrate_dag_applies_refuses_and_rolls_back(pg, pgwarden_config, monkeypatch, file_repo, tmp_path) -> None:
    folder = tmp_path / "sql" / "migrations" / "migdag"  # the default: beside the config file
    folder.mkdir(parents=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)
    set_postgres_conn(monkeypatch, "pg_migdag", pg)
    pgwarden_config(f"""
        migdag:
          conn_id: pg_migdag
          repository: {{url: "{file_repo}"}}
          migrations: {{lock_timeout: 500ms}}
        nomig:
          conn_id: pg_migdag
          repository: {{url: "{file_repo}"}}
    """)
    from pgwarden.airflow.dag_factory import build_dags

    dags = build_dags()
    assert "nomig.migrate" not in dags  # no migrations folder, no DAG
    dag = dags["migdag.migrate"]
    assert dag.max_active_runs == 1 and dag.schedule is None and "rollback_to" in dag.params
    assert "Run it by hand" in dag.doc_md

    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"lint": "success", "check": "success", "apply": "success", "rollback": "skipped"}
    assert columns(pg) == ["id", "email", "nickname"]
    with connect(pg.target()) as conn:
        rows = read_history(conn)
    assert [(r.version, r.status, r.dag_id) for r in rows] == [(1, "applied", "migdag.migrate"),
                                                                (2, "applied", "migdag.migrate")]
    assert rows[0].run_id == run.run_id and rows[0].restore_point

    # An unsafe migration fails lint with rule, file and line; nothing is applied.
    (folder / "003_index.sql").write_text("CREATE INDEX accounts_email ON accounts (email);\n")
    (folder / "003_index.down.sql").write_text("DROP INDEX accounts_email;\n")
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["lint"] == "failed" and states["apply"] == "upstream_failed"
    (folder / "003_index.sql").unlink()
    (folder / "003_index.down.sql").unlink()

    run = dag.test(run_conf={"rollback_to": 1})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"lint": "success", "check": "success", "apply": "skipped", "rollback": "success"}
    assert columns(pg) == ["id", "email"]
    with connect(pg.target()) as conn:
        assert [(r.version, r.status) for r in read_history(conn)] == [(1, "applied"), (2, "rolled_back")]
