"""Re-applying erasures after a restore, on a real server and the real S3 endpoint.

The "restore" is a copy of the database taken between two erasure runs (CREATE DATABASE ... TEMPLATE): the
same state a backup of that moment restores to, without the minutes a real restore costs here (the drill
test restores for real).
"""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from pgwarden.cli import main
from pgwarden.core.config import DatabaseConfig
from pgwarden.core.lifecycle.pii import pseudonym
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.erasure import RecordContext
from pgwarden.engine.lifecycle.erasure_plan import plan_erasure
from pgwarden.engine.lifecycle.ledger import read_entries
from pgwarden.engine.lifecycle.ledger_export import export_ledger, verify_ledger
from pgwarden.engine.lifecycle.reapply import check_erased_subjects, reapply_erasures
from pgwarden.engine.postgres import PgTarget, connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.airflow_conns import conn_var, postgres_conn
from tests.harness.engine_child import child_env, kill_group, spawn, wait_for_line
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.integration.test_erasure import KEY, MAP, erasure_config, run, seed, user_row
from tests.integration.test_ledger_verify_export import printed_json

pytestmark = pytest.mark.integration

DB = "appdb"


def copy_of(pg, source: str, name: str) -> PgTarget:
    with connect(pg.target()) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            psycopg.sql.Identifier(name), psycopg.sql.Identifier(source)))
    return PgTarget(host="127.0.0.1", port=pg.port, dbname=name)


def test_reapply_erases_again_what_the_restore_brought_back_once(pg, s3, tmp_path, monkeypatch, capsys) -> None:
    s3.client().create_bucket(Bucket="reapply")
    db = DatabaseConfig.model_validate({
        "conn_id": "pg_appdb", "repository": {"url": "s3://reapply/pg", "conn_id": "reapply_s3"},
        "lifecycle": {"erasure": json.loads(json.dumps(erasure_config().model_dump(mode="json")))}})
    repo = open_repository(db.repository, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    with connect(pg.target()) as conn:
        conn.execute("CREATE DATABASE appdb")
    prod = PgTarget(host="127.0.0.1", port=pg.port, dbname="appdb")
    # 1 due at the first run; 2 and 3 due only at the second (their grace ends in between); 4 never.
    seed(prod, {1: (timedelta(days=40), False), 2: (timedelta(days=25), False), 3: (timedelta(days=26), False),
                4: (None, False)})
    assert run(prod).outcomes["erased"] == 1
    with connect(prod) as conn:
        export_ledger(conn, repo, DB, db.repository)
    backup = copy_of(pg, "appdb", "restored")  # the backup: 1 erased, 2 and 3 not yet
    with connect(prod) as conn:
        conn.execute("UPDATE users SET deleted_at = deleted_at - interval '10 days' WHERE id IN (2, 3)")
        conn.execute("INSERT INTO users VALUES (5, 'p5@example.org', 'Name 5', NULL, now() - interval '99 days')")
    assert run(prod).outcomes["erased"] == 3  # 2, 3 and 5 (created after the backup)
    with connect(prod) as conn:
        export_ledger(conn, repo, DB, db.repository)
        erased_in_prod = {uid: user_row(conn, uid) for uid in (2, 3)}

    with connect(backup) as conn:
        before = check_erased_subjects(conn, repo, DB, db.lifecycle.erasure, KEY)
        assert not before.ok and len(before.with_personal_data) > 2 and before.present == 3
        assert "subject 2:" in before.detail() and "Name 2" not in before.detail()

        report = reapply_erasures(conn, repo, DB, db.lifecycle.erasure, KEY,
                                  RecordContext(database=DB, dag_id="appdb.pitr_restore", run_id="manual__r"),
                                  log=lambda _m: None)
        assert (report.restored_head, report.export_head, report.entries_restored) == (1, 4, 3)
        assert (report.undone_erasures, report.reapplied, report.not_present) == (3, 2, 1)
        assert sorted(report.reapplied_subjects) == ["2", "3"]
        assert {uid: user_row(conn, uid) for uid in (2, 3)} == erased_in_prod
        assert user_row(conn, 2)[4] == pseudonym(KEY, "2")
        assert user_row(conn, 4)[0] == "person4@example.org"  # never erased, untouched
        assert check_erased_subjects(conn, repo, DB, db.lifecycle.erasure, KEY).ok
        entries, _ = read_entries(conn)
        kinds = [(e.seq, e.record.kind, e.record.request_id) for e in entries]
        assert [k[1] for k in kinds] == ["erasure"] * 4 + ["reapply"] * 2
        originals = {e.record.subject_ref: e.record.request_id for e in entries if e.record.kind == "erasure"}
        assert all(originals[e.record.subject_ref] == e.record.request_id for e in entries[4:])
        assert entries[4].record.dag_id == "appdb.pitr_restore"
        # The restored ledger is the exported chain plus the re-apply entries: it verifies against the export.
        verification = verify_ledger(conn, repo, DB)
        assert verification.ok and verification.comparison.not_yet_exported == 2

        again = reapply_erasures(conn, repo, DB, db.lifecycle.erasure, KEY, RecordContext(database=DB),
                                 log=lambda _m: None)
        assert (again.entries_restored, again.undone_erasures, again.reapplied) == (0, 0, 0)
        assert len(read_entries(conn)[0]) == 6

    # The CLI: the restored server named by a DSN in the environment, the key from its Airflow connection.
    second = copy_of(pg, "restored", "restored_again")
    with connect(second) as conn:
        conn.execute("ALTER TABLE pgwarden.erasure_ledger DISABLE TRIGGER USER")
        conn.execute("DELETE FROM pgwarden.erasure_ledger WHERE seq > 1")  # back to the backup's ledger
        conn.execute("ALTER TABLE pgwarden.erasure_ledger ENABLE TRIGGER USER")
        conn.execute("UPDATE users SET email = 'person2@example.org', name = 'Name 2' WHERE id = 2")
    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text(json.dumps({"databases": {DB: db.model_dump(mode="json", exclude_defaults=True)}}))
    monkeypatch.setenv(conn_var("reapply_s3"), s3.airflow_conn_uri())
    monkeypatch.setenv(conn_var("erasure_key"), json.dumps({"conn_type": "generic", "password": KEY.decode()}))
    monkeypatch.setenv("RESTORED_DSN", f"host=127.0.0.1 port={pg.port} dbname=restored_again user=postgres")
    capsys.readouterr()
    assert main(["--config", str(cfg), "ledger", "reapply", DB, "--to-dsn-env", "RESTORED_DSN", "--json"]) == 0
    out = printed_json(capsys.readouterr().out)
    # Its ledger says 2 and 3 were erased after it (3 is clean already: erasing again changes nothing).
    assert out["reapplied_subjects"] == ["2", "3"] and out["check"]["ok"]
    with connect(second) as conn:
        assert user_row(conn, 2)[:2] == ("deleted_2@invalid", "Deleted User")
    monkeypatch.setenv(conn_var("pg_restored"), postgres_conn(pg, dbname="restored_again"))
    assert main(["--config", str(cfg), "ledger", "reapply", DB, "--to", "pg_restored"]) == 0
    assert "nothing to re-apply" in capsys.readouterr().err


def test_a_restored_ledger_that_disagrees_with_the_export_stops_the_reapply(pg, s3) -> None:
    s3.client().create_bucket(Bucket="reapply2")
    db = DatabaseConfig.model_validate({"conn_id": "pg_x", "repository": {"url": "s3://reapply2/pg"},
                                        "lifecycle": {"erasure": erasure_config(MAP).model_dump(mode="json")}})
    repo = open_repository(db.repository, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    with connect(pg.target()) as conn:
        conn.execute("CREATE DATABASE src")
    src = PgTarget(host="127.0.0.1", port=pg.port, dbname="src")
    seed(src, {1: (timedelta(days=40), False), 2: (timedelta(days=50), False)})
    run(src)
    with connect(src) as conn:
        export_ledger(conn, repo, DB, db.repository)
        conn.execute("ALTER TABLE pgwarden.erasure_ledger DISABLE TRIGGER USER")
        conn.execute("UPDATE pgwarden.erasure_ledger SET entry_hash = repeat('e', 64) WHERE seq = 1")
        conn.execute("ALTER TABLE pgwarden.erasure_ledger ENABLE TRIGGER USER")
        with pytest.raises(PermanentError, match="disagrees with the export at entry 1"):
            reapply_erasures(conn, repo, DB, db.lifecycle.erasure, KEY, RecordContext(database=DB),
                             log=lambda _m: None)
        assert plan_erasure(conn, db.lifecycle.erasure)  # the database is still usable


def test_a_reapply_killed_midway_leaves_the_restored_database_as_restored(pg, s3, tmp_path) -> None:
    s3.client().create_bucket(Bucket="reapply3")
    config = erasure_config()
    db = DatabaseConfig.model_validate({"conn_id": "pg_x", "repository": {"url": "s3://reapply3/pg",
                                                                          "conn_id": "reapply3_s3"},
                                        "lifecycle": {"erasure": config.model_dump(mode="json")}})
    repo = open_repository(db.repository, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    with connect(pg.target()) as conn:
        conn.execute("CREATE DATABASE src3")
    src = PgTarget(host="127.0.0.1", port=pg.port, dbname="src3")
    seed(src, {i: (timedelta(days=20), False) for i in range(1, 41)})
    restored = copy_of(pg, "src3", "restored3")
    with connect(src) as conn:
        conn.execute("UPDATE users SET deleted_at = deleted_at - interval '20 days'")
    assert run(src).outcomes["erased"] == 40
    with connect(src) as conn:
        export_ledger(conn, repo, DB, db.repository)
    with connect(restored) as conn:
        before = conn.execute("SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u").fetchone()[0]

    env = child_env(restored, db.repository.url, DB, tmp_path, "reapply",
                    conn_env={conn_var("reapply3_s3"): s3.airflow_conn_uri()},
                    repo_conn_id="reapply3_s3", erasure=json.dumps(config.model_dump(mode="json")),
                    erasure_key=KEY.decode())
    # Subject 2's row is locked: the child re-applies subject 1, then waits there until it is killed.
    with connect(restored, autocommit=False) as blocker:
        blocker.execute("SELECT FROM users WHERE id = 2 FOR UPDATE")
        child = spawn(env)
        try:
            wait_for_line(child, "re-applied the erasure of subject 1 ", timeout=120)
        finally:
            kill_group(child)
        blocker.rollback()
    with connect(restored) as conn:
        assert conn.execute("SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u").fetchone()[0] == before
        # Even the ledger table the run created went with the rollback: the backup predates the first erasure.
        assert conn.execute("SELECT to_regclass('pgwarden.erasure_ledger')").fetchone()[0] is None

    child = spawn(env)
    try:
        lines = wait_for_line(child, "CHILD DONE", timeout=300)
    finally:
        kill_group(child)
    assert any("re-applied 40 of 40" in line or "erased-subject check passed" in line for line in lines)
    with connect(restored) as conn:
        kinds = conn.execute("SELECT kind, count(*) FROM pgwarden.erasure_ledger GROUP BY kind").fetchall()
        assert sorted(kinds) == [("erasure", 40), ("reapply", 40)]
        assert conn.execute("SELECT count(*) FROM users WHERE email NOT LIKE 'deleted_%'").fetchone()[0] == 0
