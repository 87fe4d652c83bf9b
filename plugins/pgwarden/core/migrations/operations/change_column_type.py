"""change_column_type: a new column of the new type, kept consistent with the old one by ``up``/``down``.

expand:   add the new column (``to``, or a temporary name), the ``up``/``down`` functions and the trigger
backfill: fill the new column through the trigger
contract: NOT NULL carried over online when the old column had it; then one transaction drops the
          trigger, the functions and the old column, and gives the new column its final name
rollback: drop the trigger, functions and new column; refused once contract ran

The old column's indexes and constraints cannot be carried over; a column with any is refused at plan
time (drop them in an earlier migration, re-create them with create_index / add_* afterwards).
"""

from __future__ import annotations

from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    CONTROL_SCHEMA,
    PlanContext,
    column_exists,
    q,
    set_not_null_online,
)
from pgwarden.core.migrations.operations.dual_write import dual_write
from pgwarden.core.migrations.spec import ChangeColumnType
from pgwarden.core.migrations.sqltext import ident, literal
from pgwarden.core.migrations.steps import ExpressionCheck, OperationPlan, Step


def plan(op: ChangeColumnType, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    old = ctx.column(snapshot, op.column, "column")
    final = op.to or op.column
    if op.to is not None:
        ctx.absent(snapshot, op.to, "to")
    users = [i.name for i in snapshot.indexes if op.column in i.columns or not i.columns] + [
        c.name for c in snapshot.constraints if op.column in c.columns]
    if users:
        raise ctx.error("column", f"column {ident(op.column)} is used by {', '.join(ident(u) for u in sorted(set(users)))}; "
                        f"drop those in an earlier migration and re-create them after this one")
    key = ctx.key(snapshot)
    new = op.to or ctx.object_name("new", op.column)
    dw = dual_write(ctx, snapshot, op.column, new, op.type, converts=True)
    t = q(op.table)
    functions = (
        f"CREATE OR REPLACE FUNCTION {ident(CONTROL_SCHEMA, dw.up_function)}({ident(op.column)} {old.type}) "
        f"RETURNS {op.type} LANGUAGE sql AS {literal(f'SELECT CAST(({op.up}) AS {op.type})')}",
        f"CREATE OR REPLACE FUNCTION {ident(CONTROL_SCHEMA, dw.down_function)}({ident(final)} {op.type}) "
        f"RETURNS {old.type} LANGUAGE sql AS {literal(f'SELECT CAST(({op.down}) AS {old.type})')}",
    )
    check_name = ctx.object_name("not_null", new)
    carry_not_null = set_not_null_online(op.table, new, check_name, "carry NOT NULL over") if old.not_null else ()
    swap = [*dw.drop_trigger(), f"ALTER TABLE {t} DROP COLUMN IF EXISTS {ident(op.column)}"]
    if op.to is None:
        swap.append(f"ALTER TABLE {t} RENAME COLUMN {ident(new)} TO {ident(op.column)}")
    done = column_exists(op.table, new if op.to is None else op.column, exists=False)
    # After contract the column holds the new type; before expand it holds the old one.
    contracted = (f"SELECT coalesce((SELECT format_type(atttypid, atttypmod) <> {literal(old.type)} FROM pg_attribute "
                  f"WHERE attrelid = to_regclass({literal(t)}) AND attname = {literal(op.column)} "
                  f"AND NOT attisdropped), true)")
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,),
        checks=(
            ExpressionCheck("type", f"SELECT NULL::{op.type}"),
            ExpressionCheck("up", f"SELECT CAST(({op.up}) AS {op.type}) FROM (SELECT NULL::{old.type} AS "
                                  f"{ident(op.column)}) AS src"),
            ExpressionCheck("down", f"SELECT CAST(({op.down}) AS {old.type}) FROM (SELECT NULL::{op.type} AS "
                                    f"{ident(final)}) AS src"),
        ),
        expand=dw.expand(functions),
        backfill=(dw.backfill(key),),
        contract=(*carry_not_null,
                  Step(tuple(swap), ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, skip_if=done,
                       why=f"drop the trigger and the old column; the new one takes the name {ident(final)}")),
        rollback=dw.rollback(refuse_if=contracted,
                             extra=(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(check_name)}",)),
    )
