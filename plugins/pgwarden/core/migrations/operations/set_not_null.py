"""set_not_null: new rows checked at once (CHECK NOT VALID), NULLs of existing rows filled by the backfill
(``fill``), and at contract VALIDATE then SET NOT NULL (no long lock). Rollback drops the check; filled
values stay (they are data, not schema)."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    PlanContext,
    backfill,
    set_not_null_online,
)
from pgwarden.core.migrations.spec import SetNotNull
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import ExpressionCheck, OperationPlan, Step


def plan(op: SetNotNull, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    column = ctx.column(snapshot, op.column, "column")
    if column.not_null:
        raise ctx.error("column", f"column {ident(op.column)} of {snapshot.name} is already NOT NULL")
    check_name = ctx.object_name("not_null", op.column)
    add_check, validate, finish = set_not_null_online(op.table, op.column, check_name, f"NOT NULL on {ident(op.column)}")
    fills = ()
    checks = ()
    if op.fill is not None:
        fills = (backfill(snapshot, ctx.key(snapshot), f"{ident(op.column)} = ({op.fill})",
                          f"{ident(op.column)} IS NULL"),)
        checks = (ExpressionCheck("fill", f"SELECT CAST(({op.fill}) AS {column.type}) FROM {add_check.table} LIMIT 0"),)
    t = add_check.table
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,), checks=checks,
        expand=(add_check,), backfill=fills, contract=(validate, finish),
        rollback=(Step((f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(check_name)}",),
                       ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, why="drop the NOT NULL check"),),
    )
