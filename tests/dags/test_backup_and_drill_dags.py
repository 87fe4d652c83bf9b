"""dag.test() of the backup and drill DAGs against a real server and the real S3 endpoint."""

from __future__ import annotations

import json

import pytest

from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import set_postgres_conn
from tests.harness.workload import add_items, create_items

BUCKET = "pgwarden-dags"


@pytest.fixture
def appdb(pg, s3, pgwarden_config, monkeypatch):
    """A database entry 'shop' backed up to S3, with a restore-drill config that checks items."""
    s3.client().create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AIRFLOW_CONN_PGW_S3", s3.airflow_conn_uri())
    set_postgres_conn(monkeypatch, "pg_shop", pg)
    pgwarden_config(f"""
        shop:
          conn_id: pg_shop
          repository: {{url: "s3://{BUCKET}/pg", conn_id: pgw_s3}}
          backup:
            count_rows: [public.items]
            incremental_schedule: "*/15 * * * *"
          verify: {{rto_target: 1h, rpo_target: 1h, old_backup_every: 0}}
    """)
    create_items(pg, 2000)
    return pg


def objects(s3, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def drill_evidence(s3) -> list[dict]:
    return [json.loads(s3.client().get_object(Bucket=BUCKET, Key=k)["Body"].read())
            for k in sorted(objects(s3, "pg/shop/drills/"))]


@pytest.mark.integration
def test_full_incremental_and_drill(appdb, s3) -> None:
    states, _ = run_dag("shop.backup_full")
    assert states == {"base_backup": "success"}
    [manifest_key] = [k for k in objects(s3, "pg/shop/base/") if k.endswith("pgwarden.json")]

    add_items(appdb, 300)
    states, _ = run_dag("shop.backup_incremental")
    assert states == {"collect_wal": "success"}
    assert any(k.endswith(".zst") for k in objects(s3, "pg/shop/wal/"))
    assert objects(s3, "pg/shop/restore_points/")

    states, _ = run_dag("shop.verify_restore")
    assert states == {"prepare_scratch": "success", "restore_and_check": "success", "remove_scratch": "success"}
    [evidence] = drill_evidence(s3)
    checks = {c["name"]: c["ok"] for c in evidence["checks"]}
    assert checks == {"pg_verifybackup": True, "row_counts": True, "amcheck": True, "rto": True, "rpo": True}
    assert evidence["backup_id"] == manifest_key.split("/")[3]
    assert evidence["rto_seconds"] > 0 and evidence["rpo_seconds"] >= 0
    assert evidence["target"].startswith("restore point 'pgwarden_shop_")


@pytest.mark.integration
def test_drill_right_after_the_first_backup_restores_to_its_end(appdb, s3) -> None:
    assert run_dag("shop.backup_full")[0] == {"base_backup": "success"}
    states, _ = run_dag("shop.verify_restore")
    assert states["restore_and_check"] == "success"
    [evidence] = drill_evidence(s3)
    assert evidence["target"] == "the end of the backup"
    assert "not compared" in next(c["detail"] for c in evidence["checks"] if c["name"] == "row_counts")


@pytest.mark.integration
def test_drill_of_a_corrupted_backup_fails_naming_the_object(appdb, s3, capfd) -> None:
    states, _ = run_dag("shop.backup_full")
    assert states == {"base_backup": "success"}
    [base_key] = [k for k in objects(s3, "pg/shop/base/") if "/base.tar" in k]
    client = s3.client()
    body = bytearray(client.get_object(Bucket=BUCKET, Key=base_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, metadata (recorded SHA-256) left as it was
    head = client.head_object(Bucket=BUCKET, Key=base_key)
    client.put_object(Bucket=BUCKET, Key=base_key, Body=bytes(body), Metadata=head["Metadata"])
    assert run_dag("shop.backup_incremental")[0] == {"collect_wal": "success"}

    states, _ = run_dag("shop.verify_restore")
    assert states["restore_and_check"] == "failed"
    assert states["remove_scratch"] == "success"  # teardown runs even after the failure
    [evidence] = drill_evidence(s3)
    assert evidence["error"] and base_key.split("/", 1)[1] in evidence["error"]
    assert base_key.split("/", 1)[1] in "".join(capfd.readouterr())
