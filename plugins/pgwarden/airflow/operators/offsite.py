"""The off-site copy: every kept backup, WAL file and restore point, copied to a second repository."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


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
