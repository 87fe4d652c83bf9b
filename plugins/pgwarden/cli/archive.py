"""``pgwarden archive restore DB TABLE --interval ...``: one run's archived rows back into a table, for an audit."""

from __future__ import annotations

import argparse
import json

from pgwarden.cli.common import database, load, progress


def restore(args: argparse.Namespace) -> int:
    from pgwarden.cli.connections import open_repository, pg_target
    from pgwarden.core.identifiers import QualifiedName
    from pgwarden.engine.lifecycle.archive import restore_archive
    from pgwarden.engine.workdir import scratch

    db = database(load(args), args.database)
    into = QualifiedName.parse(args.into) if args.into else None
    with scratch(args.database, "archive-restore") as workdir:
        rows = restore_archive(pg_target(args.to or db.conn_id), open_repository(db.repository), args.database,
                               QualifiedName.parse(args.table), args.interval, into=into, workdir=workdir,
                               log=progress)
    print(json.dumps({"rows": rows}))
    return 0


def add_parser(sub) -> None:
    archive = sub.add_parser("archive", help="work with rows archived by lifecycle policies")
    archive_sub = archive.add_subparsers(dest="archive_command", required=True)
    command = archive_sub.add_parser("restore", help="copy one run's archived rows back into a table (audit)")
    command.add_argument("database")
    command.add_argument("table", help="the archived table, e.g. public.sessions")
    command.add_argument("--interval", required=True, help="the run's data_interval_end, e.g. 20261130T190000Z")
    command.add_argument("--to", metavar="CONN_ID", help="Airflow connection of the server (default: the database's)")
    command.add_argument("--into", metavar="TABLE", help="table to insert into (default: the archived table)")
    command.set_defaults(func=restore)
