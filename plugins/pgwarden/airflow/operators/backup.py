"""The full base backup operator of ``<database>.backup_full``."""

from __future__ import annotations

from typing import Any

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.airflow.operators.base import PgwardenOperator


class FullBackupOperator(PgwardenOperator):
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

    def metrics(self, result: dict[str, object]) -> list[Metric]:
        return [Metric("backup_full.stored_bytes", float(result["stored_bytes"])),  # type: ignore[arg-type]
                Metric("backup_full.database_bytes", float(result["database_size_bytes"])),  # type: ignore[arg-type]
                Metric("backup_full.duration_seconds", float(result["duration_seconds"]))]  # type: ignore[arg-type]
