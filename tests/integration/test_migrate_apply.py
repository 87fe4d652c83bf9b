"""Plain versioned migrations against a real server: apply, refuse, roll back, survive kill -9 and a rival."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgwarden.core.config import RepositoryConfig
from pgwarden.core.migrations.config import MigrationsConfig
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.migrations.apply import apply_pending, rollback_to
from pgwarden.engine.migrations.history import read_history
from pgwarden.engine.migrations.lint import LintFailed
from pgwarden.engine.migrations.loader import MigrationsRefused
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository.file import FileRepository
from tests.harness.engine_child import kill_group, wait_for_line
from tests.harness.migrate_child import spawn
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

CREATE_ACCOUNTS = ("CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n"
                   "INSERT INTO accounts VALUES (1, 'a@example.org');\n")
DROP_ACCOUNTS = "-- squawk-ignore ban-drop-table\nDROP TABLE accounts;\n"
ADD_NICKNAME = "ALTER TABLE accounts ADD COLUMN nickname text;\n"
DROP_NICKNAME = "-- squawk-ignore ban-drop-column\nALTER TABLE accounts DROP COLUMN nickname;\n"
# Blocks inside the migration's transaction while the test holds advisory lock 4242.
GATED = "INSERT INTO accounts VALUES (2, 'b@example.org');\nSELECT pg_advisory_xact_lock(4242);\n"
UNGATE = "DELETE FROM accounts WHERE id = 2;\n"


@pytest.fixture(scope="module")
def server():
    with postgres_server() as pg:
        yield pg


@pytest.fixture
def db(server, request):
    """A fresh database per test on the shared server."""
    name = "m_" + request.node.name.removeprefix("test_")[:40].lower()
    with connect(server.target()) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.target(dbname=name)


@pytest.fixture
def repo(tmp_path: Path) -> FileRepository:
    (tmp_path / "repo").mkdir()
    return FileRepository(RepositoryConfig(url=f"file://{tmp_path / 'repo'}"))


def write(folder: Path, files: dict[str, str | bytes]) -> MigrationsConfig:
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return MigrationsConfig(path=str(folder), lock_timeout="200ms")


def scalar(target, query: str):
    with connect(target) as conn:
        return conn.execute(query).fetchone()[0]


def test_apply_records_history_with_restore_points_then_rollback_to(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
                                    "002_nickname.sql": ADD_NICKNAME, "002_nickname.down.sql": DROP_NICKNAME})
    logs: list[str] = []
    result = apply_pending(db, repo, "appdb", config, log=logs.append)
    assert [a["version"] for a in result.applied] == [1, 2]
    with connect(db) as conn:
        rows = read_history(conn)
    assert [(r.version, r.status, r.phase) for r in rows] == [(1, "applied", "apply"), (2, "applied", "apply")]
    assert all(r.restore_point and r.restore_point_lsn for r in rows)
    assert [p["status"] for p in rows[0].phases] == ["running", "applied"]
    # the restore point is recorded in the repository too, so a PITR target is one copy away
    assert list(repo.root.rglob(f"{rows[1].restore_point}.json"))
    assert scalar(db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'nickname'") == 1

    again = apply_pending(db, repo, "appdb", config, log=logs.append)
    assert again.applied == [] and again.pending == 0

    back = rollback_to(db, repo, "appdb", config, 1, log=logs.append)
    assert [r["version"] for r in back.rolled_back] == [2]
    assert scalar(db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'nickname'") == 0
    with connect(db) as conn:
        rows = read_history(conn)
    assert [(r.version, r.status) for r in rows] == [(1, "applied"), (2, "rolled_back")]
    assert rows[1].phases[-1]["phase"] == "rollback" and rows[1].phases[-1]["status"] == "rolled_back"
    # a rolled-back migration is pending again (and may be edited before it is)
    (tmp_path / "m" / "002_nickname.sql").write_text("ALTER TABLE accounts ADD COLUMN nickname text DEFAULT '';\n")
    assert [a["version"] for a in apply_pending(db, repo, "appdb", config, log=logs.append).applied] == [2]


def test_edited_applied_migration_is_refused_but_crlf_only_is_not_a_change(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS})
    apply_pending(db, repo, "appdb", config, log=lambda _: None)
    up = tmp_path / "m" / "001_accounts.sql"
    up.write_bytes(CREATE_ACCOUNTS.replace("\n", "\r\n").encode())
    assert apply_pending(db, repo, "appdb", config, log=lambda _: None).applied == []
    up.write_text(CREATE_ACCOUNTS.replace(";\n", "; \n", 1))  # one trailing space: a change
    with pytest.raises(MigrationsRefused, match=r"001_accounts.sql: changed after it was applied"):
        apply_pending(db, repo, "appdb", config, log=lambda _: None)


def test_unsafe_ddl_is_refused_by_lint_before_anything_runs(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {
        "001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
        "002_index.sql": "-- blocks writes while it builds\n\nCREATE INDEX accounts_email ON accounts (email);\n",
        "002_index.down.sql": "DROP INDEX accounts_email;\n"})
    with pytest.raises(LintFailed) as refused:
        apply_pending(db, repo, "appdb", config, log=lambda _: None)
    assert "002_index.sql:3: require-concurrent-index-creation" in str(refused.value)
    with connect(db) as conn:
        assert [(r.version, r.status) for r in read_history(conn)] == [(1, "applied")]


def test_failing_migration_names_file_and_line_and_leaves_nothing(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {
        "001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
        "002_bad.sql": "ALTER TABLE accounts ADD COLUMN a text;\n\nALTER TABLE nowhere ADD COLUMN b text;\n",
        "002_bad.down.sql": "SELECT 1;\n"})
    with pytest.raises(PermanentError, match=r"002_bad.sql:3: failed with SQLSTATE 42P01"):
        apply_pending(db, repo, "appdb", config, log=lambda _: None)
    assert scalar(db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'a'") == 0
    with connect(db) as conn:
        assert [(r.version, r.status) for r in read_history(conn)] == [(1, "applied"), (2, "failed")]


def _wait_for_gated_backend(db, timeout: float = 30) -> None:
    """Until a 'pgwarden migrate' session waits for advisory lock 4242 (the migration is mid-transaction)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scalar(db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                      "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = 4242 "
                      "AND a.application_name = 'pgwarden migrate'"):
            return
        time.sleep(0.05)
    raise AssertionError("the applier never reached the gated migration")


def test_kill_9_mid_apply_then_rerun_converges(db, repo, tmp_path) -> None:
    folder = tmp_path / "m"
    write(folder, {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
                   "002_gated.sql": GATED, "002_gated.down.sql": UNGATE})
    gate = psycopg.connect(**db.conninfo_params(), autocommit=True)
    gate.execute("SELECT pg_advisory_lock(4242)")
    child = spawn(db, str(folder), repo.url, "appdb", lock_timeout="60s")
    try:
        wait_for_line(child, "002_gated: restore point", timeout=60)
        _wait_for_gated_backend(db)
    finally:
        kill_group(child)
    gate.execute("SELECT pg_advisory_unlock(4242)")
    gate.close()
    with connect(db) as conn:
        assert [(r.version, r.status) for r in read_history(conn)] == [(1, "applied"), (2, "running")]
    result = apply_pending(db, repo, "appdb", MigrationsConfig(path=str(folder)), log=lambda _: None)
    assert [a["version"] for a in result.applied] == [2]
    assert scalar(db, "SELECT count(*) FROM accounts WHERE id = 2") == 1
    with connect(db) as conn:
        rows = read_history(conn)
    assert [(r.version, r.status) for r in rows] == [(1, "applied"), (2, "applied")]
    assert [p["status"] for p in rows[1].phases] == ["running", "running", "applied"]


def test_concurrent_appliers_are_serialized(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
                                    "002_gated.sql": GATED, "002_gated.down.sql": UNGATE})
    config = config.model_copy(update={"lock_timeout": MigrationsConfig().statement_timeout})
    gate = psycopg.connect(**db.conninfo_params(), autocommit=True)
    gate.execute("SELECT pg_advisory_lock(4242)")
    results: dict[str, object] = {}

    def applier(name: str) -> None:
        try:
            results[name] = apply_pending(db, repo, "appdb", config, log=lambda _: None)
        except Exception as exc:  # reported by the assertion below
            results[name] = exc

    first = threading.Thread(target=applier, args=("first",))
    first.start()
    _wait_for_gated_backend(db)
    second = threading.Thread(target=applier, args=("second",))
    second.start()
    deadline = time.monotonic() + 30
    while not scalar(db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                         "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid <> 4242 "
                         "AND a.application_name = 'pgwarden migrate'"):
        assert time.monotonic() < deadline, "the second applier never waited for the first"
        time.sleep(0.05)
    gate.execute("SELECT pg_advisory_unlock(4242)")
    gate.close()
    first.join(60)
    second.join(60)
    applied = sorted(len(r.applied) for r in results.values())  # type: ignore[union-attr]
    assert applied == [0, 2]
    assert scalar(db, "SELECT count(*) FROM accounts WHERE id = 2") == 1


def test_folder_refusals_change_nothing(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
                                    "002_nickname.sql": ADD_NICKNAME, "003_x.sql": ADD_NICKNAME,
                                    "003_x.down.sql": DROP_NICKNAME, "003_y.yaml": "[]\n",
                                    "005_z.sql": ADD_NICKNAME, "005_z.down.sql": DROP_NICKNAME})
    with pytest.raises(MigrationsRefused) as refused:
        apply_pending(db, repo, "appdb", config, log=lambda _: None)
    message = str(refused.value)
    assert "002_nickname.sql: has no down file" in message
    assert "003_y.yaml: has the same version 003 as 003_x.sql" in message
    assert "005_z.down.sql: follows a gap: version(s) 004 missing" in message
    assert scalar(db, "SELECT to_regclass('accounts') IS NULL")


def test_renumbered_applied_migration_is_refused(db, repo, tmp_path) -> None:
    folder = tmp_path / "m"
    config = write(folder, {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
                            "002_nickname.sql": ADD_NICKNAME, "002_nickname.down.sql": DROP_NICKNAME})
    apply_pending(db, repo, "appdb", config, log=lambda _: None)
    # A branch renumbered: the applied 002 became 003 and a new 002 slipped in before it.
    (folder / "002_nickname.sql").rename(folder / "003_nickname.sql")
    (folder / "002_nickname.down.sql").rename(folder / "003_nickname.down.sql")
    write(folder, {"002_other.sql": "SELECT 1;\n", "002_other.down.sql": "SELECT 1;\n"})
    with pytest.raises(MigrationsRefused) as refused:
        apply_pending(db, repo, "appdb", config, log=lambda _: None)
    assert "002_other.sql: replaces the applied migration 002_nickname" in str(refused.value)


def test_one_active_expand_contract_migration_per_table(db, tmp_path) -> None:
    from pgwarden.core.migrations.file import discover
    from pgwarden.engine.migrations import history as hist

    migrations, _ = discover({"001_rename.yaml": b"operations: []\n", "002_index.yaml": b"operations: []\n",
                              "003_other.yaml": b"operations: []\n"})
    first, second, other = migrations
    run = hist.RunInfo(dag_id="appdb.migrate.001_rename", run_id="manual__1", try_number=1)
    with connect(db) as conn:
        hist.ensure_history(conn)
        hist.start_phase(conn, first, "expand", run, tables=["public.users"])
        hist.start_phase(conn, other, "expand", run, tables=["public.orders"])  # another table: fine
        with pytest.raises(PermanentError, match=r"002_index.yaml changes public.users, but 001_rename is "
                                                 r"still active on it \(phase expand, running\)"):
            hist.start_phase(conn, second, "expand", run, tables=["public.sessions", "public.users"])
        assert [r.version for r in hist.read_history(conn)] == [1, 3]  # the refused start left no row
        with conn.transaction():
            conn.execute(hist.finish_phase_statement(1, "contract", "applied", run))
        hist.start_phase(conn, second, "expand", run, tables=["public.sessions", "public.users"])
        rows = {r.version: r for r in hist.read_history(conn)}
    assert rows[2].target_table == "public.sessions, public.users" and rows[1].status == "applied"


def test_demo_migrations_apply_to_the_demo_schema_and_stop_before_expand_contract(db, repo) -> None:
    root = Path(__file__).resolve().parents[2]
    with connect(db) as conn:
        psycopg.ClientCursor(conn).execute((root / "include/sql/demo/schema.sql").read_text())
    config = MigrationsConfig(path=str(root / "include/sql/migrations/appdb"))
    result = apply_pending(db, repo, "appdb", config, log=lambda _: None)
    assert [a["version"] for a in result.applied] == [1]
    assert result.stopped_at == "002_rename_users_email" and result.pending == 2
    assert scalar(db, "SELECT to_regclass('user_preferences') IS NOT NULL")
    assert [r["version"] for r in rollback_to(db, repo, "appdb", config, 0, log=lambda _: None).rolled_back] == [1]
    assert scalar(db, "SELECT to_regclass('user_preferences') IS NULL")


def test_lock_timeout_retries_until_a_long_transaction_ends(db, repo, tmp_path) -> None:
    folder = tmp_path / "m"
    config = write(folder, {"001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS})
    apply_pending(db, repo, "appdb", config, log=lambda _: None)
    write(folder, {"002_nickname.sql": ADD_NICKNAME, "002_nickname.down.sql": DROP_NICKNAME})
    holder = psycopg.connect(**db.conninfo_params())
    holder.execute("SELECT count(*) FROM accounts")  # ACCESS SHARE until this transaction ends
    logs: list[str] = []
    retried = threading.Event()
    done: dict[str, object] = {}

    def log(message: str) -> None:
        logs.append(message)
        if "lock not granted" in message:
            retried.set()

    def applier() -> None:
        done["result"] = apply_pending(db, repo, "appdb", config, log=log)

    thread = threading.Thread(target=applier)
    thread.start()
    assert retried.wait(60), logs
    holder.commit()  # the long transaction ends: the next attempt gets its lock
    holder.close()
    thread.join(60)
    applied = done["result"].applied  # type: ignore[union-attr]
    assert [a["version"] for a in applied] == [2] and applied[0]["attempts"] > 1
    assert scalar(db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'nickname'") == 1


def test_a_failure_never_quotes_row_values(db, repo, tmp_path) -> None:
    config = write(tmp_path / "m", {
        "001_accounts.sql": CREATE_ACCOUNTS, "001_accounts.down.sql": DROP_ACCOUNTS,
        "002_cast.sql": "UPDATE accounts SET id = email::bigint;\n", "002_cast.down.sql": "SELECT 1;\n"})
    with pytest.raises(PermanentError) as failed:
        apply_pending(db, repo, "appdb", config, log=lambda _: None)
    assert "002_cast.sql:1: failed with SQLSTATE 22P02" in str(failed.value)
    assert "example.org" not in str(failed.value) and failed.value.__cause__ is None


def test_applier_lock_wait_runs_out_naming_the_holder(db) -> None:
    from datetime import timedelta

    from pgwarden.engine.errors import TransientError
    from pgwarden.engine.migrations.history import applier_lock

    with connect(db) as first, connect(db) as second, applier_lock(first, "appdb", timedelta(seconds=1)):
        holder = first.info.backend_pid
        with pytest.raises(TransientError, match=rf"backend pid {holder}\) still holds the lock"):
            with applier_lock(second, "appdb", timedelta(milliseconds=100)):
                pass
        with applier_lock(second, "otherdb", timedelta(milliseconds=100)):  # another database: no wait
            pass
