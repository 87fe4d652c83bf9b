"""A restore from start to end, each step timed: select, fetch and unpack, recovery settings, start and wait.

Whatever fails after selection (disk full, a corrupt object, recovery stopping short), nothing
half-restored is left behind: the error says what happened and the directories are removed. A
restore killed with -9 leaves its in-progress marker; running it again starts over.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from pgwarden.core.catalog import Catalog
from pgwarden.core.recovery import Action, RecoveryTarget
from pgwarden.engine import pgtools
from pgwarden.engine.cluster import free_port, port_in_use
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.restore.cleanup import remove_restore
from pgwarden.engine.restore.fetch import fetch_wal, unpack_backup
from pgwarden.engine.restore.paths import in_progress_marker, tablespace_dir, wal_dir
from pgwarden.engine.restore.plan import plan_restore
from pgwarden.engine.restore.recovery import recovery_tuning, write_recovery
from pgwarden.engine.restore.server import reached, restored_server, wait_for_target

Log = Callable[[str], None]


@dataclass
class RestoreResult:
    """What was restored and reached; positions and durations only."""

    database: str
    backup_id: str
    target: str
    datadir: str
    port: int | None = None
    started: bool = False
    reached_lsn: str | None = None
    reached_time: str | None = None
    timeline: int | None = None
    in_recovery: bool | None = None
    wal_segments: int = 0
    steps: dict[str, float] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if not self.started:  # nothing replayed yet
            return (f"restore of {self.database} unpacked into {self.datadir}, not started; "
                    f"step seconds: {self.steps}")
        return (f"restore of {self.database} reached LSN {self.reached_lsn} (time {self.reached_time}, timeline "
                f"{self.timeline}); step seconds: {self.steps}")


def restore(
    repo,
    database: str,
    dest: Path,
    target: RecoveryTarget,
    *,
    backup_id: str | None = None,
    port: int | None = None,
    start: bool = False,
    action: Action = "promote",
    log: Log = print,
    catalog: Catalog | None = None,
) -> RestoreResult:
    dest = Path(dest).resolve()
    marker = in_progress_marker(dest)
    if marker.exists():
        # Our own unfinished restore (the task was killed): converge by starting over.
        log(f"removing an unfinished restore in {dest} left by a killed run")
        remove_restore(dest)
    if dest.exists() and any(dest.iterdir()):
        raise PermanentError(f"destination {dest} is not empty; restore into a new or empty directory")
    if start and port is not None and port_in_use(port):
        raise PermanentError(f"port {port} is busy; pass a free --port")
    steps: dict[str, float] = {}
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.monotonic()
        steps[step] = round(now - clock, 3)
        clock = now

    plan = plan_restore(repo, database, target, backup_id=backup_id, catalog=catalog)
    backup = plan.backup
    log(f"restoring {database} backup {backup.id} (LSN {backup.manifest.start_lsn} -> "
        f"{backup.manifest.stop_lsn}) to {target.describe()} into {dest}")
    lap("plan")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()  # removed once the restore is complete; see above
        dest.mkdir(parents=True, exist_ok=True)
        wal = wal_dir(dest)
        shutil.rmtree(wal, ignore_errors=True)
        # WAL is fetched while the base backup streams in: neither waits for the other.
        background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgwarden-restore")
        wal_fetch = (background.submit(fetch_wal, repo, plan.catalog, backup, plan.target_lsn, wal, log)
                     if target.kind != "immediate" else None)
        try:
            unpack_backup(repo, database, backup, dest)
            lap("fetch_and_unpack")
            segments = wal_fetch.result() if wal_fetch is not None else 0
            wal.mkdir(exist_ok=True)
            lap("fetch_wal")  # only the part not hidden behind the base backup's unpacking
        finally:
            background.shutdown(wait=True)

        write_recovery(dest, target, action)
        for path in (dest, wal, tablespace_dir(dest)):
            if path.exists():
                pgtools.give_to_server_user(path)
        os.chmod(dest, 0o700)

        result = RestoreResult(database=database, backup_id=backup.id, target=target.describe(), datadir=str(dest),
                               port=port, wal_segments=segments, steps=steps)
        if start:
            result.port = port if port is not None else free_port()
            cluster = restored_server(dest, result.port, recovery_tuning(backup.manifest.database_size_bytes))
            cluster.start(timeout=24 * 3600)  # pg_ctl -w waits through recovery until connections are accepted
            wait_for_target(cluster, action)
            lap("replay")
            where = reached(cluster)
            result.started, result.in_recovery, result.reached_lsn, result.timeline = (
                True, where.in_recovery, where.lsn, where.timeline)
            result.reached_time = where.time.astimezone(timezone.utc).isoformat() if where.time else None
    except OSError as exc:
        remove_restore(dest)
        need = backup.manifest.database_size_bytes
        raise PermanentError(
            f"restoring into {dest} failed: {exc.strerror or exc}; the partial restore was removed. The data "
            f"directory needs about {need // 2**20} MiB plus the WAL to replay: free space or choose another "
            f"destination") from exc
    except BaseException:
        remove_restore(dest)
        raise
    marker.unlink()
    log(result.summary())
    return result
