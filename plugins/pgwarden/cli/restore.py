"""``pgwarden restore DB --to DIR``: point-in-time recovery into a directory, with Airflow down."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pgwarden.cli.common import database, load, progress


def run(args: argparse.Namespace) -> int:
    from pgwarden.cli.connections import open_repository
    from pgwarden.core.recovery import parse_target
    from pgwarden.engine.restore import next_steps, plan_restore, restore

    db = database(load(args), args.database)
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
                     start=args.start, action="pause" if args.pause else "promote", log=progress)
    print(json.dumps(result.to_json_dict(), indent=2))
    print("\n" + next_steps(result, "pause" if args.pause else "promote"), file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    command = sub.add_parser(
        "restore", help="restore a backup (point-in-time) into a directory; needs no Airflow",
        description="Restore from the repository into DIR: verified downloads, WAL replay to the target.",
    )
    command.add_argument("database")
    command.add_argument("--to", required=True, metavar="DIR", help="empty or new data directory")
    target = command.add_mutually_exclusive_group()
    target.add_argument("--target-time", metavar="T", help="ISO 8601 with time zone, e.g. 2026-11-24T09:30:00Z")
    target.add_argument("--target-name", metavar="NAME", help="a restore point (pgwarden catalog lists them)")
    target.add_argument("--target-lsn", metavar="LSN", help="e.g. 0/3000060")
    target.add_argument("--latest", action="store_true", help="replay all WAL in the repository (default)")
    command.add_argument("--backup", metavar="ID", help="use this base backup instead of the best one")
    command.add_argument("--port", type=int, help="port for the restored server (with --start)")
    command.add_argument("--start", action="store_true", help="start the server and wait for the target")
    command.add_argument("--pause", action="store_true", help="pause at the target instead of promoting")
    command.add_argument("--offsite", action="store_true", help="restore from the off-site repository")
    command.add_argument("--dry-run", action="store_true", help="print the plan only")
    command.set_defaults(func=run)
