"""The plan step: check every policy against the live catalog before any row is touched.

The table exists; the expiry (and soft-delete) column has a timestamp or date type; the key is usable
(a primary key, or a unique NOT NULL index on the named columns); the predicate plans (the server plans
the real batch statement with the predicate inside, and that plan must walk the key's index, never scan
the table); children are found through foreign keys and ordered deepest first; partition mode has what
``DETACH ... CONCURRENTLY`` needs. Every problem of every policy is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.selection import ForeignKey, Selection, batch_bound, delete_range
from pgwarden.engine.postgres import server_version_num

TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")
# Session settings of every batch transaction: the batch must walk the key's index (a sequential
# scan per batch is what turns large batches slow), and a timestamp without time zone is read as UTC.
BATCH_SESSION = (("enable_seqscan", "off"), ("enable_bitmapscan", "off"), ("TimeZone", "UTC"))
MAX_CHILD_DEPTH = 8


class PlanError(PermanentError):
    """A policy that cannot run as configured; the message lists every problem and what to change."""


@dataclass(frozen=True)
class TablePlan:
    selection: Selection
    column_types: dict[str, str]

    @property
    def table(self) -> QualifiedName:
        return self.selection.table


@dataclass(frozen=True)
class PolicyPlan:
    policy: PolicyConfig
    main: TablePlan
    children: tuple[TablePlan, ...]  # deepest first: the order they are purged in
    partitioned: bool
    warnings: tuple[str, ...] = field(default=())

    def threshold(self, cutoff: datetime) -> datetime:
        """The expiry threshold as the expiry column compares it (naive UTC for ``timestamp``)."""
        threshold = self.policy.expire.threshold(cutoff.astimezone(UTC))
        if self.main.column_types[self.policy.expire.column] == "timestamp without time zone":
            return threshold.replace(tzinfo=None)
        return threshold


def set_batch_session(conn: psycopg.Connection) -> None:
    """The batch settings for the current transaction only (``SET LOCAL``)."""
    # One round trip for all of them: it is paid on every batch.
    calls = sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in BATCH_SESSION)
    conn.execute(sql.SQL("SELECT {}").format(calls), [v for pair in BATCH_SESSION for v in pair])


def plan_policies(conn: psycopg.Connection, policies: Sequence[PolicyConfig]) -> list[PolicyPlan]:
    """Plan every policy; raise ``PlanError`` listing all problems of all policies."""
    plans, problems = [], []
    for policy in policies:
        try:
            plans.append(plan_policy(conn, policy))
        except PlanError as exc:
            problems.append(str(exc))
    if problems:
        raise PlanError("\n".join(problems))
    return plans


def plan_policy(conn: psycopg.Connection, policy: PolicyConfig) -> PolicyPlan:
    problems: list[str] = []
    warnings: list[str] = []
    label = f"policy {policy.name!r} ({policy.table})"

    def fail(message: str) -> PlanError:
        return PlanError(f"{label}: {message}")

    with conn.transaction(force_rollback=True):
        info = _relation(conn, policy.table)
        if info is None:
            raise fail("the table does not exist (check the schema and the name; names with capitals or "
                       "spaces go in double quotes in the config)")
        oid, relkind = info
        if relkind not in ("r", "p"):
            raise fail("is not a table (a view or another kind of relation); name the table itself")
        types = _column_types(conn, oid)
        time_columns = [policy.expire.column] + ([policy.soft_delete.column] if policy.soft_delete else [])
        for column in time_columns:
            if column not in types:
                problems.append(f"column {column!r} does not exist; the table has {sorted(types)}")
            elif types[column] not in TIME_TYPES:
                problems.append(f"column {column!r} is {types[column]}; expiry needs timestamptz, timestamp or date")
        for column in policy.personal_data:
            if column not in types:
                problems.append(f"personal_data column {column!r} does not exist")
        key, key_problem = _key(conn, oid, policy.key, types)
        if key_problem:
            problems.append(key_problem)
        partitioned = relkind == "p"
        if policy.mode == "partition_drop":
            problems.extend(_partition_problems(conn, oid, partitioned, policy.expire.column))
        if policy.soft_delete:
            warnings.extend(_soft_delete_warnings(conn, oid, policy.soft_delete.column))
            if policy.soft_delete.active_view and server_version_num(conn) < 150000:
                problems.append("soft_delete.active_view needs PostgreSQL 15 or later (security_invoker views)")
        if problems:
            raise fail("; ".join(problems))
        main = Selection(policy.table, key, policy.expire.column, policy.where, partitioned=partitioned)
        children: list[TablePlan] = []
        if policy.children == "auto":
            children = _children_auto(conn, main, oid, warnings)
        else:
            for child in policy.children:
                children.append(_named_child(conn, main, oid, child, fail))
        children.sort(key=lambda c: -c.selection.depth())
        plan = PolicyPlan(policy, TablePlan(main, types), tuple(children), partitioned, tuple(warnings))
        for table_plan in (plan.main, *plan.children):
            _check_batch_plans(conn, plan, table_plan, fail)
    return plan


def _relation(conn: psycopg.Connection, table: QualifiedName) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (table.schema, table.name)).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _column_types(conn: psycopg.Connection, oid: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (oid,)).fetchall()
    # timestamp(3) with time zone is still a timestamp with time zone
    return {str(name): re.sub(r"^timestamp\(\d+\)", "timestamp", str(kind)) for name, kind in rows}


def _unique_indexes(conn: psycopg.Connection, oid: int) -> list[tuple[str, bool, bool, list[str]]]:
    """(index name, is primary, is partial, columns in index order; expression columns as '')."""
    rows = conn.execute(
        "SELECT ic.relname, i.indisprimary, i.indpred IS NOT NULL, "
        "  array(SELECT coalesce(a.attname, '') FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o) "
        "        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid ORDER BY NOT i.indisprimary, ic.relname",
        (oid,)).fetchall()
    return [(str(name), bool(primary), bool(partial), [str(c) for c in cols]) for name, primary, partial, cols in rows]


def _not_null(conn: psycopg.Connection, oid: int) -> set[str]:
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND attnotnull",
                        (oid,)).fetchall()
    return {str(r[0]) for r in rows}


def _key(conn: psycopg.Connection, oid: int, wanted: Sequence[str] | None,
         types: dict[str, str]) -> tuple[tuple[str, ...], str | None]:
    indexes = _unique_indexes(conn, oid)
    if wanted is None:
        for _name, primary, _partial, cols in indexes:
            if primary:
                return tuple(cols), None
        return (), ("the table has no primary key to batch on; add one, or set `key:` to columns with a "
                    "unique index and NOT NULL")
    missing = [c for c in wanted if c not in types]
    if missing:
        return (), f"key columns {missing} do not exist"
    not_null = _not_null(conn, oid)
    for _name, _primary, partial, cols in indexes:
        if not partial and cols == list(wanted):
            nullable = [c for c in wanted if c not in not_null]
            if nullable:
                return (), f"key columns {nullable} allow NULL; a batch key must be NOT NULL"
            return tuple(wanted), None
    return (), (f"key {list(wanted)} has no unique, non-partial index with exactly these columns in this order; "
                f"create one or leave `key:` out to use the primary key")


def _partition_problems(conn: psycopg.Connection, oid: int, partitioned: bool, column: str) -> list[str]:
    if not partitioned:
        return ["mode partition_drop needs a range-partitioned table; this one is not partitioned (use mode delete)"]
    if server_version_num(conn) < 140000:
        return ["mode partition_drop needs PostgreSQL 14 or later (DETACH PARTITION ... CONCURRENTLY)"]
    row = conn.execute(
        "SELECT p.partstrat, p.partdefid, "
        "  array(SELECT coalesce(a.attname, '') FROM unnest(p.partattrs) k(n) "
        "        LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.n) "
        "FROM pg_partitioned_table p WHERE p.partrelid = %s", (oid,)).fetchone()
    assert row is not None
    strategy, default_oid, keys = row
    problems = []
    if strategy != "r" or list(keys) != [column]:
        problems.append(f"mode partition_drop needs the table range-partitioned on the expiry column {column!r} "
                        f"alone; use mode delete")
    if default_oid:
        problems.append("the table has a DEFAULT partition, and PostgreSQL cannot DETACH ... CONCURRENTLY while "
                        "one exists; move its rows into ranged partitions and drop it, or use mode delete")
    return problems


def _soft_delete_warnings(conn: psycopg.Connection, oid: int, column: str) -> list[str]:
    return [
        f"unique index {name!r} on {cols} is not partial: a soft-deleted row keeps its value taken, so the same "
        f"value cannot be registered again; make it a partial unique index WHERE {column} IS NULL"
        for name, primary, partial, cols in _unique_indexes(conn, oid)
        if not primary and not partial and column not in cols
    ]


def _foreign_keys(conn: psycopg.Connection, parent_oid: int) -> Iterator[tuple[int, QualifiedName, ForeignKey]]:
    rows = conn.execute(
        "SELECT c.conrelid, n.nspname, cl.relname, "
        "  array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o) "
        "        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), "
        "  array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o) "
        "        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) "
        "FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = cl.relnamespace "
        "WHERE c.contype = 'f' AND c.confrelid = %s AND c.conparentid = 0 ORDER BY n.nspname, cl.relname, c.conname",
        (parent_oid,)).fetchall()
    for child_oid, schema, name, fk_cols, ref_cols in rows:
        yield int(child_oid), QualifiedName(str(schema), str(name)), ForeignKey(tuple(fk_cols), tuple(ref_cols))


def _child_plan(conn: psycopg.Connection, parent: Selection, child_oid: int, child: QualifiedName,
                fk: ForeignKey) -> TablePlan:
    types = _column_types(conn, child_oid)
    key, problem = _key(conn, child_oid, None, types)
    if problem:
        raise PlanError(f"child table {child} (references {parent.table}): {problem}")
    return TablePlan(Selection(child, key, parent=parent, via=fk), types)


def _children_auto(conn: psycopg.Connection, main: Selection, oid: int, warnings: list[str]) -> list[TablePlan]:
    found: list[TablePlan] = []
    seen = {oid}

    def walk(parent: Selection, parent_oid: int) -> None:
        for child_oid, child, fk in _foreign_keys(conn, parent_oid):
            if child_oid in seen:
                warnings.append(f"{child} references {parent.table} in a cycle (or itself); its rows are not "
                                f"purged first: deleting may fail on that foreign key")
                continue
            if parent.depth() + 1 > MAX_CHILD_DEPTH:
                raise PlanError(f"foreign keys below {main.table} nest deeper than {MAX_CHILD_DEPTH} tables; "
                                f"list the children explicitly")
            seen.add(child_oid)
            plan = _child_plan(conn, parent, child_oid, child, fk)
            if not _has_index_on(conn, child_oid, fk.columns):
                warnings.append(f"{child}({', '.join(fk.columns)}) has no index: every row deleted from "
                                f"{parent.table} makes the server scan {child}; index those columns")
            found.append(plan)
            walk(plan.selection, child_oid)

    walk(main, oid)
    return found


def _has_index_on(conn: psycopg.Connection, oid: int, cols: Sequence[str]) -> bool:
    """An index whose leading columns are ``cols`` (in any order), as a foreign key check needs."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %s AND i.indpred IS NULL AND "
        "  (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM unnest(i.indkey[0:%s - 1]) k(n) "
        "   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n) = %s)",
        (oid, len(cols), sorted(cols))).fetchone()
    return bool(row and row[0])


def _named_child(conn: psycopg.Connection, main: Selection, oid: int, child: QualifiedName, fail: Any) -> TablePlan:
    for child_oid, name, fk in _foreign_keys(conn, oid):
        if name == child:
            return _child_plan(conn, main, child_oid, name, fk)
    raise fail(f"child {child} has no foreign key referencing the table; children are joined through one")


def _check_batch_plans(conn: psycopg.Connection, plan: PolicyPlan, table_plan: TablePlan, fail: Any) -> None:
    """Ask the server to plan the batch statements (first batch, a later one, the last one): the predicate
    must plan, and every statement must reach the table through an index, never a sequential scan."""
    selection = table_plan.selection
    params: dict[str, object] = {"threshold": datetime(1970, 1, 1, tzinfo=UTC), "limit": 1000, "offset": 999}
    if plan.main.column_types[plan.policy.expire.column] == "timestamp without time zone":
        params["threshold"] = datetime(1970, 1, 1)
    set_batch_session(conn)
    params.update({f"{name}{i}": None for i in range(len(selection.key)) for name in ("upto", "until")})
    # (after, statement, must walk an index). The one unbounded statement with no lower bound either runs
    # only on a table holding fewer keys than one batch: a scan of it is a batch's worth.
    cases = [(after, statement, after is not None or bounded)
             for after in (None, (None,) * len(selection.key))
             for statement, bounded in ((batch_bound(selection, after), True),
                                        (batch_bound(selection, after, until=True), True),
                                        (delete_range(selection, after, bounded=True), True),
                                        (delete_range(selection, after, bounded=False), False))]
    for after, statement, must_walk_index in cases:
        query = sql.SQL("EXPLAIN (FORMAT JSON, VERBOSE) {}").format(statement)
        if after is not None:
            params.update({f"after{i}": None for i in range(len(after))})
        try:
            with conn.transaction():
                explained = conn.execute(query, params).fetchone()[0]  # type: ignore[index]
        except psycopg.Error as exc:
            where = f" with the predicate {plan.policy.where!r}" if plan.policy.where else ""
            raise fail(f"the server could not plan the batch on {selection.table}{where}: "
                       f"{str(exc).strip().splitlines()[0]}") from exc
        scans = [node for node in plan_nodes(explained[0]["Plan"])
                 if node.get("Relation Name") == selection.table.name
                 and node.get("Schema", selection.table.schema) == selection.table.schema
                 and node.get("Node Type") == "Seq Scan"]
        if scans and must_walk_index:
            raise fail(f"the batch on {selection.table} would scan the whole table on every batch (no usable "
                       f"index on its key {list(selection.key)}); add one")


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
