"""add_column: ``ADD COLUMN`` with a default (no rewrite since PostgreSQL 11 for a non-volatile default);
NOT NULL added online afterwards (CHECK NOT VALID, VALIDATE, SET NOT NULL). Rollback drops the column."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    PlanContext,
    column_exists,
    q,
    set_not_null_online,
)
from pgwarden.core.migrations.spec import AddColumn
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import ExpressionCheck, OperationPlan, Step


def plan(op: AddColumn, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    ctx.absent(snapshot, op.column, "column")
    if op.not_null and op.default is None and snapshot.estimated_rows != 0:
        raise ctx.error("default", "a NOT NULL column needs a default for the existing rows (or add it nullable "
                        "and use set_not_null with fill in a later migration)")
    t = q(op.table)
    default = f" DEFAULT {op.default}" if op.default is not None else ""
    checks = [ExpressionCheck("type", f"SELECT NULL::{op.type}")]
    if op.default is not None:
        checks.append(ExpressionCheck("default", f"SELECT CAST(({op.default}) AS {op.type})"))
    not_null = set_not_null_online(op.table, op.column, ctx.object_name("not_null", op.column),
                                   f"NOT NULL on {ident(op.column)}") if op.not_null else ()
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,), checks=tuple(checks),
        expand=(Step((f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {ident(op.column)} {op.type}{default}",),
                     ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, why=f"add {ident(op.column)}"), *not_null),
        rollback=(Step((f"ALTER TABLE {t} DROP COLUMN IF EXISTS {ident(op.column)}",),
                       ACCESS_EXCLUSIVE_BRIEF.format(t=t), t,
                       skip_if=column_exists(op.table, op.column, exists=False), why=f"drop {ident(op.column)}"),),
    )
