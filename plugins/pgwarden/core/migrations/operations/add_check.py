"""add_check: ``ADD CONSTRAINT ... CHECK ... NOT VALID`` (new rows checked, no scan), then ``VALIDATE`` in a
separate transaction (a scan that lets reads and writes go on). Rollback drops the constraint."""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    SHARE_UPDATE_EXCLUSIVE_SCAN,
    PlanContext,
    constraint_exists,
    q,
)
from pgwarden.core.migrations.spec import AddCheck
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import ExpressionCheck, OperationPlan, Step


def plan(op: AddCheck, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    if any(c.name == op.name for c in snapshot.constraints):
        raise ctx.error("name", f"constraint {ident(op.name)} already exists on {snapshot.name}")
    t = q(op.table)
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,),
        checks=(ExpressionCheck("check", f"SELECT CAST(({op.check}) AS boolean) FROM {t} LIMIT 0"),),
        expand=(
            Step((f"ALTER TABLE {t} ADD CONSTRAINT {ident(op.name)} CHECK ({op.check}) NOT VALID",),
                 ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, skip_if=constraint_exists(op.table, op.name),
                 why=f"add check {ident(op.name)} for new rows"),
            Step((f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(op.name)}",), SHARE_UPDATE_EXCLUSIVE_SCAN.format(t=t),
                 t, skip_if=constraint_exists(op.table, op.name, validated=True),
                 why=f"validate {ident(op.name)} against existing rows"),
        ),
        rollback=(Step((f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(op.name)}",),
                       ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, why=f"drop {ident(op.name)}"),),
    )
