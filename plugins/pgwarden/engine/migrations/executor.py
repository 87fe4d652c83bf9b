"""Execute the DDL steps of one phase of a planned migration, idempotently, through online DDL.

Every step is guarded: a ``refuse_if`` query stops the phase before anything runs (a rollback after
contract), a ``skip_if`` query skips a step whose effect is already in place, the statements
themselves use ``IF [NOT] EXISTS``, and concurrent index builds clear an INVALID leftover first. A
phase killed at any point converges when it is run again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from pgwarden.core.migrations.steps import Step
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.migrations.online_ddl import DEFAULT_DDL, DdlSettings, create_index_concurrently, run_ddl
from pgwarden.engine.postgres import classify


@dataclass
class PhaseStats:
    steps: int = 0
    skipped: int = 0
    lock_retries: int = 0
    lock_wait_s: float = 0.0  # time spent in statements that waited for a lock, retries and backoff included

    def summary(self) -> str:
        return f"{self.steps} steps run, {self.skipped} already done, {self.lock_retries} lock-timeout retries"

    def to_json_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "skipped": self.skipped, "lock_retries": self.lock_retries,
                "lock_wait_s": round(self.lock_wait_s, 3)}


def _ask(conn: psycopg.Connection, query: str) -> bool:
    with conn.transaction():
        return bool(conn.execute(query).fetchone()[0])  # type: ignore[index]


def run_steps(conn: psycopg.Connection, steps: Sequence[Step], *, what: str, settings: DdlSettings = DEFAULT_DDL,
              log: Callable[[str], None] = print) -> PhaseStats:
    """Run ``steps`` in order on an autocommit connection. Errors name the step, never row values."""
    for step in steps:
        if step.refuse_if and _ask(conn, step.refuse_if):
            raise PermanentError(f"{what}: refused on {step.table}: {step.refused_because}")
    stats = PhaseStats()
    for number, step in enumerate(steps, 1):
        label = f"{what} step {number}/{len(steps)} ({step.why})"
        if step.skip_if and _ask(conn, step.skip_if):
            stats.skipped += 1
            log(f"{label}: already done")
            continue
        try:
            if step.index is not None:
                outcome = create_index_concurrently(conn, step.statements[0], *step.index, table=step.table,
                                                    settings=settings, log=log)
            else:
                outcome = run_ddl(conn, step.statements, table=step.table,
                                  outside_transaction=step.outside_transaction, settings=settings, log=log)
        except psycopg.Error as exc:
            # The primary message only: a DETAIL may quote a failing row's values.
            primary = exc.diag.message_primary or type(exc).__name__
            error = classify(exc, label)
            raise type(error)(f"{label} failed: {primary} (SQLSTATE {exc.sqlstate}); fix the cause and run the "
                              f"phase again: it resumes where it stopped") from None
        stats.steps += 1
        stats.lock_retries += max(0, outcome.attempts - 1)
        if outcome.attempts > 1:
            stats.lock_wait_s += outcome.waited_s
        log(f"{label}: done (lock: {step.lock})")
    return stats
