"""Which rows of a table a policy selects, as SQL: the expiry condition, the operator's predicate, and
the same condition through foreign keys for child tables.

Two conditions per table. ``select`` picks a batch (expiry AND the predicate); ``recheck`` is what the
DELETE itself tests, and it never contains the predicate text: whatever the predicate says (even one that
closes its parentheses and ORs something in), the DELETE only removes rows older than the threshold.
The threshold is always a bind parameter, ``%(threshold)s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.engine.postgres import table_identifier


@dataclass(frozen=True)
class ForeignKey:
    """``child(columns)`` references ``parent(referenced)``."""

    columns: tuple[str, ...]
    referenced: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """The rows of ``table`` a policy purges. ``parent``/``via`` set: the rows referencing the parent's."""

    table: QualifiedName
    key: tuple[str, ...]
    expire_column: str | None = None
    where: str | None = None
    parent: Selection | None = None
    via: ForeignKey | None = None
    # A partitioned table: the walk names the expiry condition plainly too, so the planner prunes the
    # partitions that hold no expired row instead of walking their keys.
    partitioned: bool = False

    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth() + 1

    def has_predicate(self) -> bool:
        """An operator predicate narrows this selection (here or on the parent it follows)."""
        return bool(self.where) if self.parent is None else self.parent.has_predicate()

    def prune(self, alias: str) -> sql.Composable:
        """``t.expires_at < %(threshold)s AND`` on a partitioned table (partition pruning), else nothing."""
        if not self.partitioned or self.parent is not None:
            return sql.SQL("")
        return sql.SQL("{} AND ").format(self.recheck(alias))

    def select(self, alias: str) -> sql.Composable:
        return self._condition(alias, with_predicate=True)

    def recheck(self, alias: str) -> sql.Composable:
        return self._condition(alias, with_predicate=False)

    def _condition(self, alias: str, *, with_predicate: bool) -> sql.Composable:
        if self.parent is None:
            assert self.expire_column is not None
            expired = sql.SQL("{} < %(threshold)s").format(sql.Identifier(alias, self.expire_column))
            if with_predicate and self.where:
                # Trusted operator text, checked by the server's planner at the plan step; a '%' in it
                # is text, not a bind placeholder.
                return sql.SQL("{} AND ({})").format(expired, sql.SQL(self.where.replace("%", "%%")))
            return expired
        assert self.via is not None
        inner = f"p{self.depth()}"
        return sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE ({}) = ({}) AND {})").format(
            table_identifier(self.parent.table), sql.Identifier(inner),
            columns(inner, self.via.referenced), columns(alias, self.via.columns),
            self.parent._condition(inner, with_predicate=with_predicate),
        )


def columns(alias: str | None, names: Sequence[str]) -> sql.Composable:
    """``alias.a, alias.b`` (or bare names)."""
    return sql.SQL(", ").join(sql.Identifier(alias, n) if alias else sql.Identifier(n) for n in names)


def after_params(key: Sequence[str], after: Sequence[object] | None) -> dict[str, object]:
    return {f"after{i}": value for i, value in enumerate(after or ())}


def after_condition(alias: str, key: Sequence[str], after: Sequence[object] | None) -> sql.Composable:
    """``(t.k1, t.k2) > (%(after0)s, %(after1)s) AND`` (a row comparison a btree index walks), or nothing."""
    if after is None:
        return sql.SQL("")
    values = sql.SQL(", ").join(sql.Placeholder(f"after{i}") for i in range(len(key)))
    return sql.SQL("ROW({}) > ROW({}) AND ").format(columns(alias, key), values)


def batch_bound(selection: Selection, after: Sequence[object] | None, until: bool = False) -> sql.Composable:
    """The key ``%(offset)s`` keys on from ``after`` (an index-only walk of the key), or no row when fewer
    are left (up to the walk's end ``%(until0)s``... when ``until``): the upper end of the next batch's
    key range. Every key counts, selected or not, so a batch never walks further than ``offset + 1``
    keys, however few of them expired (a stretch where nothing expired is crossed in bounded steps,
    never in one scan)."""
    key = selection.key
    return sql.SQL("SELECT {t_key} FROM {table} AS t WHERE {after}{until}{prune}true ORDER BY {t_key} "
                   "OFFSET %(offset)s LIMIT 1").format(
        t_key=columns("t", key), table=table_identifier(selection.table), after=after_condition("t", key, after),
        until=upto_condition("t", key, until, "until"), prune=selection.prune("t"))


def walk_end(selection: Selection) -> sql.Composable:
    """The largest selected key: the walk can stop there. The inner query is fenced (``OFFSET 0``) so the
    planner reads the selected rows (through an index on the expiry column, when there is one) instead
    of walking the key backwards through every unexpired row; the caller checks which it does."""
    key = selection.key
    names = columns(None, key)
    return sql.SQL("SELECT {names} FROM (SELECT {t_key} FROM {table} AS t WHERE {select} OFFSET 0) AS s "
                   "ORDER BY {desc} LIMIT 1").format(
        names=names, t_key=columns("t", key), table=table_identifier(selection.table),
        select=selection.select("t"), desc=sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(n))
                                                             for n in key))


def delete_range(selection: Selection, after: Sequence[object] | None, bounded: bool) -> sql.Composable:
    """Delete the selected rows in the key range ``(after, upto]`` (``bounded``: ``%(upto0)s``...; else to
    the end of the table). The statement's own condition is the range and the re-check, never the
    predicate text: the predicate only narrows a sub-select, so whatever it says, the DELETE removes
    only rows older than the threshold, inside the range.

    The expiry test is written ``(...) IS TRUE``, which no index can serve: the planner must reach the
    range through the key's index rather than walk an index on the expiry column, which would read
    every expired row of the table on every batch when the statistics underestimate them.
    """
    key = selection.key
    in_range = sql.SQL("{}{}{}").format(after_condition("d", key, after), upto_condition("d", key, bounded),
                                        selection.prune("d"))
    statement = sql.SQL("DELETE FROM {table} AS d WHERE {in_range}({recheck}) IS TRUE").format(
        table=table_identifier(selection.table), in_range=in_range, recheck=selection.recheck("d"))
    if not selection.has_predicate():
        return statement
    return sql.SQL("{} AND ({d_key}) IN (SELECT {t_key} FROM {table} AS t WHERE {t_range}({select}) IS TRUE)").format(
        statement, d_key=columns("d", key), t_key=columns("t", key), table=table_identifier(selection.table),
        t_range=sql.SQL("{}{}{}").format(after_condition("t", key, after), upto_condition("t", key, bounded),
                                         selection.prune("t")),
        select=selection.select("t"))


def upto_condition(alias: str, key: Sequence[str], bounded: bool, name: str = "upto") -> sql.Composable:
    """``ROW(t.k1, t.k2) <= ROW(%(upto0)s, %(upto1)s) AND``, or nothing (``bounded`` false)."""
    if not bounded:
        return sql.SQL("")
    values = sql.SQL(", ").join(sql.Placeholder(f"{name}{i}") for i in range(len(key)))
    return sql.SQL("ROW({}) <= ROW({}) AND ").format(columns(alias, key), values)


def upto_params(upto: Sequence[object] | None, name: str = "upto") -> dict[str, object]:
    return {f"{name}{i}": value for i, value in enumerate(upto or ())}


def lock_range(selection: Selection, after: Sequence[object] | None, bounded: bool) -> sql.Composable:
    """The selected rows of the key range (as :func:`delete_range`), whole and locked, with their physical
    address first (``tableoid, ctid``) so :func:`delete_locked` removes exactly these rows after a hook
    saw them."""
    key = selection.key
    return sql.SQL(
        "SELECT t.tableoid, t.ctid::text, t.* FROM {table} AS t WHERE {after}{upto}{prune}({select}) IS TRUE "
        "ORDER BY {t_key} FOR UPDATE OF t"
    ).format(table=table_identifier(selection.table), after=after_condition("t", key, after),
             upto=upto_condition("t", key, bounded), prune=selection.prune("t"), select=selection.select("t"),
             t_key=columns("t", key))


def delete_locked(selection: Selection) -> sql.Composable:
    """Delete the rows :func:`lock_range` returned (``%(oids)s``, ``%(ctids)s``), re-checking expiry."""
    return sql.SQL(
        "DELETE FROM {table} AS d WHERE (d.tableoid, d.ctid) IN "
        "(SELECT * FROM unnest(%(oids)s::oid[], %(ctids)s::tid[])) AND {recheck}"
    ).format(table=table_identifier(selection.table), recheck=selection.recheck("d"))


def next_key(selection: Selection, after: Sequence[object] | None) -> sql.Composable:
    """The next selected key, read without locks (to step over a row another session holds)."""
    key = selection.key
    return sql.SQL("SELECT {t_key} FROM {table} AS t WHERE {after}{select} ORDER BY {t_key} LIMIT 1").format(
        t_key=columns("t", key), table=table_identifier(selection.table), after=after_condition("t", key, after),
        select=selection.select("t"))


def count_estimate(selection: Selection) -> sql.Composable:
    return sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} AS t WHERE {}").format(
        table_identifier(selection.table), selection.select("t"))
