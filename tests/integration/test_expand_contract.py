"""Every expand/contract operation through expand, backfill, contract and rollback on a real server.

Names that need quoting throughout (``"User Data"."people"``, ``"e-mail"``, ``"order"``). Rollback after
each phase leaves ``pg_dump --schema-only`` of the table identical and every row as it was.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from pgwarden.engine.migrations import expand_contract as ec
from pgwarden.engine.migrations.backfill import BackfillSettings
from pgwarden.engine.pgtools import tool
from pgwarden.engine.postgres import connect
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

SCHEMA = """
DROP SCHEMA IF EXISTS "User Data" CASCADE;
DROP SCHEMA IF EXISTS pgwarden CASCADE;
CREATE SCHEMA "User Data";
CREATE TABLE "User Data".teams (id bigint PRIMARY KEY);
INSERT INTO "User Data".teams VALUES (1), (2);
CREATE TABLE "User Data".people (
    id bigint PRIMARY KEY, "e-mail" text NOT NULL, age int, "order" int, code text, "team id" bigint,
    CONSTRAINT "people code" UNIQUE (code));
CREATE INDEX "people age" ON "User Data".people (age);
INSERT INTO "User Data".people
SELECT g, 'u' || g || '@example.org', CASE WHEN g % 7 = 0 THEN NULL ELSE g % 90 END, g, 'c' || g, 1 + g % 2
  FROM generate_series(1, 600) g;
ANALYZE "User Data".people;
"""
T = '\'"User Data".people\''

# (operation YAML, query true in the final state after contract)
CASES = {
    "rename_column": (f'rename_column: {{table: {T}, from: \'"e-mail"\', to: \'"E Mail"\'}}',
                      """SELECT count(*) = 600 AND bool_and("E Mail" = 'u' || id || '@example.org')
                           FROM "User Data".people"""),
    "change_column_type": (f'change_column_type: {{table: {T}, column: \'"order"\', type: text, '
                           f'up: \'"order"::text || \'\'!\'\'\', down: \'rtrim("order", \'\'!\'\')::int\'}}',
                           """SELECT bool_and("order" = id || '!') FROM "User Data".people"""),
    "add_column": (f'add_column: {{table: {T}, column: \'"is active"\', type: boolean, default: "true", '
                   f'not_null: true}}',
                   """SELECT bool_and("is active") AND (SELECT attnotnull FROM pg_attribute WHERE attrelid =
                      '"User Data".people'::regclass AND attname = 'is active') FROM "User Data".people"""),
    "set_not_null": (f"set_not_null: {{table: {T}, column: age, fill: '-1'}}",
                     """SELECT count(*) FILTER (WHERE age = -1) = 85 AND (SELECT attnotnull FROM pg_attribute
                        WHERE attrelid = '"User Data".people'::regclass AND attname = 'age') FROM "User Data".people"""),
    "drop_not_null": (f'drop_not_null: {{table: {T}, column: \'"e-mail"\'}}',
                      """SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = '"User Data".people'::regclass
                         AND attname = 'e-mail'"""),
    "add_check": (f'add_check: {{table: {T}, name: \'"age ok"\', check: \'age >= 0\'}}',
                  """SELECT convalidated FROM pg_constraint WHERE conname = 'age ok'"""),
    "add_foreign_key": (f'add_foreign_key: {{table: {T}, name: \'"people team"\', columns: [\'"team id"\'], '
                        f"references: {{table: '\"User Data\".teams', columns: [id]}}, on_delete: cascade}}",
                        """SELECT convalidated AND contype = 'f' FROM pg_constraint WHERE conname = 'people team'"""),
    "add_unique": (f'add_unique: {{table: {T}, name: \'"unique order"\', columns: [\'"order"\']}}',
                   """SELECT contype = 'u' FROM pg_constraint WHERE conname = 'unique order'"""),
    "create_index": (f'create_index: {{table: {T}, name: \'"by e-mail"\', columns: [\'"e-mail"\'], '
                     f"where: 'age > 10'}}",
                     """SELECT indisvalid FROM pg_index WHERE indexrelid = '"User Data"."by e-mail"'::regclass"""),
    "drop_index": ('drop_index: {index: \'"User Data"."people age"\'}',
                   """SELECT to_regclass('"User Data"."people age"') IS NULL"""),
    "drop_column": (f'drop_column: {{table: {T}, column: \'"order"\'}}',
                    """SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '"User Data".people'::regclass
                       AND attname = 'order' AND NOT attisdropped)"""),
    "add_soft_delete": (f"add_soft_delete: {{table: {T}}}",
                        """SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'people code')
                           AND EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'people'
                                       AND indexdef LIKE '%UNIQUE%WHERE (deleted_at IS NULL)%')"""),
    "raw_sql": ("raw_sql: {up: 'COMMENT ON TABLE \"User Data\".people IS ''people''', "
                "down: 'COMMENT ON TABLE \"User Data\".people IS NULL', table: " + T + "}",
                """SELECT obj_description('"User Data".people'::regclass) = 'people'"""),
}
QUIET = BackfillSettings()


@pytest.fixture(scope="module")
def server():
    with postgres_server() as pg:
        yield pg


def reset(server) -> None:
    with connect(server.target()) as conn:
        psycopg.ClientCursor(conn).execute(SCHEMA)


def dump(server) -> str:
    out = subprocess.run([tool("pg_dump"), "--schema-only", "-t", '"User Data".people', "-t", '"User Data".teams'],
                         env=server.target().tool_env(), capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict")))


def rows(server) -> str:
    with connect(server.target()) as conn:
        return conn.execute('SELECT md5(string_agg(p::text, \',\' ORDER BY id)) FROM "User Data".people p').fetchone()[0]


def leftovers(server) -> list[str]:
    with connect(server.target()) as conn:
        return [r[0] for r in conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgwarden' "
            "UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()]


def migration(tmp_path: Path, body: str, version: str = "007") -> Path:
    path = tmp_path / f"{version}_change.yaml"
    path.write_text(f"operations:\n  - {body}\n")
    return path


def ask(server, query: str) -> bool:
    with connect(server.target()) as conn:
        return bool(conn.execute(query).fetchone()[0])


@pytest.mark.parametrize("kind", sorted(CASES))
def test_operation_rolls_back_after_each_phase_and_contracts(server, tmp_path, kind) -> None:
    body, final = CASES[kind]
    path = migration(tmp_path, body)
    target = server.target()
    reset(server)
    before_schema, before_rows = dump(server), rows(server)
    log: list[str] = []
    # Rollback after expand, then after backfill: the table is exactly as before, nothing left behind.
    for phases in ((ec.expand,), (ec.expand, ec.backfill)):
        for phase in phases:
            phase(target, path, log=log.append)
        ec.rollback(target, path, log=log.append)
        assert dump(server) == before_schema, kind
        assert leftovers(server) == []
        if kind != "set_not_null":  # its backfill's filled values are data and stay (documented)
            assert rows(server) == before_rows
    # The whole way, each phase run twice (a re-run after a kill converges), then the final state.
    reset(server)
    for phase in (ec.expand, ec.expand, ec.backfill, ec.backfill, ec.contract, ec.contract):
        phase(target, path, log=log.append)
    assert ask(server, final), kind
    assert leftovers(server) == []


def test_phases_out_of_order_are_refused(server, tmp_path) -> None:
    from pgwarden.engine.errors import PermanentError

    reset(server)
    path = migration(tmp_path, CASES["rename_column"][0])
    quiet = lambda _: None  # noqa: E731
    with pytest.raises(PermanentError, match="needs expand to have run first"):
        ec.contract(server.target(), path, log=quiet)
    for phase in (ec.expand, ec.backfill, ec.contract):
        phase(server.target(), path, log=quiet)
    for phase in (ec.rollback, ec.expand, ec.backfill):
        with pytest.raises(PermanentError, match="contract already completed"):
            phase(server.target(), path, log=quiet)
    assert ask(server, CASES["rename_column"][1])
    assert leftovers(server) == []


@pytest.mark.parametrize(("body", "expected"), [
    ("rename_column: {table: '\"User Data\".nope', from: a, to: b}",
     'operations[0].rename_column.table: table "User Data".nope does not exist'),
    (f"rename_column: {{table: {T}, from: nope, to: b}}",
     'operations[0].rename_column.from: column "nope" does not exist'),
    (f"change_column_type: {{table: {T}, column: '\"order\"', type: int, up: '\"order\" + point(0, 0)', "
     f"down: '\"order\"'}}",
     "operations[0].change_column_type.up: the server rejects it: operator does not exist"),
    (f"change_column_type: {{table: {T}, column: '\"order\"', type: no_such_type, up: '\"order\"', "
     f"down: '\"order\"'}}",
     'operations[0].change_column_type.type: the server rejects it: type "no_such_type" does not exist'),
    ("rename_column: {table: keyless, from: a, to: c}",
     "operations[0].rename_column.table: table public.keyless has no primary key and no unique index"),
])
def test_plan_errors_name_file_operation_and_field(server, tmp_path, body, expected) -> None:
    reset(server)
    with connect(server.target()) as conn:
        conn.execute("DROP TABLE IF EXISTS keyless; CREATE TABLE keyless (a int, b int UNIQUE)")
    with pytest.raises(ValueError) as caught:
        ec.expand(server.target(), migration(tmp_path, body, "012"), log=lambda _: None)
    assert str(caught.value).startswith("012_change.yaml: ")
    assert expected in str(caught.value)
    assert leftovers(server) == []


def test_generated_sql_of_every_operation_lints_clean_and_unsafe_raw_sql_fails_the_plan(server, tmp_path) -> None:
    from pgwarden.core.migrations.spec import parse_spec
    from pgwarden.engine.migrations.lint import LintFailed, lint_sql

    reset(server)
    with connect(server.target()) as conn:
        for kind, (body, _) in sorted(CASES.items()):
            migration_plan = ec.plan(conn, parse_spec(f"operations:\n  - {body}\n", "007_change.yaml"))
            assert ec.lint_plan(migration_plan, pg_version="15") == [], kind
            # The excuses are needed: without them squawk would object (the lint is real).
            if kind in ("rename_column", "drop_column"):
                bare = migration_plan.phase_sql("contract").replace("-- squawk-ignore", "-- squawk-noted")
                assert {f.rule for f in lint_sql(bare, kind)} >= {"ban-drop-column"}
    unsafe = f"raw_sql: {{table: {T}, up: 'CREATE INDEX i ON \"User Data\".people (age)', down: 'DROP INDEX i'}}"
    with pytest.raises(LintFailed, match="require-concurrent-index-creation"):
        ec.expand(server.target(), migration(tmp_path, unsafe), log=lambda _: None)


def test_expand_behind_a_long_transaction_retries_while_the_application_keeps_flowing(server, tmp_path) -> None:
    import threading
    import time
    from datetime import timedelta

    from pgwarden.engine.migrations.online_ddl import DdlSettings

    reset(server)
    path = migration(tmp_path, CASES["rename_column"][0])
    settings = DdlSettings(lock_timeout=timedelta(milliseconds=200), backoff_initial=timedelta(milliseconds=50),
                           backoff_max=timedelta(milliseconds=300), max_attempts=50)
    holder = psycopg.connect(**server.target().conninfo_params())
    holder.execute('SELECT count(*) FROM "User Data".people')  # a long reader: ACCESS SHARE until it ends
    stop, waits, retries = threading.Event(), [], []

    def application() -> None:
        with connect(server.target()) as conn:
            i = 0
            while not stop.is_set():
                i += 1
                started = time.monotonic()
                conn.execute('UPDATE "User Data".people SET age = age WHERE id = %s', (i % 600 + 1,))
                waits.append(time.monotonic() - started)

    def log(line: str) -> None:
        if "lock not granted" in line:
            retries.append(line)
            if len(retries) == 3:
                holder.rollback()

    app = threading.Thread(target=application)
    app.start()
    try:
        ec.expand(server.target(), path, ddl=settings, log=log)
    finally:
        stop.set()
        app.join()
        holder.close()
    assert len(retries) >= 3 and "blocked by pid" in retries[0]
    # Queued behind the waiting ALTER for at most one lock timeout each time (slack for a loaded machine).
    assert len(waits) > 10 and max(waits) < settings.lock_timeout.total_seconds() + 1.5
    assert ask(server, "SELECT count(*) = 1 FROM pg_trigger WHERE NOT tgisinternal")


def test_the_demo_expand_contract_migrations_run_on_the_demo_schema(server) -> None:
    root = Path(__file__).resolve().parents[2]
    with connect(server.target()) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgwarden CASCADE; "
                     "CREATE SCHEMA public")
        psycopg.ClientCursor(conn).execute((root / "include/sql/demo/schema.sql").read_text())
        conn.execute("SET pgwarden.demo_users = 300; SET pgwarden.demo_sessions_per_user = 1")
        conn.execute((root / "include/sql/demo/seed.sql").read_text())
        conn.execute("ANALYZE")
    quiet = lambda _: None  # noqa: E731
    for name in ("002_rename_users_email.yaml", "003_index_orders_status.yaml"):
        path = root / "include/sql/migrations/appdb" / name
        for phase in (ec.expand, ec.backfill, ec.contract):
            phase(server.target(), path, log=quiet)
    assert ask(server, "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'users'::regclass "
                       "AND attname = 'email_address' AND NOT attisdropped)")
    assert leftovers(server) == []
    assert ask(server, "SELECT count(*) = 300 AND count(email_address) = 300 FROM users")
