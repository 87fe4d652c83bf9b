"""GFS retention of the primary repository: which backups and WAL to keep, and deleting the rest."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


class RetentionOperator(PgwardenOperator):
    """Apply GFS retention to the primary repository (or only report, with ``retention.dry_run``)."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.prune import prune

        result = prune(self.repository(), self.database, self.db_config.backup.retention.policy(),
                       dry_run=self.db_config.backup.retention.dry_run, now=datetime.now(timezone.utc),
                       log=self.log.info)
        return result.to_json_dict()
