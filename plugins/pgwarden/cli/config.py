"""``pgwarden config validate``: check the config file and print every problem in it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pgwarden.core.config import ConfigError
from pgwarden.engine.config_file import config_path, load_config


def validate(args: argparse.Namespace) -> int:
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


def add_parser(sub) -> None:
    config = sub.add_parser("config", help="work with the config file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("validate", help="check the config and print every problem")
    check.set_defaults(func=validate)
