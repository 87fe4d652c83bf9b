"""``pgwarden``: what must work without a scheduler (config checks, healthcheck, catalog, restore).

Connections are resolved the way Airflow resolves them (``AIRFLOW_CONN_<ID>`` variables or a
secrets backend), so the CLI and the DAG tasks reach the same servers with the same engine code.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timezone
from pathlib import Path

from pgwarden.core.config import ConfigError, PgwardenConfig
from pgwarden.engine.config_file import config_path, load_config
from pgwarden.engine.errors import PgwardenError


def _load(args: argparse.Namespace) -> PgwardenConfig:
    return load_config(Path(args.config) if args.config else None)


def cmd_config_validate(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for name in config.databases:
        print(f"ok    {name}")
    for issue in config.issues:
        print(f"error {issue}", file=sys.stderr)
    if config.broken:
        print(f"{len(config.broken)} of {len(config.databases) + len(config.broken)} database entries "
              f"{'has' if len(config.broken) == 1 else 'have'} errors in {path}", file=sys.stderr)
        return 1
    print(f"{path}: {len(config.databases)} database(s), no errors")
    return 0


def _database(config: PgwardenConfig, name: str):
    if name in config.broken:
        raise SystemExit(f"database {name!r} has config errors; run `pgwarden config validate`")
    if name not in config.databases:
        known = ", ".join(sorted(config.databases)) or "(none)"
        raise SystemExit(f"unknown database {name!r}; configured: {known}")
    return config.databases[name]


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from pgwarden.airflow.hooks import open_repository, pg_target
    from pgwarden.engine.healthcheck import check_database

    db = _database(_load(args), args.database)
    report = check_database(args.database, db, pg_target, lambda: open_repository(db.repository))
    print(json.dumps(report.summary(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


def _render_catalog(catalog) -> str:
    from pgwarden.core.units import format_size

    classes = catalog.gfs_classes
    policy = catalog.policy
    lines = [f"{catalog.database} in {catalog.url} (retention: {policy.daily} daily, {policy.monthly} monthly, "
             f"{policy.yearly} yearly)", ""]
    header = ("ID", "KIND", "GFS", "STARTED (UTC)", "SIZE", "LSN RANGE", "TLI", "VALID")
    rows = [
        (b.id, b.manifest.kind, ",".join(sorted(classes[b.id])) or "(delete)",
         f"{b.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}", format_size(b.stored_bytes),
         f"{b.manifest.start_lsn} -> {b.manifest.stop_lsn}", str(b.manifest.timeline), "yes" if b.valid else "NO")
        for b in catalog.backups
    ]
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        for b in catalog.backups:
            for problem in b.problems:
                lines.append(f"  ! {b.id}: {problem}")
    else:
        lines.append("no backups")
    for item in catalog.unreadable:
        lines.append(f"  ! {item.backup_id}: unreadable, left alone: {item.problem}")

    lines += ["", f"WAL ({len(catalog.wal)} files, segment size {format_size(catalog.segment_size)}):"]
    for r in catalog.coverage:
        lines.append(f"  timeline {r.timeline}: {r.start_lsn} -> {r.end_lsn} ({r.segments} segments)")
    if not catalog.coverage:
        lines.append("  no WAL segments")
    histories = sorted(w.name for w in catalog.wal if w.name.endswith(".history"))
    if histories:
        lines.append(f"  history files: {', '.join(histories)}")
    if catalog.wal_end:
        lines.append(f"  newest WAL position: timeline {catalog.wal_end.timeline}, {catalog.wal_end.lsn}")
    chain = catalog.check_chain()
    if chain is not None:
        lines.append(f"  {'ok' if chain.ok else 'GAP'}: {chain.message}")

    if catalog.orphans:
        lines += ["", "orphans (no pgwarden.json; retention removes them once older than a day):"]
        for o in catalog.orphans:
            newest = f"{o.newest_modified.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}" if o.newest_modified else "?"
            lines.append(f"  {o.backup_id}  {len(o.keys)} objects  {format_size(o.total_bytes)}  newest {newest}")
    for problem in catalog.problems:
        lines.append(f"! {problem}")
    return "\n".join(lines)


# The text listing shows this many restore points (one is made per WAL run: hundreds a month).
RESTORE_POINTS_SHOWN = 20


def _render_restore_points(points) -> str:
    """``points`` newest first: name, time and LSN, what ``restore --target-name`` takes."""
    if not points:
        return "restore points: none yet (every WAL collection and every full backup makes one)"
    shown = points[:RESTORE_POINTS_SHOWN]
    header = ("NAME", "CREATED (UTC)", "LSN")
    rows = [(p.name, f"{p.created_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}", str(p.lsn)) for p in shown]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"restore points ({len(points)}, newest first; restore --target-name NAME):"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if len(points) > len(shown):
        lines.append(f"  ... and {len(points) - len(shown)} older (--json lists them all)")
    return "\n".join(lines)


def cmd_catalog(args: argparse.Namespace) -> int:
    from pgwarden.airflow.hooks import open_repository
    from pgwarden.engine.catalog import read_catalog
    from pgwarden.engine.restore import list_restore_points

    db = _database(_load(args), args.database)
    if args.offsite and db.backup.offsite is None:
        raise SystemExit(f"database {args.database!r} has no backup.offsite repository configured")
    repo_config = db.backup.offsite if args.offsite else db.repository
    repo = open_repository(repo_config)
    catalog = read_catalog(repo, args.database, db.backup.retention.policy())
    points = list_restore_points(repo, args.database)[::-1]
    if args.json:
        listing = catalog.to_json_dict()
        listing["restore_points"] = [
            {"name": p.name, "created_at": p.created_at.isoformat(), "lsn": str(p.lsn)} for p in points
        ]
        print(json.dumps(listing, indent=2))
    else:
        print(_render_catalog(catalog) + "\n\n" + _render_restore_points(points))
    return 0


def _progress(message: str) -> None:
    """Progress goes to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


def cmd_restore(args: argparse.Namespace) -> int:
    from pgwarden.airflow.hooks import open_repository
    from pgwarden.core.recovery import parse_target
    from pgwarden.engine.restore import next_steps, plan_restore, restore

    db = _database(_load(args), args.database)
    repo_config = db.backup.offsite if args.offsite else db.repository
    if repo_config is None:
        raise SystemExit(f"database {args.database!r} has no backup.offsite repository configured")
    # argparse makes the target flags mutually exclusive; none given means --latest.
    kind = next((k for k in ("time", "name", "lsn") if getattr(args, f"target_{k}")), "latest")
    try:
        target = parse_target(kind, getattr(args, f"target_{kind}", None))
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    repo = open_repository(repo_config)
    if args.dry_run:
        print(json.dumps(plan_restore(repo, args.database, target, backup_id=args.backup).to_json_dict(), indent=2))
        return 0
    result = restore(repo, args.database, Path(args.to), target, backup_id=args.backup, port=args.port,
                     start=args.start, action="pause" if args.pause else "promote", log=_progress)
    print(json.dumps(result.to_json_dict(), indent=2))
    print("\n" + next_steps(result, "pause" if args.pause else "promote"), file=sys.stderr)
    return 0


def cmd_archive_restore(args: argparse.Namespace) -> int:
    from pgwarden.airflow.hooks import open_repository, pg_target
    from pgwarden.core.identifiers import QualifiedName
    from pgwarden.engine.lifecycle.archive import restore_archive
    from pgwarden.engine.workdir import scratch

    db = _database(_load(args), args.database)
    into = QualifiedName.parse(args.into) if args.into else None
    with scratch(args.database, "archive-restore") as workdir:
        rows = restore_archive(pg_target(args.to or db.conn_id), open_repository(db.repository), args.database,
                               QualifiedName.parse(args.table), args.interval, into=into, workdir=workdir,
                               log=_progress)
    print(json.dumps({"rows": rows}))
    return 0


def _add_archive(sub) -> None:
    archive = sub.add_parser("archive", help="work with rows archived by lifecycle policies")
    archive_sub = archive.add_subparsers(dest="archive_command", required=True)
    restore = archive_sub.add_parser("restore", help="copy one run's archived rows back into a table (audit)")
    restore.add_argument("database")
    restore.add_argument("table", help="the archived table, e.g. public.sessions")
    restore.add_argument("--interval", required=True, help="the run's data_interval_end, e.g. 20261130T190000Z")
    restore.add_argument("--to", metavar="CONN_ID", help="Airflow connection of the server (default: the database's)")
    restore.add_argument("--into", metavar="TABLE", help="table to insert into (default: the archived table)")
    restore.set_defaults(func=cmd_archive_restore)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgwarden", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $PGWARDEN_CONFIG or include/pgwarden.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="work with the config file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="check the config and print every problem")
    validate.set_defaults(func=cmd_config_validate)

    health = sub.add_parser("healthcheck", help="check a database's server, repository and standbys")
    health.add_argument("database")
    health.add_argument("--json", action="store_true")
    health.set_defaults(func=cmd_healthcheck)

    catalog = sub.add_parser("catalog", help="list a database's backups, GFS classes, WAL coverage and "
                                             "restore points (newest first); reads only the repository")
    catalog.add_argument("database")
    catalog.add_argument("--json", action="store_true", help="machine-readable output")
    catalog.add_argument("--offsite", action="store_true", help="list the off-site repository instead")
    catalog.set_defaults(func=cmd_catalog)
    _add_restore(sub)
    _add_archive(sub)
    return parser


def _add_restore(sub) -> None:
    restore = sub.add_parser(
        "restore", help="restore a backup (point-in-time) into a directory; needs no Airflow",
        description="Restore from the repository into DIR: verified downloads, WAL replay to the target.",
    )
    restore.add_argument("database")
    restore.add_argument("--to", required=True, metavar="DIR", help="empty or new data directory")
    target = restore.add_mutually_exclusive_group()
    target.add_argument("--target-time", metavar="T", help="ISO 8601 with time zone, e.g. 2026-11-24T09:30:00Z")
    target.add_argument("--target-name", metavar="NAME", help="a restore point (pgwarden catalog lists them)")
    target.add_argument("--target-lsn", metavar="LSN", help="e.g. 0/3000060")
    target.add_argument("--latest", action="store_true", help="replay all WAL in the repository (default)")
    restore.add_argument("--backup", metavar="ID", help="use this base backup instead of the best one")
    restore.add_argument("--port", type=int, help="port for the restored server (with --start)")
    restore.add_argument("--start", action="store_true", help="start the server and wait for the target")
    restore.add_argument("--pause", action="store_true", help="pause at the target instead of promoting")
    restore.add_argument("--offsite", action="store_true", help="restore from the off-site repository")
    restore.add_argument("--dry-run", action="store_true", help="print the plan only")
    restore.set_defaults(func=cmd_restore)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except PgwardenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
