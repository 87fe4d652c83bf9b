"""The WAL chain of ``<database>.backup_incremental``: collect WAL, then check the chain has no gap."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pgwarden.airflow.operating.metrics import Metric
from pgwarden.airflow.operators.base import PgwardenOperator


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

    def metrics(self, result: dict[str, Any]) -> list[Metric]:
        return [Metric("backup_incremental.wal_bytes_uploaded", result["bytes_uploaded"], "incr"),
                Metric("backup_incremental.wal_segments_uploaded", result["segments_uploaded"], "incr"),
                Metric("backup_incremental.duration_seconds", result["seconds"]),
                Metric("backup_incremental.slot_retained_bytes", result["slot_retained_bytes"])]


class CheckWalChainOperator(PgwardenOperator):
    """Fail loudly when WAL from the oldest point-in-time backup to now has a gap, naming the segment."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.catalog import read_catalog
        from pgwarden.engine.errors import PermanentError

        catalog = read_catalog(self.repository(), self.database, self.db_config.backup.retention.policy())
        report = catalog.check_chain()
        if report is None:
            raise PermanentError(f"{self.database} has no valid full backup yet, so WAL cannot be replayed "
                                 f"from anywhere: trigger {self.database}.backup_full")
        self.log.info(report.message)
        if not report.ok:
            raise PermanentError(report.message)
        return report.to_json_dict()

    def metrics(self, result: dict[str, Any]) -> list[Metric]:
        """RPO exposure: how much would be lost if the server died now, i.e. the age of the newest restore
        point that WAL in the repository replays to without a gap."""
        point = result.get("reachable_point")
        if not point:
            return []
        age = datetime.now(timezone.utc) - datetime.fromisoformat(point["created_at"])
        return [Metric("backup_incremental.rpo_exposure_seconds", max(age.total_seconds(), 0.0))]
