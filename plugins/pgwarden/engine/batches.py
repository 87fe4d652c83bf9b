"""Walk a table in key order, one short transaction per batch, sized to a time budget.

The caller supplies the batch itself (``step``): given the last key done and a row limit, it does
one batch's work inside the transaction the runner opened and returns how many rows it changed and
the last key it covered. The runner owns everything around it: ``SET LOCAL`` timeouts per
transaction, commit per batch, growing the batch while batches are fast and shrinking it when one
is slow, backing off and retrying on a lock timeout (isolating a row someone holds locked so the
rest still drains), a pause between batches, the run's time limit, and progress in the log.

A purge uses it today; a backfill or any other keyset walk can reuse it unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import errors

from pgwarden.core.units import format_duration
from pgwarden.engine.errors import PermanentError

Key = tuple[Any, ...]


@dataclass(frozen=True)
class BatchOutcome:
    """One batch's result: rows changed, and the last key it covered (``None``: nothing left to walk after
    this batch; its rows still count)."""

    rows: int
    last_key: Key | None


# step(conn, after_key, limit) -> BatchOutcome, run inside the runner's transaction.
BatchStep = Callable[[psycopg.Connection, Key | None, int], BatchOutcome]
# peek(conn, after_key) -> the next key the step would take, read without locking (None: none left).
Peek = Callable[[psycopg.Connection, Key | None], Key | None]


@dataclass(frozen=True)
class BatchSettings:
    time_budget: timedelta = timedelta(milliseconds=100)
    lock_timeout: timedelta = timedelta(seconds=2)
    pause: timedelta = timedelta(0)
    max_run_time: timedelta = timedelta(minutes=50)
    # Rows (keys) of the first batch: small enough for any table to take well under the budget, and
    # grown from there by the time the batches take.
    initial_size: int = 1000
    min_size: int = 1
    max_size: int = 50_000
    # Lock timeouts in a row on one batch before it is quartered (and, at one row, the row is skipped).
    lock_retries_before_shrink: int = 3
    progress_every: float = 5.0

    @property
    def statement_timeout(self) -> timedelta:
        """A batch far over budget is cancelled and retried smaller, rather than holding its locks on."""
        return max(self.lock_timeout + 20 * self.time_budget, timedelta(seconds=1))


@dataclass
class BatchStats:
    """Counts only: safe for logs and XCom."""

    rows: int = 0
    batches: int = 0
    lock_timeout_retries: int = 0
    statement_timeouts: int = 0
    rows_skipped_locked: int = 0
    finished: bool = False
    elapsed_s: float = 0.0
    durations_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One log line (pgwarden's result contract, ``core/results.py``)."""
        figures = self.to_json_dict()
        return (f"{'done' if self.finished else 'stopped'}: {self.rows} rows in {self.batches} batches "
                f"(p50 {figures['batch_ms_p50']} ms, p99 {figures['batch_ms_p99']} ms, max "
                f"{figures['batch_ms_max']} ms), {self.lock_timeout_retries} lock-timeout retries")

    def to_json_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "batches": self.batches,
            "batch_ms_p50": percentile(self.durations_ms, 50),
            "batch_ms_p99": percentile(self.durations_ms, 99),
            "batch_ms_max": round(max(self.durations_ms), 1) if self.durations_ms else 0.0,
            # Which batch was the slowest (0: the first): tells a cold start from a stall mid-way.
            "batch_max_index": self.durations_ms.index(max(self.durations_ms)) if self.durations_ms else None,
            "lock_timeout_retries": self.lock_timeout_retries,
            "statement_timeouts": self.statement_timeouts,
            "rows_skipped_locked": self.rows_skipped_locked,
            "finished": self.finished,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


# Batches aim at this share of the time budget: the budget bounds the slowest batch, and a batch's time
# varies with the load around it, so the aim leaves room for a batch nearly three times as slow as the last
# (measured under load: single batches ran 2.4x the aim).
AIM = 0.35
# At most this factor of growth from one batch to the next (time per row is not quite linear).
MAX_GROWTH = 8.0


def next_size(size: int, took: timedelta, settings: BatchSettings) -> int:
    """Scale the size by aim/took: grow while well under the aim (up to ``MAX_GROWTH`` at once), shrink
    after a batch over the budget, keep it in between (no hunting around the aim). A batch smaller than
    the first one still doubles while under half the budget: its time is mostly the fixed cost of a
    transaction (the commit's flush), which a smaller batch does not reduce."""
    budget = settings.time_budget.total_seconds()
    seconds = max(took.total_seconds(), 1e-6)
    gain = budget * AIM / seconds
    if gain > 1.4:
        size = round(size * min(gain, MAX_GROWTH))
    elif seconds > budget:
        size = round(size * gain)
    elif size < settings.initial_size and seconds < budget / 2:
        size *= 2
    return max(settings.min_size, min(settings.max_size, size))


def _ms(delta: timedelta) -> str:
    return f"{max(1, int(delta.total_seconds() * 1000))}ms"


def run_batches(
    conn: psycopg.Connection,
    step: BatchStep,
    settings: BatchSettings,
    *,
    peek: Peek,
    what: str,
    estimate: int | None = None,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    before_batch: Callable[[], None] | None = None,
) -> BatchStats:
    """Run ``step`` batch after batch until it reports nothing left, or ``max_run_time`` is reached.

    ``conn`` must not be in a transaction (autocommit off or on: each batch opens its own). Stopping
    on the time limit is clean: every committed batch stays done and the next run walks on from the
    start of the key range, finding only what is left. ``before_batch`` runs outside any transaction
    before each batch (a backfill's throttle waits there, so its waits do not count as batch time).
    """
    stats = BatchStats()
    started = last_progress = clock()
    size = settings.initial_size
    after: Key | None = None
    timeouts_in_a_row = 0
    backoff = 0.1
    while True:
        if clock() - started >= settings.max_run_time.total_seconds():
            log(f"{what}: stopping at the run time limit ({format_duration(settings.max_run_time)}); "
                f"the next run continues")
            break
        if before_batch is not None:
            before_batch()
        batch_start = clock()
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                             (_ms(settings.lock_timeout), _ms(settings.statement_timeout)))
                outcome = step(conn, after, size)
        except errors.LockNotAvailable:
            stats.lock_timeout_retries += 1
            timeouts_in_a_row += 1
            if timeouts_in_a_row >= settings.lock_retries_before_shrink:
                timeouts_in_a_row = 0
                backoff = 0.1
                if size > settings.min_size:
                    size = max(settings.min_size, size // 4)
                else:
                    # One row someone keeps locked: leave it to a later run, drain the rest.
                    with conn.transaction():
                        skipped = peek(conn, after)
                    if skipped is None:
                        stats.finished = True
                        break
                    after = skipped
                    stats.rows_skipped_locked += 1
            log(f"{what}: lock timeout after {format_duration(settings.lock_timeout)}; backing off "
                f"{backoff:.1f}s and retrying with batch size {size}")
            sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        except errors.QueryCanceled:
            stats.statement_timeouts += 1
            if size <= settings.min_size:
                raise
            size = max(settings.min_size, size // 4)
            log(f"{what}: batch exceeded the statement timeout; retrying with batch size {size}")
            continue
        took = timedelta(seconds=clock() - batch_start)
        timeouts_in_a_row, backoff = 0, 0.1
        if outcome.last_key is None:
            # The walk's end; a last batch may still have changed rows (a range walk's final stretch).
            if outcome.rows:
                stats.batches += 1
                stats.rows += outcome.rows
                stats.durations_ms.append(took.total_seconds() * 1000)
            stats.finished = True
            break
        if outcome.last_key == after:
            # A walk that does not move would repeat the same batch until max_run_time.
            raise PermanentError(f"{what}: the batch did not advance past the previous key; a `where` "
                                 f"predicate must be one condition (it may not close its parentheses)")
        stats.batches += 1
        stats.rows += outcome.rows
        stats.durations_ms.append(took.total_seconds() * 1000)
        after = outcome.last_key
        size = next_size(size, took, settings)
        now = clock()
        if now - last_progress >= settings.progress_every:
            last_progress = now
            log(progress_line(what, stats.rows, now - started, estimate))
        if settings.pause:
            sleep(settings.pause.total_seconds())
    stats.elapsed_s = clock() - started
    return stats


def progress_line(what: str, rows: int, elapsed: float, estimate: int | None) -> str:
    rate = rows / elapsed if elapsed > 0 else 0.0
    line = f"{what}: {rows} rows in {format_duration(elapsed)} ({rate:.0f} rows/s)"
    if estimate:
        pct = min(100.0, 100.0 * rows / estimate)
        left = max(0, estimate - rows)
        eta = format_duration(left / rate) if rate > 0 else "unknown"
        line += f", {pct:.0f}% of ~{estimate} estimated, ETA {eta}"
    return line
