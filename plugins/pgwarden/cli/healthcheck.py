"""``pgwarden healthcheck DB``: the ``<db>.healthcheck`` DAG's checks, from a shell."""

from __future__ import annotations

import argparse
import json

from pgwarden.cli.common import database, load


def check(args: argparse.Namespace) -> int:
    from pgwarden.cli.connections import open_repository, pg_target
    from pgwarden.engine.healthcheck import check_database

    db = database(load(args), args.database)
    report = check_database(args.database, db, pg_target, lambda: open_repository(db.repository))
    print(json.dumps(report.summary(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


def add_parser(sub) -> None:
    health = sub.add_parser("healthcheck", help="check a database's server, repository and standbys")
    health.add_argument("database")
    health.add_argument("--json", action="store_true")
    health.set_defaults(func=check)
