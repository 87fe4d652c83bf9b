"""What every command needs: the config file named by ``--config`` and one database's entry in it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pgwarden.core.config import DatabaseConfig, PgwardenConfig
from pgwarden.engine.config_file import load_config


def load(args: argparse.Namespace) -> PgwardenConfig:
    return load_config(Path(args.config) if args.config else None)


def database(config: PgwardenConfig, name: str) -> DatabaseConfig:
    """The entry of database ``name``; exits with what to do when it is broken or unknown."""
    if name in config.broken:
        raise SystemExit(f"database {name!r} has config errors; run `pgwarden config validate`")
    if name not in config.databases:
        known = ", ".join(sorted(config.databases)) or "(none)"
        raise SystemExit(f"unknown database {name!r}; configured: {known}")
    return config.databases[name]


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)
