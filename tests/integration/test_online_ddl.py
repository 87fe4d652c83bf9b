"""Online DDL against a real server: lock timeouts retried while the application keeps flowing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from pgwarden.engine.errors import TransientError
from pgwarden.engine.migrations.online_ddl import (
    DdlSettings,
    create_index_concurrently,
    index_state,
    run_ddl,
)
from pgwarden.engine.postgres import connect
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

FAST = DdlSettings(lock_timeout=timedelta(milliseconds=200), statement_timeout=timedelta(seconds=30),
                   max_attempts=40, backoff_initial=timedelta(milliseconds=50), backoff_max=timedelta(milliseconds=300))


@pytest.fixture(scope="module")
def server():
    with postgres_server() as pg:
        yield pg


@pytest.fixture
def table(server):
    with connect(server.target()) as conn:
        conn.execute('DROP SCHEMA IF EXISTS "User Data" CASCADE')
        conn.execute('CREATE SCHEMA "User Data"')
        conn.execute('CREATE TABLE "User Data"."e-mail" (id bigint PRIMARY KEY, v int NOT NULL)')
        conn.execute('INSERT INTO "User Data"."e-mail" SELECT g, g FROM generate_series(1, 200) g')
    return '"User Data"."e-mail"'


def test_ddl_behind_a_long_transaction_retries_while_other_sessions_keep_flowing(server, table) -> None:
    holder = psycopg.connect(**server.target().conninfo_params())
    holder.execute('SELECT count(*) FROM "User Data"."e-mail"')  # ACCESS SHARE until the transaction ends
    retries: list[str] = []
    released = threading.Event()
    stop = threading.Event()
    waits: list[float] = []

    def application() -> None:
        with connect(server.target()) as conn:
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                conn.execute('UPDATE "User Data"."e-mail" SET v = v + 1 WHERE id = %s', (i % 200 + 1,))
                waits.append(time.monotonic() - t0)

    def log(line: str) -> None:
        retries.append(line)
        if len(retries) >= 3 and not released.is_set():
            released.set()
            holder.rollback()  # the long transaction ends once the DDL has given way three times

    app = threading.Thread(target=application)
    app.start()
    try:
        with connect(server.target()) as conn:
            outcome = run_ddl(conn, 'ALTER TABLE "User Data"."e-mail" ADD COLUMN IF NOT EXISTS note text',
                              table=table, settings=FAST, log=log)
    finally:
        stop.set()
        app.join()
        holder.close()
    assert outcome.attempts >= 4
    assert "blocked by pid" in retries[0] and "SELECT" in retries[0]
    # While the ALTER waited, the application's UPDATEs queued behind it, but never past one lock timeout
    # (plus slack for a loaded machine); without the timeout they would wait for the whole long transaction.
    assert len(waits) > 10
    assert max(waits) < FAST.lock_timeout.total_seconds() + 1.5
    with connect(server.target()) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'User Data' "
                            "AND column_name = 'note'").fetchone()[0] == 1


def test_gives_up_with_a_transient_error_naming_table_and_blocker_no_values(server, table) -> None:
    holder = psycopg.connect(**server.target().conninfo_params())
    holder.execute('UPDATE "User Data"."e-mail" SET v = 424242 WHERE id = 1')
    holder_pid = holder.info.backend_pid
    try:
        with connect(server.target()) as conn, pytest.raises(TransientError) as caught:
            run_ddl(conn, 'ALTER TABLE "User Data"."e-mail" ADD COLUMN IF NOT EXISTS note2 text', table=table,
                    settings=DdlSettings(lock_timeout=timedelta(milliseconds=50), max_attempts=2,
                                         backoff_initial=timedelta(milliseconds=10)), log=lambda _: None)
    finally:
        holder.close()
    message = str(caught.value)
    assert table in message and f"pid {holder_pid}" in message and "UPDATE" in message
    assert "424242" not in message


def test_concurrent_index_runs_outside_a_transaction_and_an_invalid_leftover_is_rebuilt(server, table) -> None:
    statement = 'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS v_unique ON "User Data"."e-mail" (v)'
    with connect(server.target()) as conn:
        conn.execute('UPDATE "User Data"."e-mail" SET v = 1 WHERE id = 2')  # a duplicate: the build fails half-way
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(statement)
        assert index_state(conn, "User Data", "v_unique") == "invalid"
        conn.execute('UPDATE "User Data"."e-mail" SET v = 2 WHERE id = 2')
        # IF NOT EXISTS alone would accept the invalid index; the helper drops it and builds a valid one.
        create_index_concurrently(conn, statement, "User Data", "v_unique", table=table, settings=FAST)
        assert index_state(conn, "User Data", "v_unique") == "valid"
        # A build that fails for good leaves nothing behind.
        conn.execute("DROP INDEX \"User Data\".v_unique")
        conn.execute('UPDATE "User Data"."e-mail" SET v = 1 WHERE id = 2')
        with pytest.raises(psycopg.errors.UniqueViolation):
            create_index_concurrently(conn, statement, "User Data", "v_unique", table=table, settings=FAST)
        assert index_state(conn, "User Data", "v_unique") == "missing"
        # Never inside a transaction block: an autocommit connection is required.
    with connect(server.target(), autocommit=False) as conn, pytest.raises(ValueError):
        run_ddl(conn, statement, table=table, outside_transaction=True)
