"""create_index: ``CREATE INDEX CONCURRENTLY`` at expand; rollback drops it concurrently."""

from __future__ import annotations

from pgwarden.core.migrations.operations import indexes
from pgwarden.core.migrations.operations.context import PlanContext, q
from pgwarden.core.migrations.spec import CreateIndex
from pgwarden.core.migrations.sqltext import columns, ident
from pgwarden.core.migrations.steps import ExpressionCheck, OperationPlan


def plan(op: CreateIndex, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    for column in op.columns:
        ctx.column(snapshot, column, "columns")
    existing = next((i for i in snapshot.indexes if i.name == op.name), None)
    if existing is not None and existing.valid:
        raise ctx.error("name", f"index {ident(op.name)} already exists on {snapshot.name}")
    t = q(op.table)
    where = f" WHERE {op.where}" if op.where else ""
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,),
        checks=(ExpressionCheck("where", f"SELECT CAST(({op.where}) AS boolean) FROM {t} LIMIT 0"),) if op.where else (),
        expand=(indexes.build(op.table, op.name, f"USING {op.method} ({columns(op.columns)}){where}", unique=op.unique,
                              why=f"build index {ident(op.name)}"),),
        rollback=(indexes.drop(op.table.schema, op.name, t, f"drop index {ident(op.name)}"),),
    )
