"""What the planner knows about a table: a small snapshot the engine reads from ``pg_catalog``."""

from __future__ import annotations

from dataclasses import dataclass

from pgwarden.core.identifiers import QualifiedName


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # format_type(): the type as SQL writes it
    not_null: bool
    default: str | None  # pg_get_expr() of the default, or None


@dataclass(frozen=True)
class IndexInfo:
    name: str
    columns: tuple[str, ...]  # empty for an expression index
    unique: bool
    primary: bool
    valid: bool
    partial: bool
    constraint: str | None  # the constraint the index backs (unique / primary key), if any
    definition: str  # pg_get_indexdef()


@dataclass(frozen=True)
class ConstraintInfo:
    name: str
    type: str  # pg_constraint.contype: p u f c x
    columns: tuple[str, ...]
    referenced_by: tuple[str, ...] = ()  # foreign keys of other tables that need this constraint's index


@dataclass(frozen=True)
class TableSnapshot:
    name: QualifiedName
    columns: tuple[ColumnInfo, ...]
    indexes: tuple[IndexInfo, ...] = ()
    constraints: tuple[ConstraintInfo, ...] = ()
    estimated_rows: int = 0
    triggers: tuple[str, ...] = ()

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)

    def batch_key(self) -> tuple[str, ...] | None:
        """The primary key, else the first unique, valid, non-partial index over NOT NULL columns."""
        candidates = sorted((i for i in self.indexes if i.unique and i.valid and not i.partial and i.columns),
                            key=lambda i: (not i.primary, len(i.columns), i.name))
        for index in candidates:
            if all((col := self.column(c)) is not None and col.not_null for c in index.columns):
                return index.columns
        return None


Catalog = dict[QualifiedName, TableSnapshot]


def catalog_to_json(catalog: Catalog) -> list[dict]:
    """The catalog as plain JSON, stored at expand so later phases plan against the state before it."""
    import dataclasses

    return [{**dataclasses.asdict(snap), "name": [snap.name.schema, snap.name.name]} for snap in catalog.values()]


def catalog_from_json(data: list[dict]) -> Catalog:
    catalog: Catalog = {}
    for item in data:
        name = QualifiedName(*item["name"])
        catalog[name] = TableSnapshot(
            name=name,
            columns=tuple(ColumnInfo(**c) for c in item["columns"]),
            indexes=tuple(IndexInfo(**{**i, "columns": tuple(i["columns"])}) for i in item["indexes"]),
            constraints=tuple(ConstraintInfo(c["name"], c["type"], tuple(c["columns"]), tuple(c["referenced_by"]))
                              for c in item["constraints"]),
            estimated_rows=item["estimated_rows"], triggers=tuple(item["triggers"]))
    return catalog
