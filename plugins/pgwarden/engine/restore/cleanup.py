"""Restore step 5, cleanup: stop a restored server and remove everything a restore wrote.

Used when a restore fails half way (nothing half-restored is left), when a killed restore is run
again (its in-progress marker says so), and by drills and DAG teardown tasks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pgwarden.engine.restore.paths import in_progress_marker, tablespace_dir, wal_dir
from pgwarden.engine.restore.server import restored_server


def remove_restore(dest: Path) -> None:
    """Stop a restored server and remove its data, WAL and tablespace directories."""
    dest = Path(dest)
    pid_file = dest / "postmaster.pid"
    if pid_file.exists():
        try:
            port = int(pid_file.read_text().splitlines()[3])
        except (IndexError, ValueError):
            port = 0
        restored_server(dest, port).remove()
    for path in (dest, wal_dir(dest), tablespace_dir(dest)):
        shutil.rmtree(path, ignore_errors=True)
    in_progress_marker(dest).unlink(missing_ok=True)
