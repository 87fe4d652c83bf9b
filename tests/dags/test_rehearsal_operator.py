"""dag.test() of RehearseMigrationOperator in front of an "expand" task, backups on the real S3 endpoint.

A passing rehearsal lets expand run and pushes the gate's Markdown; a failing one fails the run before
expand (production untouched); with rehearsal off the task succeeds without restoring anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgwarden.engine.postgres import connect
from tests.harness.airflow_conns import set_postgres_conn
from tests.harness.postgres import scratch_base

pytestmark = pytest.mark.integration

BUCKET = "pgwarden-rehearsal"
RENAME = ("rehearse: true\noperations:\n"
          "  - rename_column: {table: public.people, from: email, to: email_address}\n")
RETYPE = ("operations:\n  - change_column_type: {table: public.people, column: code, type: bigint, "
          "up: 'code::bigint', down: 'code::text'}\n")


def markdown_of(run, dag_id: str) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from pgwarden.airflow.operators.rehearsal import REHEARSAL_MARKDOWN_KEY

    with create_session() as session:
        [row] = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, task_ids="rehearse",
                                                   key=REHEARSAL_MARKDOWN_KEY)).all()
        return XComModel.deserialize_value(row)


# The DAG the test runs: a real DAG file in a bundle of its own (dag.test() runs only DAGs from a bundle).
DAG_FILE = """
import json, os

from airflow.sdk import DAG, Param, task

from pgwarden.airflow.operators.rehearsal import RehearseMigrationOperator
from pgwarden.core.config import DatabaseConfig
from pgwarden.engine.postgres import PgTarget, connect

setup = json.loads(os.environ.get("PGWARDEN_TEST_REHEARSAL", "null"))
if setup:
    config = DatabaseConfig.model_validate(setup["config"])
    with DAG("reh.migrate.test", schedule=None, params={"rehearse": Param(None, type=["null", "boolean"])}):
        @task
        def expand() -> None:  # stands in for production's expand: leaves a mark where it ran
            from pgwarden.airflow.hooks import pg_target

            with connect(pg_target(config.conn_id)) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS expand_ran (at timestamptz DEFAULT now())")

        RehearseMigrationOperator(task_id="rehearse", database="reh", db_config=config,
                                  migration_path=setup["migration"]) >> expand()
"""


@pytest.fixture
def rehearsal_dag(tmp_path, monkeypatch):
    """Point a second DAG bundle at a folder holding DAG_FILE; returns a function that (re)builds it."""
    import json

    from airflow.dag_processing.dagbag import BundleDagBag

    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "rehearsal_dag.py").write_text(DAG_FILE)
    bundles = [{"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {}},
               {"name": "pgwarden-test-rehearsal", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder)}}]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))

    def build(config: dict, migration: Path):
        monkeypatch.setenv("PGWARDEN_TEST_REHEARSAL", json.dumps({"config": config, "migration": str(migration)}))
        bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="pgwarden-test-rehearsal")
        assert not bag.import_errors, bag.import_errors
        return bag.dags["reh.migrate.test"]

    return build


def test_rehearsal_gates_expand(pg, s3, monkeypatch, tmp_path, rehearsal_dag) -> None:
    from pgwarden.airflow.hooks import open_repository
    from pgwarden.core.config import DatabaseConfig
    from pgwarden.engine.backup_full import take_full_backup

    s3.client().create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AIRFLOW_CONN_PGW_S3", s3.airflow_conn_uri())
    work = scratch_base()  # the scratch server runs as the unprivileged server user: tmp_path is root's only
    monkeypatch.setenv("PGWARDEN_WORK_DIR", str(work))
    set_postgres_conn(monkeypatch, "pg_reh", pg)
    raw = {"conn_id": "pg_reh", "repository": {"url": f"s3://{BUCKET}/pg", "conn_id": "pgw_s3"}}
    config = DatabaseConfig.model_validate(raw)
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL, code text)")
        conn.execute("INSERT INTO people SELECT g, 'u' || g || '@example.org', g::text FROM generate_series(1, 200) g")
        conn.execute("UPDATE people SET code = 'x' WHERE id = 100")
    take_full_backup(pg.target(), open_repository(config.repository), "reh", config.backup, config.repository,
                     workdir=tmp_path / "w")

    def expand_ran() -> bool:
        with connect(pg.target()) as conn:
            return conn.execute("SELECT to_regclass('expand_ran') IS NOT NULL").fetchone()[0]

    good = tmp_path / "002_rename_email.yaml"
    good.write_text(RENAME)
    dag = rehearsal_dag(raw, good)
    run = dag.test()
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"rehearse": "success", "expand": "success"}
    body = markdown_of(run, dag.dag_id)
    assert body.startswith("### Rehearsal on a restored copy: passed") and "| contract |" in body
    assert "Rollback after expand:** ok" in body

    bad = tmp_path / "003_code_to_bigint.yaml"
    bad.write_text(RETYPE)
    with connect(pg.target()) as conn:
        conn.execute("DROP TABLE expand_ran")
    dag = rehearsal_dag(raw, bad)
    run = dag.test()  # the file does not ask for a rehearsal: nothing is restored
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"rehearse": "success", "expand": "success"}
    assert markdown_of(run, dag.dag_id).startswith("### Rehearsal: not run")
    with connect(pg.target()) as conn:
        conn.execute("DROP TABLE expand_ran")
    run = dag.test(run_conf={"rehearse": True})  # the run Param asks for it: the cast fails on the copy
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"rehearse": "failed",
                                                                          "expand": "upstream_failed"}
    assert not expand_ran()
    assert "**FAILED**" in markdown_of(run, dag.dag_id)
    with connect(pg.target()) as conn:  # production's table as it was
        assert conn.execute("SELECT count(*) FROM people WHERE code = 'x'").fetchone()[0] == 1
        assert [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'people'::regclass "
                                           "AND attnum > 0 ORDER BY attnum")] == ["id", "email", "code"]
    assert not list(work.glob("reh/rehearsal-*"))  # every run removed its scratch server
    shutil.rmtree(work, ignore_errors=True)
