"""Plan an expand/contract migration: each operation's module turns its spec and the catalog into steps."""

from __future__ import annotations

import dataclasses
import importlib

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.migrations.operations.context import PlanContext
from pgwarden.core.migrations.snapshot import Catalog
from pgwarden.core.migrations.spec import OPERATIONS, MigrationSpec, Operation
from pgwarden.core.migrations.steps import COMPATIBILITY_RULES, MigrationPlan, OperationPlan, Step


def tables_named(spec: MigrationSpec) -> tuple[QualifiedName, ...]:
    """Every table the operations name (the engine snapshots these)."""
    names: list[QualifiedName] = []
    for op in spec.operations:
        for field in ("table", "references"):
            value = getattr(op, field, None)
            value = getattr(value, "table", value)
            if isinstance(value, QualifiedName) and value not in names:
                names.append(value)
    return tuple(names)


def plan_operation(op: Operation, ctx: PlanContext) -> OperationPlan:
    module = importlib.import_module(f"pgwarden.core.migrations.operations.{op.kind}")
    planned: OperationPlan = module.plan(op, ctx)
    if op.kind == "raw_sql":
        return planned
    return dataclasses.replace(planned, contract=_excuse(planned.contract), rollback=_excuse(planned.rollback))


def _excuse(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    return tuple(dataclasses.replace(s, excused=tuple(dict.fromkeys((*s.excused, *COMPATIBILITY_RULES))))
                 for s in steps)


def plan_migration(spec: MigrationSpec, catalog: Catalog) -> MigrationPlan:
    """Every phase of every operation, planned against ``catalog`` as it is before the migration."""
    assert set(OPERATIONS)  # every kind has its module named after it
    operations = tuple(
        plan_operation(op, PlanContext(file=spec.file, version=spec.version, index=index, kind=op.kind,
                                       catalog=catalog))
        for index, op in enumerate(spec.operations))
    return MigrationPlan(file=spec.file, version=spec.version, name=spec.name, operations=operations)
