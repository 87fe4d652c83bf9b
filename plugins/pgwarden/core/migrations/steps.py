"""A planned migration as data: per phase, the statements, the lock each takes, how each must run.

The engine executes this data (``engine/migrations/executor.py``); ``pgwarden migrate plan`` prints
it. Every step is idempotent by construction (``IF [NOT] EXISTS``) or carries ``skip_if``: a query
returning true once the step's effect is in place, so a phase re-run after a kill converges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PHASES = ("expand", "backfill", "contract", "rollback")

# squawk's backward-compatibility rules ("may break existing clients"). Generated contract and rollback
# steps are excused from them: contract removes only what the retired application version used, after
# the release owner's gate, and rollback removes only what expand added. Author SQL (raw_sql) is not.
COMPATIBILITY_RULES = ("ban-drop-column", "ban-drop-constraint", "ban-drop-function", "renaming-column")


class PlanError(ValueError):
    """The migration cannot be planned against this database; names file, operation index and field."""

    def __init__(self, file: str, index: int | None, field_name: str | None, message: str) -> None:
        self.file, self.index, self.field = file, index, field_name
        where = file + (f": operations[{index}]" if index is not None else "") + (
            f".{field_name}" if field_name else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Step:
    """One transaction (``statements`` together), or one statement outside any transaction block."""

    statements: tuple[str, ...]
    lock: str  # the strongest lock it takes, on what, and for how long
    table: str | None  # the table as SQL text (for logs, errors and finding blockers)
    outside_transaction: bool = False
    skip_if: str | None = None
    index: tuple[str, str] | None = None  # (schema, name) a concurrent build creates: invalid leftovers rebuilt
    # A query returning true when this step must not run at all (e.g. a rollback after contract), and why.
    refuse_if: str | None = None
    refused_because: str = ""
    # squawk rules this step breaks on purpose (written as ``-- squawk-ignore`` before each statement).
    excused: tuple[str, ...] = ()

    def sql_text(self) -> str:
        ignore = f"-- squawk-ignore {', '.join(self.excused)}\n" if self.excused else ""
        return "".join(f"{ignore}{s.rstrip().rstrip(';')};\n" for s in self.statements)
    why: str = ""


@dataclass(frozen=True)
class Backfill:
    """A keyset walk: ``UPDATE table SET <assignment> WHERE <pending>`` batch by batch.

    ``pending`` is true for a row still to do; the final consistency query counts rows where it holds.
    """

    table: str
    key: tuple[str, ...]
    key_types: tuple[str, ...]
    assignment: str
    pending: str
    estimated_rows: int = 0

    def sql_text(self) -> str:
        """The whole backfill as one statement (what each batch runs on its key range; shown and linted)."""
        return f"UPDATE {self.table} SET {self.assignment} WHERE {self.pending};\n"


@dataclass(frozen=True)
class ExpressionCheck:
    """A query the server must accept (run under EXPLAIN): an author's expression in its context."""

    field: str
    query: str


@dataclass(frozen=True)
class OperationPlan:
    index: int
    kind: str
    expand: tuple[Step, ...] = ()
    backfill: tuple[Backfill, ...] = ()
    contract: tuple[Step, ...] = ()
    rollback: tuple[Step, ...] = ()
    checks: tuple[ExpressionCheck, ...] = ()
    tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class MigrationPlan:
    file: str
    version: str
    name: str
    operations: tuple[OperationPlan, ...] = field(default_factory=tuple)

    def steps(self, phase: str) -> tuple[Step, ...]:
        """The steps of ``phase`` in order; rollback undoes the operations last first."""
        if phase == "rollback":
            return tuple(s for op in reversed(self.operations) for s in op.rollback)
        return tuple(s for op in self.operations for s in getattr(op, phase))

    def phase_sql(self, phase: str) -> str:
        """The SQL text of a phase as squawk lints it (one statement after another)."""
        if phase == "backfill":
            return "".join(b.sql_text() for _, b in self.backfills())
        return "".join(step.sql_text() for step in self.steps(phase))

    def backfills(self) -> tuple[tuple[int, Backfill], ...]:
        return tuple((op.index, b) for op in self.operations for b in op.backfill)

    def render(self) -> str:
        """Every phase's SQL with the lock each statement takes (for ``pgwarden migrate plan``)."""
        lines = [f"-- migration {self.version}_{self.name} ({self.file})"]
        for phase in PHASES:
            lines.append(f"\n-- == {phase} ==")
            if phase == "backfill":
                for index, b in self.backfills():
                    lines.append(f"-- operations[{index}]: batched by ({', '.join(b.key)}), "
                                 f"row locks only, one short transaction per batch")
                    lines.append(b.sql_text().rstrip("\n"))
                continue
            for step in self.steps(phase):
                tx = "outside a transaction block" if step.outside_transaction else "one transaction"
                lines.append(f"-- {step.why} [{tx}; lock: {step.lock}]")
                lines.append(step.sql_text().rstrip("\n"))
        return "\n".join(lines) + "\n"
