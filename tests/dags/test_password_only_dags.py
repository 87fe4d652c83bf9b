"""dag.test() of the drill and pitr_restore when the source's pg_hba.conf wants a password for every login.

The restored data directory carries that pg_hba.conf; both DAGs used to wait silently for a password
they never had (up to 24 hours).
"""

from __future__ import annotations

import json
import shutil

import pytest

from pgwarden.engine.restore import remove_restore, restored_server
from tests.dags.test_backup_and_drill_dags import drill_evidence
from tests.harness.airflow_conns import set_postgres_conn
from tests.harness.password_only import PASSWORD, require_passwords
from tests.harness.postgres import scratch_base
from tests.harness.workload import add_items, count_items, create_items

BUCKET = "pgwarden-dags"  # drill_evidence() reads it


@pytest.fixture
def password_only_shop(pg, s3, pgwarden_config, monkeypatch):
    s3.client().create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AIRFLOW_CONN_PGW_S3", s3.airflow_conn_uri())
    create_items(pg, 2000)
    source = require_passwords(pg)
    set_postgres_conn(monkeypatch, "pg_shop", pg, password=PASSWORD)
    restores = scratch_base()
    # pitr_restore's default destination comes from here (the demo points it into .demo/).
    monkeypatch.setenv("PGWARDEN_RESTORE_DIR", str(restores / "restore"))
    # A drill's setup removes every other drill's scratch of the same database under the work
    # directory (one drill per database at a time): tests running in parallel need their own.
    monkeypatch.setenv("PGWARDEN_WORK_DIR", str(restores / "work"))
    pgwarden_config(f"""
        shop:
          conn_id: pg_shop
          repository: {{url: "s3://{BUCKET}/pg", conn_id: pgw_s3}}
          backup: {{count_rows: [public.items], incremental_schedule: "*/15 * * * *"}}
          verify: {{rto_target: 1h, rpo_target: 1h, old_backup_every: 0}}
    """)
    yield source, restores
    remove_restore(restores / "restore" / "shop")
    shutil.rmtree(restores, ignore_errors=True)


@pytest.mark.integration
def test_drill_and_pitr_restore_of_a_password_only_source(password_only_shop, s3) -> None:
    from pgwarden.airflow.dag_factory import build_dags
    from tests.dags.conftest import run_dag

    source, restores = password_only_shop
    assert run_dag("shop.backup_full")[0]["base_backup"] == "success"
    add_items(source, 300)
    assert run_dag("shop.backup_incremental")[0]["collect_wal"] == "success"

    states, _ = run_dag("shop.verify_restore")
    assert states == {"prepare_scratch": "success", "restore_and_check": "success", "remove_scratch": "success"}
    [evidence] = drill_evidence(s3)
    assert {c["name"]: c["ok"] for c in evidence["checks"]} == {
        "pg_verifybackup": True, "row_counts": True, "amcheck": True, "rto": True, "rpo": True}

    # The approval is a person's click; dag.test() marks it given. Destination and port: the defaults.
    dag = build_dags()["shop.pitr_restore"]
    run = dag.test(run_conf={"target_kind": "latest"}, mark_success_pattern="^approve$")
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"plan": "success", "approve": "success", "restore": "success"}
    [restore_ti] = [ti for ti in run.get_task_instances() if ti.task_id == "restore"]
    result = restore_ti.xcom_pull(task_ids="restore")
    result = json.loads(result) if isinstance(result, str) else result
    dest = restores / "restore" / "shop"
    assert result["datadir"] == str(dest) and result["started"]
    assert count_items(restored_server(dest, result["port"])) == 2300
    assert sorted(p.name for p in dest.parent.iterdir()) == ["shop", "shop.wal"]
