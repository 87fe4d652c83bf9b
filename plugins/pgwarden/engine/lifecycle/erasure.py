"""GDPR erasure: each erasable subject in one transaction, proven, recorded in the ledger.

``erase_subjects`` selects the subjects due at the run's cutoff (``data_interval_end``, never ``now()``) and
hands each to ``erase_subject``, which in ONE transaction (a savepoint inside a batch commit, so one WAL flush
serves ``batch_size`` subjects): serializes on the subject (advisory lock on its reference, then the subject row
``FOR UPDATE``), re-checks that it is still due and not on legal hold, skips it when the ledger already has its
erasure, applies every mapped table in dependency order (one statement for all of them when the keys allow),
proves with a post-condition count per table that none of the subject's rows still holds personal data,
appends the ledger entry and releases. A retry, a cleared task or a second run finds the entry and changes
nothing; a kill loses at most the uncommitted batch, which the retry does again.

One subject that fails (a constraint, a lock held too long) fails alone: its id and the error's class and
SQLSTATE are logged, never the server's message (which can quote row values); the run goes on and reports the
failures at the end. Only subject ids and counts leave this module.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure, subject_reference
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.erasure_plan import ErasurePlan, TableStep
from pgwarden.engine.lifecycle.ledger import append, ensure_ledger, is_erased, ledger_exists, ledger_table
from pgwarden.engine.postgres import classify

Status = Literal["erased", "already_erased", "held", "not_due", "failed"]
MAX_IDS_REPORTED = 100
PROGRESS_EVERY = 1000


class ErasureFailed(PermanentError):
    """Some subjects could not be erased; the others were. The message lists their ids (no personal data)."""


@dataclass(frozen=True)
class RecordContext:
    """What the ledger entry says about who erased: the database and the Airflow ids (None outside Airflow)."""

    database: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    kind: Literal["erasure", "reapply"] = "erasure"


@dataclass(frozen=True)
class SubjectOutcome:
    subject_id: str
    status: Status
    tables: tuple[TableErasure, ...] = ()
    ledger_seq: int | None = None
    error: str | None = None  # class, SQLSTATE, table and constraint names: never values


class _NotTouched(Exception):
    def __init__(self, status: Status) -> None:
        super().__init__(status)
        self.status = status


class _PostConditionFailed(Exception):
    pass


def thresholds(plan: ErasurePlan, cutoff: datetime) -> dict[str, datetime]:
    """The moments a soft delete or a request must predate to be due at ``cutoff``."""
    cutoff = cutoff.astimezone(UTC)
    erasable = plan.config.erasable
    params = {"sd_threshold": cutoff - (erasable.soft_deleted.grace if erasable.soft_deleted else timedelta(0)),
              "rq_threshold": cutoff - (erasable.requests.grace if erasable.requests else timedelta(0))}
    return {name: value.replace(tzinfo=None) if name in plan.naive_thresholds else value
            for name, value in params.items()}


def erase_subject(conn: psycopg.Connection, plan: ErasurePlan, subject_id: str, hmac_key: bytes,
                  record_context: RecordContext, *, cutoff: datetime | None = None,
                  request_id: str | None = None) -> SubjectOutcome:
    """Erase one subject in one transaction (see the module doc). Usable without Airflow (``ledger reapply``).

    Called inside a transaction (as ``erase_subjects`` does, per batch) it is a savepoint of it.
    ``cutoff`` None (a re-apply from the ledger): the subject was already judged due when first erased, so
    grace and legal hold are not checked again; the ledger is the authority. ``conn`` must not be inside a
    transaction the caller wants to keep separate: this commits (or, nested, releases a savepoint).
    """
    if not hmac_key:
        raise PermanentError("the erasure HMAC key is empty; set the key's Airflow connection password or variable")
    subject_table = str(plan.config.subject.table)
    ref = subject_reference(hmac_key, record_context.database, subject_table, subject_id)
    params: dict[str, Any] = {"subject": subject_id, "lock": f"pgwarden.erasure:{ref}",
                              **thresholds(plan, cutoff or datetime.now(UTC))}
    sent: list[TableStep] = []
    try:
        # Not pipeline mode: measured here, its syncs around savepoints cost more than plain round trips.
        with conn.transaction():
            locked = conn.execute(plan.lock_subject, params, prepare=True)
            row = locked.fetchone()
            if row is None:
                row = conn.execute(plan.without_subject_row, params, prepare=True).fetchone()
            due, held = bool(row[0]), bool(row[1])  # type: ignore[index]
            if cutoff is not None and held:
                raise _NotTouched("held")
            if cutoff is not None and not due:
                raise _NotTouched("not_due")
            # A re-apply follows an erasure entry restored from the export on purpose; its caller
            # (engine/lifecycle/reapply.py) makes it happen once.
            if record_context.kind == "erasure" and is_erased(conn, ref):
                raise _NotTouched("already_erased")
            erased: list[TableErasure] = []
            if plan.apply_all is not None:  # one statement for every table (see erasure_plan._apply_all)
                sent.extend(plan.applied)
                counts = conn.execute(plan.apply_all, plan.values(None, subject_id, hmac_key),
                                      prepare=True).fetchone()[0]  # type: ignore[index]
                erased.extend(TableErasure(table=str(step.table), method=step.method, rows=int(rows))
                              for step, rows in zip(plan.applied, counts, strict=True))
            else:
                for step in plan.applied:
                    sent[:] = [step]
                    values = plan.values(step, subject_id, hmac_key)
                    rows = conn.execute(step.apply, values, prepare=True).rowcount  # type: ignore[arg-type]
                    if step.checked_at_once:  # before the rows it is found through are deleted
                        assert step.check is not None
                        _prove(step, conn.execute(step.check, values, prepare=True).fetchone()[0])  # type: ignore[index]
                    erased.append(TableErasure(table=str(step.table), method=step.method, rows=max(rows, 0)))
            sent.clear()
            if plan.check_all is not None:
                left = conn.execute(plan.check_all, plan.values(None, subject_id, hmac_key), prepare=True).fetchone()
                for step, count in zip(plan.checked_together, left[0], strict=True):  # type: ignore[index]
                    _prove(step, count)
            found = conn.execute(plan.request_id, params, prepare=True) if plan.request_id is not None else None
            if request_id is None and found is not None:
                request_id = (found.fetchone() or (None,))[0]
            record = ErasureRecord(
                kind=record_context.kind, request_id=request_id or f"{record_context.kind}:{ref[:16]}",
                subject_ref=ref, policy_version=plan.policy_version, tables=tuple(erased),
                dag_id=record_context.dag_id, run_id=record_context.run_id, task_id=record_context.task_id,
                try_number=record_context.try_number, erased_at=datetime.now(UTC))
            entry = append(conn, record)
    except _NotTouched as skip:
        return SubjectOutcome(subject_id, skip.status)
    except _PostConditionFailed as exc:
        return SubjectOutcome(subject_id, "failed", error=str(exc))
    except psycopg.Error as exc:
        if conn.closed or isinstance(exc, psycopg.OperationalError) and not getattr(exc, "sqlstate", None):
            raise classify_safely(exc, subject_id) from None
        return SubjectOutcome(subject_id, "failed", error=describe_error(exc, sent))
    return SubjectOutcome(subject_id, "erased", tuple(erased), ledger_seq=entry.seq)


def _prove(step: TableStep, left: int) -> None:
    if left:
        raise _PostConditionFailed(f"{left} row(s) of {step.table} still hold personal data after the erasure "
                                   f"(a trigger or rule rewrote them?)")


def describe_error(exc: psycopg.Error, steps: list[TableStep]) -> str:
    """What failed, by names only: the server's message and DETAIL can quote row values (``Failing row contains``).

    ``steps``: the tables being changed when it failed (all of them when they go in one statement).
    """
    diag = exc.diag
    parts = [type(exc).__name__, f"SQLSTATE {exc.sqlstate or '?'}"]
    if diag.schema_name and diag.table_name:
        parts.append(f"in {QualifiedName(diag.schema_name, diag.table_name)}")
    if steps:
        parts.append(f"while erasing {', '.join(str(s.table) for s in steps)}")
    if diag.constraint_name:
        parts.append(f"constraint {diag.constraint_name}")
    return ", ".join(parts)


def classify_safely(exc: psycopg.Error, subject_id: str) -> Exception:
    """A lost connection: the whole task retries (classified, with no server text beyond the class)."""
    classified = classify(exc, f"erasing subject {subject_id}")
    return type(classified)(f"erasing subject {subject_id}: {type(exc).__name__} SQLSTATE {exc.sqlstate or '-'}; "
                            f"the connection was lost, the retry continues where this stopped")


@dataclass
class ErasureReport:
    """What a run did: counts per outcome and per table, the ids of failed and held subjects (capped)."""

    database: str
    policy_version: str
    cutoff: datetime
    dry_run: bool
    selected: int = 0
    in_grace: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, outcome: SubjectOutcome) -> None:
        self.outcomes[outcome.status] += 1
        for table in outcome.tables:
            self.rows[table.table] += table.rows
        if outcome.status == "failed" and len(self.failed) < MAX_IDS_REPORTED:
            self.failed.append(outcome.subject_id)
        if outcome.status == "held" and len(self.held) < MAX_IDS_REPORTED:
            self.held.append(outcome.subject_id)

    @property
    def subjects_per_second(self) -> float:
        done = self.outcomes["erased"]
        return round(done / self.seconds, 1) if self.seconds > 0 else 0.0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "database": self.database, "policy_version": self.policy_version, "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run, "selected": self.selected, "in_grace": self.in_grace,
            **{status: self.outcomes[status] for status in ("erased", "already_erased", "held", "not_due", "failed")},
            "rows_per_table": dict(sorted(self.rows.items())),
            "failed_subjects": self.failed, "held_subjects": self.held,
            "seconds": round(self.seconds, 3), "subjects_per_second": self.subjects_per_second,
        }

    def summary(self) -> str:
        verb = "would erase" if self.dry_run else "erased"
        o = self.outcomes
        return (f"{self.database}: {verb} {o['erased']} of {self.selected} due subjects "
                f"({o['already_erased']} already erased, {o['held']} on legal hold, {o['not_due']} no longer due, "
                f"{o['failed']} failed; {self.in_grace} soft-deleted still in grace) in {self.seconds:.1f}s; rows "
                + (", ".join(f"{t}: {n}" for t, n in sorted(self.rows.items())) or "none"))


def erase_subjects(conn: psycopg.Connection, plan: ErasurePlan, cutoff: datetime, hmac_key: bytes,
                   record_context: RecordContext, *, dry_run: bool = False, log: Callable[[str], None] = print,
                   before_subject: Callable[[str], None] | None = None,
                   progress_every: int = PROGRESS_EVERY) -> ErasureReport:
    """Erase every subject due at ``cutoff``; raise ``ErasureFailed`` at the end if any subject failed.

    ``before_subject(subject_id)`` runs after selection and before the subject's transaction: the point where
    the world may change under a run (a test sets a legal hold there from another session).
    ``conn`` is an autocommit connection. Subjects commit in batches of ``batch_size`` (one WAL flush per batch,
    not per subject); inside a batch each subject is its own savepoint, so it is erased entirely or not at all
    and fails alone. A kill loses at most the batch in flight, which the retry does again.
    """
    started = time.monotonic()
    report = ErasureReport(record_context.database, plan.policy_version, cutoff, dry_run)
    params = thresholds(plan, cutoff)
    subjects = [str(r[0]) for r in conn.execute(plan.select_due, params)]
    report.selected = len(subjects)
    if plan.count_in_grace is not None:
        report.in_grace = int(conn.execute(plan.count_in_grace, params).fetchone()[0])  # type: ignore[index]
    log(f"{len(subjects)} subjects due at {cutoff.isoformat()} ({report.in_grace} soft-deleted still in grace); "
        f"policy version {plan.policy_version[:16]}")
    if dry_run:
        _dry_run(conn, plan, subjects, hmac_key, record_context, report, params)
    else:
        ensure_ledger(conn)
        subjects = _not_yet_erased(conn, plan, subjects, hmac_key, record_context, report)
        size = plan.config.batch_size
        for start in range(0, len(subjects), size):
            outcomes = []
            with conn.transaction():  # one commit per batch; each subject a savepoint inside, failing alone
                for subject_id in subjects[start:start + size]:
                    if before_subject is not None:
                        before_subject(subject_id)
                    outcomes.append(erase_subject(conn, plan, subject_id, hmac_key, record_context, cutoff=cutoff))
            for outcome in outcomes:  # reported once committed
                report.add(outcome)
                if outcome.status == "failed":
                    log(f"subject {outcome.subject_id}: erasure failed and was rolled back: {outcome.error}")
                elif outcome.status == "held":
                    log(f"subject {outcome.subject_id}: on legal hold, not touched")
            done = start + len(outcomes)
            if done // progress_every > start // progress_every or done == len(subjects):
                log(f"{done}/{len(subjects)} subjects committed: {dict(report.outcomes)}")
    report.seconds = time.monotonic() - started
    log(report.summary())
    if report.outcomes["failed"]:
        shown = ", ".join(report.failed)
        more = report.outcomes["failed"] - len(report.failed)
        raise ErasureFailed(f"{report.outcomes['failed']} subject(s) could not be erased and were left as they were "
                            f"(each rolled back; the other {report.outcomes['erased']} were erased): {shown}"
                            f"{f' and {more} more' if more > 0 else ''}. The task log names each subject's error "
                            f"(class, SQLSTATE, table, constraint); fix it and clear the task: erased subjects are "
                            f"not touched again")
    return report


def _not_yet_erased(conn: psycopg.Connection, plan: ErasurePlan, subjects: list[str], hmac_key: bytes,
                    record_context: RecordContext, report: ErasureReport) -> list[str]:
    """Drop the subjects the ledger already holds, in one query, before any lock is taken.

    A soft-deleted subject stays soft-deleted after its erasure, so every later run selects it again; without
    this, each of them would cost a savepoint, two locks and a ledger lookup every day, forever. The check inside
    the subject's transaction (``is_erased``, under the locks) stays the one that decides; this query mirrors it
    (``kind = 'erasure'``) only to skip the work.
    """
    if record_context.kind != "erasure" or not subjects:
        return subjects
    subject_table = str(plan.config.subject.table)
    refs = {subject_id: subject_reference(hmac_key, record_context.database, subject_table, subject_id)
            for subject_id in subjects}
    erased = {row[0] for row in conn.execute(
        sql.SQL("SELECT subject_ref FROM {} WHERE kind = 'erasure' AND subject_ref = ANY(%s)").format(ledger_table()),
        (list(refs.values()),))}
    todo = []
    for subject_id in subjects:
        if refs[subject_id] in erased:
            report.add(SubjectOutcome(subject_id, "already_erased"))
        else:
            todo.append(subject_id)
    return todo


def _dry_run(conn: psycopg.Connection, plan: ErasurePlan, subjects: list[str], hmac_key: bytes,
             record_context: RecordContext, report: ErasureReport, params: dict[str, Any]) -> None:
    """Count what each due subject would lose, table by table, in a transaction that is rolled back."""
    ledger = ledger_exists(conn)
    subject_table = str(plan.config.subject.table)
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        for subject_id in subjects:
            ref = subject_reference(hmac_key, record_context.database, subject_table, subject_id)
            values = {**params, "subject": subject_id, "lock": f"pgwarden.erasure:{ref}"}
            row = conn.execute(plan.peek_subject, values, prepare=True).fetchone()
            if row is None:
                row = conn.execute(plan.without_subject_row, values, prepare=True).fetchone()
            if bool(row[1]):  # type: ignore[index]
                report.add(SubjectOutcome(subject_id, "held"))
            elif not bool(row[0]):  # type: ignore[index]
                report.add(SubjectOutcome(subject_id, "not_due"))
            elif ledger and is_erased(conn, ref):
                report.add(SubjectOutcome(subject_id, "already_erased"))
            else:
                tables = tuple(
                    TableErasure(str(step.table), step.method,
                                 int(conn.execute(step.count, values, prepare=True).fetchone()[0]))  # type: ignore[index]
                    for step in plan.steps if step.apply is not None)
                report.add(SubjectOutcome(subject_id, "erased", tables))
