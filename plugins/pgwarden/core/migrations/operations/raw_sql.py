"""raw_sql: the author's own ``up`` at expand and ``down`` at rollback (both linted like any generated SQL)."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import PlanContext, q
from pgwarden.core.migrations.spec import RawSql
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: RawSql, ctx: PlanContext) -> OperationPlan:
    t = q(op.table) if op.table else ""
    if op.table is not None:
        ctx.table(op.table)
    lock = "as the author's SQL takes (see its statements)"
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,) if t else (),
        expand=(Step((op.up,), lock, t or None, outside_transaction=op.outside_transaction, why="raw_sql up"),),
        rollback=(Step((op.down,), lock, t or None, outside_transaction=op.outside_transaction, why="raw_sql down"),),
    )
