"""``pgwarden``: what must work without a scheduler (config checks, healthcheck, catalog, restore, archive, migrate).

One module per command group; each has ``add_parser(sub)``, which adds its subcommand(s) to the
top-level parser and sets ``func`` on them. A new group (ledger, migrate, audit, archive) is a new
module here plus one entry in ``GROUPS``.

Connections are resolved the way Airflow resolves them (``AIRFLOW_CONN_<ID>`` variables or a secrets
backend), through ``pgwarden.cli.connections`` only, so the CLI and the DAG tasks reach the same
servers with the same engine code.
"""

from __future__ import annotations

import argparse
import sys

from pgwarden.cli import archive, audit, catalog, config, healthcheck, ledger, migrate, restore
from pgwarden.core.config import ConfigError
from pgwarden.engine.errors import PgwardenError

# The command groups, in the order ``pgwarden --help`` lists them.
GROUPS = (config, healthcheck, catalog, restore, ledger, archive, migrate, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgwarden", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $PGWARDEN_CONFIG or include/pgwarden.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return parser


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
