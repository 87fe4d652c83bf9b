"""Erasure certificates from a real ledger and a real backup catalog on the S3 endpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pgwarden.cli import main
from pgwarden.core import layout
from pgwarden.core.config import DatabaseConfig
from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure, subject_reference
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.certificates import write_certificates
from pgwarden.engine.lifecycle.ledger import append, ensure_ledger
from pgwarden.engine.lifecycle.ledger_export import export_ledger
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.airflow_conns import conn_var, postgres_conn
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.integration.test_ledger_verify_export import printed_json

pytestmark = pytest.mark.integration

KEY = b"certificate-key"


def record(request_id: str, subject: str, erased_at: datetime) -> ErasureRecord:
    return ErasureRecord(
        kind="erasure", request_id=request_id, subject_ref=subject_reference(KEY, "certs", '"public"."users"', subject),
        policy_version="v1", tables=(TableErasure('"public"."users"', "redact_email:email", 1),
                                     TableErasure('"public"."sessions"', "delete_row", 4)),
        dag_id="certs.gdpr_erasure", run_id="manual__x", task_id="erase", try_number=1, erased_at=erased_at)


def test_certificates_name_the_erasure_the_proof_and_the_backups_holding_the_data(
        pg, s3, tmp_path, monkeypatch, capsys) -> None:
    s3.client().create_bucket(Bucket="certs")
    db = DatabaseConfig.model_validate({
        "conn_id": "pg_certs", "repository": {"url": "s3://certs/pg", "conn_id": "certs_s3"},
        "backup": {"retention": {"daily": 7, "monthly": 0, "yearly": 0}}})
    repo = open_repository(db.repository, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text(json.dumps({"databases": {"certs": db.model_dump(mode="json", exclude_defaults=True)}}))
    monkeypatch.setenv(conn_var("pg_certs"), postgres_conn(pg))
    monkeypatch.setenv(conn_var("certs_s3"), s3.airflow_conn_uri())

    with connect(pg.target(), autocommit=False) as conn:
        ensure_ledger(conn)
        append(conn, record("req-before", "1", datetime.now(UTC) - timedelta(days=1)))
        conn.commit()
    manifest = take_full_backup(pg.target(), repo, "certs", db.backup, db.repository, workdir=tmp_path / "w",
                                log=lambda _: None)
    with connect(pg.target(), autocommit=False) as conn:
        append(conn, record("req-after", "2", datetime.now(UTC)))
        conn.commit()

    with connect(pg.target()) as conn:
        export_ledger(conn, repo, "certs", db.repository)
        first = write_certificates(conn, repo, "certs", db)
        again = write_certificates(conn, repo, "certs", db)
    assert first.written == [1, 2] and again.written == [] and again.already_there == 2

    before = json.loads(repo.get_bytes(layout.certificate_key("certs", 1, "json")))
    after = json.loads(repo.get_bytes(layout.certificate_key("certs", 2, "json")))
    assert before["request_id"] == "req-before" and before["ledger"]["seq"] == 1
    assert before["backups"]["status"] == "gone"  # the only backup was taken after the erasure
    assert after["backups"]["status"] == "bounded" and after["backups"]["last_backup"] == manifest.backup_id
    assert after["backups"]["backups_holding_data"] == [manifest.backup_id]
    expires = datetime.fromisoformat(after["backups"]["expires_at"])
    assert manifest.started_at + timedelta(days=6) < expires < manifest.started_at + timedelta(days=9)
    assert after["tables"][1] == {"table": '"public"."sessions"', "method": "delete_row", "rows": 4}
    assert after["ledger"]["exported_through"] == 2 and after["ledger"]["chain_verified_through"] == 2
    page = repo.get_bytes(layout.certificate_key("certs", 2, "html")).decode()
    assert "req-after" in page and after["ledger"]["entry_hash"] in page and manifest.backup_id in page

    # The CLI, by request id and by subject reference.
    capsys.readouterr()
    assert main(["--config", str(cfg), "ledger", "certificate", "certs", "req-after"]) == 0
    assert printed_json(capsys.readouterr().out)["ledger"]["entry_hash"] == after["ledger"]["entry_hash"]
    assert main(["--config", str(cfg), "ledger", "certificate", "certs", before["subject_ref"], "--html"]) == 0
    assert "req-before" in capsys.readouterr().out
    assert main(["--config", str(cfg), "ledger", "certificate", "certs", "req-unknown"]) == 1

    # A tampered ledger gets no certificate.
    with connect(pg.target()) as conn, conn.transaction():
        conn.execute("ALTER TABLE pgwarden.erasure_ledger DISABLE TRIGGER USER")
        conn.execute("UPDATE pgwarden.erasure_ledger SET record = replace(record::text, '\"rows\":4', "
                     "'\"rows\":0')::json WHERE seq = 2")
        conn.execute("ALTER TABLE pgwarden.erasure_ledger ENABLE TRIGGER USER")
    with connect(pg.target()) as conn, pytest.raises(PermanentError, match="does not verify"):
        write_certificates(conn, repo, "certs", db)
    assert main(["--config", str(cfg), "ledger", "certificate", "certs", "req-after"]) == 1
