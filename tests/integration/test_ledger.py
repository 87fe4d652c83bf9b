"""The erasure ledger table on a real server: appends chain, concurrent appends serialize, the table
refuses change, and the application role can neither write nor read it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure, subject_reference, verify_chain
from pgwarden.engine.lifecycle.ledger import append, ensure_ledger, erased_refs_since, is_erased, read_entries
from pgwarden.engine.postgres import connect
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

KEY = b"integration-key"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def record(i: int, kind: str = "erasure") -> ErasureRecord:
    return ErasureRecord(
        kind=kind, request_id=f"req-{i}", subject_ref=subject_reference(KEY, "appdb", '"public"."users"', str(i)),
        policy_version="v1", tables=(TableErasure('"public"."users"', "redact_email:email", 1),),
        dag_id="appdb.gdpr_erasure", run_id="manual__1", task_id="erase", try_number=1,
        erased_at=T0 + timedelta(minutes=i),
    )


@pytest.fixture(scope="module")
def server():
    with postgres_server() as cluster:
        with connect(cluster.target()) as conn:
            conn.execute("CREATE ROLE app LOGIN")
            conn.execute("CREATE SCHEMA pgwarden")
            # What a careless setup gives the application: the ledger must take it back.
            conn.execute("GRANT USAGE ON SCHEMA pgwarden TO app")
            conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA pgwarden GRANT ALL ON TABLES TO app")
            ensure_ledger(conn, app_roles=["app"])
            ensure_ledger(conn, app_roles=["app"])  # idempotent
        yield cluster


def test_appends_chain_inside_the_callers_transaction(server) -> None:
    with connect(server.target(), autocommit=False) as conn:
        with conn.transaction():
            first = append(conn, record(1))
        with conn.transaction():
            second = append(conn, record(2))
        # Rolled back with the erasure it belongs to: no entry, no gap.
        with pytest.raises(RuntimeError), conn.transaction():
            append(conn, record(99))
            raise RuntimeError("the erasure failed after the append")
        with conn.transaction():
            third = append(conn, record(3, kind="reapply"))
        assert (first.seq, second.seq, third.seq) == (1, 2, 3)
        assert second.prev_hash == first.entry_hash and third.prev_hash == second.entry_hash
        entries, mismatch = read_entries(conn)
        assert mismatch is None and [e.entry_hash for e in entries] == [first.entry_hash, second.entry_hash,
                                                                          third.entry_hash]
        assert verify_chain(entries).ok
        assert is_erased(conn, record(1).subject_ref) and not is_erased(conn, record(3).subject_ref)
        assert not is_erased(conn, record(99).subject_ref)
        assert [e.seq for e in erased_refs_since(conn, None)] == [1, 2]
        assert [e.seq for e in erased_refs_since(conn, T0 + timedelta(minutes=1))] == [2]
        conn.commit()


def test_concurrent_appends_serialize_into_one_chain(server) -> None:
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            with connect(server.target(), autocommit=False) as conn:
                for i in range(base, base + 15):
                    with conn.transaction():
                        append(conn, record(i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(1000 * (n + 1),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with connect(server.target()) as conn:
        entries, _ = read_entries(conn)
    assert len(entries) >= 60 and verify_chain(entries).ok


@pytest.mark.parametrize("statement", [
    "UPDATE pgwarden.erasure_ledger SET request_id = 'x' WHERE seq = 1",
    "DELETE FROM pgwarden.erasure_ledger WHERE seq = 1",
    "TRUNCATE pgwarden.erasure_ledger",
])
def test_even_the_owner_cannot_change_entries_with_the_triggers_on(server, statement: str) -> None:
    with connect(server.target()) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM pgwarden.erasure_ledger WHERE seq = 1").fetchone()[0] == 1


@pytest.mark.parametrize("statement", [
    "SELECT * FROM pgwarden.erasure_ledger",
    "INSERT INTO pgwarden.erasure_ledger (seq, prev_hash, entry_hash, record, kind, request_id, subject_ref, "
    "erased_at) VALUES (100000, repeat('a', 64), repeat('b', 64), '{}', 'erasure', 'r', 's', now())",
    "DELETE FROM pgwarden.erasure_ledger",
])
def test_the_application_role_holds_no_privilege(server, statement: str) -> None:
    with connect(server.target(user="app")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)


def test_roles_granted_by_default_privileges_keep_select_at_most(server) -> None:
    with connect(server.target()) as conn:
        conn.execute("CREATE ROLE auditor LOGIN")
        conn.execute("GRANT USAGE ON SCHEMA pgwarden TO auditor")
        conn.execute("GRANT SELECT, INSERT, DELETE ON pgwarden.erasure_ledger TO auditor")
        ensure_ledger(conn)  # no app_roles named: every writer but the owner loses its write privileges
    with connect(server.target(user="auditor")) as conn:
        assert conn.execute("SELECT count(*) FROM pgwarden.erasure_ledger").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("DELETE FROM pgwarden.erasure_ledger")


def test_a_second_guard_refuses_an_append_that_skipped_the_lock(server) -> None:
    with connect(server.target()) as conn:
        prev = conn.execute("SELECT prev_hash FROM pgwarden.erasure_ledger ORDER BY seq DESC LIMIT 1").fetchone()[0]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO pgwarden.erasure_ledger (seq, prev_hash, entry_hash, record, kind, request_id, "
                "subject_ref, erased_at) VALUES (999999, %s, %s, '{}', 'erasure', 'r', 's', now())",
                (prev, "c" * 64))
