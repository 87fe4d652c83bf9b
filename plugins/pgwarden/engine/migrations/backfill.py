"""The resumable, throttled backfill of an expand/contract migration, on the keyset batch runner.

It walks the table by its key (primary key or a unique NOT NULL key), one short transaction per batch
sized to a time budget (``engine/batches.py``). Each batch is a no-op ``UPDATE ... SET old = old`` on
the rows still pending, so the dual-write trigger does the writing and rows a writer (or an earlier
run) already made consistent are skipped: under any write load the walk only moves forward, up to the
last key that existed when it started (rows inserted later went through the trigger already).

The position is a checkpoint row in ``pgwarden.backfill_checkpoints`` written in the same transaction
as its batch, so after ``kill -9`` the next run continues from exactly the last committed batch.
Before each batch the walk waits while a configured standby's replay lag or the primary's count of
active sessions is over its limit. The end is proven by a consistency query: 0 rows still pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg import errors, sql

from pgwarden.core.migrations.steps import Backfill
from pgwarden.engine.batches import BatchOutcome, BatchSettings, BatchStats, Key, run_batches
from pgwarden.engine.control import control_table, ensure_control_schema
from pgwarden.engine.errors import TransientError
from pgwarden.engine.healthcheck import gather_standby_facts
from pgwarden.engine.postgres import PgTarget

CHECKPOINTS = "backfill_checkpoints"


@dataclass(frozen=True)
class BackfillSettings:
    batch: BatchSettings = field(default_factory=lambda: BatchSettings(
        time_budget=timedelta(milliseconds=100), lock_timeout=timedelta(seconds=1), initial_size=1000,
        max_size=100_000, pause=timedelta(milliseconds=20)))  # a breather for the application
    standby: PgTarget | None = None  # throttle on its replay lag when set
    max_replay_lag: timedelta = timedelta(seconds=10)
    max_active_sessions: int | None = None  # throttle while more client sessions than this are active
    throttle_check_every: timedelta = timedelta(seconds=1)
    max_throttle_wait: timedelta = timedelta(minutes=10)


DEFAULT_BACKFILL = BackfillSettings()


@dataclass
class BackfillResult:
    rows_walked: int = 0
    rows_updated: int = 0
    inconsistent_rows: int = 0
    finished: bool = False
    resumed: bool = False
    batches: BatchStats | None = None

    def summary(self) -> str:
        return (f"{'done' if self.finished else 'stopped'}: {self.rows_walked} rows walked, {self.rows_updated} "
                f"updated{' (resumed from a checkpoint)' if self.resumed else ''}, {self.inconsistent_rows} rows "
                f"inconsistent at the end")

    def to_json_dict(self) -> dict[str, object]:
        return {"rows_walked": self.rows_walked, "rows_updated": self.rows_updated,
                "inconsistent_rows": self.inconsistent_rows, "finished": self.finished, "resumed": self.resumed,
                **({"batches": self.batches.to_json_dict()} if self.batches else {})}


def ensure_checkpoints(conn: psycopg.Connection) -> None:
    with conn.transaction():
        ensure_control_schema(conn)
        conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
            version text NOT NULL, op_index int NOT NULL, table_name text NOT NULL,
            last_key text[], upper_key text[], rows_walked bigint NOT NULL DEFAULT 0,
            rows_updated bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz,
            PRIMARY KEY (version, op_index))""").format(control_table(CHECKPOINTS)))


class _Walk:
    """The SQL of one backfill: batch, peek, bounds and the consistency count, composed once."""

    def __init__(self, job: Backfill) -> None:
        self.job = job
        keys = [sql.Identifier(k) for k in job.key]
        self.key_list = sql.SQL(", ").join(keys)
        self.key_text = sql.SQL(", ").join(sql.SQL("{}::text").format(k) for k in keys)
        self.table = sql.SQL(job.table)  # planner output: always-quoted identifiers
        self.params = sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in job.key_types)

    def _after(self, after: Key | None, alias: str = "") -> tuple[sql.Composable, list]:
        if after is None:
            return sql.SQL("true"), []
        return sql.SQL("({}) > ({})").format(self.key_list, self.params), list(after)

    def bound(self, after: Key | None, upper: Key, limit: int) -> tuple[sql.Composable, list]:
        """The last key of the next batch and how many rows it spans (an index-only walk of the key)."""
        lower, params = self._after(after)
        desc = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k in self.job.key)
        query = sql.SQL("SELECT ARRAY[{key_text}], count(*) OVER () FROM (SELECT {keys} FROM {table} WHERE {lower} "
                        "AND ({keys}) <= ({params}) ORDER BY {keys} LIMIT %s) AS b ORDER BY {desc} LIMIT 1").format(
            key_text=self.key_text, keys=self.key_list, table=self.table, lower=lower, params=self.params, desc=desc)
        return query, [*params, *upper, limit]

    def update(self, after: Key | None, last: Key) -> tuple[sql.Composable, list]:
        """The no-op UPDATE of the still-pending rows in (after, last]: a key range scan, the trigger writes."""
        lower, params = self._after(after)
        query = sql.SQL("UPDATE {table} SET {assignment} WHERE {lower} AND ({keys}) <= ({params}) AND ({pending})").format(
            table=self.table, assignment=sql.SQL(self.job.assignment), lower=lower, keys=self.key_list,
            params=self.params, pending=sql.SQL(self.job.pending))
        return query, [*params, *last]

    def peek(self, after: Key | None) -> tuple[sql.Composable, list]:
        lower, params = self._after(after)
        return (sql.SQL("SELECT ARRAY[{}] FROM {} WHERE {} ORDER BY {} LIMIT 1").format(
            self.key_text, self.table, lower, self.key_list), params)

    def upper(self) -> sql.Composable:
        desc = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k in self.job.key)
        return sql.SQL("SELECT ARRAY[{}] FROM {} ORDER BY {} LIMIT 1").format(self.key_text, self.table, desc)

    def pending_count(self) -> sql.Composable:
        return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.table, sql.SQL(self.job.pending))


class Throttle:
    """Waits before a batch while the standby lags or the primary is busy; checks at most every second."""

    def __init__(self, conn: psycopg.Connection, settings: BackfillSettings, log: Callable[[str], None],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn, self.settings, self.log, self.sleep = conn, settings, log, sleep
        self.last_check = 0.0
        self.waited_s = 0.0

    def reasons(self) -> list[str]:
        found = []
        s = self.settings
        if s.standby is not None:
            facts = gather_standby_facts("standby", s.standby, s.max_replay_lag)
            if facts.error:
                found.append(f"standby unreachable ({facts.error})")
            elif facts.replay_lag is not None and facts.replay_lag > s.max_replay_lag:
                found.append(f"standby replay lag {facts.replay_lag.total_seconds():.1f}s > "
                             f"{s.max_replay_lag.total_seconds():.1f}s")
        if s.max_active_sessions is not None:
            active = self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()").fetchone()[0]
            if active > s.max_active_sessions:
                found.append(f"{active} active sessions > {s.max_active_sessions}")
        return found

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last_check < self.settings.throttle_check_every.total_seconds():
            return
        started = now
        while reasons := self.reasons():
            waited = time.monotonic() - started
            if waited > self.settings.max_throttle_wait.total_seconds():
                raise TransientError(f"backfill throttled for {waited:.0f}s ({'; '.join(reasons)}); it resumes "
                                     f"from its checkpoint when retried")
            self.log(f"backfill throttled: {'; '.join(reasons)}")
            self.sleep(self.settings.throttle_check_every.total_seconds())
        self.waited_s += time.monotonic() - started
        self.last_check = time.monotonic()


def run_backfill(conn: psycopg.Connection, version: str, op_index: int, job: Backfill, *,
                 settings: BackfillSettings = BackfillSettings(), log: Callable[[str], None] = print) -> BackfillResult:
    """Walk ``job`` to the end (or the batch runner's time limit), resuming from its checkpoint.

    ``conn`` must be autocommit. Safe to kill at any moment and to run again.
    """
    ensure_checkpoints(conn)
    walk = _Walk(job)
    table = control_table(CHECKPOINTS)
    ident = (version, op_index)
    result = BackfillResult()
    for attempt in range(3):
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT last_key, upper_key, finished_at IS NOT NULL, rows_walked FROM {} "
                                       "WHERE version = %s AND op_index = %s").format(table), ident).fetchone()
            if row is None:
                upper = conn.execute(walk.upper()).fetchone()
                upper_key = upper[0] if upper else None
                conn.execute(sql.SQL("INSERT INTO {} (version, op_index, table_name, upper_key) VALUES (%s, %s, %s, %s)"
                                     " ON CONFLICT DO NOTHING").format(table), (*ident, job.table, upper_key))
                row = (None, upper_key, False, 0)
            else:
                result.resumed = result.resumed or row[3] > 0 or row[0] is not None
        start_key, upper_key, finished, walked_before = row
        if not finished and upper_key is not None:
            if start_key is not None:
                log(f"backfill of {job.table}: resuming after key {tuple(start_key)} ({walked_before} rows walked before)")
            stats = _walk(conn, walk, job, table, ident, tuple(start_key) if start_key else None, tuple(upper_key),
                          settings, log, max(1, job.estimated_rows - walked_before))
            result.batches = stats
            if not stats.finished:
                return result
        with conn.transaction():
            conn.execute(sql.SQL("UPDATE {} SET finished_at = coalesce(finished_at, now()) "
                                 "WHERE version = %s AND op_index = %s").format(table), ident)
            totals = conn.execute(sql.SQL("SELECT rows_walked, rows_updated FROM {} WHERE version = %s AND "
                                          "op_index = %s").format(table), ident).fetchone()
        result.rows_walked, result.rows_updated = totals
        with conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', '0', true)")
            result.inconsistent_rows = int(conn.execute(walk.pending_count()).fetchone()[0])
        if result.inconsistent_rows == 0:
            result.finished = True
            log(f"backfill of {job.table}: {result.summary()}")
            return result
        # Rows skipped because someone held them locked: walk the whole table once more.
        log(f"backfill of {job.table}: {result.inconsistent_rows} rows still pending; walking again "
            f"(pass {attempt + 2})")
        with conn.transaction():
            conn.execute(sql.SQL("UPDATE {} SET last_key = NULL, finished_at = NULL, upper_key = NULL "
                                 "WHERE version = %s AND op_index = %s").format(table), ident)
            conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s AND op_index = %s").format(table), ident)
    raise TransientError(f"backfill of {job.table}: {result.inconsistent_rows} rows still differ after three passes "
                         f"(rows kept locked by long transactions?); run it again later")


def pending_rows(conn: psycopg.Connection, job: Backfill) -> int:
    """Rows of ``job``'s table still differing from what the old column implies (0 once backfilled)."""
    with conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', '0', true)")
        return int(conn.execute(_Walk(job).pending_count()).fetchone()[0])


def _walk(conn: psycopg.Connection, walk: _Walk, job: Backfill, table: sql.Composable, ident: tuple[str, int],
          start: Key | None, upper: Key, settings: BackfillSettings, log: Callable[[str], None],
          estimate: int) -> BatchStats:
    def step(c: psycopg.Connection, after: Key | None, limit: int) -> BatchOutcome:
        after = after if after is not None else start
        # The batch and its checkpoint commit together, so an asynchronous commit loses nothing a crash could
        # not lose anyway (both or neither); the backfill stops waiting for WAL flushes the application needs.
        c.execute("SET LOCAL synchronous_commit = off")
        query, params = walk.bound(after, upper, limit)
        found = c.execute(query, params).fetchone()
        if found is None:
            return BatchOutcome(0, None)
        last, walked = found
        query, params = walk.update(after, tuple(last))
        changed = c.execute(query, params).rowcount
        c.execute(sql.SQL("UPDATE {} SET last_key = %s, rows_walked = rows_walked + %s, rows_updated = rows_updated"
                          " + %s, updated_at = now() WHERE version = %s AND op_index = %s").format(table),
                  (last, walked, changed, *ident))
        return BatchOutcome(int(walked), tuple(last))

    def peek(c: psycopg.Connection, after: Key | None) -> Key | None:
        query, params = walk.peek(after if after is not None else start)
        row = c.execute(query, params).fetchone()
        return tuple(row[0]) if row else None

    throttle = Throttle(conn, settings, log)
    while True:
        try:
            return run_batches(conn, step, settings.batch, peek=peek, what=f"backfill of {job.table}",
                               estimate=estimate, log=log, before_batch=throttle)
        except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
            # Committed batches are safe in the checkpoint; continue from there.
            log(f"backfill of {job.table}: {type(exc).__name__}; continuing from the checkpoint")
            row = conn.execute(sql.SQL("SELECT last_key FROM {} WHERE version = %s AND op_index = %s").format(table),
                               ident).fetchone()
            start = tuple(row[0]) if row and row[0] else None
