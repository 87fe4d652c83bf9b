"""The backfill against a real server: kill -9 mid-walk resumes from its checkpoint; a rename keeps two
application versions (one writing the old column, one the new) consistent throughout, no write lost."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from pgwarden.engine.migrations import expand_contract as ec
from pgwarden.engine.postgres import connect
from tests.harness.engine_child import REPO_ROOT, kill_group, wait_for_line
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

SCHEMA = """
DROP SCHEMA IF EXISTS "User Data" CASCADE;
DROP SCHEMA IF EXISTS pgwarden CASCADE;
CREATE SCHEMA "User Data";
CREATE TABLE "User Data".people (id bigint PRIMARY KEY, "e-mail" text NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO "User Data".people SELECT g, 'u' || g || '@example.org', 0 FROM generate_series(1, %(rows)s) g;
ANALYZE "User Data".people;
"""
RENAME = "operations:\n  - rename_column: {table: '\"User Data\".people', from: '\"e-mail\"', to: '\"E Mail\"'}\n"
CHANGE = ("operations:\n  - change_column_type: {table: '\"User Data\".people', column: n, type: bigint, "
          "up: 'n * 10', down: 'n10 / 10', to: n10}\n")
PENDING_RENAME = 'SELECT count(*) FROM "User Data".people WHERE "E Mail" IS DISTINCT FROM "e-mail"'


@pytest.fixture(scope="module")
def server():
    with postgres_server() as pg:
        yield pg


def reset(server, rows: int) -> None:
    with connect(server.target()) as conn:
        psycopg.ClientCursor(conn).execute(SCHEMA, {"rows": rows})


def scalar(server, query: str):
    with connect(server.target()) as conn:
        return conn.execute(query).fetchone()[0]


def test_kill_9_mid_backfill_resumes_from_its_checkpoint_no_row_missed_or_walked_twice(server, tmp_path) -> None:
    reset(server, 3000)
    path = tmp_path / "021_change.yaml"
    path.write_text(CHANGE)
    ec.expand(server.target(), path, log=lambda _: None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k.startswith("PGWARDEN_")}
    env.update(server.target().tool_env(), PGWARDEN_CHILD_MIGRATION=str(path))
    child = subprocess.Popen([sys.executable, "-u", "-m", "tests.harness.backfill_child"], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_line(child, "rows in", timeout=120)  # a progress line: batches are committing
    finally:
        kill_group(child)
    walked = scalar(server, "SELECT rows_walked FROM pgwarden.backfill_checkpoints")
    assert 0 < walked < 3000, "killed mid-walk"
    assert scalar(server, 'SELECT count(*) FROM "User Data".people WHERE n10 IS NULL') == 3000 - walked
    log: list[str] = []
    result = ec.backfill(server.target(), path, log=log.append).backfills[0]
    assert result.resumed and result.finished and result.inconsistent_rows == 0
    assert any("resuming after key" in line for line in log)
    # The checkpoint moved with each committed batch: every row walked exactly once over both runs.
    assert result.rows_walked == 3000 and result.rows_updated == 3000
    assert scalar(server, 'SELECT count(*) FROM "User Data".people WHERE n10 IS DISTINCT FROM n * 10') == 0


class Writer(threading.Thread):
    """One application version: updates its own rows and inserts new ones through ONE column name."""

    def __init__(self, server, column: str, parity: int, first_new_id: int) -> None:
        super().__init__(daemon=True)
        self.server, self.column, self.parity, self.next_id = server, column, parity, first_new_id
        self.written: dict[int, str] = {}
        self.errors: list[str] = []
        self.writes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        column = psycopg.sql.Identifier(self.column)
        update = psycopg.sql.SQL('UPDATE "User Data".people SET {} = %s WHERE id = %s').format(column)
        insert = psycopg.sql.SQL('INSERT INTO "User Data".people (id, {}) VALUES (%s, %s)').format(column)
        with connect(self.server.target()) as conn:
            i = 0
            while not self.stop.is_set():
                i += 1
                row_id = (i * 37) % 300 * 2 + self.parity + 1  # old writer: odd ids, new writer: even ids
                value = f"{self.column}-{i}@example.org"
                try:
                    if i % 3:
                        conn.execute(update, (value, row_id))
                    else:
                        row_id, self.next_id = self.next_id, self.next_id + 1
                        conn.execute(insert, (row_id, value))
                    self.written[row_id] = value
                    self.writes += 1
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc.diag.message_primary}")
                    if len(self.errors) > 20:
                        return

    def wait_for(self, more: int) -> None:
        target = self.writes + more
        deadline = time.monotonic() + 60
        while self.writes < target and not self.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.writes >= target, self.errors


def test_rename_with_a_writer_on_the_old_column_and_one_on_the_new_loses_no_write(server, tmp_path) -> None:
    reset(server, 600)
    path = tmp_path / "022_rename.yaml"
    path.write_text(RENAME)
    target, quiet = server.target(), (lambda _: None)
    old = Writer(server, "e-mail", 0, 100_000)
    new = Writer(server, "E Mail", 1, 200_000)
    old.start()
    try:
        old.wait_for(30)
        ec.expand(target, path, log=quiet)
        new.start()
        new.wait_for(30)
        ec.backfill(target, path, log=quiet)
        old.wait_for(30)
        new.wait_for(30)
        assert scalar(server, PENDING_RENAME) == 0  # both columns agree while both versions write
        old.stop.set()
        old.join()
        ec.contract(target, path, log=quiet)  # the old version retired; the new one keeps writing
        new.wait_for(30)
    finally:
        old.stop.set()
        new.stop.set()
        old.join()
        new.join()
    assert old.errors == [] and new.errors == []
    with connect(target) as conn:
        final = dict(conn.execute('SELECT id, "E Mail" FROM "User Data".people').fetchall())
    lost = {i: v for writer in (old, new) for i, v in writer.written.items() if final.get(i) != v}
    assert lost == {}
    assert len(final) == 600 + sum(1 for w in (old, new) for i in w.written if i >= 100_000)
    assert scalar(server, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0


def test_backfill_waits_while_the_server_is_busier_than_its_limit_then_gives_up_retryably(server, tmp_path) -> None:
    from datetime import timedelta

    from pgwarden.engine.errors import TransientError
    from pgwarden.engine.migrations.backfill import BackfillSettings

    reset(server, 100)
    path = tmp_path / "023_rename.yaml"
    path.write_text(RENAME)
    ec.expand(server.target(), path, log=lambda _: None)
    busy = psycopg.connect(**server.target().conninfo_params(), autocommit=True)

    def sleep_on_server() -> None:
        with contextlib.suppress(psycopg.errors.QueryCanceled):
            busy.execute("SELECT pg_sleep(30)")

    sleeper = threading.Thread(target=sleep_on_server, daemon=True)
    sleeper.start()
    log: list[str] = []
    try:
        settings = BackfillSettings(max_active_sessions=0, throttle_check_every=timedelta(milliseconds=100),
                                    max_throttle_wait=timedelta(milliseconds=500))
        deadline = time.monotonic() + 30
        while scalar(server, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                             "'%pg_sleep(30)%' AND pid <> pg_backend_pid()") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(TransientError, match="active sessions > 0"):
            ec.backfill(server.target(), path, settings=settings, log=log.append)
    finally:
        with connect(server.target()) as conn:
            conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                         "AND pid <> pg_backend_pid()")
        sleeper.join()
        busy.close()
    assert any("backfill throttled: 1 active sessions > 0" in line for line in log)
    assert scalar(server, PENDING_RENAME) == 100  # nothing written while throttled
    result = ec.backfill(server.target(), path, log=lambda _: None).backfills[0]
    assert result.finished and scalar(server, PENDING_RENAME) == 0


def test_backfill_waits_while_the_standby_replay_lags(server, tmp_path) -> None:
    from datetime import timedelta

    from pgwarden.engine.errors import TransientError
    from pgwarden.engine.migrations.backfill import BackfillSettings
    from tests.harness.standby import hot_standby

    reset(server, 100)
    path = tmp_path / "024_rename.yaml"
    path.write_text(RENAME)
    ec.expand(server.target(), path, log=lambda _: None)
    with hot_standby(server) as standby:
        settings = BackfillSettings(standby=standby.target(), max_replay_lag=timedelta(milliseconds=100),
                                    throttle_check_every=timedelta(milliseconds=100),
                                    max_throttle_wait=timedelta(milliseconds=600))
        with connect(standby.target()) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        with connect(server.target()) as conn:  # WAL the paused standby receives but does not replay
            conn.execute("CREATE TABLE IF NOT EXISTS lag_maker (x int); INSERT INTO lag_maker VALUES (1)")
        log: list[str] = []
        with pytest.raises(TransientError, match="standby replay lag"):
            ec.backfill(server.target(), path, settings=settings, log=log.append)
        assert scalar(server, PENDING_RENAME) == 100  # nothing written while the standby lagged
        with connect(standby.target()) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        result = ec.backfill(server.target(), path, settings=settings, log=log.append).backfills[0]
    assert result.finished and scalar(server, PENDING_RENAME) == 0
    assert any("backfill throttled: standby replay lag" in line for line in log)
