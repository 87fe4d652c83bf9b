"""What every operation's planner gets: where it is (file, index), the catalog, and checks that fail clearly."""

from __future__ import annotations

from dataclasses import dataclass

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.migrations.snapshot import Catalog, ColumnInfo, TableSnapshot
from pgwarden.core.migrations.sqltext import ident, literal, short_name, table
from pgwarden.core.migrations.steps import Backfill, PlanError, Step

ACCESS_EXCLUSIVE_BRIEF = "ACCESS EXCLUSIVE on {t}, catalog-only (milliseconds; lock_timeout bounds the wait)"
SHARE_UPDATE_EXCLUSIVE_SCAN = "SHARE UPDATE EXCLUSIVE on {t} during a scan: reads and writes continue"
SHARE_ROW_EXCLUSIVE_BRIEF = "SHARE ROW EXCLUSIVE on {t}, catalog-only (blocks writes for milliseconds)"
CONTROL_SCHEMA = "pgwarden"


@dataclass(frozen=True)
class PlanContext:
    file: str
    version: str
    index: int
    kind: str
    catalog: Catalog

    def error(self, field: str | None, message: str) -> PlanError:
        return PlanError(self.file, self.index, f"{self.kind}.{field}" if field else self.kind, message)

    def table(self, name: QualifiedName, field: str = "table") -> TableSnapshot:
        snapshot = self.catalog.get(name)
        if snapshot is None:
            raise self.error(field, f"table {name} does not exist")
        return snapshot

    def column(self, snapshot: TableSnapshot, name: str, field: str) -> ColumnInfo:
        column = snapshot.column(name)
        if column is None:
            raise self.error(field, f"column {ident(name)} does not exist in table {snapshot.name}")
        return column

    def absent(self, snapshot: TableSnapshot, name: str, field: str) -> None:
        if snapshot.column(name) is not None:
            raise self.error(field, f"column {ident(name)} already exists in table {snapshot.name}")

    def key(self, snapshot: TableSnapshot) -> tuple[tuple[str, ...], tuple[str, ...]]:
        key = snapshot.batch_key()
        if key is None:
            raise self.error("table", f"table {snapshot.name} has no primary key and no unique index over NOT NULL "
                             f"columns: the backfill walks the table by such a key; add one first")
        return key, tuple(self.column(snapshot, c, "table").type for c in key)

    def object_name(self, what: str, *parts: str) -> str:
        """A name for an object this operation creates, unique per migration version and operation."""
        return short_name(f"pgw{self.version}_{self.index}_{what}", self.file, *parts)


def q(name: QualifiedName) -> str:
    return table(name)


def column_exists(name: QualifiedName, column: str, exists: bool = True) -> str:
    """A ``skip_if`` query: true when the column is (or, ``exists=False``, is not) there."""
    found = (f"EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass({literal(q(name))}) "
             f"AND attname = {literal(column)} AND NOT attisdropped)")
    return f"SELECT {found if exists else 'NOT ' + found}"


def constraint_exists(name: QualifiedName, constraint: str, *, validated: bool = False) -> str:
    return (f"SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({literal(q(name))}) "
            f"AND conname = {literal(constraint)}{' AND convalidated' if validated else ''})")


def not_null_set(name: QualifiedName, column: str) -> str:
    return (f"SELECT coalesce((SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass({literal(q(name))}) "
            f"AND attname = {literal(column)} AND NOT attisdropped), true)")


def set_not_null_online(name: QualifiedName, column: str, check_name: str, why: str) -> tuple[Step, ...]:
    """NOT NULL without a long ACCESS EXCLUSIVE scan: a CHECK NOT VALID, VALIDATE (in its own transaction,
    a scan under SHARE UPDATE EXCLUSIVE), then SET NOT NULL, which trusts the valid check, and drop the check."""
    t = q(name)
    return (
        Step((f"ALTER TABLE {t} ADD CONSTRAINT {ident(check_name)} CHECK ({ident(column)} IS NOT NULL) NOT VALID",),
             ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, skip_if=_or(not_null_set(name, column),
                                                                constraint_exists(name, check_name)),
             why=f"{why}: a NOT NULL check for new rows, no scan"),
        Step((f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(check_name)}",), SHARE_UPDATE_EXCLUSIVE_SCAN.format(t=t),
             t, skip_if=_or(not_null_set(name, column), constraint_exists(name, check_name, validated=True)),
             why=f"{why}: validate existing rows"),
        Step((f"ALTER TABLE {t} ALTER COLUMN {ident(column)} SET NOT NULL",
              f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(check_name)}"),
             ACCESS_EXCLUSIVE_BRIEF.format(t=t) + " (the valid check spares the scan)", t,
             why=f"{why}: SET NOT NULL and drop the helper check", excused=("ban-drop-constraint",)),
    )


def _or(*queries: str) -> str:
    return "SELECT " + " OR ".join(f"({query.removeprefix('SELECT ')})" for query in queries)


def backfill(snapshot: TableSnapshot, key: tuple[tuple[str, ...], tuple[str, ...]], assignment: str,
             pending: str) -> Backfill:
    return Backfill(table=q(snapshot.name), key=key[0], key_types=key[1], assignment=assignment, pending=pending,
                    estimated_rows=snapshot.estimated_rows)
