"""Operators of the backup pipelines: full base backups and continuous WAL collection."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


class BaseBackupOperator(PgwardenOperator):
    """Take, verify and upload a full base backup; ``pgwarden.json`` is written last.

    Safe to clear and re-run: every run is a new backup id, and a killed run leaves only an
    orphan folder that retention removes. Returns the manifest's summary (no row data).
    """

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.backup_full import take_full_backup
        from pgwarden.engine.workdir import scratch

        with scratch(self.database, "full") as workdir:
            manifest = take_full_backup(
                self.pg_target(), self.repository(), self.database, self.db_config.backup,
                self.db_config.repository, workdir=workdir, log=self.log.info,
            )
        return {
            "backup_id": manifest.backup_id,
            "start_lsn": manifest.start_lsn,
            "stop_lsn": manifest.stop_lsn,
            "timeline": manifest.timeline,
            "database_size_bytes": manifest.database_size_bytes,
            "stored_bytes": manifest.stored_bytes,
            "duration_seconds": manifest.duration_seconds,
            "compression": manifest.compression,
            "verification": manifest.verification.method,
            "row_counts": manifest.row_counts.counts if manifest.row_counts else {},
        }


class CollectWalOperator(PgwardenOperator):
    """Collect WAL since the last run into the repository, with a named restore point per run.

    Safe to kill at any moment: pgwarden's slot only moves after the upload, so the next try
    re-streams whatever had not reached the repository.
    """

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine import compress
        from pgwarden.engine.wal import collect_wal
        from pgwarden.engine.workdir import scratch

        backup = self.db_config.backup
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        with scratch(self.database, "wal") as workdir:
            result = collect_wal(
                self.pg_target(), self.repository(), self.database,
                slot=backup.slot_for(self.database),
                workdir=workdir,
                compression=compress.resolve(backup.compression),
                restore_point=f"pgwarden_{self.database}_{stamp}",
                warn_bytes=backup.slot_warn_size,
                log=self.log.info,
            )
        return result.to_json_dict()
