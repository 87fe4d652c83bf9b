"""``pgwarden catalog DB``: a database's backups, GFS classes, WAL coverage and restore points.

Reads only the repository (the primary one, or the off-site one with ``--offsite``).
"""

from __future__ import annotations

import argparse
import json
from datetime import timezone

from pgwarden.cli.common import database, load


def render_catalog(catalog) -> str:
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


def render_restore_points(points) -> str:
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


def show(args: argparse.Namespace) -> int:
    from pgwarden.cli.connections import open_repository
    from pgwarden.engine.catalog import read_catalog
    from pgwarden.engine.restore import list_restore_points

    db = database(load(args), args.database)
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
        print(render_catalog(catalog) + "\n\n" + render_restore_points(points))
    return 0


def add_parser(sub) -> None:
    command = sub.add_parser("catalog", help="list a database's backups, GFS classes, WAL coverage and "
                                             "restore points (newest first); reads only the repository")
    command.add_argument("database")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.add_argument("--offsite", action="store_true", help="list the off-site repository instead")
    command.set_defaults(func=show)
