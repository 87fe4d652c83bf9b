"""Where a restore puts things beside its data directory ``<dest>`` (never inside it)."""

from __future__ import annotations

from pathlib import Path


def wal_dir(datadir: Path) -> Path:
    """``<dest>.wal``: the WAL recovery reads, fetched and verified before the server starts."""
    return datadir.parent / f"{datadir.name}.wal"


def tablespace_dir(datadir: Path) -> Path:
    """``<dest>.tablespaces``: one directory per tablespace OID."""
    return datadir.parent / f"{datadir.name}.tablespaces"


def in_progress_marker(datadir: Path) -> Path:
    """Beside the data directory (not in it: the server and pg_verifybackup must not see it)."""
    return datadir.parent / f".{datadir.name}.pgwarden-restoring"
