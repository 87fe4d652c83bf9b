"""Purge one policy's expired rows: children first, then the table, in key-ordered batches.

The cutoff is the run's ``data_interval_end``: a cleared or retried run selects the same rows, and a
kill -9 at any point loses nothing (each batch commits on its own; the next run walks the key range
again and finds only what is left). A session advisory lock per table keeps two runs from purging one
table at once. The summary holds counts only, never row data.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.core.units import format_duration
from pgwarden.engine.batches import BatchOutcome, BatchSettings, BatchStats, Key, run_batches
from pgwarden.engine.errors import TransientError
from pgwarden.engine.lifecycle.partitions import detach_expired_partitions
from pgwarden.engine.lifecycle.plan import plan_nodes, plan_policy, set_batch_session
from pgwarden.engine.lifecycle.selection import (
    Selection,
    after_params,
    batch_bound,
    count_estimate,
    delete_locked,
    delete_range,
    lock_range,
    next_key,
    upto_params,
    walk_end,
)
from pgwarden.engine.postgres import PgTarget, connect, table_identifier

# before_delete(conn, column names, rows): sees each batch's rows, locked, inside the transaction
# that then deletes them; it must make them durable (or raise, and nothing is deleted).
BeforeDelete = Callable[[psycopg.Connection, list[str], list[tuple[Any, ...]]], None]

# archiver(conn, selection, threshold, settings) -> stats: runs the main table's walk instead of the
# plain batched delete (mode archive_then_delete: engine/lifecycle/archive.py), after the children.
TableRunner = Callable[[psycopg.Connection, Selection, datetime, BatchSettings], BatchStats]

ADVISORY_NAMESPACE = "pgwarden.lifecycle:"


@contextmanager
def table_lock(conn: psycopg.Connection, table: QualifiedName) -> Iterator[None]:
    """A session advisory lock on the table's name: a second purge of it fails fast (and retries later)."""
    name = ADVISORY_NAMESPACE + str(table)
    got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)).fetchone()[0]  # type: ignore[index]
    if not got:
        raise TransientError(f"another pgwarden run is purging {table} right now; this one retries later")
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))


def batch_settings(policy: PolicyConfig, max_run_time: timedelta) -> BatchSettings:
    return BatchSettings(time_budget=policy.batch.time_budget, lock_timeout=policy.batch.lock_timeout,
                         pause=policy.batch.pause, max_run_time=max_run_time)


def purge(
    target: PgTarget,
    policy: PolicyConfig,
    cutoff: datetime,
    *,
    log: Callable[[str], None] = print,
    before_delete: BeforeDelete | None = None,
    archiver: TableRunner | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, object]:
    """Purge what ``policy`` selects at ``cutoff``; returns the run's summary (counts only)."""
    if cutoff.tzinfo is None:
        raise ValueError("the cutoff must be timezone-aware (the run's data_interval_end)")
    started = clock()
    with connect(target) as conn:
        plan = plan_policy(conn, policy)
        for warning in plan.warnings:
            log(f"warning: {warning}")
        threshold = plan.threshold(cutoff)
        with table_lock(conn, policy.table):
            wal_start = _wal_lsn(conn)
            detached: list[str] = []
            if policy.mode == "partition_drop":
                detached = detach_expired_partitions(conn, plan, threshold, log=log)
            tables: dict[str, dict[str, object]] = {}
            finished = True
            for table_plan in (*plan.children, plan.main):
                left = policy.batch.max_run_time.total_seconds() - (clock() - started)
                if left <= 0:
                    finished = False
                    break
                hook = before_delete if table_plan is plan.main else None
                settings = batch_settings(policy, timedelta(seconds=left))
                if table_plan is plan.main and archiver is not None:
                    stats = archiver(conn, table_plan.selection, threshold, settings)
                else:
                    stats = purge_table(conn, table_plan.selection, threshold, settings, log=log,
                                        before_delete=hook, clock=clock, side_conn=lambda: connect(target))
                tables[str(table_plan.table)] = stats.to_json_dict()
                if not stats.finished:
                    finished = False
                    break
            vacuumed = []
            if policy.vacuum_after is not None:
                for name, summary in tables.items():
                    if int(summary["rows"]) >= policy.vacuum_after:  # type: ignore[call-overload]
                        _vacuum(conn, QualifiedName.parse(name), log)
                        vacuumed.append(name)
            wal_bytes = _wal_bytes_since(conn, wal_start)
    main = tables.get(str(policy.table), BatchStats().to_json_dict())
    return {
        "policy": policy.name,
        "table": str(policy.table),
        "mode": policy.mode,
        "cutoff": cutoff.isoformat(),
        "threshold": threshold.isoformat(),
        **{k: v for k, v in main.items() if k != "finished"},
        "finished": finished,
        "rows_total": sum(int(s["rows"]) for s in tables.values()),  # type: ignore[call-overload]
        "tables": tables,
        "partitions_detached": detached,
        "vacuumed": vacuumed,
        "wal_bytes": wal_bytes,
        "warnings": list(plan.warnings),
    }


def purge_table(
    conn: psycopg.Connection,
    selection: Selection,
    threshold: datetime,
    settings: BatchSettings,
    *,
    log: Callable[[str], None],
    before_delete: BeforeDelete | None = None,
    clock: Callable[[], float] = time.monotonic,
    side_conn: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
) -> BatchStats:
    """Walk ``selection`` in key ranges. ``side_conn`` opens a second connection on which the walk's end
    is read while the first batches already run (without it, it is read first, on ``conn``)."""
    what = f"purge {selection.table}"
    estimate = _estimate(conn, selection, threshold)
    log(f"{what}: rows older than {threshold.isoformat()}, ~{estimate} estimated")
    finder = WalkEnd(selection, threshold, settings, log)
    if side_conn is None:
        finder.read(conn)
    else:
        finder.start(side_conn)
    try:
        stats = _walk(conn, selection, threshold, settings, finder, what=what, estimate=estimate, log=log,
                      before_delete=before_delete, clock=clock)
    finally:
        finder.stop()
    log(f"{what}: {stats.summary()}")
    return stats


def _walk(conn: psycopg.Connection, selection: Selection, threshold: datetime, settings: BatchSettings,
          finder: WalkEnd, *, what: str, estimate: int, log: Callable[[str], None],
          before_delete: BeforeDelete | None, clock: Callable[[], float]) -> BatchStats:
    def step(conn: psycopg.Connection, after: Key | None, limit: int) -> BatchOutcome:
        known, end = finder.result()
        if known and end is None:
            return BatchOutcome(0, None)  # nothing was selected when the run began
        set_batch_session(conn)
        params = {"threshold": threshold, "limit": limit, **after_params(selection.key, after),
                  **upto_params(end, "until")}
        # The next `limit` keys, whatever they hold; the range's selected rows are deleted. The walk's
        # end (the last selected key, or the table's) ends it, after deleting what the last range held.
        bound = conn.execute(batch_bound(selection, after, until=end is not None),
                             {**params, "offset": limit - 1}).fetchone()
        upto, last = (end, None) if bound is None else (tuple(bound), tuple(bound))
        params.update(upto_params(upto))
        if before_delete is None:
            deleted = conn.execute(delete_range(selection, after, bounded=upto is not None), params).rowcount
            return BatchOutcome(deleted, last)
        cur = conn.execute(lock_range(selection, after, bounded=upto is not None), params)
        rows = cur.fetchall()
        if not rows:
            return BatchOutcome(0, last)
        names = [d.name for d in cur.description or ()][2:]
        data = [tuple(r[2:]) for r in rows]
        before_delete(conn, names, data)
        deleted = conn.execute(delete_locked(selection), {
            "threshold": threshold, "oids": [r[0] for r in rows], "ctids": [r[1] for r in rows]}).rowcount
        return BatchOutcome(deleted, last)

    def peek(conn: psycopg.Connection, after: Key | None) -> Key | None:
        set_batch_session(conn)
        row = conn.execute(next_key(selection, after),
                           {"threshold": threshold, **after_params(selection.key, after)}).fetchone()
        return None if row is None else tuple(row)

    return run_batches(conn, step, settings, peek=peek, what=what, estimate=estimate, log=log, clock=clock)


# The walk's end is read in one statement (no row locks, a snapshot only): bounded all the same.
WALK_END_TIMEOUT = timedelta(seconds=30)


class WalkEnd:
    """The largest selected key, where the walk can stop instead of crossing every unexpired row after the
    last expired one. Known only when the server reaches the selected rows through an index on the expiry
    column (then it costs one read of the selected rows, run beside the first batches when a second
    connection is given); otherwise, or if that read runs over its timeout, the walk goes to the end of
    the key. The read's snapshot is taken before any batch deletes: rows that become selected beyond it
    while the run goes on are the next run's."""

    def __init__(self, selection: Selection, threshold: datetime, settings: BatchSettings,
                 log: Callable[[str], None]) -> None:
        self.selection, self.threshold, self.log = selection, threshold, log
        self.timeout = max(WALK_END_TIMEOUT, settings.statement_timeout)
        self._result: tuple[bool, Key | None] = (False, None)
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self._stopping = False

    def result(self) -> tuple[bool, Key | None]:
        """(known, key); (False, None) while the read runs."""
        return self._result

    def start(self, side_conn: Callable[[], AbstractContextManager[psycopg.Connection]]) -> None:
        if self.selection.parent is not None:
            return  # a child's rows are selected through its parent's: no index of its own to read

        def run() -> None:
            try:
                with side_conn() as conn:
                    self._conn = conn
                    self.read(conn)
            except Exception as exc:  # the end is an optimisation: without it the walk goes to the key's end
                self._result = (False, None)
                self.log(f"purge {self.selection.table}: the walk's end could not be read "
                         f"({type(exc).__name__}); the walk goes to the end of the key")

        self._thread = threading.Thread(target=run, name="pgwarden-walk-end", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The walk is over: cancel a read still running, and wait for its connection to close."""
        if self._thread is None:
            return
        self._stopping = True
        if self._thread.is_alive() and self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel()
        self._thread.join()

    def read(self, conn: psycopg.Connection) -> None:
        if self.selection.parent is not None:
            return
        query = walk_end(self.selection)
        try:
            with conn.transaction():
                set_batch_session(conn)
                conn.execute("SELECT set_config('statement_timeout', %s, true)",
                             (f"{int(self.timeout.total_seconds() * 1000)}ms",))
                explained = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query),
                                         {"threshold": self.threshold}).fetchone()[0]  # type: ignore[index]
                # The table's scans (or its partitions'): each must be an index search, not a walk of it all.
                scans = [n for n in plan_nodes(explained[0]["Plan"]) if "Relation Name" in n]
                if not scans or not all("Index Cond" in n for n in scans):
                    return
                row = conn.execute(query, {"threshold": self.threshold}).fetchone()
        except psycopg.errors.QueryCanceled:
            if self._stopping:
                return  # cancelled by stop(): the walk finished first
            self.log(f"purge {self.selection.table}: the last expired key was not found within "
                     f"{format_duration(self.timeout)}; the walk goes to the end of the key")
            return
        self._result = (True, None if row is None else tuple(row))
        self.log(f"purge {self.selection.table}: the last expired key is known; the walk stops there")


def _estimate(conn: psycopg.Connection, selection: Selection, threshold: datetime) -> int:
    with conn.transaction():
        set_batch_session(conn)
        plan = conn.execute(count_estimate(selection), {"threshold": threshold}).fetchone()[0]  # type: ignore[index]
    return int(plan[0]["Plan"]["Plan Rows"])


def _wal_lsn(conn: psycopg.Connection) -> str:
    return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]


def _wal_bytes_since(conn: psycopg.Connection, start: str) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,)).fetchone()
    return int(row[0])  # type: ignore[index]


def _vacuum(conn: psycopg.Connection, table: QualifiedName, log: Callable[[str], None]) -> None:
    """Outside any transaction (``conn`` is autocommit), as VACUUM requires."""
    log(f"VACUUM (ANALYZE) {table}")
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table_identifier(table)))


