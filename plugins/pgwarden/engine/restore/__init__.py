"""Restore and point-in-time recovery from the repository into a directory, with or without Airflow.

One module per step: ``plan`` (choose the backup, check the WAL reaches the target, before any
download), ``fetch`` (verified base backup unpacked, WAL beside it in ``<dest>.wal/``), ``recovery``
(the recovery settings; the drill retargets through the same writer), ``server`` (start the
restored server and wait for the target), ``cleanup`` (remove it all); ``run`` chains them.
The decisions themselves are pure and live in ``core.restore_plan`` and ``core.recovery``.
"""

from pgwarden.engine.restore.cleanup import remove_restore
from pgwarden.engine.restore.fetch import fetch_wal
from pgwarden.engine.restore.paths import in_progress_marker
from pgwarden.engine.restore.plan import list_restore_points, plan_restore
from pgwarden.engine.restore.recovery import recovery_tuning, write_recovery
from pgwarden.engine.restore.run import RestoreResult, restore
from pgwarden.engine.restore.server import next_steps, restored_server, wait_for_target

__all__ = [
    "RestoreResult",
    "fetch_wal",
    "in_progress_marker",
    "list_restore_points",
    "next_steps",
    "plan_restore",
    "recovery_tuning",
    "remove_restore",
    "restore",
    "restored_server",
    "wait_for_target",
    "write_recovery",
]
