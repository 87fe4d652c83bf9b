"""``<database>.gdpr_erasure``: erase the personal data of subjects past their grace period, with a ledger entry each."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from pgwarden.airflow.operators.erasure import EraseSubjectsOperator, ErasurePlanOperator
from pgwarden.airflow.operators.ledger import CertificatesOperator, LedgerExportOperator
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults
from pgwarden.core.lifecycle.pii import ErasureConfig

DOC = """\
### {database}.gdpr_erasure

**What it does.** Finds the subjects of `{subject}` that are erasable at the run's `data_interval_end` ({rules})
and erases each in **one transaction**: locks the subject row, checks again that it is still due and not on
legal hold, applies the PII map to {tables} (in dependency order: tables joined through others first, the
subject table last), proves with a query per table that none of the subject's rows still holds personal data,
appends an entry to the ledger `pgwarden.erasure_ledger` (request id, HMAC subject reference, policy version,
per-table row counts and methods, this run's ids) and commits. A subject already in the ledger is not touched
again, so a retry, a cleared task or a second run changes nothing and writes no second entry.

**Legal hold and grace are not failures.** A subject on legal hold ({hold}) or whose grace period is not over
is left exactly as it is, counted in the summary (`held`, `in_grace`), and looked at again next run.

**Then** `ledger_export` writes the new ledger entries and the chain head to the repository
(`{database}/ledger/`, with S3 Object Lock where configured) — the anchor outside the database that
`pgwarden ledger verify {database}` compares with — also after an `erase` that failed for some subjects, and
`certificates` writes a JSON and an HTML erasure certificate per new entry for auditors.

**What it touches.** Updates and deletes rows of the mapped tables through `{conn_id}`; creates the
`pgwarden` schema and the append-only ledger table on the first run; writes under `{database}/ledger/` in
the repository. The HMAC key (pseudonyms and subject
references) is read inside the task from {key}; it never reaches logs, XCom or the config. Logs and XCom hold
subject ids and counts only, never a row value.

**Run it by hand.** Trigger the DAG. `dry_run: true` reports, per table, how many rows each due subject would
lose and changes nothing. The cutoff is the run's data interval end, so a backfilled run erases what was due then.

**When it fails.** `plan` fails before any change, naming every problem of the map (a missing table or column,
a strategy the column's type or a NOT NULL / CHECK / unique constraint refuses, a `delete_row` a foreign key
would block and the order that fixes it, a cycle of joins). `erase` fails at the end when some subjects could
not be erased: each was rolled back on its own, the others are done; the log names each failed subject id with
the error's class, SQLSTATE, table and constraint. Fix the cause and clear the task.
"""


def _rules(erasure: ErasureConfig) -> str:
    rules = []
    if erasure.erasable.soft_deleted:
        rule = erasure.erasable.soft_deleted
        rules.append(f"soft-deleted via `{rule.column}` more than {rule.grace.days} days ago")
    if erasure.erasable.requests:
        rules.append(f"a request in `{erasure.erasable.requests.table}`")
    return " or ".join(rules)


def _hold(erasure: ErasureConfig) -> str:
    hold = erasure.legal_hold
    if hold is None:
        return "none configured"
    return f"column `{hold.column}`" if hold.column else f"a row in `{hold.table}`"


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    erasure = db_config.lifecycle.erasure
    if erasure is None:
        return []
    key = erasure.hmac_key
    with pgwarden_dag(
        database=database,
        concern="gdpr_erasure",
        db_config=db_config,
        defaults=defaults,
        schedule=erasure.schedule,
        description=f"Erases personal data of {database}'s subjects past their grace period, with a ledger entry each",
        doc_md=DOC.format(database=database, subject=erasure.subject.table, rules=_rules(erasure),
                          tables=", ".join(f"`{m.table}`" for m in erasure.tables), hold=_hold(erasure),
                          conn_id=db_config.conn_id,
                          key=f"the password of connection `{key.conn_id}`" if key.conn_id
                          else f"variable `{key.variable}`"),
        params={"dry_run": Param(False, type="boolean",
                                 description="report per-table row counts of what would be erased; change nothing")},
    ) as dag:
        common = {"database": database, "db_config": db_config}
        erase = EraseSubjectsOperator(task_id="erase", **common)
        # The entries of the subjects that were erased are exported even when some others failed.
        export = LedgerExportOperator(task_id="ledger_export", trigger_rule="all_done", **common)
        ErasurePlanOperator(task_id="plan", **common) >> erase >> export
        export >> CertificatesOperator(task_id="certificates", **common)
    return [dag]
