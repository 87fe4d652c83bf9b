"""rename_column: both names usable while old and new application versions run; the column keeps its
identity (indexes, constraints, default, statistics) because contract renames it rather than copying it.

expand:   add ``to`` (same type) with the dual-write trigger (identity both ways)
backfill: fill ``to`` for existing rows through the trigger
contract: one transaction: drop the trigger and the copy ``to``, rename ``from`` to ``to`` (pgroll's
          approach: the rename itself happens at complete; both columns hold the same values by then)
rollback: drop the trigger and ``to``; refused once contract ran
"""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import ACCESS_EXCLUSIVE_BRIEF, PlanContext, column_exists, q
from pgwarden.core.migrations.operations.dual_write import dual_write
from pgwarden.core.migrations.spec import RenameColumn
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: RenameColumn, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    old = ctx.column(snapshot, op.from_, "from")
    ctx.absent(snapshot, op.to, "to")
    key = ctx.key(snapshot)
    dw = dual_write(ctx, snapshot, op.from_, op.to, old.type, converts=False)
    t = q(op.table)
    contracted = f"SELECT NOT ({column_exists(op.table, op.from_).removeprefix('SELECT ')})"
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,),
        expand=dw.expand(),
        backfill=(dw.backfill(key),),
        contract=(Step((*dw.drop_trigger(),
                        f"ALTER TABLE {t} DROP COLUMN IF EXISTS {ident(op.to)}",
                        f"ALTER TABLE {t} RENAME COLUMN {ident(op.from_)} TO {ident(op.to)}"),
                       ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, skip_if=contracted,
                       why=f"drop the trigger and the copy, rename {ident(op.from_)} to {ident(op.to)}"),),
        rollback=dw.rollback(refuse_if=contracted),
    )
