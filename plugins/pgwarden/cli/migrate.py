"""``pgwarden migrate status|plan|lint DB``: a database's versioned migrations from a shell, no scheduler needed.

* ``status``: every migration with its history (status, phase, restore point, when, which run), and the
  folder's refusals; reads the database through a read-only session.
* ``plan``: each pending migration's statements, the line each starts on and the lock it takes (what it
  blocks), and its lint findings; read-only too, or ``--offline`` to plan every migration without a database.
* ``lint``: squawk on every plain migration (up and down) and the folder's refusals; no database needed.

Exit status 1 when something is refused (a bad file name, a changed applied migration, a lint finding).
"""

from __future__ import annotations

import argparse
import json

from pgwarden.cli.common import database, load


def _folder(args: argparse.Namespace):
    from pgwarden.core.migrations.file import discover
    from pgwarden.engine.migrations.loader import migrations_folder

    db = database(load(args), args.database)
    folder = migrations_folder(db.migrations)
    if not folder.is_dir():
        raise SystemExit(f"migrations folder {folder} of {args.database} does not exist: create it or set "
                         f"databases.{args.database}.migrations.path in the config")
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    migrations, refusals = discover(files)
    return db, folder, migrations, refusals


def _history(args: argparse.Namespace, db):
    from pgwarden.cli.connections import pg_target
    from pgwarden.engine.migrations.history import read_history_readonly

    return read_history_readonly(pg_target(db.conn_id))


def _operations(migration) -> list[str]:
    """One line per operation of an expand/contract file (its spec parsed, no database needed)."""
    from pgwarden.core.migrations.spec import SpecError, parse_spec

    try:
        spec = parse_spec(migration.up_text, migration.up_file)
    except SpecError as exc:
        return [f"! {exc}"]
    lines = []
    for index, op in enumerate(spec.operations):
        table = getattr(op, "table", None) or getattr(op, "index", None)
        lines.append(f"operations[{index}]: {op.kind}" + (f" on {table}" if table else ""))
    return lines


def _phase_plan(db, path) -> str | None:
    """Print the SQL of every phase with its locks (the operations' planner, against the live catalog).

    Returns the plan's error instead (a missing table, an expression the server rejects, a lint finding).
    Each migration is planned against the catalog as it is now, not as earlier pending ones would leave it.
    """
    from pgwarden.cli.connections import pg_target
    from pgwarden.core.migrations.steps import PlanError
    from pgwarden.engine.errors import PgwardenError
    from pgwarden.engine.migrations.expand_contract import render_plan

    try:
        text = render_plan(pg_target(db.conn_id), path)
    except (PlanError, PgwardenError) as exc:
        return f"{path.name}: cannot be planned against the database as it is now: {exc}"
    print("      " + text.rstrip("\n").replace("\n", "\n      "))
    return None


def status(args: argparse.Namespace) -> int:
    from pgwarden.core.migrations.file import check_against_history

    db, folder, migrations, refusals = _folder(args)
    history = _history(args, db)
    refusals += check_against_history(migrations, [row.record for row in history])
    rows = {row.version: row for row in history}
    listed = []
    for migration in migrations:
        row = rows.pop(migration.version, None)
        listed.append({"version": migration.version, "name": migration.name, "kind": migration.kind,
                       **(row.to_json_dict() if row else {"status": "pending"}), "file": migration.up_file})
    listed += [{**row.to_json_dict(), "file": None} for row in rows.values()]
    listed.sort(key=lambda item: item["version"])
    if args.json:
        print(json.dumps({"database": args.database, "folder": str(folder), "migrations": listed,
                          "refusals": [str(r) for r in refusals]}, indent=2))
    else:
        print(f"{args.database}: migrations in {folder}")
        for item in listed:
            when = item.get("finished_at") or item.get("started_at") or ""
            point = f" restore point {item['restore_point']}" if item.get("restore_point") else ""
            run = f" by {item['dag_id']} {item['run_id']}" if item.get("run_id") else ""
            print(f"  {item['version']:03d}_{item['name']:<28} {item['kind']:<16} {item['status']:<12} "
                  f"{item.get('phase') or '':<9} {when}{point}{run}".rstrip())
        for refusal in refusals:
            print(f"  ! {refusal}")
    return 1 if refusals else 0


def plan(args: argparse.Namespace) -> int:
    from pgwarden.core.migrations.file import check_against_history, pending
    from pgwarden.core.migrations.statements import BLOCKS, split_statements
    from pgwarden.engine.migrations.lint import lint_migration

    db, folder, migrations, refusals = _folder(args)
    if args.offline:
        todo = migrations
        print(f"{args.database}: every migration in {folder} (--offline: the history was not read)")
    else:
        history = [row.record for row in _history(args, db)]
        refusals += check_against_history(migrations, history)
        todo = pending(migrations, history)
        print(f"{args.database}: {len(todo)} pending migration(s) in {folder}; nothing is changed by this plan")
    findings = []
    for migration in todo:
        print(f"\n== {migration.up_file} ({migration.kind}, sha256 {migration.checksum[:12]})")
        if migration.kind != "plain":
            print("   expand/contract migration: its operations run in phases (expand, backfill, contract) in "
                  "their own gated DAG, never in <db>.migrate")
            for line in _operations(migration):
                print(f"   {line}")
            if not args.offline:
                problem = _phase_plan(db, folder / migration.up_file)
                if problem:
                    refusals.append(problem)
            continue
        print("   restore point first; then one transaction, each statement with lock_timeout "
              f"{db.migrations.lock_timeout.total_seconds():g}s, retried on lock timeout; "
              f"rollback: {migration.down_file}")
        for statement in split_statements(migration.up_text):
            mode, what = statement.lock
            print(f"   line {statement.line}: {mode} on {what}; blocks {BLOCKS.get(mode, 'see the docs')}")
            print("      " + statement.text.replace("\n", "\n      "))
        found = lint_migration(migration, db.migrations)
        findings += found
        for finding in found:
            print(f"   ! lint {finding}")
    for refusal in refusals:
        print(f"! {refusal}")
    return 1 if refusals or findings else 0


def lint(args: argparse.Namespace) -> int:
    from pgwarden.engine.migrations.lint import lint_migration

    db, folder, migrations, refusals = _folder(args)
    findings = [finding for migration in migrations for finding in lint_migration(migration, db.migrations)]
    spec_errors = [line for m in migrations if m.kind != "plain" for line in _operations(m) if line.startswith("!")]
    if args.json:
        print(json.dumps({"database": args.database, "folder": str(folder),
                          "findings": [f.to_json_dict() for f in findings],
                          "refusals": [str(r) for r in refusals] + [e[2:] for e in spec_errors]}, indent=2))
    else:
        for refusal in refusals:
            print(f"{refusal}")
        for error in spec_errors:
            print(error[2:])
        for finding in findings:
            print(f"{finding}")
        checked = sum(1 for m in migrations if m.kind == "plain")
        print(f"{args.database}: {checked} plain migration(s) linted, {len(findings)} finding(s), "
              f"{len(refusals)} refused file(s)")
    return 1 if findings or refusals or spec_errors else 0


def add_parser(sub) -> None:
    migrate = sub.add_parser("migrate", help="versioned migrations: status, plan, lint")
    commands = migrate.add_subparsers(dest="migrate_command", required=True)
    for name, func, text in (("status", status, "each migration and its history"),
                             ("plan", plan, "pending migrations' SQL and locks; changes nothing"),
                             ("lint", lint, "squawk on every plain migration; needs no database")):
        command = commands.add_parser(name, help=text)
        command.add_argument("database")
        if name != "plan":
            command.add_argument("--json", action="store_true")
        else:
            command.add_argument("--offline", action="store_true",
                                 help="do not read the history: plan every migration in the folder")
        command.set_defaults(func=func)
