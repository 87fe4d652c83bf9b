"""The erasure plan: check the PII map against the live catalog, and turn it into the statements one subject needs.

Before any row changes, every problem of the whole map is reported at once: a table or column that does
not exist, a strategy the column's type or constraints refuse (NOT NULL, CHECK, unique), a ``delete_row``
that a foreign key would block (naming the key and the order that fixes it), a ``through`` that names an
unmapped table or forms a cycle. The statements are built once here, with identifiers quoted by psycopg and
the subject id and values as bind parameters; the engine runs them per subject, prepared.

Every statement takes the subject id as text (``%(subject)s``, sent untyped): the server casts it to each
column's own type, so one id serves an ``int`` key and a ``bigint`` foreign key alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName, quote
from pgwarden.core.lifecycle.pii import (
    PSEUDONYM_LENGTH,
    Constant,
    ErasureConfig,
    MappedTable,
    policy_version,
    pseudonym,
    redacted_email,
    strategy_name,
)
from pgwarden.engine.lifecycle.plan import TIME_TYPES, PlanError
from pgwarden.engine.postgres import table_identifier

TEXT_TYPE = re.compile(r"^(text|citext|character varying|character)(\((\d+)\))?$")
# The longest text form of a key of these types, for the length a redacted e-mail needs.
KEY_TEXT_LENGTH = {"smallint": 6, "integer": 11, "bigint": 20, "uuid": 36}
SAMPLE_KEY = b"pgwarden-plan-sample-key"


@dataclass(frozen=True)
class TableStep:
    """One mapped table as the engine runs it: apply, then prove nothing of the subject is left."""

    mapped: MappedTable
    depth: int
    reach: sql.Composable           # WHERE condition: the rows of this table belonging to %(subject)s
    apply: sql.Composed | None      # DELETE or UPDATE of those rows; None for a join-only table
    check: sql.Composed | None      # SELECT count(*) of those rows still holding personal data
    count: sql.Composed             # SELECT count(*) of those rows (dry run)
    value_params: tuple[tuple[str, str], ...]  # (param name, strategy) whose value depends on the subject
    # Its rows are found through a table whose rows are deleted: its check must run before that delete.
    checked_at_once: bool = False

    @property
    def table(self) -> QualifiedName:
        return self.mapped.table

    @property
    def method(self) -> str:
        """For the ledger: ``delete_row``, or ``strategy:column`` pairs (names only, never values)."""
        if self.mapped.method == "delete_row":
            return "delete_row"
        return ",".join(f"{strategy_name(s)}:{quote(c)}" for c, s in sorted(self.mapped.columns.items()))


@dataclass(frozen=True)
class ErasurePlan:
    config: ErasureConfig
    policy_version: str
    steps: tuple[TableStep, ...]         # dependency order: deepest joins first, the subject table last
    lock_subject: sql.Composed           # SELECT due, held FOR UPDATE of the subject row (after its advisory lock)
    peek_subject: sql.Composed           # the same without the lock (dry run)
    without_subject_row: sql.Composed    # SELECT due, held for a subject whose row is gone (requests, holds table)
    select_due: sql.Composed             # subject ids (text) due at %(sd_threshold)s / %(rq_threshold)s
    count_in_grace: sql.Composed | None  # soft-deleted subjects whose grace is not over
    request_id: sql.Composed | None      # the oldest request id of a subject
    held: sql.Composable                 # boolean expression: a legal hold covers %(subject)s
    check_all: sql.Composed | None       # one SELECT of every other table's post-condition count, as an array
    # Every table's UPDATE/DELETE in one statement (data-modifying CTEs), returning the row counts in the order of
    # ``applied``; None when a table must go on its own (a RESTRICT key, a check before a parent's delete).
    apply_all: sql.Composed | None = None
    naive_thresholds: frozenset[str] = frozenset()  # thresholds compared with a timestamp without time zone
    warnings: tuple[str, ...] = field(default=())

    def values(self, step: TableStep | None, subject_id: str, hmac_key: bytes) -> dict[str, Any]:
        """Bind parameters of one step's statements (``None``: of every step, for ``check_all``)."""
        params: dict[str, Any] = {"subject": subject_id}
        for one in (self.steps if step is None else (step,)):
            for name, strategy in one.value_params:
                params[name] = redacted_email(subject_id) if strategy == "redact_email" else \
                    pseudonym(hmac_key, subject_id)
        return params

    @property
    def applied(self) -> tuple[TableStep, ...]:
        """The steps that change rows, in dependency order (``apply_all``'s array order)."""
        return tuple(s for s in self.steps if s.apply is not None)

    @property
    def checked_together(self) -> tuple[TableStep, ...]:
        """The steps ``check_all`` covers, in its array's order."""
        return tuple(s for s in self.steps if s.check is not None and not s.checked_at_once)


@dataclass
class _Table:
    oid: int
    types: dict[str, str]
    not_null: set[str]
    generated: set[str]


def plan_erasure(conn: psycopg.Connection, config: ErasureConfig) -> ErasurePlan:
    """Check the map against the catalog and build the statements; raise ``PlanError`` listing every problem."""
    problems: list[str] = []
    warnings: list[str] = []
    with conn.transaction(force_rollback=True):
        tables: dict[QualifiedName, _Table | None] = {}

        def table(name: QualifiedName, what: str) -> _Table | None:
            if name not in tables:
                tables[name] = _load(conn, name)
                if tables[name] is None:
                    problems.append(f"{what} {name} does not exist (check schema and name; names with capitals, "
                                    f"spaces or dashes go in double quotes)")
            return tables[name]

        def column(name: QualifiedName, col: str, what: str) -> str | None:
            info = table(name, what)
            if info is None:
                return None
            if col not in info.types:
                problems.append(f"{what} {name}: column {quote(col)} does not exist; it has "
                                f"{', '.join(quote(c) for c in info.types)}")
                return None
            return info.types[col]

        subject = config.subject
        key_type = column(subject.table, subject.key, "subject table")
        subject_info = tables.get(subject.table)
        if subject_info is not None and key_type is not None and not _unique(conn, subject_info.oid, [subject.key]):
            problems.append(f"subject table {subject.table}: key {quote(subject.key)} has no unique index; a subject "
                            f"must be exactly one row")
        naive: set[str] = set()
        soft = config.erasable.soft_deleted
        if soft is not None:
            kind = column(subject.table, soft.column, "erasable.soft_deleted on")
            if kind == "timestamp without time zone":
                naive.add("sd_threshold")
            if kind is not None and kind not in TIME_TYPES:
                problems.append(f"erasable.soft_deleted.column {quote(soft.column)} is {kind}; it needs timestamptz, "
                                f"timestamp or date")
        requests = config.erasable.requests
        if requests is not None:
            column(requests.table, requests.subject_column, "erasable.requests table")
            if requests.request_id_column:
                column(requests.table, requests.request_id_column, "erasable.requests table")
            if requests.requested_at_column:
                kind = column(requests.table, requests.requested_at_column, "erasable.requests table")
                if kind == "timestamp without time zone":
                    naive.add("rq_threshold")
                if kind is not None and kind not in TIME_TYPES:
                    problems.append(f"erasable.requests.requested_at_column is {kind}; it needs a timestamp or date")
        hold = config.legal_hold
        if hold is not None and hold.column is not None:
            kind = column(subject.table, hold.column, "legal_hold on")
            if kind is not None and kind != "boolean":
                problems.append(f"legal_hold.column {quote(hold.column)} is {kind}; it needs boolean")
        if hold is not None and hold.table is not None:
            column(hold.table, hold.subject_column, "legal_hold table")
            if hold.released_column:
                column(hold.table, hold.released_column, "legal_hold table")

        for mapped in config.tables:
            info = table(mapped.table, "mapped table")
            if info is None:
                continue
            if mapped.subject_column:
                column(mapped.table, mapped.subject_column, "mapped table")
            if mapped.through:
                column(mapped.table, mapped.through.column, "mapped table")
                parent = config.mapped(mapped.through.table)
                if parent is None and mapped.through.table != subject.table:
                    problems.append(f"{mapped.table} joins through {mapped.through.table}, which erasure.tables does "
                                    f"not map; add it (with columns: {{}} if it only joins)")
                else:
                    column(mapped.through.table, mapped.through.key, f"through of {mapped.table}:")
            for col, strategy in mapped.columns.items():
                kind = column(mapped.table, col, "mapped table")
                if kind is not None:
                    problems.extend(_strategy_problems(conn, mapped.table, info, col, kind, strategy, key_type))
            if mapped.method == "update":
                problems.extend(_check_problems(conn, mapped, info, key_type, warnings))

        depths = _depths(config, problems)
        restricting: list[str] = []
        for mapped in config.tables:
            info = tables.get(mapped.table)
            if info is not None and mapped.method == "delete_row":
                problems.extend(_blocking_foreign_keys(conn, config, mapped, info, depths, restricting))
        if problems:
            raise PlanError("the erasure map cannot run as configured:\n- " + "\n- ".join(problems))

        steps = [_step(config, m, depths[m.table], index) for index, m in enumerate(config.tables)]
        steps.sort(key=lambda s: (-s.depth, str(s.table)))
        together = [s.check for s in steps if s.check is not None and not s.checked_at_once]
        held = _held(config)
        return ErasurePlan(
            config=config,
            policy_version=policy_version(config),
            steps=tuple(steps),
            lock_subject=_lock_subject(config, held, lock=True),
            peek_subject=_lock_subject(config, held, lock=False),
            without_subject_row=_without_subject_row(config),
            select_due=select_due_sql(config),
            count_in_grace=count_in_grace_sql(config),
            request_id=_request_id(config),
            held=held,
            apply_all=None if restricting or any(s.checked_at_once for s in steps) else _apply_all(steps),
            check_all=sql.SQL("SELECT ARRAY[{}]::bigint[]").format(
                sql.SQL(", ").join(sql.SQL("({})").format(c) for c in together)) if together else None,
            naive_thresholds=frozenset(naive),
            warnings=tuple(warnings),
        )


def _load(conn: psycopg.Connection, name: QualifiedName) -> _Table | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (name.schema, name.name)).fetchone()
    if row is None:
        return None
    oid = int(row[0])
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attgenerated <> '' FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (oid,)).fetchall()
    # timestamp(3) with time zone is still a timestamp with time zone
    return _Table(oid, {str(r[0]): re.sub(r"^timestamp\(\d+\)", "timestamp", str(r[1])) for r in rows}, {str(r[0]) for r in rows if r[2]},
                  {str(r[0]) for r in rows if r[3]})


def _unique(conn: psycopg.Connection, oid: int, cols: list[str]) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL AND "
        "  array(SELECT a.attname::text FROM unnest(i.indkey) k(n) JOIN pg_attribute a "
        "        ON a.attrelid = i.indrelid AND a.attnum = k.n) = %s)", (oid, cols)).fetchone()
    return bool(row and row[0])


def _sample(strategy: Any, key_type: str | None) -> str | None:
    """A value of the strategy's kind, to test against the column's type and constraints."""
    name = strategy_name(strategy)
    if name == "redact_email":
        return redacted_email("9" * KEY_TEXT_LENGTH.get(key_type or "", 20))
    if name == "hmac":
        return pseudonym(SAMPLE_KEY, "1")
    if isinstance(strategy, Constant):
        return _constant_text(strategy)
    return None


def _constant_text(strategy: Constant) -> str:
    value = strategy.constant
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _strategy_problems(conn: psycopg.Connection, table: QualifiedName, info: _Table, col: str, kind: str,
                       strategy: Any, key_type: str | None) -> list[str]:
    name = strategy_name(strategy)
    where = f"{table}.{quote(col)} ({kind})"
    if name == "delete_row":
        return []
    if col in info.generated:
        return [f"{where} is a generated column and cannot be set; erase its source columns instead"]
    problems = []
    if name == "null" and col in info.not_null:
        problems.append(f"{where} is NOT NULL, so strategy null cannot apply; use a constant, redact_email or "
                        f"hmac, or drop the NOT NULL")
    if name in ("redact_email", "hmac"):
        match = TEXT_TYPE.match(kind)
        needed = len(_sample(strategy, key_type) or "")
        if match is None:
            problems.append(f"{where}: strategy {name} writes text, which a {kind} column cannot hold; use null or "
                            f"a constant")
        elif match.group(3) and int(match.group(3)) < needed:
            problems.append(f"{where}: strategy {name} writes up to {needed} characters, more than the column's "
                            f"{match.group(3)}; widen the column or use another strategy")
        if name == "hmac" and needed != PSEUDONYM_LENGTH:  # pragma: no cover - the sample is a full pseudonym
            raise AssertionError("pseudonym length changed")
    if isinstance(strategy, Constant):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SELECT CAST(%s::text AS {})").format(sql.SQL(kind)),  # type text from the catalog
                             (_constant_text(strategy),))
        except psycopg.Error as exc:
            problems.append(f"{where}: the constant is not a valid {kind} ({type(exc).__name__}); give one the "
                            f"type accepts")
    if name == "constant" or name == "null":
        for index, nulls_not_distinct in _unique_indexes_on(conn, info.oid, col):
            if name == "constant":
                problems.append(f"{where}: strategy constant gives every erased subject the same value, which the "
                                f"unique index {quote(index)} refuses from the second subject on; use redact_email "
                                f"or hmac (one value per subject) or null")
            elif nulls_not_distinct:
                problems.append(f"{where}: the unique index {quote(index)} is NULLS NOT DISTINCT, so strategy null "
                                f"works for one subject only; use redact_email or hmac")
    return problems


def _unique_indexes_on(conn: psycopg.Connection, oid: int, col: str) -> list[tuple[str, bool]]:
    nulls = "i.indnullsnotdistinct" if _version(conn) >= 150000 else "false"
    rows = conn.execute(sql.SQL(
        "SELECT ic.relname, {} FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
        "WHERE i.indrelid = %s AND i.indisunique AND a.attname = %s ORDER BY 1").format(sql.SQL(nulls)),
        (oid, col)).fetchall()
    return [(str(r[0]), bool(r[1])) for r in rows]


def _version(conn: psycopg.Connection) -> int:
    return int(conn.info.server_version)


def _check_problems(conn: psycopg.Connection, mapped: MappedTable, info: _Table, key_type: str | None,
                    warnings: list[str]) -> list[str]:
    """Evaluate each CHECK constraint over erased columns with the values the strategies write.

    A check over erased columns only is evaluated exactly (the expression, from the catalog, over a row of the
    sample values); one that also reads other columns cannot be judged here and is a warning.
    """
    rows = conn.execute(
        "SELECT c.conname, pg_get_expr(c.conbin, c.conrelid), "
        "  array(SELECT a.attname::text FROM unnest(c.conkey) k(n) JOIN pg_attribute a "
        "        ON a.attrelid = c.conrelid AND a.attnum = k.n) "
        "FROM pg_constraint c WHERE c.conrelid = %s AND c.contype = 'c' ORDER BY c.conname", (info.oid,)).fetchall()
    problems = []
    erased = {c: s for c, s in mapped.columns.items() if c in info.types}
    for name, expression, cols in rows:
        touched = sorted(set(cols) & set(erased))
        if not touched:
            continue
        if not set(cols) <= set(erased):
            warnings.append(f"{mapped.table}: CHECK {quote(name)} reads erased columns {touched} and others; "
                            f"pgwarden cannot test it before running (a subject it refuses fails alone)")
            continue
        values = sql.SQL(", ").join(
            sql.SQL("CAST({} AS {}) AS {}").format(sql.Literal(_sample(erased[c], key_type)), sql.SQL(info.types[c]),
                                                  sql.Identifier(c)) for c in cols)
        query = sql.SQL("SELECT coalesce(({}), true) FROM (SELECT {}) AS erased_row").format(
            sql.SQL(expression), values)  # the constraint's own expression, from the catalog
        try:
            with conn.transaction():
                row = conn.execute(query).fetchone()
            passes = bool(row and row[0])
        except psycopg.Error:
            passes = False
        if not passes:
            strategies = ", ".join(f"{quote(c)}: {strategy_name(erased[c])}" for c in touched)
            problems.append(f"{mapped.table}: CHECK constraint {quote(name)} refuses what the strategies write "
                            f"({strategies}); choose strategies the check accepts or change the check")
    return problems


def _depths(config: ErasureConfig, problems: list[str]) -> dict[QualifiedName, int]:
    """How many joins separate each table from the subject (the subject table 0); cycles are problems."""
    depths: dict[QualifiedName, int] = {}
    by_name = {m.table: m for m in config.tables}
    reported: set[frozenset[QualifiedName]] = set()

    def depth(name: QualifiedName, path: list[QualifiedName]) -> int:
        if name in depths:
            return depths[name]
        if name == config.subject.table:
            return 0
        if name in path:
            cycle = path[path.index(name):] + [name]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                problems.append("join paths form a cycle: " + " -> ".join(str(t) for t in cycle) +
                                "; one of these tables must reach the subject by its own subject_column")
            return 1
        mapped = by_name.get(name)
        if mapped is None or mapped.subject_column is not None or mapped.through is None:
            result = 1
        else:
            result = depth(mapped.through.table, [*path, name]) + 1
        depths[name] = result
        return result

    for mapped in config.tables:
        depth(mapped.table, [])
    depths[config.subject.table] = 0
    return depths


def _blocking_foreign_keys(conn: psycopg.Connection, config: ErasureConfig, mapped: MappedTable, info: _Table,
                           depths: dict[QualifiedName, int], restricting: list[str]) -> list[str]:
    """Foreign keys into a ``delete_row`` table that would refuse the delete (NO ACTION / RESTRICT), unless the
    referencing table is itself deleted through that key before it."""
    rows = conn.execute(
        "SELECT c.conname, n.nspname, cl.relname, "
        "  array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) "
        "        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), "
        "  array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) "
        "        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o), c.confdeltype "
        "FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace "
        "WHERE c.contype = 'f' AND c.confrelid = %s AND c.confdeltype IN ('a', 'r') AND c.conparentid = 0 "
        "ORDER BY 2, 3, 1", (info.oid,)).fetchall()
    problems = []
    for conname, schema, relname, cols, refcols, action in rows:
        if action == "r":  # RESTRICT is checked at once, not at statement end: the tables go one statement each
            restricting.append(str(conname))
        child = QualifiedName(str(schema), str(relname))
        if child == mapped.table:
            continue  # a self-reference: rows of one subject pointing at each other
        child_map = config.mapped(child)
        if child_map is not None and child_map.method == "delete_row" and len(cols) == 1 and \
                _reaches_via(config, child_map, mapped.table, cols[0], refcols[0]) and \
                depths.get(child, 0) > depths.get(mapped.table, 0):
            continue
        fk = f"{child}({', '.join(quote(c) for c in cols)}) -> {mapped.table}({', '.join(quote(c) for c in refcols)})"
        problems.append(
            f"delete_row on {mapped.table} would be blocked by foreign key {quote(conname)} {fk}: rows of {child} "
            f"referencing an erased row must go first. Map {child} with delete_row reaching the subject through "
            f"{mapped.table} (through: {{table: {mapped.table}, column: {quote(cols[0])}, key: {quote(refcols[0])}}}"
            f"{' or subject_column: ' + quote(cols[0]) if mapped.table == config.subject.table else ''}), so it is "
            f"erased before {mapped.table}; or make the foreign key ON DELETE CASCADE or SET NULL")
    return problems


def _reaches_via(config: ErasureConfig, child: MappedTable, parent: QualifiedName, col: str, refcol: str) -> bool:
    if child.through is not None:
        return child.through.table == parent and child.through.column == col and child.through.key == refcol
    return parent == config.subject.table and child.subject_column == col and refcol == config.subject.key


SUBJECT = sql.Placeholder("subject")


def _reach(config: ErasureConfig, table: QualifiedName, seen: tuple[QualifiedName, ...] = ()) -> sql.Composable:
    """``WHERE`` condition (unqualified columns of ``table``) selecting the subject's rows."""
    if table == config.subject.table:
        return sql.SQL("{} = {}").format(sql.Identifier(config.subject.key), SUBJECT)
    mapped = config.mapped(table)
    assert mapped is not None and table not in seen
    if mapped.subject_column is not None:
        return sql.SQL("{} = {}").format(sql.Identifier(mapped.subject_column), SUBJECT)
    assert mapped.through is not None
    return sql.SQL("{} IN (SELECT {} FROM {} WHERE {})").format(
        sql.Identifier(mapped.through.column), sql.Identifier(mapped.through.key),
        table_identifier(mapped.through.table), _reach(config, mapped.through.table, (*seen, table)))


def _through_deleted_rows(config: ErasureConfig, mapped: MappedTable) -> bool:
    """Whether the table's join path crosses a table whose rows ``delete_row`` removes."""
    seen = {mapped.table}
    while mapped.through is not None and mapped.through.table != config.subject.table:
        parent = config.mapped(mapped.through.table)
        if parent is None or parent.table in seen:
            return False
        if parent.method == "delete_row":
            return True
        seen.add(parent.table)
        mapped = parent
    return False


def _step(config: ErasureConfig, mapped: MappedTable, depth: int, index: int) -> TableStep:
    target = table_identifier(mapped.table)
    at_once = _through_deleted_rows(config, mapped)
    reach = _reach(config, mapped.table)
    count = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(target, reach)
    if mapped.method == "join":
        return TableStep(mapped, depth, reach, None, None, count, ())
    if mapped.method == "delete_row":
        return TableStep(mapped, depth, reach, sql.SQL("DELETE FROM {} WHERE {}").format(target, reach), count,
                         count, (), at_once)
    sets, left, value_params = [], [], []
    for number, (col, strategy) in enumerate(sorted(mapped.columns.items())):
        ident = sql.Identifier(col)
        name = strategy_name(strategy)
        if name == "null":
            sets.append(sql.SQL("{} = NULL").format(ident))
            left.append(sql.SQL("{} IS NOT NULL").format(ident))
            continue
        if isinstance(strategy, Constant):
            value: sql.Composable = sql.Literal(_constant_text(strategy))
        else:
            param = f"t{index}_c{number}"
            value_params.append((param, name))
            value = sql.Placeholder(param)
        sets.append(sql.SQL("{} = {}").format(ident, value))
        left.append(sql.SQL("{} IS DISTINCT FROM {}").format(ident, value))
    apply = sql.SQL("UPDATE {} SET {} WHERE {}").format(target, sql.SQL(", ").join(sets), reach)
    check = sql.SQL("SELECT count(*) FROM {} WHERE ({}) AND ({})").format(target, reach, sql.SQL(" OR ").join(left))
    return TableStep(mapped, depth, reach, apply, check, count, tuple(value_params), at_once)


def _apply_all(steps: list[TableStep]) -> sql.Composed | None:
    """``WITH t0 AS (DELETE ... RETURNING 1), t1 AS (UPDATE ... RETURNING 1) SELECT ARRAY[count(t0), ...]``.

    One statement, one snapshot: every table's rows are found as they were before the erasure (a table reached
    through one whose rows are deleted still finds its own), and foreign keys (NO ACTION) are checked at the
    statement's end, when the referencing rows are gone too.
    """
    changing = [s for s in steps if s.apply is not None]
    if len(changing) < 2:
        return None
    parts, counts = [], []
    for number, step in enumerate(changing):
        assert step.apply is not None
        name = sql.Identifier(f"t{number}")
        parts.append(sql.SQL("{} AS ({} RETURNING 1)").format(name, step.apply))
        counts.append(sql.SQL("(SELECT count(*) FROM {})").format(name))
    return sql.SQL("WITH {} SELECT ARRAY[{}]::bigint[]").format(sql.SQL(", ").join(parts), sql.SQL(", ").join(counts))


def _held(config: ErasureConfig) -> sql.Composable:
    hold = config.legal_hold
    if hold is None:
        return sql.SQL("false")
    if hold.column is not None:
        return sql.SQL("coalesce(s.{}, false)").format(sql.Identifier(hold.column))
    assert hold.table is not None
    released = sql.SQL("")
    if hold.released_column:
        released = sql.SQL(" AND h.{} IS NULL").format(sql.Identifier(hold.released_column))
    return sql.SQL("EXISTS (SELECT FROM {} h WHERE h.{} = {}{})").format(
        table_identifier(hold.table), sql.Identifier(hold.subject_column), SUBJECT, released)


def _due(config: ErasureConfig) -> sql.Composable:
    """Boolean over the subject row ``s``: erasable at the thresholds, whichever rule says so."""
    parts = []
    soft = config.erasable.soft_deleted
    if soft is not None:
        parts.append(sql.SQL("s.{} < %(sd_threshold)s").format(sql.Identifier(soft.column)))
    requests = config.erasable.requests
    if requests is not None:
        parts.append(sql.SQL("EXISTS (SELECT FROM {} r WHERE r.{} = {}{})").format(
            table_identifier(requests.table), sql.Identifier(requests.subject_column), SUBJECT, _requested(config)))
    return sql.SQL("coalesce(({}), false)").format(sql.SQL(" OR ").join(parts))


def _requested(config: ErasureConfig) -> sql.Composable:
    requests = config.erasable.requests
    if requests is None or requests.requested_at_column is None:
        return sql.SQL("")
    return sql.SQL(" AND r.{} <= %(rq_threshold)s").format(sql.Identifier(requests.requested_at_column))


def _lock_subject(config: ErasureConfig, held: sql.Composable, *, lock: bool) -> sql.Composed:
    """The subject row, locked: is it (still) due, and is it held? No row: see ``_without_subject_row``."""
    if not lock:
        return sql.SQL("SELECT {}, {} FROM {} s WHERE s.{} = {}").format(
            _due(config), held, table_identifier(config.subject.table), sql.Identifier(config.subject.key), SUBJECT)
    # The advisory lock on the subject's reference first (it also serializes subjects without a row), then the row.
    return sql.SQL("SELECT {}, {} FROM (SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))) l, {} s "
                   "WHERE s.{} = {} FOR UPDATE OF s").format(
        _due(config), held, table_identifier(config.subject.table), sql.Identifier(config.subject.key), SUBJECT)


def _without_subject_row(config: ErasureConfig) -> sql.Composed:
    """A subject whose row is gone (hard-deleted) may still have rows elsewhere: due only by a request, held
    only by a holds table."""
    requests = config.erasable.requests
    due: sql.Composable = sql.SQL("false")
    if requests is not None:
        due = sql.SQL("EXISTS (SELECT FROM {} r WHERE r.{} = {}{})").format(
            table_identifier(requests.table), sql.Identifier(requests.subject_column), SUBJECT, _requested(config))
    hold = config.legal_hold
    held = _held(config) if hold is not None and hold.table is not None else sql.SQL("false")
    return sql.SQL("SELECT {}, {} FROM (SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))) l").format(
        due, held)


def select_due_sql(config: ErasureConfig) -> sql.Composed:
    """The ids (as text) of the subjects erasable at ``%(sd_threshold)s``: the erase step and the status page."""
    parts = []
    soft = config.erasable.soft_deleted
    key = sql.Identifier(config.subject.key)
    if soft is not None:
        parts.append(sql.SQL("SELECT s.{}::text AS subject FROM {} s WHERE s.{} < %(sd_threshold)s").format(
            key, table_identifier(config.subject.table), sql.Identifier(soft.column)))
    requests = config.erasable.requests
    if requests is not None:
        parts.append(sql.SQL("SELECT r.{}::text AS subject FROM {} r WHERE r.{} IS NOT NULL{}").format(
            sql.Identifier(requests.subject_column), table_identifier(requests.table),
            sql.Identifier(requests.subject_column), _requested(config)))
    return sql.SQL("SELECT subject FROM ({}) due GROUP BY subject ORDER BY min(length(subject)), subject").format(
        sql.SQL(" UNION ALL ").join(parts))


def count_in_grace_sql(config: ErasureConfig) -> sql.Composed | None:
    """How many soft-deleted subjects still wait out their grace period (None: no soft-delete rule)."""
    soft = config.erasable.soft_deleted
    if soft is None:
        return None
    col = sql.Identifier(soft.column)
    return sql.SQL("SELECT count(*) FROM {} s WHERE s.{} >= %(sd_threshold)s").format(
        table_identifier(config.subject.table), col)


def _request_id(config: ErasureConfig) -> sql.Composed | None:
    requests = config.erasable.requests
    if requests is None or requests.request_id_column is None:
        return None
    return sql.SQL("SELECT min(r.{}::text) FROM {} r WHERE r.{} = {}").format(
        sql.Identifier(requests.request_id_column), table_identifier(requests.table),
        sql.Identifier(requests.subject_column), SUBJECT)
