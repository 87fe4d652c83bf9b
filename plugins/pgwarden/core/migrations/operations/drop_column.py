"""drop_column: nothing at expand (the old application still reads it); ``DROP COLUMN`` at contract."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import ACCESS_EXCLUSIVE_BRIEF, PlanContext, q
from pgwarden.core.migrations.spec import DropColumn
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: DropColumn, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    ctx.column(snapshot, op.column, "column")
    if any(i.primary and op.column in i.columns for i in snapshot.indexes):
        raise ctx.error("column", f"column {ident(op.column)} is part of the primary key of {snapshot.name}")
    t = q(op.table)
    return OperationPlan(index=ctx.index, kind=ctx.kind, tables=(t,),
                         contract=(Step((f"ALTER TABLE {t} DROP COLUMN IF EXISTS {ident(op.column)}",),
                                        ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, why=f"drop {ident(op.column)}"),))
