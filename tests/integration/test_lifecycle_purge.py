"""The TTL purge against real servers: exactly the expired rows go, in batches, whatever else happens."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.engine.batches import BatchSettings
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.partitions import drop_detached_partitions
from pgwarden.engine.lifecycle.plan import PlanError, plan_policy
from pgwarden.engine.lifecycle.purge import purge
from pgwarden.engine.lifecycle.views import ensure_active_view
from pgwarden.engine.postgres import connect
from tests.harness.engine_child import child_env, kill_group, spawn, wait_for_line

pytestmark = pytest.mark.integration

CUTOFF = datetime(2026, 11, 30, 19, 0, tzinfo=UTC)
SESSIONS = """
CREATE TABLE sessions (id bigint PRIMARY KEY, user_id int NOT NULL, token text NOT NULL,
                       kind text NOT NULL DEFAULT 'web', expires_at timestamptz);
CREATE INDEX ON sessions (token);
CREATE TABLE session_events (id bigserial PRIMARY KEY, session_id bigint NOT NULL REFERENCES sessions,
                             what text);
CREATE INDEX ON session_events (session_id);
INSERT INTO sessions
SELECT g, g %% 97, md5(g::text), CASE WHEN g %% 10 = 0 THEN 'pinned' ELSE 'web' END,
       CASE WHEN g %% 50 = 0 THEN NULL ELSE %(cutoff)s::timestamptz + ((g * 7919) %% 20000 - 10000) * interval '1 s' END
FROM generate_series(1, %(n)s) g;
INSERT INTO session_events (session_id, what) SELECT g, 'login' FROM generate_series(1, %(n)s, 3) g;
ANALYZE;
"""


def policy(**fields) -> PolicyConfig:
    base = {"name": "expired_sessions", "table": "public.sessions", "expire": {"column": "expires_at"},
            "batch": {"time_budget": "50ms", "lock_timeout": "200ms"}}
    return PolicyConfig.model_validate({**base, **fields})


def seed(pg, n: int = 10_000) -> None:
    with connect(pg.target()) as conn:
        # Client-side binding: several statements in one go.
        psycopg.ClientCursor(conn).execute(SESSIONS, {"cutoff": CUTOFF, "n": n})


def snapshot(pg) -> tuple[set[int], set[int]]:
    """(ids of rows the policy selects, ids of every other row), by an independent query."""
    with connect(pg.target()) as conn:
        rows = conn.execute("SELECT id, expires_at < %s AND kind <> 'pinned' FROM sessions", (CUTOFF,)).fetchall()
    return {i for i, e in rows if e}, {i for i, e in rows if not e}


def test_purge_deletes_exactly_the_expired_rows_children_first(pg) -> None:
    seed(pg)
    expired, kept = snapshot(pg)
    assert expired and kept
    with connect(pg.target()) as conn:
        events_kept = conn.execute(
            "SELECT count(*) FROM session_events e JOIN sessions s ON s.id = e.session_id "
            "WHERE NOT (s.expires_at < %s AND s.kind <> 'pinned') OR s.expires_at IS NULL", (CUTOFF,)).fetchone()[0]
    logs: list[str] = []
    summary = purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=logs.append)
    after_expired, after_kept = snapshot(pg)
    assert after_expired == set() and after_kept == kept
    assert summary["rows"] == len(expired) and summary["finished"] is True
    assert summary["batches"] > 1 and summary["wal_bytes"] > 0
    assert summary["tables"]["public.session_events"]["rows"] > 0
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM session_events").fetchone()[0] == events_kept
    again = purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=logs.append)
    assert again["rows_total"] == 0 and snapshot(pg) == (set(), kept)


def test_with_an_index_on_the_expiry_column_the_walk_stops_at_the_last_expired_key(pg) -> None:
    seed(pg)
    with connect(pg.target()) as conn:
        conn.execute("CREATE INDEX ON sessions (expires_at); ANALYZE sessions")
        # Everything after the last expired key stays: the rows the walk need not cross.
        conn.execute("UPDATE sessions SET expires_at = %s WHERE id > 6000 AND expires_at < %s",
                     (CUTOFF + timedelta(days=1), CUTOFF))
    expired, kept = snapshot(pg)
    logs: list[str] = []
    summary = purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=logs.append)
    assert any("the last expired key is known" in line for line in logs)
    assert summary["rows"] == len(expired) and summary["finished"] is True
    assert snapshot(pg) == (set(), kept)


@pytest.mark.parametrize("where", ["true) OR (true", "expires_at > now() - interval '1000 years' OR true"])
def test_a_predicate_cannot_select_rows_newer_than_the_cutoff(pg, where: str) -> None:
    seed(pg, 5000)
    with connect(pg.target()) as conn:
        newer = conn.execute("SELECT count(*) FROM sessions WHERE expires_at >= %s OR expires_at IS NULL",
                             (CUTOFF,)).fetchone()[0]
    try:
        purge(pg.target(), policy(where=where), CUTOFF, log=lambda _: None)
    except PermanentError as exc:  # a predicate closing its parentheses breaks the walk: refused
        assert ")" in where and "did not advance" in str(exc)
    with connect(pg.target()) as conn:
        left = conn.execute("SELECT count(*) FROM sessions WHERE expires_at >= %s OR expires_at IS NULL",
                            (CUTOFF,)).fetchone()[0]
    assert left == newer


def test_a_held_row_lock_times_out_backs_off_and_the_rest_drains(pg) -> None:
    seed(pg, 5000)
    expired, kept = snapshot(pg)
    held = min(expired)
    with psycopg.connect(**pg.target().conninfo_params()) as blocker:
        blocker.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (held,))
        summary = purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=lambda _: None)
        assert summary["lock_timeout_retries"] >= 1 and summary["rows_skipped_locked"] == 1
        assert snapshot(pg) == ({held}, kept)
        blocker.rollback()
    purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=lambda _: None)
    assert snapshot(pg) == (set(), kept)


def test_an_application_writing_throughout_gets_no_error(pg) -> None:
    seed(pg)
    errors: list[BaseException] = []
    writes = 0
    stop = threading.Event()

    def application() -> None:
        nonlocal writes
        try:
            with psycopg.connect(**pg.target().conninfo_params(), autocommit=True) as app:
                next_id = 10_000_000
                while not stop.is_set():
                    next_id += 1
                    app.execute("INSERT INTO sessions VALUES (%s, 1, 't', 'web', now() + interval '1 day')",
                                (next_id,))
                    app.execute("UPDATE sessions SET expires_at = expires_at + interval '1 hour' "
                                "WHERE id = (SELECT max(id) FROM sessions WHERE id < 10000000)")
                    writes += 2
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=application)
    thread.start()
    try:
        purge(pg.target(), policy(batch={"time_budget": "20ms", "pause": "5ms"}), CUTOFF, log=lambda _: None)
    finally:
        stop.set()
        thread.join()
    assert errors == [] and writes > 0
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM sessions WHERE expires_at < %s", (CUTOFF,)).fetchone()[0] == 0


def test_identifiers_that_need_quotes(pg) -> None:
    with connect(pg.target()) as conn:
        conn.execute('CREATE SCHEMA "User Data"; CREATE TABLE "User Data"."e-mail" ("Id" int PRIMARY KEY, '
                     '"Sent At" timestamptz, "to" text)')
        conn.execute('INSERT INTO "User Data"."e-mail" SELECT g, %s::timestamptz + (g - 50) * interval \'1 h\', '
                     "'x' FROM generate_series(1, 100) g", (CUTOFF,))
    rule = policy(table='"User Data"."e-mail"', expire={"column": '"Sent At"', "after": "1d"}, where='"to" = \'x\'')
    summary = purge(pg.target(), rule, CUTOFF, log=lambda _: None)
    with connect(pg.target()) as conn:
        left = conn.execute('SELECT min("Sent At"), count(*) FROM "User Data"."e-mail"').fetchone()
    assert left[0] >= CUTOFF - timedelta(days=1) and summary["rows"] == 100 - left[1] > 0


@pytest.mark.parametrize(("setup", "fields", "expected"), [
    ("", {"table": "public.nothing"}, "the table does not exist"),
    ("CREATE TABLE t (id int PRIMARY KEY, at timestamptz)", {"table": "t", "expire": {"column": "gone"}},
     "column 'gone' does not exist"),
    ("CREATE TABLE t (id int PRIMARY KEY, at text)", {"table": "t", "expire": {"column": "at"}},
     "column 'at' is text"),
    ("CREATE TABLE t (id int PRIMARY KEY, at timestamptz)", {"table": "t", "expire": {"column": "at"},
                                                             "where": "no_such_column > 1"},
     "could not plan"),
    ("CREATE TABLE t (id int, at timestamptz)", {"table": "t", "expire": {"column": "at"}}, "no primary key"),
    ("CREATE TABLE t (id int, at timestamptz); CREATE UNIQUE INDEX ON t (id)",
     {"table": "t", "expire": {"column": "at"}, "key": ["id"]}, "allow NULL"),
    ("CREATE TABLE t (id int PRIMARY KEY, at timestamptz)", {"table": "t", "expire": {"column": "at"},
                                                             "mode": "partition_drop"}, "not partitioned"),
])
def test_plan_refuses_before_touching_a_row(pg, setup: str, fields: dict, expected: str) -> None:
    with connect(pg.target()) as conn:
        if setup:
            conn.execute(setup)
        with pytest.raises(PlanError, match=expected):
            plan_policy(conn, policy(**fields))


def test_soft_delete_view_and_unique_constraint_warning(pg) -> None:
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE, deleted_at timestamptz)")
        conn.execute("INSERT INTO accounts VALUES (1, 'a', NULL), (2, 'b', %s), (3, 'c', %s)",
                     (CUTOFF - timedelta(days=100), CUTOFF - timedelta(days=1)))
        rule = policy(name="purge_deleted", table="accounts", expire={"column": "deleted_at", "after": "90d"},
                      soft_delete={"column": "deleted_at", "active_view": True})
        plan = plan_policy(conn, rule)
        assert any("accounts_email_key" in w and "WHERE deleted_at IS NULL" in w for w in plan.warnings)
        ensure_active_view(conn, rule, log=lambda _: None)
        ensure_active_view(conn, rule, log=lambda _: None)  # kept: re-running is harmless
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM accounts_active").fetchone()[0] == [1]
        options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'accounts_active'").fetchone()[0]
        assert options == ["security_invoker=true"]
    purge(pg.target(), rule, CUTOFF, log=lambda _: None)
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM accounts").fetchone()[0] == [1, 3]


PARTITIONED = """
CREATE TABLE events (id bigint, at timestamptz NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_d1 PARTITION OF events FOR VALUES FROM ('2026-11-27') TO ('2026-11-28');
CREATE TABLE events_d2 PARTITION OF events FOR VALUES FROM ('2026-11-28') TO ('2026-11-29');
CREATE TABLE events_d3 PARTITION OF events FOR VALUES FROM ('2026-11-29') TO ('2026-11-30');
CREATE TABLE events_d4 PARTITION OF events FOR VALUES FROM ('2026-11-30') TO ('2026-12-01');
INSERT INTO events SELECT g, '2026-11-27'::timestamptz + g * interval '1 minute' FROM generate_series(0, 5759) g;
"""


def test_partition_mode_detaches_then_a_later_task_drops_surviving_a_kill_between(pg) -> None:
    with connect(pg.target()) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(PARTITIONED)
    rule = policy(name="old_events", table="events", expire={"column": "at", "after": "1d"}, mode="partition_drop")
    summary = purge(pg.target(), rule, CUTOFF, log=lambda _: None)  # threshold 2026-11-29 19:00
    assert summary["partitions_detached"] == ["public.events_d1", "public.events_d2"]
    with connect(pg.target()) as conn:
        # Straddling partition d3: its rows before the threshold went by batched delete.
        assert conn.execute("SELECT count(*) FROM events WHERE at < %s", (CUTOFF - timedelta(days=1),)
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM events_d1").fetchone()[0] == 1440  # detached, not yet dropped
    # The run is killed here, before the drop task; the next run recognises what was detached.
    again = purge(pg.target(), rule, CUTOFF, log=lambda _: None)
    assert again["partitions_detached"] == [] and again["rows_total"] == 0
    with connect(pg.target()) as conn:
        assert drop_detached_partitions(conn, rule, log=lambda _: None) == ["public.events_d1", "public.events_d2"]
        assert drop_detached_partitions(conn, rule, log=lambda _: None) == []
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname IN ('events_d1', 'events_d2')"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5760 - 2 * 1440 - 19 * 60


def test_partition_mode_refuses_a_default_partition(pg) -> None:
    with connect(pg.target()) as conn:
        conn.execute(PARTITIONED + "CREATE TABLE events_other PARTITION OF events DEFAULT;")
        with pytest.raises(PlanError, match="DEFAULT partition"):
            plan_policy(conn, policy(name="e", table="events", expire={"column": "at"}, mode="partition_drop"))


def test_kill_9_mid_purge_then_the_next_run_converges(pg, tmp_path) -> None:
    seed(pg, 40_000)
    expired, kept = snapshot(pg)
    written = {"name": "expired_sessions", "table": "public.sessions", "expire": {"column": "expires_at"},
               "where": "kind <> 'pinned'", "batch": {"time_budget": "10ms", "pause": "100ms"}}
    env = child_env(pg.target(), f"file://{tmp_path}/repo", "lcpurge", tmp_path / "work", "purge",
                    policy=json.dumps(written), cutoff=CUTOFF.isoformat())
    child = spawn(env)
    try:
        wait_for_line(child, "purge public.sessions: rows older than", timeout=120)
        # Killed as soon as the first batches have committed, however fast the machine: a fixed sleep
        # let a quick run finish before the kill.
        with connect(pg.target()) as conn:
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == len(expired) + len(kept):
                assert time.monotonic() < deadline, "the purge deleted nothing in 120 s"
                time.sleep(0.005)
    finally:
        kill_group(child)
    part_expired, part_kept = snapshot(pg)
    assert part_kept == kept and 0 < len(part_expired) < len(expired)  # killed mid-way, nothing else touched
    purge(pg.target(), PolicyConfig.model_validate(written), CUTOFF, log=lambda _: None)
    assert snapshot(pg) == (set(), kept)


def test_before_delete_hook_sees_each_batch_and_a_failing_hook_deletes_nothing(pg) -> None:
    seed(pg, 3000)
    expired, kept = snapshot(pg)
    seen: list[int] = []

    def archive(conn, names, rows) -> None:
        assert names[:2] == ["id", "user_id"] and "expires_at" in names
        seen.extend(row[0] for row in rows)

    summary = purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=lambda _: None, before_delete=archive)
    assert sorted(seen) == sorted(expired) and summary["rows"] == len(expired)
    assert snapshot(pg) == (set(), kept)

    seed_more = [(10**7 + i, CUTOFF - timedelta(hours=1)) for i in range(50)]
    with connect(pg.target()) as conn:
        conn.cursor().executemany("INSERT INTO sessions VALUES (%s, 1, 't', 'web', %s)", seed_more)

    def failing(conn, names, rows) -> None:
        raise RuntimeError("upload failed")

    with pytest.raises(RuntimeError, match="upload failed"):
        purge(pg.target(), policy(), CUTOFF, log=lambda _: None, before_delete=failing)
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM sessions WHERE id >= 10000000").fetchone()[0] == 50


def _detach_backends(conn) -> list[int]:
    return [pid for (pid,) in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query ILIKE 'ALTER TABLE%%DETACH PARTITION%%'"
    ).fetchall()]


def _pending(conn) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhdetachpending "
        "ORDER BY 1").fetchall()]


def test_kill_9_during_a_concurrent_detach_leaves_it_pending_and_the_next_run_finalizes(pg, tmp_path) -> None:
    with connect(pg.target()) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(PARTITIONED)
    written = {"name": "old_events", "table": "public.events", "expire": {"column": "at", "after": "1d"},
               "mode": "partition_drop", "batch": {"lock_timeout": "10m"}}
    env = child_env(pg.target(), f"file://{tmp_path}/repo", "lcdetach", tmp_path / "work", "purge",
                    policy=json.dumps(written), cutoff=CUTOFF.isoformat())
    # A reader with a transaction open on the parent: DETACH ... CONCURRENTLY commits its first step
    # (the partition is "detach pending") and then waits for this transaction to end.
    with psycopg.connect(**pg.target().conninfo_params()) as reader, connect(pg.target()) as watcher:
        reader.execute("SELECT count(*) FROM events")
        child = spawn(env)
        try:
            wait_for_line(child, "detach public.events_d1", timeout=120)
            deadline = time.monotonic() + 120
            while _pending(watcher) != ["events_d1"] or not _detach_backends(watcher):
                assert time.monotonic() < deadline, "the detach never reached its waiting step"
                time.sleep(0.01)
        finally:
            kill_group(child)
        # The server notices its client is gone and ends the waiting DETACH (it must not finish it
        # unseen once the reader goes, nor keep waiting on for hours).
        deadline = time.monotonic() + 30  # the lock_timeout (10 min) must not be what ends it
        while _detach_backends(watcher):
            assert time.monotonic() < deadline, "the DETACH of a killed run is still running"
            time.sleep(0.05)
        reader.rollback()
        assert _pending(watcher) == ["events_d1"]
        assert watcher.execute("SELECT count(*) FROM events_d1").fetchone()[0] == 1440
    logs: list[str] = []
    summary = purge(pg.target(), PolicyConfig.model_validate(written), CUTOFF, log=logs.append)
    assert "detach public.events_d1 from public.events (finishing an interrupted detach)" in logs
    assert summary["partitions_detached"] == ["public.events_d1", "public.events_d2"] and summary["finished"]
    with connect(pg.target()) as conn:
        assert _pending(conn) == []
        rule = PolicyConfig.model_validate(written)
        assert drop_detached_partitions(conn, rule, log=lambda _: None) == ["public.events_d1", "public.events_d2"]
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5760 - 2 * 1440 - 19 * 60


def test_a_run_stops_cleanly_at_max_run_time_and_the_next_run_finishes(pg) -> None:
    seed(pg, 40_000)
    with connect(pg.target()) as conn:
        conn.execute("DROP TABLE session_events")  # the main table's walk alone is what is limited here
    expired, kept = snapshot(pg)
    # A batch starts at most every 500 ms (the pause), so at most two start in the 1 s: 1000 keys, then
    # at most 8x as many (the growth limit) -- far fewer than the table's 40000 keys.
    logs: list[str] = []
    limited = {"time_budget": "20ms", "pause": "500ms", "max_run_time": "1s"}
    first = purge(pg.target(), policy(where="kind <> 'pinned'", batch=limited), CUTOFF, log=logs.append)
    left, _ = snapshot(pg)
    assert first["finished"] is False and 0 < first["rows"] == len(expired) - len(left) < len(expired)
    assert any("stopping at the run time limit" in line for line in logs)
    assert snapshot(pg)[1] == kept
    second = purge(pg.target(), policy(where="kind <> 'pinned'"), CUTOFF, log=lambda _: None)
    assert second["finished"] is True and first["rows"] + second["rows"] == len(expired)
    assert snapshot(pg) == (set(), kept)


def test_a_batch_over_its_statement_timeout_is_cancelled_and_retried_smaller(pg) -> None:
    seed(pg, 5000)
    expired, kept = snapshot(pg)
    slow = sorted(expired)[100:160]  # 60 expired rows that take 25 ms each to delete
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE slow_rows (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO slow_rows SELECT unnest(%s::bigint[])", (slow,))
        conn.execute("CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "IF EXISTS (SELECT 1 FROM slow_rows WHERE id = OLD.id) THEN PERFORM pg_sleep(0.025); END IF; "
                     "RETURN OLD; END $$")
        conn.execute("CREATE TRIGGER slow BEFORE DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION slow_delete()")
    # lock_timeout 200 ms + 20 x 10 ms -> the 1 s floor: a batch holding the 60 rows (1.5 s) is cancelled.
    rule = policy(where="kind <> 'pinned'", batch={"time_budget": "10ms", "lock_timeout": "200ms"})
    assert BatchSettings(time_budget=timedelta(milliseconds=10),
                         lock_timeout=timedelta(milliseconds=200)).statement_timeout == timedelta(seconds=1)
    logs: list[str] = []
    summary = purge(pg.target(), rule, CUTOFF, log=logs.append)
    assert summary["statement_timeouts"] >= 1 and summary["finished"] is True
    assert any("exceeded the statement timeout" in line for line in logs)
    assert summary["rows"] == len(expired) and snapshot(pg) == (set(), kept)
