"""The phases of a gated expand/contract migration, recorded in ``pgwarden.schema_history``.

Each phase (``restore_point``, ``expand``, ``backfill``, ``contract``, ``rollback``) first checks the
migration file against the history (an edited file is refused, naming it), then records its start with
:func:`history.start_phase` (which claims the migration's tables: a second migration on the same table
is refused while this one is active), runs the engine's phase from :mod:`expand_contract` and records
its end: ``running`` between phases, ``applied`` after contract, ``rolled_back`` after a rollback (both
release the table claim). Every phase is idempotent in the engine, so a killed or cleared task converges
when it runs again.

The gates' figures come from here too: rows that still differ (:func:`mismatches`), statements that
touched an old column (:func:`old_column_calls`, from ``pg_stat_statements``), the approvals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgwarden.core.migrations.config import MigrationsConfig
from pgwarden.core.migrations.file import MigrationFile
from pgwarden.core.migrations.gates import old_columns
from pgwarden.core.migrations.planner import tables_named
from pgwarden.engine.control import control_table, ensure_control_schema
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.migrations import expand_contract
from pgwarden.engine.migrations.history import (
    HISTORY,
    RunInfo,
    add_event,
    ensure_history,
    fail_phase,
    finish_phase_statement,
    read_history,
    start_phase,
)
from pgwarden.engine.migrations.loader import check_history, load_migrations, migrations_folder
from pgwarden.engine.postgres import PgTarget, connect, end_with_client

ENDS = {"contract": "applied", "rollback": "rolled_back"}


@dataclass(frozen=True)
class Gated:
    """One expand/contract migration of a database's folder, checked against the history."""

    file: MigrationFile
    path: Path

    @property
    def tables(self) -> list[str]:
        spec = expand_contract.read_spec(self.path)
        return [f"{t.schema}.{t.name}" for t in tables_named(spec)]


@contextmanager
def _session(target: PgTarget) -> Iterator[psycopg.Connection]:
    with connect(target, statement_timeout="60s", lock_timeout="5s") as conn:
        end_with_client(conn)  # a killed task's backend ends at once, its history update rolled back
        yield conn


def checked(conn: psycopg.Connection, config: MigrationsConfig, label: str) -> Gated:
    """The migration ``label`` (``NNN_name``), refused when its file changed since a phase of it ran."""
    migrations = load_migrations(config)
    found = [m for m in migrations if m.label == label]
    if not found or found[0].kind != "expand_contract":
        raise PermanentError(f"{migrations_folder(config)}/{label}.yaml is missing (the DAG was built from it): "
                             f"restore the file, or remove the DAG by removing the file only before its expand ran")
    history = read_history(conn)
    check_history(config, migrations, history)
    migration = found[0]
    in_effect = {row.version for row in history if row.record.in_effect}
    if migration.version not in in_effect:
        # Versions apply in order. Started past a pending one, this migration's first phase would make that
        # one out of order: refused by every later check (its own DAG's, the plain migrate DAG's, this one's next
        # task) with this migration stuck half-way, claiming its tables.
        earlier = [m.label for m in migrations if m.version < migration.version and m.version not in in_effect]
        if earlier:
            raise PermanentError(
                f"{migration.up_file} cannot start: {', '.join(earlier)} before it is not applied yet (versions "
                f"apply in order). Apply {earlier[0]} first (a plain migration: the <database>.migrate DAG; an "
                f"expand/contract one: its own DAG), then run this one again")
    return Gated(migration, migrations_folder(config) / migration.up_file)


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


@contextmanager
def recorded(target: PgTarget, config: MigrationsConfig, label: str, phase: str, run: RunInfo, **start: Any):
    """Check the file, record ``phase`` starting (claiming the tables), yield, record its end or failure."""
    with _session(target) as conn:
        ensure_history(conn)
        gated = checked(conn, config, label)
        start_phase(conn, gated.file, phase, run, tables=gated.tables, **start)
        try:
            yield gated
        except BaseException as exc:
            if not conn.broken:
                fail_phase(conn, gated.file.version, phase, run, _sqlstate(exc))
            raise
        with conn.transaction():
            conn.execute(finish_phase_statement(gated.file.version, phase, ENDS.get(phase, "running"), run))


def guard(target: PgTarget, config: MigrationsConfig, label: str) -> Gated:
    """The file check alone (tasks that change nothing: plan, sensors, gates)."""
    with _session(target) as conn:
        ensure_history(conn)
        return checked(conn, config, label)


def run_phase(target: PgTarget, config: MigrationsConfig, label: str, phase: str, run: RunInfo,
              action: Callable[[Path], Any]) -> Any:
    with recorded(target, config, label, phase, run) as gated:
        return action(gated.path)


def mismatches(target: PgTarget, path: Path) -> int:
    """Rows where a new column differs from what the old one implies (the backfills' pending rows)."""
    from pgwarden.engine.migrations.backfill import _Walk

    spec = expand_contract.read_spec(path)
    with _session(target) as conn:
        migration = expand_contract.plan(conn, spec)
        total = 0
        for _, job in migration.backfills():
            with conn.transaction():
                total += int(conn.execute(_Walk(job).pending_count()).fetchone()[0])
    return total


def old_column_calls(target: PgTarget, path: Path) -> dict[str, int] | None:
    """Calls so far of statements naming each old column (and its table), from ``pg_stat_statements``.

    None when the extension is not installed in the database. Only counts and column names: no query text.
    """
    spec = expand_contract.read_spec(path)
    with _session(target) as conn:
        with conn.transaction():
            if conn.execute("SELECT to_regclass('pg_stat_statements') IS NULL").fetchone()[0]:
                return None
            counts = {}
            for table, column in old_columns(spec):
                relname = table.rsplit(".", 1)[-1].strip('"')
                counts[f"{table}.{column}"] = int(conn.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND query ~* %s AND query ~* %s AND query !~* 'pgwarden'",
                    (r"\m" + re.escape(column) + r"\M", r"\m" + re.escape(relname) + r"\M")).fetchone()[0])
            return counts


READINESS = control_table("gated_readiness")


def quiet_since(target: PgTarget, version: int, run_id: str, counts: dict[str, int]) -> tuple[datetime, datetime]:
    """Record the old columns' statement counts (the switch gate's snapshot, then each readiness poke) and
    return since when they have been unchanged and the server's now.

    Kept in ``pgwarden.gated_readiness``, not in XCom: a sensor in reschedule mode starts each poke as a new
    run of its task, and Airflow clears a task's XComs when it starts.
    """
    with _session(target) as conn, conn.transaction():
        ensure_control_schema(conn)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (version integer NOT NULL, run_id text NOT NULL, "
                             "counts jsonb NOT NULL, quiet_since timestamptz NOT NULL, seen_at timestamptz NOT NULL, "
                             "PRIMARY KEY (version, run_id))").format(READINESS))
        since, now = conn.execute(sql.SQL(
            "INSERT INTO {t} AS r VALUES (%s, %s, %s, now(), now()) ON CONFLICT (version, run_id) DO UPDATE SET "
            "quiet_since = CASE WHEN r.counts = EXCLUDED.counts THEN r.quiet_since ELSE now() END, "
            "counts = EXCLUDED.counts, seen_at = now() RETURNING quiet_since, now()").format(t=READINESS),
            (version, run_id, Jsonb(counts))).fetchone()
    return since, now


def record_approval(target: PgTarget, version: int, entry: dict[str, Any]) -> None:
    with _session(target) as conn:
        ensure_history(conn)
        with conn.transaction():
            conn.execute(sql.SQL("UPDATE {} SET approvals = approvals || %s WHERE version = %s").format(HISTORY),
                         (Jsonb([entry]), version))


def gate_waiting(target: PgTarget, config: MigrationsConfig, label: str, gate: str, run: RunInfo,
                 started_at: datetime | None) -> None:
    """A gate starts asking: the file check, then a ``waiting`` event in the timeline with the gate task's
    start in Airflow (``started_at``), which the pgwarden page shows as "waiting since"."""
    from pgwarden.core.migrations.gates import WAITING

    with _session(target) as conn:
        ensure_history(conn)
        gated = checked(conn, config, label)
        add_event(conn, gated.file.version, gate, WAITING, run,
                  started_at=started_at.isoformat() if started_at else None)


def set_restore_point(target: PgTarget, version: int, name: str, lsn: str) -> None:
    """The row's restore point: the PITR target of the moment before expand."""
    with _session(target) as conn, conn.transaction():
        conn.execute(sql.SQL("UPDATE {} SET restore_point = %s, restore_point_lsn = %s::pg_lsn WHERE version = %s")
                     .format(HISTORY), (name, lsn, version))


def timeline(target: PgTarget, version: int) -> dict[str, Any]:
    """The row's status and phase events, and seconds since expand first started (None before)."""
    with _session(target) as conn:
        ensure_history(conn)
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT status, phase, phases, approvals, now() FROM {} WHERE version = %s")
                               .format(HISTORY), (version,)).fetchone()
    if row is None:
        return {"status": None, "phases": [], "approvals": [], "since_expand_seconds": None}
    status, phase, phases, approvals, now = row
    expand_at = next((e.get("at") for e in phases if e.get("phase") == "expand"), None)
    since = (now - datetime.fromisoformat(expand_at)).total_seconds() if expand_at else None
    return {"status": status, "phase": phase, "phases": phases, "approvals": approvals,
            "since_expand_seconds": since}


def _this_run(conn: psycopg.Connection, version: int, phase: str, status: str, run: RunInfo) -> dict | None:
    """The last event ``phase``/``status`` this Airflow run recorded (a cleared task's earlier try), if any."""
    if run.run_id is None:
        return None
    with conn.transaction():
        row = conn.execute(sql.SQL("SELECT phases FROM {} WHERE version = %s").format(HISTORY), (version,)).fetchone()
    found = [e for e in (row[0] if row else []) if e.get("phase") == phase and e.get("status") == status
             and e.get("run_id") == run.run_id and e.get("dag_id") == run.dag_id]
    return found[-1] if found else None


def safety_net(target: PgTarget, repo, database: str, db_config, label: str, version: int, path: Path,
               run: RunInfo, *, workdir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """A named restore point before contract, then (by config) a WAL collection or a full backup plus one.

    The restore point is recorded in the repository and in the history's timeline: the dropped column is
    one PITR to it away once the WAL up to it is collected. Run again (a cleared or killed task) it takes a
    fresh restore point and collects the WAL up to it, but reuses the full backup an earlier try of the same
    run completed (noted as a ``backup_taken`` event); after contract completed it makes nothing (a restore
    point then would not be the state before contract) and returns what this run recorded.
    """
    from pgwarden.engine import compress
    from pgwarden.engine.wal import collect_wal, create_restore_point

    spec = expand_contract.read_spec(path)
    with _session(target) as conn:
        with conn.transaction():
            state = expand_contract.contract_state(conn, spec)
        done = _this_run(conn, version, "safety_net", "done", run)
        taken = _this_run(conn, version, "safety_net", "backup_taken", run)
    if state is None:
        raise PermanentError(f"{path.name}: safety_net needs expand to have run first; run expand")
    if state:  # a restore point now would be after contract: what this run made before contract stands
        if done is None:
            raise PermanentError(f"{path.name}: contract already completed without a safety net of this run")
        log(f"contract already completed; the safety net of this run stands: restore point {done['restore_point']}")
        return {k: done[k] for k in ("mode", "restore_point", "lsn", "backup_id") if k in done} | {"already": True}
    mode = db_config.migrations.gates.safety_net
    name = f"pgwarden_{label}_precontract_{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    lsn = str(create_restore_point(target, repo, database, name))
    result: dict[str, Any] = {"mode": mode, "restore_point": name, "lsn": lsn}
    if mode == "full_backup" and taken:
        log(f"full backup {taken['backup_id']} was taken by an earlier try of this run; not taking another")
        result["backup_id"], result["backup_reused"] = taken["backup_id"], True
    elif mode == "full_backup":
        from pgwarden.engine.backup_full import take_full_backup

        manifest = take_full_backup(target, repo, database, db_config.backup, db_config.repository,
                                    workdir=workdir / "full", log=log)
        result["backup_id"], result["backup_reused"] = manifest.backup_id, False
        with _session(target) as conn:
            add_event(conn, version, "safety_net", "backup_taken", run, backup_id=manifest.backup_id)
    if mode in ("wal", "full_backup"):
        backup = db_config.backup
        collected = collect_wal(target, repo, database, slot=backup.slot_for(database), workdir=workdir / "wal",
                                compression=compress.resolve(backup.compression), restore_point=name,
                                warn_bytes=backup.slot_warn_size, log=log)
        result["wal_segments_uploaded"] = collected.to_json_dict().get("segments_uploaded")
        result["wal_end_lsn"] = collected.end_lsn
    with _session(target) as conn:
        add_event(conn, version, "safety_net", "done", run, restore_point=name, lsn=lsn, mode=mode,
                  **({"backup_id": result["backup_id"]} if "backup_id" in result else {}))
    return result


def _point_before_expand(target: PgTarget, checked: Gated) -> tuple[str, str] | None:
    """The recorded restore point when expand already ran (its state stored), else None."""
    spec = expand_contract.read_spec(checked.path)
    with _session(target) as conn, conn.transaction():
        if expand_contract.contract_state(conn, spec) is None:
            return None
        row = conn.execute(sql.SQL("SELECT restore_point, restore_point_lsn::text FROM {} WHERE version = %s")
                           .format(HISTORY), (checked.file.version,)).fetchone()
    return (row[0], row[1]) if row and row[0] else None


def execute(target: PgTarget, repository: Callable[[], Any], database: str, db_config, label: str, phase: str,
            run: RunInfo, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One task of ``<database>.migrate.<label>``: ``plan``, ``restore_point``, ``expand``, ``backfill``,
    ``safety_net``, ``contract``, ``rollback`` or ``record``; returns its XCom (names, counts, LSNs, the
    phase's ``duration_seconds``). Each phase converges when run again after a kill or a clear.
    ``repository()`` opens the repository (only the phases that write to it call it)."""
    import time

    from pgwarden.engine.migrations.apply import _restore_point, ddl_settings

    started = time.monotonic()
    config = db_config.migrations
    ddl = ddl_settings(config)
    if phase == "plan":
        checked = guard(target, config, label)
        log(expand_contract.render_plan(target, checked.path))  # plans, type-checks and lints
        out: dict[str, Any] = {"migration": label, "tables": checked.tables}
    elif phase == "restore_point":
        with recorded(target, config, label, "restore_point", run) as checked:
            kept = _point_before_expand(target, checked)
            name, lsn = kept or _restore_point(target, repository(), database, label)
            if kept:  # cleared after expand ran: a new point would include expand, and not be the PITR target
                log(f"expand already ran; keeping the restore point taken before it: {name} at {lsn}")
            else:
                set_restore_point(target, checked.file.version, name, lsn)
        out = {"restore_point": name, "lsn": lsn, "kept": bool(kept)}
    elif phase == "safety_net":
        from pgwarden.engine.workdir import scratch

        checked = guard(target, config, label)
        with scratch(database, "safety_net") as workdir:
            out = safety_net(target, repository(), database, db_config, label, checked.file.version, checked.path,
                             run, workdir=workdir, log=log)
    elif phase == "record":
        out = timeline(target, guard(target, config, label).file.version)
    else:
        actions = {
            "expand": lambda path: expand_contract.expand(target, path, ddl=ddl, log=log),
            "backfill": lambda path: expand_contract.backfill(target, path, log=log),
            "contract": lambda path: expand_contract.contract(target, path, ddl=ddl, log=log),
            "rollback": lambda path: expand_contract.rollback(target, path, ddl=ddl, log=log),
        }
        result = run_phase(target, config, label, phase, run, actions[phase])
        log(result.summary())
        out = result.to_json_dict()
        if phase in ("rollback", "contract"):
            out["timeline"] = timeline(target, guard(target, config, label).file.version)
    out["duration_seconds"] = round(time.monotonic() - started, 3)
    return out


__all__ = ["Gated", "execute", "gate_waiting", "guard", "mismatches", "old_column_calls", "quiet_since",
           "record_approval", "recorded", "run_phase",
           "safety_net", "timeline"]
