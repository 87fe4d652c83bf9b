"""Restore step 3, recovery settings: what the restored server reads to replay to its target.

One writer for every restore (PITR and the drill's retargeting): ``core.recovery.recovery_settings``
appended to ``postgresql.auto.conf`` (later lines win, so a drill can retarget by appending again),
with a ``restore_command`` that only copies from ``<dest>.wal``: no credentials and no network
during replay, and nothing is ever archived.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgwarden.core.recovery import Action, RecoveryTarget, recovery_settings, render_auto_conf
from pgwarden.engine.restore.paths import wal_dir


def write_recovery(datadir: Path, target: RecoveryTarget, action: Action) -> None:
    """Make ``datadir`` recover to ``target`` from its fetched WAL, then ``action``, at its next start."""
    settings = recovery_settings(target, f"cp '{wal_dir(datadir)}/%f' '%p'", action)
    with open(datadir / "postgresql.auto.conf", "a") as conf:
        conf.write(render_auto_conf(settings))
    (datadir / "recovery.signal").touch()


def recovery_tuning(database_size: int) -> dict[str, str]:
    """Command-line settings that make replay fast; they last until the restored server's next restart.

    initdb-sized buffers (128 MB) and max_wal_size (1 GB) make recovery flush and checkpoint
    constantly; measured in bench/ (scenario restore), larger ones cut start-plus-replay by a third.
    """
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    buffers = max(128 * 2**20, min(2**30, ram // 4, database_size))
    return {"shared_buffers": f"{buffers // 2**20}MB", "max_wal_size": "8GB", "checkpoint_timeout": "1h"}
