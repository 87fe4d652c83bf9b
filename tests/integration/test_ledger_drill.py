"""The restore drill re-applies erasures made after its backup and records the erased-subject check.

A real backup to the S3 endpoint, a real restore into a scratch server: the backup holds a subject
erased later, and the drill's evidence proves the restored copy no longer does.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from types import SimpleNamespace

import pytest

from pgwarden.core import layout
from pgwarden.core.config import DatabaseConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.drill import run_drill
from pgwarden.engine.lifecycle.erasure import RecordContext
from pgwarden.engine.lifecycle.ledger_export import export_ledger
from pgwarden.engine.postgres import PgTarget, connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.airflow_conns import conn_var, postgres_conn
from tests.harness.postgres import scratch_base
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.integration.test_erasure import KEY, erasure_config, run, seed

pytestmark = pytest.mark.integration


def test_the_drill_and_pitr_restore_reapply_later_erasures(pg, s3, tmp_path, monkeypatch) -> None:
    s3.client().create_bucket(Bucket="drill")
    db = DatabaseConfig.model_validate({
        "conn_id": "pg_drill", "repository": {"url": "s3://drill/pg", "conn_id": "drill_s3"},
        "verify": {"rpo_target": "1h"}, "backup": {"incremental_schedule": "*/5 * * * *"},
        "lifecycle": {"erasure": erasure_config().model_dump(mode="json")}})
    repo = open_repository(db.repository, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    with connect(pg.target()) as conn:
        conn.execute("CREATE DATABASE appdb")
    app = PgTarget(host="127.0.0.1", port=pg.port, dbname="appdb")
    seed(app, {1: (timedelta(days=40), False), 2: (timedelta(days=20), False), 3: (None, False)})
    run(app)  # erases 1
    with connect(app) as conn:
        export_ledger(conn, repo, "appdb", db.repository)
    take_full_backup(pg.target("appdb"), repo, "appdb", db.backup, db.repository, workdir=tmp_path / "w",
                     log=lambda _m: None)
    with connect(app) as conn:
        conn.execute("UPDATE users SET deleted_at = deleted_at - interval '20 days' WHERE id = 2")
    run(app)  # erases 2, after the backup
    with connect(app) as conn:
        export_ledger(conn, repo, "appdb", db.repository)

    base = scratch_base()
    try:
        context = RecordContext(database="appdb", dag_id="appdb.verify_restore", run_id="manual__d", kind="reapply")
        evidence = run_drill(repo, "appdb", db, scratch=base, dbname="appdb", erasure_key=KEY, record_context=context,
                             log=lambda _m: None)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    check = next(c for c in evidence.checks if c.name == "erased_subjects")
    assert check.ok, check.detail
    assert check.detail.startswith("re-applied 1 of 1 erasure(s) made after the backup")
    assert "2 erased subject(s) in the exported ledger, 2 present" in check.detail
    stored = json.loads(repo.get_bytes(layout.drill_key("appdb", evidence.drill_id)))
    assert {"name": "erased_subjects", "ok": True, "detail": check.detail} in stored["checks"]
    assert "person2@example.org" not in json.dumps(stored)

    # pitr_restore's task: restore, promote, re-apply before handing over (the approval gate is not part of it).
    from pgwarden.airflow.operators.restore import PitrRestoreOperator
    from pgwarden.engine.restore import remove_restore

    monkeypatch.setenv(conn_var("pg_drill"), postgres_conn(pg, dbname="appdb"))
    monkeypatch.setenv(conn_var("drill_s3"), s3.airflow_conn_uri())
    monkeypatch.setenv(conn_var("erasure_key"), json.dumps({"conn_type": "generic", "password": KEY.decode()}))
    destination = scratch_base() / "restored"
    operator = PitrRestoreOperator(task_id="restore", database="appdb", db_config=db)
    params = {"target_kind": "latest", "target_value": None, "backup_id": None, "destination": str(destination),
              "port": None, "action": "promote"}
    try:
        summary = operator.execute({"params": params, "run_id": "manual__pitr", "ti": SimpleNamespace(try_number=1)})
        with connect(PgTarget(host="127.0.0.1", port=summary["port"], dbname="appdb")) as conn:
            assert conn.execute("SELECT email FROM users WHERE id = 2").fetchone()[0] == "deleted_2@invalid"
            assert conn.execute("SELECT kind, record->>'run_id' FROM pgwarden.erasure_ledger ORDER BY seq DESC "
                                "LIMIT 1").fetchone() == ("reapply", "manual__pitr")
    finally:
        remove_restore(destination)
        shutil.rmtree(destination.parent, ignore_errors=True)
    assert summary["erasures"]["reapplied"] == 1 and summary["erasures"]["entries_restored"] == 1
    assert "none holds personal data" in summary["erasures"]["check"]
