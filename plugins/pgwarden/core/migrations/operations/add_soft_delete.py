"""add_soft_delete: a nullable ``deleted_at`` (catalog-only), and each UNIQUE constraint replaced by a partial
unique index ``WHERE deleted_at IS NULL`` so a soft-deleted row no longer blocks its key.

expand:   add the column; build each partial unique index CONCURRENTLY (both hold while deleted_at is NULL)
contract: drop the old unique constraints (their indexes go with them)
rollback: drop the partial indexes concurrently and the column; refused once contract ran
The primary key stays. A unique constraint a foreign key depends on is refused at plan time.
"""

from __future__ import annotations

import dataclasses

from pgwarden.core.migrations.operations import indexes
from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    PlanContext,
    column_exists,
    constraint_exists,
    q,
)
from pgwarden.core.migrations.spec import AddSoftDelete
from pgwarden.core.migrations.sqltext import columns, ident
from pgwarden.core.migrations.steps import OperationPlan, Step


def plan(op: AddSoftDelete, ctx: PlanContext) -> OperationPlan:
    snapshot = ctx.table(op.table)
    ctx.absent(snapshot, op.column, "column")
    t = q(op.table)
    uniques = [c for c in snapshot.constraints if c.type == "u"]
    for constraint in uniques:
        if constraint.referenced_by:
            raise ctx.error("table", f"unique constraint {ident(constraint.name)} is needed by foreign key(s) "
                            f"{', '.join(constraint.referenced_by)}; a partial index cannot back them")
    live = [(c, ctx.object_name("live", c.name)) for c in uniques]
    expand = [Step((f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {ident(op.column)} timestamptz",),
                   ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, why=f"add {ident(op.column)}")]
    expand += [indexes.build(op.table, name, f"({columns(c.columns)}) WHERE {ident(op.column)} IS NULL", unique=True,
                             why=f"unique among live rows, replacing {ident(c.name)}") for c, name in live]
    contract = [Step((f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(c.name)}",), ACCESS_EXCLUSIVE_BRIEF.format(t=t),
                     t, why=f"drop {ident(c.name)}: the partial index now enforces it") for c, _ in live]
    contracted = (" OR ".join(f"NOT ({constraint_exists(op.table, c.name).removeprefix('SELECT ')})" for c, _ in live)
                  if live else "false")
    rollback = [indexes.drop(op.table.schema, name, t, f"drop the partial index {ident(name)}") for _, name in live]
    rollback.append(Step((f"ALTER TABLE {t} DROP COLUMN IF EXISTS {ident(op.column)}",),
                         ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, skip_if=column_exists(op.table, op.column, exists=False),
                         why=f"drop {ident(op.column)}"))
    if live:
        rollback[0] = dataclasses.replace(
            rollback[0], refuse_if=f"SELECT {contracted}",
            refused_because="contract already dropped the unique constraints: nothing to roll back to")
    return OperationPlan(index=ctx.index, kind=ctx.kind, tables=(t,), expand=tuple(expand), contract=tuple(contract),
                         rollback=tuple(rollback))
