"""Throwaway PostgreSQL servers for tests, built on the engine's own ``LocalCluster``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pgwarden.engine.cluster import DEFAULT_HBA, LocalCluster, free_port

# Settings every test server gets unless the test overrides them: small and fast to start.
BASE_SETTINGS = {
    "shared_buffers": "32MB",
    "max_connections": "40",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "max_replication_slots": "5",
    "archive_mode": "off",
    "log_min_messages": "warning",
    "synchronous_commit": "on",
}


def scratch_base() -> Path:
    """A directory the unprivileged server user can traverse (pytest's tmp dirs are 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="pgwarden-test-"))
    os.chmod(base, 0o755)
    return base


@contextmanager
def postgres_server(
    settings: Mapping[str, str] | None = None,
    hba: tuple[str, ...] = DEFAULT_HBA,
    base: Path | None = None,
    encoding: str | None = None,
) -> Iterator[LocalCluster]:
    """Start a server on a free port with ``settings``; always stop and remove it.

    ``encoding`` defaults to ``$PGWARDEN_TEST_ENCODING`` or UTF8, so a whole suite can run on
    e.g. SQL_ASCII servers.
    """
    encoding = encoding or os.environ.get("PGWARDEN_TEST_ENCODING", "UTF8")
    owned_base = base is None
    base = base or scratch_base()
    cluster = LocalCluster(
        datadir=base / "data", port=free_port(), settings={**BASE_SETTINGS, **(settings or {})}, hba=hba
    )
    try:
        cluster.initdb(encoding=encoding)
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
        if owned_base:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
