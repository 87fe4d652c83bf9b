"""add_foreign_key: ``NOT VALID`` first (catalog-only on both tables), ``VALIDATE`` in a separate transaction
(SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one). Rollback drops it."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import (
    SHARE_ROW_EXCLUSIVE_BRIEF,
    SHARE_UPDATE_EXCLUSIVE_SCAN,
    PlanContext,
    constraint_exists,
    q,
)
from pgwarden.core.migrations.spec import AddForeignKey
from pgwarden.core.migrations.sqltext import columns, ident
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: AddForeignKey, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    for column in op.columns:
        ctx.column(snapshot, column, "columns")
    referenced = ctx.table(op.references.table, "references.table")
    for column in op.references.columns:
        ctx.column(referenced, column, "references.columns")
    if len(op.columns) != len(op.references.columns):
        raise ctx.error("references.columns", "as many referenced columns as columns are needed")
    if any(c.name == op.name for c in snapshot.constraints):
        raise ctx.error("name", f"constraint {ident(op.name)} already exists on {snapshot.name}")
    t, r = q(op.table), q(op.references.table)
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t, r),
        expand=(
            Step((f"ALTER TABLE {t} ADD CONSTRAINT {ident(op.name)} FOREIGN KEY ({columns(op.columns)}) "
                  f"REFERENCES {r} ({columns(op.references.columns)}) ON DELETE {op.on_delete.upper()} NOT VALID",),
                 SHARE_ROW_EXCLUSIVE_BRIEF.format(t=f"{t} and {r}"), t,
                 skip_if=constraint_exists(op.table, op.name), why=f"add foreign key {ident(op.name)} for new rows"),
            Step((f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(op.name)}",), SHARE_UPDATE_EXCLUSIVE_SCAN.format(t=t),
                 t, skip_if=constraint_exists(op.table, op.name, validated=True),
                 why=f"validate {ident(op.name)} against existing rows"),
        ),
        rollback=(Step((f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(op.name)}",),
                       SHARE_ROW_EXCLUSIVE_BRIEF.format(t=f"{t} and {r}"), t, why=f"drop {ident(op.name)}"),),
    )
