"""Run DDL without letting the application queue up behind it.

An ``ALTER TABLE`` that waits for its lock makes every later query on the table wait behind it, so a
long transaction anywhere turns one schema change into an outage. Every statement here runs with a
short ``lock_timeout`` (default 1 s): when the lock is not granted in time (SQLSTATE 55P03) the
statement gives up, the queue behind it drains, and it is retried after an exponential backoff with
jitter, up to a limit. Then a ``TransientError`` names the table and who blocked it (pid, state and
the first keyword of its statement: never the statement text, which may hold row values).

``CONCURRENTLY`` statements cannot run inside a transaction block; they run in autocommit with
session-level timeouts. A failed ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index behind;
``drop_invalid_index`` finds and drops it so the build can run again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import errors, sql

from pgwarden.engine.errors import TransientError

Statement = sql.Composable | str


@dataclass(frozen=True)
class DdlSettings:
    lock_timeout: timedelta = timedelta(seconds=1)
    # DDL that needs no rewrite is fast; a VALIDATE or an index build scans the table and may take long.
    statement_timeout: timedelta = timedelta(minutes=30)
    max_attempts: int = 12
    backoff_initial: timedelta = timedelta(milliseconds=200)
    backoff_max: timedelta = timedelta(seconds=15)


DEFAULT_DDL = DdlSettings()


@dataclass(frozen=True)
class DdlOutcome:
    attempts: int
    waited_s: float


def backoff_delay(attempt: int, settings: DdlSettings, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries never synchronise."""
    cap = min(settings.backoff_max.total_seconds(), settings.backoff_initial.total_seconds() * 2 ** (attempt - 1))
    return cap / 2 + rng.uniform(0, cap / 2)


def _ms(delta: timedelta) -> str:
    return f"{max(1, int(delta.total_seconds() * 1000))}ms"


_BLOCKERS_SQL = """
SELECT a.pid, coalesce(a.state, '?'), upper(split_part(ltrim(coalesce(a.query, '')), ' ', 1)),
       round(extract(epoch FROM now() - a.xact_start))::int
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
   AND (%(table)s::text IS NULL OR a.pid IN (
          SELECT l.pid FROM pg_locks l WHERE l.granted AND l.relation = to_regclass(%(table)s)))
 ORDER BY a.xact_start LIMIT 3
"""


def describe_blockers(conn: psycopg.Connection, table: str | None) -> str:
    """Who holds a lock on ``table`` (or, for a concurrent build, the oldest transactions): ids and kinds only."""
    try:
        with conn.transaction():
            rows = conn.execute(_BLOCKERS_SQL, {"table": table}).fetchall()
            if not rows and table is not None:
                rows = conn.execute(_BLOCKERS_SQL, {"table": None}).fetchall()
    except psycopg.Error:
        return "blockers unknown"
    if not rows:
        return "no blocker seen any more"
    return "; ".join(f"pid {pid} ({state}, {kind or 'no statement'}, transaction open {age}s)"
                     for pid, state, kind, age in rows)


def run_ddl(
    conn: psycopg.Connection,
    statements: Statement | Sequence[Statement],
    *,
    table: str | None,
    outside_transaction: bool = False,
    settings: DdlSettings = DdlSettings(),
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    before_retry: Callable[[], None] | None = None,
) -> DdlOutcome:
    """Run ``statements`` (one transaction, or one autocommit statement) with lock-timeout retries.

    ``conn`` must be in autocommit mode. ``table`` (``schema.name`` as regclass text, quoted where
    needed) only names the table in logs and errors and finds who blocks it. ``before_retry`` cleans up
    what a timed-out attempt left behind (an INVALID index).
    """
    if not conn.autocommit:
        raise ValueError("run_ddl needs an autocommit connection: it opens its own transactions")
    items: list[Statement] = [statements] if isinstance(statements, sql.Composable | str) else list(statements)
    if outside_transaction and len(items) != 1:
        raise ValueError("a statement outside a transaction block runs alone")
    rng = rng or random.Random()
    started = time.monotonic()
    what = table or "the database"
    for attempt in range(1, settings.max_attempts + 1):
        try:
            if outside_transaction:
                _run_autocommit(conn, items[0], settings)
            else:
                with conn.transaction():
                    conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                                 (_ms(settings.lock_timeout), _ms(settings.statement_timeout)))
                    for item in items:
                        conn.execute(item if isinstance(item, sql.Composable) else sql.SQL(item))  # type: ignore[arg-type]
            return DdlOutcome(attempts=attempt, waited_s=time.monotonic() - started)
        except errors.LockNotAvailable:
            blockers = describe_blockers(conn, table)
            if attempt == settings.max_attempts:
                raise TransientError(
                    f"DDL on {what} did not get its lock within {_ms(settings.lock_timeout)} in {attempt} attempts "
                    f"({time.monotonic() - started:.1f}s); blocked by {blockers}. End or wait out that "
                    f"transaction, then retry") from None
            delay = backoff_delay(attempt, settings, rng)
            log(f"DDL on {what}: lock not granted within {_ms(settings.lock_timeout)} (attempt {attempt}/"
                f"{settings.max_attempts}, blocked by {blockers}); retrying in {delay:.2f}s")
            sleep(delay)
            if before_retry is not None:
                before_retry()
    raise AssertionError("unreachable")


def _run_autocommit(conn: psycopg.Connection, statement: Statement, settings: DdlSettings) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (_ms(settings.lock_timeout), _ms(settings.statement_timeout)))
    try:
        conn.execute(statement if isinstance(statement, sql.Composable) else sql.SQL(statement))  # type: ignore[arg-type]
    finally:
        if not conn.broken:
            conn.execute("RESET lock_timeout; RESET statement_timeout")


_INDEX_STATE_SQL = """
SELECT i.indisvalid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index i ON i.indexrelid = c.oid
 WHERE n.nspname = %s AND c.relname = %s
"""


def index_state(conn: psycopg.Connection, schema: str, name: str) -> str:
    """``missing``, ``valid`` or ``invalid`` (left by a failed or killed concurrent build)."""
    with conn.transaction():
        row = conn.execute(_INDEX_STATE_SQL, (schema, name)).fetchone()
    return "missing" if row is None else ("valid" if row[0] else "invalid")


def drop_invalid_index(conn: psycopg.Connection, schema: str, name: str, *, settings: DdlSettings = DdlSettings(),
                       log: Callable[[str], None] = print) -> bool:
    """Drop the index if a failed concurrent build left it INVALID; True when one was dropped."""
    if index_state(conn, schema, name) != "invalid":
        return False
    log(f"index {schema}.{name} is INVALID (a concurrent build failed or was killed); dropping it to rebuild")
    run_ddl(conn, sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)),
            table=None, outside_transaction=True, settings=settings, log=log)
    return True


def create_index_concurrently(conn: psycopg.Connection, statement: Statement, schema: str, name: str, *,
                              table: str | None, settings: DdlSettings = DdlSettings(),
                              log: Callable[[str], None] = print) -> DdlOutcome:
    """Build index ``schema.name`` online with ``statement`` (a ``CREATE [UNIQUE] INDEX CONCURRENTLY``),
    converging after any failure: an INVALID leftover is dropped before the build and before each retry
    (``IF NOT EXISTS`` would otherwise accept it), and a build that fails for good is cleaned up too."""
    drop_invalid_index(conn, schema, name, settings=settings, log=log)
    if index_state(conn, schema, name) == "valid":
        return DdlOutcome(attempts=0, waited_s=0.0)
    try:
        return run_ddl(conn, statement, table=table, outside_transaction=True, settings=settings, log=log,
                       before_retry=lambda: drop_invalid_index(conn, schema, name, settings=settings, log=log))
    except (TransientError, psycopg.Error):
        if not conn.broken:
            drop_invalid_index(conn, schema, name, settings=settings, log=log)
        raise
