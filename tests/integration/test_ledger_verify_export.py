"""`pgwarden ledger verify` and the ledger export, on a real server and the real S3 endpoint.

Each tamper case is what a superuser can do with the triggers disabled: edit a row, delete one,
reorder the chain, and delete one and recompute every hash after it (only the export catches that).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgwarden.cli import main
from pgwarden.core import layout
from pgwarden.core.config import RepositoryConfig
from pgwarden.core.lifecycle.ledger import (
    ErasureRecord,
    LedgerEntry,
    StoredEntry,
    TableErasure,
    next_entry,
    subject_reference,
)
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.ledger import append, ensure_ledger, read_entries
from pgwarden.engine.lifecycle.ledger_export import export_ledger, read_export
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.airflow_conns import conn_var, postgres_conn
from tests.harness.postgres import postgres_server
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.integration

KEY = b"verify-key"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_names = (f"ledger{n}" for n in itertools.count(1))


def printed_json(out: str):
    """The JSON document a command printed; Airflow, once configured by another test module in the same
    session, may log lines to stdout around it."""
    start = re.search(r"^[{\[]", out, re.MULTILINE)
    assert start, f"no JSON document in the output: {out[:200]!r}"
    return json.JSONDecoder().raw_decode(out[start.start():])[0]


@pytest.fixture(scope="module")
def server():
    with postgres_server() as cluster:
        yield cluster


@dataclasses.dataclass
class Setup:
    name: str
    target: object
    repo: object
    repo_config: RepositoryConfig
    config_path: str

    def verify(self, *extra: str) -> int:
        return main(["--config", self.config_path, "ledger", "verify", self.name, *extra])

    def export(self):
        with connect(self.target) as conn:
            return export_ledger(conn, self.repo, self.name, self.repo_config)


@pytest.fixture
def ledger_db(server, s3, tmp_path, monkeypatch):
    """A fresh database with a five-entry ledger, its repository on S3, a config naming both."""
    def make(entries: int = 5, lock: bool = False) -> Setup:
        name = next(_names)
        bucket = name.replace("ledger", "bucket-")
        with connect(server.target()) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        if lock:
            s3.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        else:
            s3.client().create_bucket(Bucket=bucket)
        repo_config = RepositoryConfig(url=f"s3://{bucket}/pg", conn_id="ledger_s3",
                                       object_lock_mode="COMPLIANCE" if lock else None)
        repo = open_repository(repo_config, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                                       aws_access_key_id=ACCESS_KEY,
                                                       aws_secret_access_key=SECRET_KEY))
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(json.dumps({"databases": {name: {"conn_id": f"pg_{name}", "repository": {
            "url": repo_config.url, "conn_id": "ledger_s3", "object_lock_mode": repo_config.object_lock_mode}}}}))
        monkeypatch.setenv(conn_var(f"pg_{name}"), postgres_conn(server, dbname=name))
        monkeypatch.setenv(conn_var("ledger_s3"), s3.airflow_conn_uri())
        setup = Setup(name, server.target(dbname=name), repo, repo_config, str(cfg))
        with connect(setup.target) as conn:
            ensure_ledger(conn)
        add(setup, 1, entries)
        return setup
    return make


def record(i: int) -> ErasureRecord:
    return ErasureRecord(
        kind="erasure", request_id=f"req-{i}", subject_ref=subject_reference(KEY, "db", '"public"."users"', str(i)),
        policy_version="v1", tables=(TableErasure('"public"."users"', "delete_row", 1),
                                     TableErasure('"public"."orders"', "null:shipping_address", i)),
        dag_id="db.gdpr_erasure", run_id="scheduled__1", task_id="erase", try_number=1,
        erased_at=T0 + timedelta(minutes=i))


def add(setup: Setup, first: int, count: int) -> None:
    with connect(setup.target, autocommit=False) as conn:
        for i in range(first, first + count):
            with conn.transaction():
                append(conn, record(i))
        conn.commit()


def superuser(setup: Setup, *statements: tuple) -> None:
    """Run statements with the append-only triggers disabled, as a superuser can."""
    with connect(setup.target) as conn, conn.transaction():
        conn.execute("ALTER TABLE pgwarden.erasure_ledger DISABLE TRIGGER USER")
        for statement, params in statements:
            conn.execute(statement, params)
        conn.execute("ALTER TABLE pgwarden.erasure_ledger ENABLE TRIGGER USER")


def verification(setup: Setup, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = setup.verify("--json")
    return code, printed_json(capsys.readouterr().out)


def test_an_intact_ledger_verifies_and_exports_idempotently(ledger_db, capsys) -> None:
    setup = ledger_db(entries=5)
    code, result = verification(setup, capsys)
    assert code == 0 and result["ok"] and result["chain"]["entries"] == 5
    assert result["comparison"]["not_yet_exported"] == 5 and "nothing exported" in result["notes"][0]

    first = setup.export()
    assert first.exported_entries == 5 and first.objects_written == [layout.ledger_entries_key(setup.name, 1, 5)]
    again = setup.export()
    assert again.exported_entries == 0 and again.objects_written == [] and again.head_seq == 5
    add(setup, 6, 2)
    third = setup.export()
    assert third.objects_written == [layout.ledger_entries_key(setup.name, 6, 7)] and third.head_seq == 7

    exported = read_export(setup.repo, setup.name)
    with connect(setup.target) as conn:
        in_db, _ = read_entries(conn)
    assert exported.records() == in_db and exported.head == (7, in_db[-1].entry_hash)
    code, result = verification(setup, capsys)
    assert code == 0 and result["comparison"] == {"exported": 7, "not_yet_exported": 0, "ok": True,
                                                  "problem": None}
    # Text output for people.
    capsys.readouterr()
    assert setup.verify() == 0
    assert "erasure ledger OK" in capsys.readouterr().out


def test_an_export_killed_before_its_head_is_finished_by_the_next_run(ledger_db, capsys) -> None:
    setup = ledger_db(entries=3)
    setup.export()
    setup.repo.delete([layout.ledger_head_key(setup.name)])  # as if killed between objects and head
    add(setup, 4, 1)
    again = setup.export()
    assert again.objects_written == [layout.ledger_entries_key(setup.name, 4, 4)]
    assert read_export(setup.repo, setup.name).head == (4, again.head_hash)
    assert verification(setup, capsys)[0] == 0


def test_an_edited_row_is_named(ledger_db, capsys) -> None:
    setup = ledger_db()
    # The text stays canonical JSON: only the number changed, as a careful forger would do it.
    superuser(setup, ("UPDATE pgwarden.erasure_ledger SET record = replace(record::text, '\"rows\":3', "
                      "'\"rows\":0')::json WHERE seq = 3", None))
    code, result = verification(setup, capsys)
    assert code == 1 and result["chain"]["problem"]["seq"] == 3 and "edited" in result["chain"]["problem"]["reason"]
    # A column edit alone (what is_erased reads) is named too.
    setup = ledger_db()
    superuser(setup, ("UPDATE pgwarden.erasure_ledger SET subject_ref = 'x' WHERE seq = 2", None))
    code, result = verification(setup, capsys)
    assert code == 1 and result["chain"]["problem"]["seq"] == 2


def test_a_deleted_row_is_named(ledger_db, capsys) -> None:
    setup = ledger_db()
    superuser(setup, ("DELETE FROM pgwarden.erasure_ledger WHERE seq = 3", None))
    code, result = verification(setup, capsys)
    assert code == 1 and result["chain"]["problem"] == {"seq": 4, "reason": "entry 3 is missing before it"}
    capsys.readouterr()
    assert setup.verify() == 1
    assert "entry 4: entry 3 is missing before it" in capsys.readouterr().out


def test_a_reordered_chain_is_named(ledger_db, capsys) -> None:
    setup = ledger_db()
    superuser(setup, ("UPDATE pgwarden.erasure_ledger SET seq = seq + 100 WHERE seq IN (2, 3)", None),
              ("UPDATE pgwarden.erasure_ledger SET seq = CASE seq WHEN 102 THEN 3 ELSE 2 END WHERE seq > 100", None))
    code, result = verification(setup, capsys)
    assert code == 1 and result["chain"]["problem"]["seq"] == 2
    assert "reordered" in result["chain"]["problem"]["reason"]


def test_a_deleted_row_with_the_chain_recomputed_is_caught_by_the_export(ledger_db, capsys) -> None:
    setup = ledger_db()
    setup.export()
    with connect(setup.target) as conn:
        entries, _ = read_entries(conn)
    rewritten: list[LedgerEntry] = []
    for entry in [e for e in entries if e.seq != 3]:
        rewritten.append(next_entry(rewritten[-1] if rewritten else None, entry.record))
    statements = [("DELETE FROM pgwarden.erasure_ledger WHERE seq >= 3", None)]
    statements += [("INSERT INTO pgwarden.erasure_ledger (seq, prev_hash, entry_hash, record, kind, request_id, "
                    "subject_ref, erased_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (e.seq, e.prev_hash, e.entry_hash, StoredEntry.of(e).record_json,
                     e.record.kind, e.record.request_id, e.record.subject_ref, e.record.erased_at))
                   for e in rewritten[2:]]
    superuser(setup, *statements)

    code, result = verification(setup, capsys)
    assert code == 1
    assert result["chain"]["problem"] is None  # the database chain alone is fooled
    assert result["comparison"]["problem"]["seq"] == 3 and "rewritten" in result["comparison"]["problem"]["reason"]
    assert main(["--config", setup.config_path, "ledger", "verify", setup.name, "--database-only"]) == 0
    # And the next export refuses to anchor the rewritten chain.
    add(setup, 10, 1)
    with pytest.raises(PermanentError, match="breaks at entry 5: the last exported entry"):
        setup.export()


def test_exported_objects_are_under_object_lock(ledger_db, s3) -> None:
    setup = ledger_db(entries=2, lock=True)
    setup.export()
    bucket = setup.repo_config.url.split("/")[2]
    for key in (layout.ledger_entries_key(setup.name, 1, 2), layout.ledger_head_key(setup.name)):
        head = s3.client().head_object(Bucket=bucket, Key=f"pg/{key}")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=7 * 365)
