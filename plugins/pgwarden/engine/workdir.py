"""Local space on the worker: scratch for backups and drills in flight, the default restore place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WORKDIR_ENV = "PGWARDEN_WORK_DIR"
RESTORE_DIR_ENV = "PGWARDEN_RESTORE_DIR"


def work_root() -> Path:
    root = Path(os.environ.get(WORKDIR_ENV) or Path(tempfile.gettempdir()) / "pgwarden")
    root.mkdir(parents=True, exist_ok=True)
    return root


def restore_root() -> Path:
    """Where ``pitr_restore`` proposes to restore (``<root>/<database>``); not created here."""
    return Path(os.environ.get(RESTORE_DIR_ENV) or "/var/tmp/pgwarden-restore")


@contextmanager
def scratch(database: str, purpose: str) -> Iterator[Path]:
    """A fresh directory, removed afterwards; leftovers of a killed task are removed on the next use."""
    parent = work_root() / database
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f"{purpose}-*"):
        # Only one task per database and purpose runs at a time (max_active_runs=1), so anything
        # left here belongs to a killed predecessor.
        shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
