"""Index steps shared by create_index, drop_index, add_unique and add_soft_delete: always CONCURRENTLY,
outside a transaction block, an INVALID leftover of a failed build dropped and rebuilt by the engine."""

from __future__ import annotations

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.migrations.sqltext import ident
from pgwarden.core.migrations.steps import Step

BUILD_LOCK = "SHARE UPDATE EXCLUSIVE on {t} while the index builds: reads and writes continue"


def build(table: QualifiedName, name: str, body: str, *, unique: bool, why: str) -> Step:
    t = ident(table.schema, table.name)
    return Step((f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY IF NOT EXISTS {ident(name)} ON {t} {body}",),
                BUILD_LOCK.format(t=t), t, outside_transaction=True, index=(table.schema, name), why=why)


def drop(schema: str, name: str, table: str, why: str) -> Step:
    return Step((f"DROP INDEX CONCURRENTLY IF EXISTS {ident(schema, name)}",),
                BUILD_LOCK.format(t=table).replace("builds", "is dropped"), table, outside_transaction=True, why=why)
