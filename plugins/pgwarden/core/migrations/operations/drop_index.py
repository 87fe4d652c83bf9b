"""drop_index: contract only (the old application may still need it); ``DROP INDEX CONCURRENTLY``."""

from __future__ import annotations

from pgwarden.core.migrations.operations import indexes
from pgwarden.core.migrations.operations.context import PlanContext
from pgwarden.core.migrations.spec import DropIndex
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import OperationPlan


def plan(op: DropIndex, ctx: PlanContext) -> OperationPlan:
    owner = next(((s, i) for s in ctx.catalog.values() if s.name.schema == op.index.schema
                  for i in s.indexes if i.name == op.index.name), None)
    if owner is None:
        raise ctx.error("index", f"index {op.index} does not exist")
    snapshot, index = owner
    if index.constraint:
        raise ctx.error("index", f"index {op.index} backs constraint {ident(index.constraint)}; drop the constraint "
                        f"with raw_sql instead")
    t = ident(snapshot.name.schema, snapshot.name.name)
    return OperationPlan(index=ctx.index, kind=ctx.kind, tables=(t,),
                         contract=(indexes.drop(op.index.schema, op.index.name, t, f"drop index {op.index}"),))
