"""GDPR erasure against a real server: due subjects erased once, holds and grace never touched, a dry run that
changes nothing, a bad subject failing alone without its data in the message, quoted names, every plan error."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import yaml

from pgwarden.core.lifecycle.pii import ErasureConfig, pseudonym
from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.lifecycle.erasure import ErasureFailed, RecordContext, erase_subject, erase_subjects
from pgwarden.engine.lifecycle.erasure_plan import plan_erasure
from pgwarden.engine.lifecycle.plan import PlanError
from pgwarden.engine.postgres import PgTarget, connect
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

CUTOFF = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
KEY = b"test-erasure-key-0123456789abcdef"
CONTEXT = RecordContext(database="appdb", dag_id="appdb.gdpr_erasure", run_id="manual__1", task_id="erase",
                        try_number=1)
_databases = itertools.count()

SCHEMA = """
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE CHECK (email LIKE '%@%'), name text NOT NULL,
                    phone text, deleted_at timestamptz, legal_hold boolean NOT NULL DEFAULT false);
CREATE TABLE sessions (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id), ip inet);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint REFERENCES users (id), shipping_address text,
                     total numeric NOT NULL DEFAULT 10);
CREATE TABLE order_notes (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders (id), body text);
"""

MAP = """
subject: {table: public.users, key: id}
erasable: {soft_deleted: {column: deleted_at, grace: 30d}}
legal_hold: {column: legal_hold}
hmac_key: {conn_id: erasure_key}
tables:
  - table: users
    columns: {email: redact_email, name: {constant: Deleted User}, phone: "null"}
  - {table: sessions, subject_column: user_id, columns: {ip: delete_row}}
  - {table: orders, subject_column: user_id, columns: {shipping_address: hmac}}
  - {table: order_notes, through: {table: orders, column: order_id, key: id}, columns: {body: delete_row}}
"""


def erasure_config(text: str = MAP) -> ErasureConfig:
    return ErasureConfig.model_validate(yaml.safe_load(text))


@pytest.fixture(scope="module")
def server() -> Iterator[LocalCluster]:
    with postgres_server() as cluster:
        yield cluster


@pytest.fixture
def db(server: LocalCluster) -> PgTarget:
    """A fresh database per test on the module's server."""
    name = f"erasure_{next(_databases)}"
    with connect(server.target()) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PgTarget(host="127.0.0.1", port=server.port, dbname=name)


def email(i: int) -> str:
    return f"person{i}@example.org"


def seed(target: PgTarget, users: dict[int, tuple[timedelta | None, bool]]) -> None:
    """users: id -> (deleted how long before the cutoff or None, legal hold). Two sessions, one order with a note."""
    with connect(target) as conn:
        conn.execute(SCHEMA)
        for uid, (ago, hold) in users.items():
            conn.execute("INSERT INTO users VALUES (%s, %s, %s, %s, %s, %s)",
                         (uid, email(uid), f"Name {uid}", f"+4930{uid:06d}", CUTOFF - ago if ago else None, hold))
            conn.execute("INSERT INTO sessions (user_id, ip) VALUES (%s, '10.0.0.1'), (%s, '10.0.0.2')", (uid, uid))
            order = conn.execute("INSERT INTO orders (user_id, shipping_address) VALUES (%s, %s) RETURNING id",
                                 (uid, f"{uid} Main Street, Berlin")).fetchone()[0]
            conn.execute("INSERT INTO order_notes (order_id, body) VALUES (%s, %s)", (order, f"leave at door {uid}"))


def state(target: PgTarget) -> str:
    with connect(target) as conn:
        return conn.execute(
            "SELECT md5(concat((SELECT string_agg(u::text, ',' ORDER BY id) FROM users u), "
            "(SELECT string_agg(s::text, ',' ORDER BY id) FROM sessions s), "
            "(SELECT string_agg(o::text, ',' ORDER BY id) FROM orders o), "
            "(SELECT string_agg(n::text, ',' ORDER BY id) FROM order_notes n)))").fetchone()[0]


def user_row(conn: psycopg.Connection, uid: int) -> tuple:
    return conn.execute("SELECT email, name, phone, "
                        "(SELECT count(*) FROM sessions WHERE user_id = u.id), "
                        "(SELECT shipping_address FROM orders WHERE user_id = u.id), "
                        "(SELECT count(*) FROM order_notes n JOIN orders o ON o.id = n.order_id WHERE o.user_id = u.id)"
                        " FROM users u WHERE id = %s", (uid,)).fetchone()


def ledger(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT subject_ref, record FROM pgwarden.erasure_ledger ORDER BY seq").fetchall()


def run(target: PgTarget, config: ErasureConfig | None = None, **kwargs):
    config = config or erasure_config()
    with connect(target) as conn:
        plan = plan_erasure(conn, config)
        return erase_subjects(conn, plan, CUTOFF, KEY, CONTEXT, log=lambda _m: None, **kwargs)


def test_due_subjects_are_erased_once_and_held_or_in_grace_ones_never_touched(db: PgTarget) -> None:
    seed(db, {1: (timedelta(days=40), False), 2: (timedelta(days=31), False), 3: (None, False),
              4: (timedelta(days=10), False), 5: (timedelta(days=90), True)})
    with connect(db) as conn:
        untouched = {uid: user_row(conn, uid) for uid in (3, 4, 5)}
    report = run(db)
    assert (report.selected, report.outcomes["erased"], report.outcomes["held"], report.in_grace) == (3, 2, 1, 1)
    assert report.held == ["5"] and report.rows["public.sessions"] == 4
    with connect(db) as conn:
        for uid in (1, 2):
            assert user_row(conn, uid) == (f"deleted_{uid}@invalid", "Deleted User", None, 0,
                                           pseudonym(KEY, str(uid)), 0)
        assert {uid: user_row(conn, uid) for uid in (3, 4, 5)} == untouched
        entries = ledger(conn)
        assert len(entries) == 2
        record = entries[0][1]
        assert record["kind"] == "erasure" and record["run_id"] == "manual__1" and len(record["policy_version"]) == 64
        assert {t["table"]: (t["method"], t["rows"]) for t in record["tables"]} == {
            "public.sessions": ("delete_row", 2), "public.order_notes": ("delete_row", 1),
            "public.orders": ("hmac:shipping_address", 1),
            "public.users": ("redact_email:email,constant:name,null:phone", 1)}
    before = state(db)
    again = run(db)
    assert (again.outcomes["erased"], again.outcomes["already_erased"], again.outcomes["held"]) == (0, 2, 1)
    assert state(db) == before
    with connect(db) as conn:
        assert len(ledger(conn)) == 2
        # The check under the subject's locks (what a concurrent run meets, past the run's bulk pre-filter).
        plan = plan_erasure(conn, erasure_config())
        assert erase_subject(conn, plan, "1", KEY, CONTEXT, cutoff=CUTOFF).status == "already_erased"
        assert len(ledger(conn)) == 2
    assert state(db) == before


def test_a_hold_set_between_selection_and_the_transaction_keeps_the_subject_untouched(db: PgTarget) -> None:
    seed(db, {1: (timedelta(days=40), False), 2: (timedelta(days=40), False), 3: (timedelta(days=40), False)})
    with connect(db) as conn:
        before = user_row(conn, 2)
    with connect(db) as other:  # a second session: the application's compliance tool
        def set_hold(subject_id: str) -> None:
            if subject_id == "2":
                other.execute("UPDATE users SET legal_hold = true WHERE id = 2")
            if subject_id == "3":  # undeleted after selection: no longer due
                other.execute("UPDATE users SET deleted_at = NULL WHERE id = 3")

        report = run(db, before_subject=set_hold)
    assert (report.outcomes["erased"], report.outcomes["held"], report.outcomes["not_due"]) == (1, 1, 1)
    with connect(db) as conn:
        assert user_row(conn, 2) == before
        assert user_row(conn, 3)[0] == email(3)
        assert len(ledger(conn)) == 1


def test_dry_run_counts_per_table_and_changes_nothing(db: PgTarget) -> None:
    seed(db, {1: (timedelta(days=40), False), 2: (timedelta(days=40), False), 3: (timedelta(days=40), True)})
    before = state(db)
    report = run(db, dry_run=True)
    assert report.dry_run and report.outcomes["erased"] == 2 and report.outcomes["held"] == 1
    assert dict(report.rows) == {"public.sessions": 4, "public.order_notes": 2, "public.orders": 2, "public.users": 2}
    assert state(db) == before
    with connect(db) as conn:
        assert conn.execute("SELECT to_regclass('pgwarden.erasure_ledger')").fetchone()[0] is None


def test_a_failing_subject_fails_alone_and_its_data_stays_out_of_the_message(db: PgTarget) -> None:
    seed(db, {1: (timedelta(days=40), False), 7: (timedelta(days=40), False), 9: (timedelta(days=40), False)})
    with connect(db) as conn:  # an application trigger that refuses one user, quoting the row as servers do
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "RAISE EXCEPTION 'refused %', OLD.email USING DETAIL = OLD.phone; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON users FOR EACH ROW WHEN (OLD.id = 7) "
                     "EXECUTE FUNCTION refuse()")
    logged: list[str] = []
    with connect(db) as conn, pytest.raises(ErasureFailed) as failed:
        erase_subjects(conn, plan_erasure(conn, erasure_config()), CUTOFF, KEY, CONTEXT, log=logged.append)
    text = str(failed.value) + "\n".join(logged)
    assert ": 7." in str(failed.value) and "subject 7: erasure failed" in text and "public.users" in text
    assert email(7) not in text and "+4930000007" not in text
    with connect(db) as conn:
        assert user_row(conn, 7)[0] == email(7) and user_row(conn, 7)[3] == 2  # rolled back: sessions kept too
        assert user_row(conn, 1)[0] == "deleted_1@invalid" and user_row(conn, 9)[0] == "deleted_9@invalid"
        assert len(ledger(conn)) == 2


def test_identifiers_that_need_quotes(db: PgTarget) -> None:
    with connect(db) as conn:
        conn.execute('CREATE SCHEMA "User Data"')
        conn.execute('CREATE TABLE "User Data"."People" ("Person Id" int PRIMARY KEY, "e-mail" varchar(80), '
                     '"Removed At" timestamp)')
        conn.execute('CREATE TABLE "User Data"."Log-Lines" (id int PRIMARY KEY, '
                     '"who" int REFERENCES "User Data"."People", "Line" text)')
        conn.execute('INSERT INTO "User Data"."People" VALUES (1, \'a@b.c\', %s), (2, \'c@d.e\', NULL)',
                     (CUTOFF.replace(tzinfo=None) - timedelta(days=31),))
        conn.execute('INSERT INTO "User Data"."Log-Lines" VALUES (1, 1, \'x\'), (2, 2, \'y\')')
    config = erasure_config("""
        subject: {table: '"User Data"."People"', key: '"Person Id"'}
        erasable: {soft_deleted: {column: '"Removed At"'}}
        hmac_key: {variable: erasure_key}
        tables:
          - {table: '"User Data"."People"', columns: {'"e-mail"': redact_email}}
          - {table: '"User Data"."Log-Lines"', subject_column: who, columns: {'"Line"': delete_row}}
    """)
    report = run(db, config)
    assert report.outcomes["erased"] == 1
    with connect(db) as conn:
        assert conn.execute('SELECT array_agg("e-mail" ORDER BY 1) FROM "User Data"."People"').fetchone()[0] == [
            "c@d.e", "deleted_1@invalid"]
        assert conn.execute('SELECT array_agg(id) FROM "User Data"."Log-Lines"').fetchone()[0] == [2]


def test_the_plan_reports_every_problem_before_any_change(db: PgTarget) -> None:
    seed(db, {1: (timedelta(days=40), False)})
    with connect(db) as conn:
        conn.execute("ALTER TABLE users ADD COLUMN age int, ADD COLUMN country text CHECK (country ~ '^[A-Z]{2}$')")
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, order_id bigint REFERENCES orders (id), memo text)")
        conn.execute("CREATE TABLE a (id int PRIMARY KEY, b_id int, x text)")
        conn.execute("CREATE TABLE b (id int PRIMARY KEY, a_id int, y text)")
    before = state(db)
    config = erasure_config("""
        subject: {table: users}
        erasable: {soft_deleted: {column: deleted_at}}
        hmac_key: {conn_id: k}
        tables:
          - table: users
            columns: {email: {constant: gone@x.y}, name: "null", age: redact_email, country: {constant: nowhere},
                      nickname: "null"}
          - {table: no_such_table, subject_column: user_id, columns: {x: "null"}}
          - {table: orders, subject_column: user_id, columns: {shipping_address: delete_row}}
          - {table: a, through: {table: b, column: b_id}, columns: {x: "null"}}
          - {table: b, through: {table: a, column: a_id}, columns: {y: "null"}}
    """)
    with connect(db) as conn, pytest.raises(PlanError) as error:
        plan_erasure(conn, config)
    message = str(error.value)
    expected = [
        "public.no_such_table does not exist",
        'column nickname does not exist',
        "public.users.email (text): strategy constant gives every erased subject the same value, which the unique "
        "index users_email_key refuses",
        "public.users.name (text) is NOT NULL, so strategy null cannot apply",
        "public.users.age (integer): strategy redact_email writes text",
        "CHECK constraint users_country_check refuses what the strategies write (country: constant)",
        "delete_row on public.orders would be blocked by foreign key invoices_order_id_fkey "
        "public.invoices(order_id) -> public.orders(id)",
        "so it is erased before public.orders",
        "delete_row on public.orders would be blocked by foreign key order_notes_order_id_fkey",
        "join paths form a cycle: public.a -> public.b -> public.a",
    ]
    missing = [e for e in expected if e not in message]
    assert not missing, message
    assert state(db) == before


def test_erase_subject_alone_reapplies_without_airflow(db: PgTarget) -> None:
    """What ``ledger reapply`` calls: one subject, no cutoff (the ledger decided), a reapply record."""
    seed(db, {1: (None, False)})
    context = RecordContext(database="appdb", kind="reapply")
    with connect(db) as conn:
        plan = plan_erasure(conn, erasure_config())
        from pgwarden.engine.lifecycle.ledger import ensure_ledger

        ensure_ledger(conn)
        outcome = erase_subject(conn, plan, "1", KEY, context)
        assert outcome.status == "erased" and outcome.ledger_seq == 1
        assert user_row(conn, 1)[0] == "deleted_1@invalid"
        assert ledger(conn)[0][1]["kind"] == "reapply"


def test_kill_9_mid_run_then_the_retry_finishes_with_one_ledger_entry_per_subject(db: PgTarget, tmp_path) -> None:
    from tests.harness.engine_child import child_env, kill_group, spawn, wait_for_line

    with connect(db) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO users SELECT g, 'p' || g || '@example.org', 'N ' || g, NULL, %s, false "
                     "FROM generate_series(1, 2000) g", (CUTOFF - timedelta(days=40),))
        conn.execute("INSERT INTO sessions (user_id, ip) SELECT g, '10.0.0.1' FROM generate_series(1, 2000) g")
        conn.execute("INSERT INTO orders (user_id, shipping_address) SELECT g, 'street ' || g "
                     "FROM generate_series(1, 2000) g")
    config = erasure_config()
    env = child_env(db, f"file://{tmp_path}/repo", "appdb", tmp_path, "erase",
                    erasure=config.model_dump_json(), cutoff=CUTOFF.isoformat(), erasure_key=KEY.decode())
    child = spawn(env)
    try:
        wait_for_line(child, "subjects committed", timeout=120)
    finally:
        kill_group(child)  # SIGKILL: a transaction in flight is rolled back by the server
    with connect(db) as conn:
        done_before = conn.execute("SELECT count(*) FROM pgwarden.erasure_ledger").fetchone()[0]
    assert 40 <= done_before < 2000, "the child finished before it was killed: nothing was tested"
    report = run(db, config)
    assert report.outcomes["already_erased"] == done_before
    assert report.outcomes["erased"] == 2000 - done_before
    with connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT subject_ref) FROM pgwarden.erasure_ledger").fetchone() \
            == (2000, 2000)
        assert conn.execute("SELECT count(*) FROM users WHERE email NOT LIKE 'deleted\\_%@invalid'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def test_requests_table_and_holds_table(db: PgTarget) -> None:
    """Erasable by a request the application wrote (ids only), held by a row in a holds table until released;
    a subject whose own row is already gone still loses its rows elsewhere."""
    seed(db, {1: (None, False), 2: (None, False), 3: (None, False), 4: (None, False)})
    with connect(db) as conn:
        conn.execute("CREATE TABLE erasure_requests (id text PRIMARY KEY, user_id bigint NOT NULL, "
                     "requested_at timestamptz NOT NULL)")
        conn.execute("CREATE TABLE holds (user_id bigint NOT NULL, released_at timestamptz)")
        conn.execute("INSERT INTO erasure_requests VALUES ('req-1', 1, %s), ('req-2', 2, %s), ('req-3', 3, %s), "
                     "('req-9', 9, %s)", (CUTOFF - timedelta(hours=1), CUTOFF - timedelta(hours=1),
                                          CUTOFF + timedelta(hours=1), CUTOFF - timedelta(hours=1)))
        conn.execute("INSERT INTO holds VALUES (2, NULL), (1, %s)", (CUTOFF - timedelta(days=2),))
        conn.execute("INSERT INTO orders (user_id, shipping_address) VALUES (NULL, 'orphan')")
    config = erasure_config(MAP.replace(
        "erasable: {soft_deleted: {column: deleted_at, grace: 30d}}",
        "erasable: {requests: {table: erasure_requests, subject_column: user_id, request_id_column: id, "
        "requested_at_column: requested_at}}").replace(
        "legal_hold: {column: legal_hold}", "legal_hold: {table: holds, subject_column: user_id, "
        "released_column: released_at}"))
    report = run(db, config)
    # 1: requested, its hold released -> erased; 2: held; 3: requested after the cutoff -> not selected;
    # 9: no users row -> erased (nothing to change, but recorded)
    assert (report.selected, report.outcomes["erased"], report.outcomes["held"]) == (3, 2, 1)
    with connect(db) as conn:
        assert user_row(conn, 1)[0] == "deleted_1@invalid"
        assert user_row(conn, 2)[0] == email(2) and user_row(conn, 3)[0] == email(3)
        assert sorted(r[1]["request_id"] for r in ledger(conn)) == ["req-1", "req-9"]


def test_tables_reached_through_deleted_rows_go_one_by_one_and_are_proven_before_the_parent_goes(db: PgTarget) -> None:
    """orders deleted with delete_row, order_notes reached through them: the notes' post-condition must run before
    the orders are gone (afterwards it would find nothing and prove nothing), so the tables go one statement each."""
    seed(db, {1: (timedelta(days=40), False), 2: (None, False)})
    config = erasure_config(MAP.replace("{table: orders, subject_column: user_id, columns: {shipping_address: hmac}}",
                                        "{table: orders, subject_column: user_id, columns: {shipping_address: "
                                        "delete_row}}"))
    with connect(db) as conn:
        plan = plan_erasure(conn, config)
        assert plan.apply_all is None and [s.checked_at_once for s in plan.steps if s.apply is not None] == [
            True, False, False, False]
        erased = erase_subjects(conn, plan, CUTOFF, KEY, CONTEXT, log=lambda _m: None)
        assert erased.outcomes["erased"] == 1 and erased.rows["public.orders"] == 1
        assert erased.rows["public.order_notes"] == 1
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM order_notes").fetchone()[0] == 1
