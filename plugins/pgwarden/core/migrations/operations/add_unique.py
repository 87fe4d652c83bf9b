"""add_unique: a unique index built ``CONCURRENTLY``, then ``ADD CONSTRAINT ... UNIQUE USING INDEX`` (catalog
only). Rollback drops the constraint (and its index) or a leftover index."""

from __future__ import annotations

from pgwarden.core.migrations.operations import indexes
from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    PlanContext,
    constraint_exists,
    q,
)
from pgwarden.core.migrations.spec import AddUnique
from pgwarden.core.migrations.sqltext import columns, ident
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: AddUnique, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    for column in op.columns:
        ctx.column(snapshot, column, "columns")
    if any(c.name == op.name for c in snapshot.constraints) or any(i.name == op.name and i.valid
                                                                     for i in snapshot.indexes):
        raise ctx.error("name", f"{ident(op.name)} already exists on {snapshot.name}")
    t = q(op.table)
    return OperationPlan(
        index=ctx.index, kind=ctx.kind, tables=(t,),
        expand=(
            indexes.build(op.table, op.name, f"({columns(op.columns)})", unique=True,
                          why=f"build the unique index {ident(op.name)}"),
            Step((f"ALTER TABLE {t} ADD CONSTRAINT {ident(op.name)} UNIQUE USING INDEX {ident(op.name)}",),
                 ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, skip_if=constraint_exists(op.table, op.name),
                 why=f"turn {ident(op.name)} into a constraint"),
        ),
        rollback=(
            Step((f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(op.name)}",), ACCESS_EXCLUSIVE_BRIEF.format(t=t),
                 t, why=f"drop constraint {ident(op.name)}"),
            indexes.drop(op.table.schema, op.name, t, f"drop a leftover index {ident(op.name)}"),
        ),
    )
