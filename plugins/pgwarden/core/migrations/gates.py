"""What the gated expand/contract DAG tells people (pure): the migration in plain words, the gate bodies,
which old columns the readiness check watches, and the phase timeline.

Nothing here reads a database: the operators pass the figures their tasks measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pgwarden.core.migrations.spec import MigrationSpec

SWITCH_GATE = "gate_switch_reads"
CONTRACT_GATE = "gate_contract"
APPROVE = "Approve"
ROLL_BACK = "Roll back"
# The status of the timeline event a gate writes when it starts asking (its ``started_at``: the gate task's
# start in Airflow); the page shows the gate waiting since then until an approval of that gate follows.
WAITING = "waiting"


def _sentence(op: Any) -> str:
    kind = op.kind
    if kind == "rename_column":
        return (f"renames column `{op.from_}` of `{op.table}` to `{op.to}`: expand adds `{op.to}` kept equal to "
                f"`{op.from_}` by a trigger (both directions), backfill copies the existing rows, contract drops "
                f"`{op.from_}`")
    if kind == "change_column_type":
        new = op.to or f"{op.column} (new type)"
        return (f"changes the type of `{op.table}.{op.column}` to `{op.type}` through a new column `{new}` kept "
                f"in step by a trigger; contract drops the old column")
    if kind == "add_column":
        return f"adds column `{op.column}` ({op.type}) to `{op.table}`"
    if kind == "drop_column":
        return f"drops column `{op.column}` of `{op.table}` at contract (until then it stays)"
    if kind in ("set_not_null", "drop_not_null"):
        return f"{'sets' if kind == 'set_not_null' else 'drops'} NOT NULL on `{op.table}.{op.column}`"
    if kind in ("create_index", "drop_index"):
        return f"{kind.replace('_', 's ', 1)} `{getattr(op, 'name', None) or op.index}` (concurrently)"
    table = getattr(op, "table", None)
    return f"{kind.replace('_', ' ')}" + (f" on `{table}`" if table else "")


def old_columns(spec: MigrationSpec) -> list[tuple[str, str]]:
    """(table, column) pairs that contract removes: what the application must have stopped using."""
    pairs = []
    for op in spec.operations:
        if op.kind == "rename_column":
            pairs.append((str(op.table), op.from_))
        elif op.kind == "change_column_type":
            pairs.append((str(op.table), op.column))
        elif op.kind == "drop_column":
            pairs.append((str(op.table), op.column))
    return pairs


DOC = """\
### {dag_id}

**What it does.** Runs the expand/contract migration `{file}` on `{database}` in phases, with two
human gates. The migration:

{operations}

**Tasks.** `plan` (plan + squawk lint, file checked against `pgwarden.schema_history`) → `restore_point`
→ `expand` → `backfill` → `consistency` (waits until no row's new column differs from what the old one
implies) → **`{switch}`** → `readiness` → **`{contract}`** → `safety_net` → `contract` → `record`.

**Which application versions can run.** Before expand: only the old version. From expand until contract:
the old and the new version side by side (the trigger keeps old and new columns equal whichever one a
write uses). After contract: only the new version{old_note}.

**What it touches.** The tables the operations name on `{database}`, `pgwarden.schema_history` (status,
timeline, approvals, one claim per table), `pgwarden.expand_contract_state`, restore points in the WAL
and the backup repository (and, at the safety net, a WAL collection or full backup).

**Run it by hand.** It only runs by hand: Trigger it, then answer the two gates under **Required
actions** (or `PATCH /api/v2/dags/{dag_id}/dagRuns/<run>/taskInstances/<gate>/-1/hitlDetails`).
`pgwarden migrate plan {database}` shows the SQL of every phase from a shell.

**Gate "switch reads".** Approve once the numbers in its body look right (rows backfilled, 0 mismatches,
lock waits) and you are ready to deploy the application version that reads the new column. Roll back
undoes expand: the table is as before, the migration is marked rolled back. Unanswered after
{switch_timeout}: rolls back.

**Gate "contract".** Approve once no old application version is running (the readiness task reports
which statements still touched the old column). Contract is the irreversible step: before it a named
restore point and a WAL collection (`safety_net: {safety_net}`) make the old column one PITR away.
Roll back undoes expand. Unanswered after {contract_timeout}: rolls back, never contracts.

**Who answers.** {approvers}. Every answer (who, when, what) is written to
`pgwarden.schema_history.approvals`.

**When it fails.** Every task is safe to clear: a phase re-run finds its finished steps done. An edited
migration file is refused by the next task (edit a new migration instead). A second migration on the
same table is refused while this one is active. The `rollback` task undoes exactly what was done.
"""

ROLLBACK_DOC = """\
Runs when a gate is answered **Roll back** (or times out). It undoes exactly the phases done so far (the
engine's rollback steps: triggers and the new columns/indexes removed, the old ones kept untouched), so the
schema is as before and no row written meanwhile is lost (the old column was kept in step all along).
It marks the migration `rolled_back` in `pgwarden.schema_history` and releases its table.
Safe to clear and re-run.
"""


def dag_doc(*, dag_id: str, database: str, file: str, spec: MigrationSpec, approvers: Sequence[str],
            switch_timeout: timedelta, contract_timeout: timedelta, safety_net: str) -> str:
    olds = old_columns(spec)
    old_note = ("; no statement may use " + ", ".join(f"`{t}.{c}`" for t, c in olds)) if olds else ""
    return DOC.format(
        dag_id=dag_id, database=database, file=file,
        operations="\n".join(f"- {_sentence(op)}" for op in spec.operations),
        switch=SWITCH_GATE, contract=CONTRACT_GATE, old_note=old_note,
        switch_timeout=switch_timeout, contract_timeout=contract_timeout, safety_net=safety_net,
        approvers=("Only " + ", ".join(f"`{a}`" for a in approvers)) if approvers
        else "Any user who may use this DAG (set `migrations.gates.approvers` to name the release owners)",
    )


def _rows(items: Sequence[tuple[str, Any]]) -> str:
    return "\n".join(f"- **{label}**: {value}" for label, value in items)


def switch_body(facts: Mapping[str, Any]) -> str:
    """The switch-reads gate's body from the figures of plan/expand/backfill/consistency (and a rehearsal)."""
    rows = [("rows backfilled", facts.get("rows_updated", 0)),
            ("rows walked", facts.get("rows_walked", 0)),
            ("mismatches (new differs from what old implies)", facts.get("mismatches", 0)),
            ("lock-timeout retries in expand", facts.get("lock_retries", 0)),
            ("time since expand", facts.get("since_expand", "?")),
            ("restore point before expand", f"`{facts.get('restore_point')}`")]
    body = _rows(rows)
    rehearsal = facts.get("rehearsal")  # the rehearsal's own Markdown (core.migrations.rehearsal)
    return f"{body}\n\n{rehearsal}" if rehearsal else body


def contract_body(facts: Mapping[str, Any]) -> str:
    rows = [("readiness", facts.get("readiness", "?")),
            ("time since expand", facts.get("since_expand", "?")),
            ("switch reads approved by", facts.get("switch_by", "?")),
            ("safety net before contract", facts.get("safety_net", "?"))]
    return _rows(rows)


def approval_entry(gate: str, chosen: Sequence[str], user: Mapping[str, Any] | None, at: str | None,
                   timed_out: bool) -> dict[str, Any]:
    """One ``schema_history.approvals`` entry (ids and names of Airflow users only, no other data).

    The gate adds its run's ``dag_id``/``run_id``/``try_number``. Readers use :func:`approver` and
    :func:`answer` below, so the page and the audit export read exactly these keys.
    """
    return {"gate": gate, "chosen": list(chosen), "by": dict(user) if user else None, "at": at,
            "timed_out": bool(timed_out)}


def approver(entry: Mapping[str, Any]) -> str:
    """Who answered: the Airflow user's name (with the id when it differs); "" for a timeout."""
    user = entry.get("by")
    if not isinstance(user, Mapping):
        return "" if user is None else str(user)
    name, ident = str(user.get("name") or ""), str(user.get("id") or "")
    return name if not ident or ident == name else f"{name} ({ident})"


def answer(entry: Mapping[str, Any]) -> str:
    """What was chosen (``Approve``, ``Roll back``), marked when the gate's timeout chose it."""
    chosen = ", ".join(str(c) for c in entry.get("chosen") or []) or "?"
    return f"{chosen} (timed out)" if entry.get("timed_out") else chosen


def gate_asked(entry: Mapping[str, Any]) -> bool:
    """A timeline event that a gate wrote when it started asking (:data:`WAITING`)."""
    return entry.get("phase") in (SWITCH_GATE, CONTRACT_GATE) and entry.get("status") == WAITING


__all__ = ["APPROVE", "CONTRACT_GATE", "ROLL_BACK", "SWITCH_GATE", "WAITING", "answer", "approval_entry", "approver",
           "contract_body", "dag_doc", "gate_asked", "old_columns", "switch_body"]
