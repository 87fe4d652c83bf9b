"""Read the planner's table snapshots (``core/migrations/snapshot.py``) from ``pg_catalog``."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.migrations.snapshot import Catalog, ColumnInfo, ConstraintInfo, IndexInfo, TableSnapshot

_TABLE = """
SELECT c.oid, greatest(c.reltuples, 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""
_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
_INDEXES = """
SELECT ic.relname,
       CASE WHEN 0 = ANY (i.indkey::int2[]) THEN ARRAY[]::text[]
            ELSE ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) END,
       i.indisunique, i.indisprimary, i.indisvalid, i.indpred IS NOT NULL,
       (SELECT conname FROM pg_constraint WHERE conindid = i.indexrelid AND conrelid = i.indrelid LIMIT 1),
       pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = %s ORDER BY ic.relname
"""
_CONSTRAINTS = """
SELECT con.conname, con.contype::text,
       ARRAY(SELECT a.attname::text FROM unnest(coalesce(con.conkey, '{}')) WITH ORDINALITY k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.n),
       ARRAY(SELECT f.conname::text FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = con.conindid
               AND con.contype IN ('u', 'p') AND f.confrelid = con.conrelid)
  FROM pg_constraint con WHERE con.conrelid = %s ORDER BY con.conname
"""
_TRIGGERS = "SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal ORDER BY tgname"


def read_table(conn: psycopg.Connection, name: QualifiedName) -> TableSnapshot | None:
    row = conn.execute(_TABLE, (name.schema, name.name)).fetchone()
    if row is None:
        return None
    oid, estimate = row
    columns = tuple(ColumnInfo(*r) for r in conn.execute(_COLUMNS, (oid,)).fetchall())
    indexes = tuple(IndexInfo(r[0], tuple(r[1]), *r[2:]) for r in conn.execute(_INDEXES, (oid,)).fetchall())
    constraints = tuple(ConstraintInfo(r[0], r[1], tuple(r[2]), tuple(r[3]))
                        for r in conn.execute(_CONSTRAINTS, (oid,)).fetchall())
    if estimate == 0:  # never analysed (reltuples -1 or 0): a cheap exact answer for small tables
        estimate = int(conn.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 100000) s").format(sql.Identifier(name.schema, name.name)))
                       .fetchone()[0])
    triggers = tuple(r[0] for r in conn.execute(_TRIGGERS, (oid,)).fetchall())
    return TableSnapshot(name, columns, indexes, constraints, int(estimate), triggers)


def read_catalog(conn: psycopg.Connection, names: tuple[QualifiedName, ...]) -> Catalog:
    """Snapshots of the tables that exist among ``names`` (a missing one is the planner's error to report)."""
    with conn.transaction():
        found = {name: read_table(conn, name) for name in names}
    return {name: snap for name, snap in found.items() if snap is not None}
