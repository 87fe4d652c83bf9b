"""The ledger export and certificate operators, as gdpr_erasure runs them after its erase task: they export
and certify new entries, a second run writes nothing, and a tampered ledger fails the export at once (no
retry) naming the entry. (dag.test() needs a DAG the config builds; gdpr_erasure's own test runs them there.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from pgwarden.core import layout
from pgwarden.core.config import DatabaseConfig
from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure
from pgwarden.engine.lifecycle.ledger import append, ensure_ledger
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from tests.harness.airflow_conns import set_postgres_conn

pytestmark = pytest.mark.integration


def operators(db_config: DatabaseConfig):
    from pgwarden.airflow.operators.ledger import CertificatesOperator, LedgerExportOperator

    return (LedgerExportOperator(task_id="export_ledger", database="ldag", db_config=db_config),
            CertificatesOperator(task_id="certificates", database="ldag", db_config=db_config))


def record(i: int) -> ErasureRecord:
    return ErasureRecord(kind="erasure", request_id=f"req-{i}", subject_ref=f"{i:064x}", policy_version="v1",
                         tables=(TableErasure('"public"."users"', "delete_row", 1),), dag_id="ldag.gdpr_erasure",
                         run_id="r", task_id="erase", try_number=1,
                         erased_at=datetime.now(UTC) - timedelta(minutes=i))


def test_export_and_certificates_run_once_and_a_tampered_ledger_fails_the_export(pg, monkeypatch, file_repo) -> None:
    set_postgres_conn(monkeypatch, "pg_ldag", pg)
    db_config = DatabaseConfig.model_validate({"conn_id": "pg_ldag", "repository": {"url": file_repo}})
    repo = open_repository(db_config.repository)
    with connect(pg.target(), autocommit=False) as conn:
        ensure_ledger(conn)
        for i in (1, 2):
            append(conn, record(i))
        conn.commit()

    export, certificates = operators(db_config)
    assert export.execute({})["head_seq"] == 2
    assert certificates.execute({})["written_seqs"] == [1, 2]
    keys = sorted(info.key for info in repo.list(layout.ledger_prefix("ldag")))
    assert keys == [layout.certificate_key("ldag", 1, "html"), layout.certificate_key("ldag", 1, "json"),
                    layout.certificate_key("ldag", 2, "html"), layout.certificate_key("ldag", 2, "json"),
                    layout.ledger_entries_key("ldag", 1, 2), layout.ledger_head_key("ldag")]
    assert export.execute({})["exported_entries"] == 0
    assert certificates.execute({}) == {"database": "ldag", "written_seqs": [], "already_there": 2}
    assert sorted(info.key for info in repo.list(layout.ledger_prefix("ldag"))) == keys

    with connect(pg.target()) as conn, conn.transaction():
        conn.execute("ALTER TABLE pgwarden.erasure_ledger DISABLE TRIGGER USER")
        conn.execute("UPDATE pgwarden.erasure_ledger SET request_id = 'forged' WHERE seq = 2")
        conn.execute("ALTER TABLE pgwarden.erasure_ledger ENABLE TRIGGER USER")
    with connect(pg.target(), autocommit=False) as conn:
        append(conn, record(3))
        conn.commit()
    with pytest.raises(AirflowFailException, match="breaks at entry 2"):
        export.execute({})
    with pytest.raises(AirflowFailException, match="does not verify"):
        certificates.execute({})
