"""Operators that keep the repositories right: WAL chain check, off-site copy, GFS retention."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


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


class OffsiteCopyOperator(PgwardenOperator):
    """Copy every kept backup, WAL file and restore point to the off-site repository, verified by
    checksum, then apply retention there. The primary repository is only read."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.airflow.hooks import open_repository
        from pgwarden.engine.offsite import copy_offsite
        from pgwarden.engine.workdir import scratch

        offsite = self.db_config.backup.offsite
        assert offsite is not None, "the DAG only has this task when backup.offsite is set"
        with scratch(self.database, f"offsite-{self.task_id}") as workdir:
            result = copy_offsite(self.repository(), open_repository(offsite), self.database, workdir=workdir,
                                  policy=self.db_config.backup.retention.policy(), now=datetime.now(timezone.utc),
                                  log=self.log.info)
        return result.to_json_dict()


class RetentionOperator(PgwardenOperator):
    """Apply GFS retention to the primary repository (or only report, with ``retention.dry_run``)."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.prune import prune

        result = prune(self.repository(), self.database, self.db_config.backup.retention.policy(),
                       dry_run=self.db_config.backup.retention.dry_run, now=datetime.now(timezone.utc),
                       log=self.log.info)
        return result.to_json_dict()
