"""drop_not_null: relaxing is catalog-only, so it happens at expand; rollback puts NOT NULL back online
(and fails clearly if NULLs were written meanwhile)."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    PlanContext,
    q,
    set_not_null_online,
)
from pgwarden.core.migrations.spec import DropNotNull
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: DropNotNull, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    column = ctx.column(snapshot, op.column, "column")
    if not column.not_null:
        raise ctx.error("column", f"column {ident(op.column)} of {snapshot.name} is not NOT NULL")
    if any(i.primary and op.column in i.columns for i in snapshot.indexes):
        raise ctx.error("column", f"column {ident(op.column)} is part of the primary key of {snapshot.name}")
    t = q(op.table)
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,),
        expand=(Step((f"ALTER TABLE {t} ALTER COLUMN {ident(op.column)} DROP NOT NULL",),
                     ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, why=f"drop NOT NULL on {ident(op.column)}",
                     excused=("ban-drop-not-null",)),),  # the operation's very purpose
        rollback=set_not_null_online(op.table, op.column, ctx.object_name("not_null", op.column),
                                     f"restore NOT NULL on {ident(op.column)}"),
    )
