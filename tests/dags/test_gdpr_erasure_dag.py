"""dag.test() of <database>.gdpr_erasure against a real server: a dry run changes nothing, the run erases the due
subjects once (a second run writes no second ledger entry), held ones stay, and none of the seeded personal data
appears in the task logs, XCom, rendered templates, run conf, the ledger, its export or the certificates."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgwarden.engine.postgres import connect
from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import conn_var, set_postgres_conn

pytestmark = pytest.mark.integration

CUTOFF = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL, phone text,
                    deleted_at timestamptz, legal_hold boolean NOT NULL DEFAULT false);
CREATE TABLE sessions (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users, ip text);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, shipping_address text);
CREATE TABLE support_tickets (id serial PRIMARY KEY, order_id int REFERENCES orders, body text);
"""
PEOPLE = {  # id: (email, name, phone, address, deleted days before the cutoff, held)
    1: ("ada.lovelace@example.org", "Ada Lovelace", "+44 20 7946 0011", "12 St James's Square, London", 45, False),
    2: ("grace.hopper@example.net", "Grace Hopper", "+1 202 555 0142", "1 Navy Yard Rd, Arlington VA", 31, False),
    3: ("alan.turing@example.com", "Alan Turing", "+44 161 496 0753", "Hollymeade, Wilmslow", 60, True),
    4: ("edsger.d@example.nl", "Edsger Dijkstra", "+31 40 247 9111", "Plataanstraat 5, Nuenen", 5, False),
    5: ("barbara.l@example.edu", "Barbara Liskov", "+1 617 555 0199", "32 Vassar St, Cambridge MA", None, False),
}
ERASED, KEPT = (1, 2), (3, 4, 5)


def seed(conn) -> None:
    conn.execute(SCHEMA)
    for uid, (email, name, phone, address, days, held) in PEOPLE.items():
        deleted = CUTOFF - timedelta(days=days) if days is not None else None
        conn.execute("INSERT INTO users VALUES (%s, %s, %s, %s, %s, %s)", (uid, email, name, phone, deleted, held))
        conn.execute("INSERT INTO sessions (user_id, ip) VALUES (%s, %s)", (uid, f"203.0.113.{uid}"))
        order = conn.execute("INSERT INTO orders (user_id, shipping_address) VALUES (%s, %s) RETURNING id",
                             (uid, address)).fetchone()[0]
        conn.execute("INSERT INTO support_tickets (order_id, body) VALUES (%s, %s)",
                     (order, f"Please call {name} at {phone}"))


def metadata_text() -> str:
    """Everything Airflow stored about runs: XCom, rendered template fields, run conf, task instances."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    dumped = []
    with create_session() as session:
        for table in ("xcom", "rendered_task_instance_fields", "dag_run", "task_instance"):
            for row in session.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed table names
                dumped.append(" ".join(map(str, row)))
    return "\n".join(dumped)


def test_gdpr_erasure_dag_dry_run_then_erasure_once_and_no_personal_data_anywhere(
        pg, pgwarden_config, monkeypatch, file_repo, capfd) -> None:
    with connect(pg.target()) as conn:
        seed(conn)
    set_postgres_conn(monkeypatch, "pg_gdpr", pg)
    monkeypatch.setenv(conn_var("gdpr_key"), json.dumps({"conn_type": "generic",
                                                         "password": "a-long-random-erasure-key-0123"}))
    pgwarden_config(f"""
        gdprdb:
          conn_id: pg_gdpr
          repository: {{url: "{file_repo}"}}
          lifecycle:
            erasure:
              subject: {{table: public.users, key: id}}
              erasable: {{soft_deleted: {{column: deleted_at, grace: 30d}}}}
              legal_hold: {{column: legal_hold}}
              hmac_key: {{conn_id: gdpr_key}}
              tables:
                - {{table: users, columns: {{email: redact_email, full_name: {{constant: Deleted User}},
                                             phone: hmac}}}}
                - {{table: sessions, subject_column: user_id, columns: {{ip: delete_row}}}}
                - {{table: orders, subject_column: user_id, columns: {{shipping_address: "null"}}}}
                - {{table: support_tickets, through: {{table: orders, column: order_id}}, columns: {{body: delete_row}}}}
    """)
    from airflow.logging_config import configure_logging

    from pgwarden.airflow.dag_factory import build_dags

    # The task logs go to the sys.stdout of the moment logging is configured (see run_dag); a buffer of this
    # test's own, whatever an earlier test's capture left bound: the PII scan reads every line of it.
    # INFO: importing pgwarden.cli.connections (another module's tests) sets the level to WARNING process-wide.
    task_log = io.StringIO()
    monkeypatch.setattr(sys, "stdout", task_log)
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
    configure_logging()
    dag = build_dags()["gdprdb.gdpr_erasure"]
    assert dag.max_active_runs == 1 and {"pgwarden", "gdpr_erasure", "db:gdprdb"} <= set(dag.tags)
    assert dag.doc_md and "legal hold" in dag.doc_md

    with connect(pg.target()) as conn:
        before = conn.execute("SELECT array_agg(u::text ORDER BY id) FROM users u").fetchone()[0]
    dry = dag.test(logical_date=CUTOFF, run_conf={"dry_run": True})
    assert {ti.task_id: ti.state for ti in dry.get_task_instances()} == {"plan": "success", "erase": "success", "ledger_export": "success",
                                                                       "certificates": "success"}
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT array_agg(u::text ORDER BY id) FROM users u").fetchone()[0] == before
        assert conn.execute("SELECT to_regclass('pgwarden.erasure_ledger')").fetchone()[0] is None

    states, run = run_dag("gdprdb.gdpr_erasure")
    assert states == {"plan": "success", "erase": "success", "ledger_export": "success", "certificates": "success"}
    with connect(pg.target()) as conn:
        for uid in ERASED:
            assert conn.execute("SELECT email, full_name FROM users WHERE id = %s", (uid,)).fetchone() == (
                f"deleted_{uid}@invalid", "Deleted User")
        assert conn.execute("SELECT count(*) FROM sessions WHERE user_id IN (1, 2)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM support_tickets").fetchone()[0] == 3
        for uid in KEPT:
            assert conn.execute("SELECT email FROM users WHERE id = %s", (uid,)).fetchone()[0] == PEOPLE[uid][0]
        ledger_text = "\n".join(str(r) for r in conn.execute("SELECT * FROM pgwarden.erasure_ledger"))
        assert conn.execute("SELECT count(*) FROM pgwarden.erasure_ledger").fetchone()[0] == 2

    # Cleared / run again: nothing changes, no second entry.
    rerun = dag.test(logical_date=CUTOFF)
    assert {ti.task_id: ti.state for ti in rerun.get_task_instances()}["erase"] == "success"
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM pgwarden.erasure_ledger").fetchone()[0] == 2

    logs = task_log.getvalue() + "".join(capfd.readouterr())
    assert "subject 3: on legal hold, not touched" in logs and "erased 2 of 3 due subjects" in logs
    metadata = metadata_text()
    assert "subjects_per_second" in metadata and "dry_run" in metadata  # XCom and the run conf were read
    repository = Path(file_repo.removeprefix("file://"))
    exported = "\n".join(p.read_text(errors="replace") for p in repository.rglob("*") if p.is_file())
    assert "subject_ref" in exported and "<html" in exported.lower()  # the export and a certificate were read
    haystack = "\n".join([logs, metadata, ledger_text, exported])
    seeded = [value for uid in PEOPLE for value in PEOPLE[uid][:4]] + [f"203.0.113.{uid}" for uid in PEOPLE]
    found = [value for value in seeded if value in haystack]
    assert not found, f"personal data found in logs/XCom/templates/run conf/ledger/export/certificates: {found}"
    assert '"would erase"' not in haystack and "would erase 2 of 3" in logs  # the dry run's report was logged
