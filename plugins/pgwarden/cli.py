"""``pgwarden``: what must work without a scheduler (config checks, healthcheck, catalog, restore).

Connections are resolved the way Airflow resolves them (``AIRFLOW_CONN_<ID>`` variables or a
secrets backend), so the CLI and the DAG tasks reach the same servers with the same engine code.
"""

from __future__ import annotations

import argparse
import json
import sys
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
              f"have errors in {path}", file=sys.stderr)
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
    from pgwarden.airflow.connections import open_repository, pg_target
    from pgwarden.core.health import Requirements
    from pgwarden.engine.healthcheck import gather_standby_facts, run_healthcheck

    db = _database(_load(args), args.database)
    standbys = []
    for standby in db.healthcheck.standbys:
        try:
            standbys.append(gather_standby_facts(standby.conn_id, pg_target(standby.conn_id),
                                                 standby.max_replay_lag))
        except PgwardenError as exc:
            standbys.append(gather_standby_facts(standby.conn_id, None, standby.max_replay_lag, str(exc)))
    report = run_healthcheck(
        pg_target(db.conn_id),
        Requirements(backups=db.backup.enabled, slot_name=db.backup.slot_name or f"pgwarden_{args.database}",
                     slot_warn_bytes=db.backup.slot_warn_size, max_pg_wal_bytes=db.healthcheck.max_pg_wal_size),
        repository_url=db.repository.url,
        repository_probe=lambda: open_repository(db.repository).probe(),
        standbys=standbys,
    )
    print(json.dumps(report.summary(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


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


if __name__ == "__main__":
    sys.exit(main())
