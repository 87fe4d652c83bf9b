"""The WAL chain of ``<database>.backup_incremental``: collect WAL, then check the chain has no gap."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

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
