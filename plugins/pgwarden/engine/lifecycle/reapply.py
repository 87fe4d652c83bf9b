"""Re-apply erasures after a restore: no erased person comes back with an old backup.

A restored database holds the ledger entries its backup held, and nothing after: an erasure is
committed with its entry, so the restored database contains an erasure exactly when it contains its
entry. The exported ledger in the repository (not the restored database) therefore says what to do:
every exported erasure entry after the restored database's head is an erasure the restore undid.

``reapply_erasures`` does, in ONE transaction (a kill or a failure leaves the restored database as it
was, and the next run does everything again; after a commit the next run finds nothing to do):

1. check the restored chain agrees with the export as far as both go;
2. put the exported entries the database lacks back into its ledger, verbatim;
3. match the undone erasures to subjects of the restored database: the subject reference is computed
   with the HMAC key over the restored database's subject ids (the ledger holds no ids);
4. erase each matched subject again with the erasure engine (``engine/lifecycle/erasure.py``, no second
   implementation), recording a ``reapply`` entry that names the original request id.

``check_erased_subjects`` proves the result: for every erasure in the export whose subject is present
in the database, the erasure's own post-condition queries find no personal data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.core.lifecycle.ledger import compare_with_export, subject_reference, verify_chain
from pgwarden.core.lifecycle.pii import ErasureConfig
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.erasure import RecordContext, erase_subject
from pgwarden.engine.lifecycle.erasure_plan import ErasurePlan, plan_erasure
from pgwarden.engine.lifecycle.ledger import ensure_ledger, head, read_stored, restore_entries
from pgwarden.engine.lifecycle.ledger_export import ExportedLedger, read_export
from pgwarden.engine.postgres import PgTarget, connect, table_identifier
from pgwarden.engine.repository import Repository

Log = Callable[[str], None]
MAX_IDS_REPORTED = 100


@dataclass
class ReapplyReport:
    """What a re-apply did: positions, counts and (capped) subject ids only."""

    database: str
    restored_head: int = 0
    export_head: int = 0
    entries_restored: int = 0
    undone_erasures: int = 0
    reapplied: int = 0
    not_present: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    reapplied_subjects: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json_dict(self) -> dict[str, Any]:
        return {"database": self.database, "restored_head": self.restored_head, "export_head": self.export_head,
                "entries_restored": self.entries_restored, "undone_erasures": self.undone_erasures,
                "reapplied": self.reapplied, "not_present": self.not_present, "rows_per_table": self.rows,
                "reapplied_subjects": self.reapplied_subjects, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        return (f"{self.database}: restored ledger ended at entry {self.restored_head}, export at "
                f"{self.export_head}; put {self.entries_restored} exported entries back; {self.undone_erasures} "
                f"erasures were undone by the restore: re-applied {self.reapplied}, {self.not_present} subjects "
                f"not in the restored database; {self.seconds:.1f}s")


def subject_ids(conn: psycopg.Connection, config: ErasureConfig) -> Iterable[str]:
    """Every subject id the database knows: the subject table's keys, and ids in the requests table (a subject
    row may be gone while its rows elsewhere are not). As text, the form the erasure engine hashes."""
    parts = [sql.SQL("SELECT {}::text FROM {}").format(sql.Identifier(config.subject.key),
                                                        table_identifier(config.subject.table))]
    requests = config.erasable.requests
    if requests is not None:
        parts.append(sql.SQL("SELECT {}::text FROM {} WHERE {} IS NOT NULL").format(
            sql.Identifier(requests.subject_column), table_identifier(requests.table),
            sql.Identifier(requests.subject_column)))
    with conn.cursor() as cur:
        for (subject_id,) in cur.stream(sql.SQL(" UNION ").join(parts)):
            yield subject_id


def match_subjects(conn: psycopg.Connection, config: ErasureConfig, database: str, hmac_key: bytes,
                   refs: set[str]) -> dict[str, str]:
    """subject reference -> subject id, for the ``refs`` whose subject is in this database."""
    table = str(config.subject.table)
    found: dict[str, str] = {}
    for subject_id in subject_ids(conn, config):
        ref = subject_reference(hmac_key, database, table, subject_id)
        if ref in refs:
            found[ref] = subject_id
    return found


def _exported_chain(repo: Repository, database: str) -> ExportedLedger:
    exported = read_export(repo, database)
    report = verify_chain(exported.entries)
    if not report.ok:
        raise PermanentError(f"{database}: the exported ledger in {repo.url} does not verify "
                             f"({report.problem.describe()}); it cannot guide a re-apply")  # type: ignore[union-attr]
    return exported


def reapply_erasures(conn: psycopg.Connection, repo: Repository, database: str, config: ErasureConfig,
                     hmac_key: bytes, record_context: RecordContext, *, log: Log = print) -> ReapplyReport:
    """Re-apply, on the restored database behind ``conn`` (autocommit), every exported erasure it lacks."""
    started = time.monotonic()
    report = ReapplyReport(database)
    stored = _exported_chain(repo, database)
    exported = stored.records()
    report.export_head = exported[-1].seq if exported else 0
    context = RecordContext(database=database, dag_id=record_context.dag_id, run_id=record_context.run_id,
                            task_id=record_context.task_id, try_number=record_context.try_number, kind="reapply")
    with conn.transaction():
        ensure_ledger(conn)
        report.restored_head = head(conn)[0]
        in_db, mismatch = read_stored(conn)
        if mismatch is not None:
            raise PermanentError(f"{database}: the restored ledger breaks at {mismatch.describe()}")
        shared = [e for e in in_db if e.seq <= report.export_head]
        comparison = compare_with_export(shared, [e for e in exported if e.seq <= report.restored_head])
        if not comparison.ok:
            raise PermanentError(f"{database}: the restored ledger disagrees with the export at "
                                 f"{comparison.problem.describe()}; not re-applying")  # type: ignore[union-attr]
        undone = [e for e in exported if e.seq > report.restored_head and e.record.kind == "erasure"]
        report.entries_restored = restore_entries(conn, stored.entries)
        report.undone_erasures = len(undone)
        if not undone:
            log(f"{database}: the restored database lacks no exported erasure; nothing to re-apply")
            report.seconds = time.monotonic() - started
            return report
        plan = plan_erasure(conn, config)
        matched = match_subjects(conn, config, database, hmac_key, {e.record.subject_ref for e in undone})
        failed = []
        for entry in undone:
            subject_id = matched.get(entry.record.subject_ref)
            if subject_id is None:
                report.not_present += 1
                continue
            outcome = erase_subject(conn, plan, subject_id, hmac_key, context, request_id=entry.record.request_id)
            if outcome.status != "erased":
                failed.append(f"{subject_id} ({outcome.status}: {outcome.error or '-'})")
                continue
            report.reapplied += 1
            log(f"{database}: re-applied the erasure of subject {subject_id} (exported entry {entry.seq}; "
                "committed with the rest)")
            for table in outcome.tables:
                report.rows[table.table] = report.rows.get(table.table, 0) + table.rows
            if len(report.reapplied_subjects) < MAX_IDS_REPORTED:
                report.reapplied_subjects.append(subject_id)
        if failed:
            # Raising rolls the whole transaction back: the restored database stays as it was restored.
            raise PermanentError(f"{database}: {len(failed)} erasure(s) could not be re-applied, nothing was "
                                 f"changed: {', '.join(failed[:MAX_IDS_REPORTED])}; fix and run it again")
    report.seconds = time.monotonic() - started
    log(report.summary())
    return report


@dataclass(frozen=True)
class ErasedSubjectsCheck:
    """Exported erasures whose subject is in the database, and those of them with personal data left."""

    erasures: int
    present: int
    with_personal_data: list[str]

    @property
    def ok(self) -> bool:
        return not self.with_personal_data

    def detail(self) -> str:
        if self.ok:
            return (f"{self.erasures} erased subject(s) in the exported ledger, {self.present} present in the "
                    "restored database: none holds personal data in a mapped column")
        return (f"{len(self.with_personal_data)} erased subject(s) still hold personal data: "
                + "; ".join(self.with_personal_data[:MAX_IDS_REPORTED]))


def check_erased_subjects(conn: psycopg.Connection, repo: Repository, database: str, config: ErasureConfig,
                          hmac_key: bytes, plan: ErasurePlan | None = None) -> ErasedSubjectsCheck:
    """Run the erasure's post-condition queries for every exported erasure whose subject is present."""
    exported = [e for e in _exported_chain(repo, database).records() if e.record.kind == "erasure"]
    plan = plan or plan_erasure(conn, config)
    matched = match_subjects(conn, config, database, hmac_key, {e.record.subject_ref for e in exported})
    dirty = []
    for subject_id in sorted(set(matched.values()), key=lambda s: (len(s), s)):
        for step in plan.steps:
            if step.check is None:
                continue
            left = conn.execute(step.check, plan.values(step, subject_id, hmac_key)).fetchone()[0]  # type: ignore[index]
            if left:
                dirty.append(f"subject {subject_id}: {left} row(s) of {step.table}")
    return ErasedSubjectsCheck(len(exported), len(matched), dirty)


def reapply_and_check(target: PgTarget, repo: Repository, database: str, config: ErasureConfig, hmac_key: bytes,
                      record_context: RecordContext, *, log: Log = print) -> tuple[ReapplyReport, ErasedSubjectsCheck]:
    """What a restore runs before anyone uses the restored server: re-apply, then prove it."""
    with connect(target, statement_timeout="1h", lock_timeout="30s") as conn:
        report = reapply_erasures(conn, repo, database, config, hmac_key, record_context, log=log)
        check = check_erased_subjects(conn, repo, database, config, hmac_key)
    log(f"{database}: erased-subject check {'passed' if check.ok else 'FAILED'}: {check.detail()}")
    return report, check
