"""``pgwarden audit export DB --since DATE [--format csv|json|html]``: the audit trail of one database.

Joins Airflow's run history (REST API, a read-only user whose name and password come from
``PGWARDEN_AIRFLOW_USER`` / ``PGWARDEN_AIRFLOW_PASSWORD``; the URL from ``--airflow-url`` or
``PGWARDEN_AIRFLOW_URL``) with the database's erasure ledger, ``schema_history`` and the repository's drill
evidence. Printed to stdout or written to ``--out``. README "Audit export" says how to read it.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from pgwarden.cli.common import database, load, progress


def parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since {text!r}: give a date (2026-11-01) or an ISO time "
                                         "(2026-11-01T08:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def export(args: argparse.Namespace) -> int:
    from pgwarden.cli.connections import open_repository, pg_target
    from pgwarden.core.audit import render
    from pgwarden.engine.audit import AirflowReader, collect
    from pgwarden.engine.postgres import connect

    db = database(load(args), args.database)
    api = AirflowReader.from_env(args.airflow_url)
    repo = open_repository(db.repository)
    with connect(pg_target(db.conn_id), statement_timeout="5min") as conn:
        report = collect(api, conn, repo, args.database, args.since, log=progress)
    text = render(report, args.format)
    if args.out:
        Path(args.out).write_text(text)
        progress(f"wrote {args.out}")
    else:
        print(text, end="")
    progress(report.summary())
    return 0


def add_parser(sub) -> None:
    group = sub.add_parser("audit", help="audit trail: Airflow runs, gates and events joined with the erasure "
                                         "ledger, schema history and drill evidence")
    commands = group.add_subparsers(dest="audit_command", required=True)
    command = commands.add_parser("export", help="export one database's audit trail since a date")
    command.add_argument("database")
    command.add_argument("--since", required=True, type=parse_since, help="date or ISO time (UTC if no zone)")
    command.add_argument("--format", choices=("csv", "json", "html"), default="csv")
    command.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    command.add_argument("--airflow-url", help="Airflow's base URL (default: $PGWARDEN_AIRFLOW_URL)")
    command.set_defaults(func=export)
