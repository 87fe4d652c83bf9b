"""Entry points per phase of an expand/contract migration: ``plan``, ``expand``, ``backfill``,
``contract``, ``rollback``. A DAG task or a CLI command calls one of them with a target and the file.

Every phase plans against the catalog as it was BEFORE the migration: ``expand`` stores that snapshot
in ``pgwarden.expand_contract_state`` on its first run and every later phase (and a re-run of expand)
reuses it, so planning is deterministic however far the migration got. ``rollback`` removes it when it
has undone everything. Expressions are type-checked by the server (``EXPLAIN``) before expand runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgwarden.core.migrations.planner import plan_migration, tables_named
from pgwarden.core.migrations.snapshot import Catalog, catalog_from_json, catalog_to_json
from pgwarden.core.migrations.spec import DropIndex, MigrationSpec, parse_spec
from pgwarden.core.migrations.steps import PHASES, MigrationPlan, PlanError
from pgwarden.engine.control import control_table, ensure_control_schema
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.migrations.backfill import (
    DEFAULT_BACKFILL,
    BackfillResult,
    BackfillSettings,
    run_backfill,
)
from pgwarden.engine.migrations.executor import PhaseStats, run_steps
from pgwarden.engine.migrations.lint import LintFinding, lint_sql, require_clean
from pgwarden.engine.migrations.online_ddl import DEFAULT_DDL, DdlSettings
from pgwarden.engine.migrations.snapshot import read_catalog
from pgwarden.engine.postgres import PgTarget, connect, end_with_client

STATE = "expand_contract_state"


@dataclass
class PhaseResult:
    phase: str
    migration: str
    ddl: PhaseStats | None = None
    backfills: list[BackfillResult] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.migration} {self.phase}"]
        if self.ddl:
            parts.append(self.ddl.summary())
        parts += [b.summary() for b in self.backfills]
        return ": ".join(parts[:1]) + ": " + "; ".join(parts[1:]) if len(parts) > 1 else parts[0]

    def to_json_dict(self) -> dict[str, object]:
        return {"phase": self.phase, "migration": self.migration,
                "ddl": self.ddl.to_json_dict() if self.ddl else None,
                "backfills": [b.to_json_dict() for b in self.backfills]}


def read_spec(path: Path) -> MigrationSpec:
    return parse_spec(path.read_text(encoding="utf-8"), path.name)


def tables_touched(conn: psycopg.Connection, spec: MigrationSpec):
    """The tables the migration changes (the table of a dropped index included), as they are named."""
    names = list(tables_named(spec))
    for op in spec.operations:
        if isinstance(op, DropIndex):
            row = conn.execute("SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid = "
                               "to_regclass(%s)", (str(op.index),)).fetchone()
            if row:
                from pgwarden.core.identifiers import QualifiedName

                names.append(QualifiedName(*row))
    return tuple(names)


def _state(conn: psycopg.Connection, spec: MigrationSpec) -> tuple[Catalog, bool] | None:
    """The stored pre-migration catalog and whether contract completed, or None before the first expand."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"pgwarden.{STATE}",)).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(sql.SQL("SELECT catalog, contracted_at IS NOT NULL FROM {} WHERE version = %s")
                       .format(control_table(STATE)), (spec.version,)).fetchone()
    return (catalog_from_json(row[0]), row[1]) if row else None


def contract_state(conn: psycopg.Connection, spec: MigrationSpec) -> bool | None:
    """None before the first expand, else whether contract completed."""
    state = _state(conn, spec)
    return None if state is None else state[1]


def _require(conn: psycopg.Connection, spec: MigrationSpec, phase: str, *, expanded: bool) -> None:
    state = _state(conn, spec)
    if expanded and state is None:
        raise PermanentError(f"{spec.file}: {phase} needs expand to have run first (no stored state in "
                             f"pgwarden.{STATE} for version {spec.version}); run expand")
    if state is not None and state[1] and phase != "contract":
        raise PermanentError(f"{spec.file}: contract already completed; {phase} cannot run any more "
                             f"(write a new migration to change the table again)")


def check_expressions(conn: psycopg.Connection, plan: MigrationPlan) -> None:
    """Ask the server to type-check every author expression in its context; a PlanError names the field."""
    for op in plan.operations:
        for check in op.checks:
            try:
                with conn.transaction():
                    conn.execute("SELECT set_config('statement_timeout', '10s', true)")
                    conn.execute(sql.SQL("EXPLAIN {}").format(sql.SQL(check.query)))
            except psycopg.Error as exc:
                raise PlanError(plan.file, op.index, f"{op.kind}.{check.field}",
                                f"the server rejects it: {exc.diag.message_primary or exc}") from None


def lint_plan(migration: MigrationPlan, *, pg_version: str | None = None) -> list[LintFinding]:
    """squawk's findings on the SQL of every phase (source ``<file> <phase>``, lines of that phase's text)."""
    findings: list[LintFinding] = []
    for phase in PHASES:
        text = migration.phase_sql(phase)
        if text:
            findings += lint_sql(text, f"{migration.file} {phase}", pg_version=pg_version)
    return findings


def plan(conn: psycopg.Connection, spec: MigrationSpec, *, store: bool = False) -> MigrationPlan:
    """Plan ``spec``: against the stored pre-migration catalog if expand ran before, else the live one."""
    state = _state(conn, spec)
    catalog = state[0] if state else None
    fresh = catalog is None
    if fresh:
        catalog = read_catalog(conn, tables_touched(conn, spec))
    migration = plan_migration(spec, catalog)
    if fresh:
        check_expressions(conn, migration)
        require_clean(lint_plan(migration, pg_version=str(conn.info.server_version // 10000)))
        if store:
            with conn.transaction():
                ensure_control_schema(conn)
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (version text PRIMARY KEY, name text NOT NULL, "
                                     "catalog jsonb NOT NULL, stored_at timestamptz NOT NULL DEFAULT now(), "
                                     "contracted_at timestamptz)")
                             .format(control_table(STATE)))
                conn.execute(sql.SQL("INSERT INTO {} (version, name, catalog) VALUES (%s, %s, %s) "
                                     "ON CONFLICT (version) DO NOTHING").format(control_table(STATE)),
                             (spec.version, spec.name, Jsonb(catalog_to_json(catalog))))
    return migration


@contextmanager
def _open(target: PgTarget) -> Iterator[psycopg.Connection]:
    # Session-level timeouts too: every DDL step sets its own, this covers the catalog reads. A killed task's
    # backend must not stay queued for an ACCESS EXCLUSIVE lock (blocking the application behind it).
    with connect(target, statement_timeout="60s", lock_timeout="1s") as conn:
        end_with_client(conn)
        yield conn


def expand(target: PgTarget, path: Path, *, ddl: DdlSettings = DEFAULT_DDL,
           log: Callable[[str], None] = print) -> PhaseResult:
    spec = read_spec(path)
    with _open(target) as conn:
        _require(conn, spec, "expand", expanded=False)
        migration = plan(conn, spec, store=True)
        with conn.transaction():
            ensure_control_schema(conn)  # the dual-write functions live there
        stats = run_steps(conn, migration.steps("expand"), what=f"{path.name} expand", settings=ddl, log=log)
    return PhaseResult("expand", path.name, ddl=stats)


def backfill(target: PgTarget, path: Path, *, settings: BackfillSettings = DEFAULT_BACKFILL,
             log: Callable[[str], None] = print) -> PhaseResult:
    spec = read_spec(path)
    result = PhaseResult("backfill", path.name)
    with _open(target) as conn:
        _require(conn, spec, "backfill", expanded=True)
        migration = plan(conn, spec)
        for index, job in migration.backfills():
            result.backfills.append(run_backfill(conn, spec.version, index, job, settings=settings, log=log))
    return result


def contract(target: PgTarget, path: Path, *, ddl: DdlSettings = DEFAULT_DDL,
             log: Callable[[str], None] = print) -> PhaseResult:
    spec = read_spec(path)
    with _open(target) as conn:
        _require(conn, spec, "contract", expanded=True)
        migration = plan(conn, spec)
        stats = run_steps(conn, migration.steps("contract"), what=f"{path.name} contract", settings=ddl, log=log)
        with conn.transaction():
            conn.execute(sql.SQL("UPDATE {} SET contracted_at = coalesce(contracted_at, now()) WHERE version = %s")
                         .format(control_table(STATE)), (spec.version,))
    return PhaseResult("contract", path.name, ddl=stats)


def rollback(target: PgTarget, path: Path, *, ddl: DdlSettings = DEFAULT_DDL,
             log: Callable[[str], None] = print) -> PhaseResult:
    spec = read_spec(path)
    with _open(target) as conn:
        _require(conn, spec, "rollback", expanded=False)
        migration = plan(conn, spec)
        stats = run_steps(conn, migration.steps("rollback"), what=f"{path.name} rollback", settings=ddl, log=log)
        with conn.transaction():
            for table in (STATE, "backfill_checkpoints"):
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"pgwarden.{table}",)).fetchone()[0]:
                    conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(control_table(table)),
                                 (spec.version,))
    return PhaseResult("rollback", path.name, ddl=stats)


def render_plan(target: PgTarget, path: Path) -> str:
    """The SQL of every phase with its locks, changing nothing (``pgwarden migrate plan``)."""
    spec = read_spec(path)
    with _open(target) as conn:
        return plan(conn, spec).render()


__all__ = ["PhaseResult", "backfill", "contract", "contract_state", "expand", "plan", "render_plan", "rollback"]
