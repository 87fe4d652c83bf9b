"""The healthcheck operator: what pgwarden needs from the server, and what is missing."""

from __future__ import annotations

from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


class HealthcheckOperator(PgwardenOperator):
    """Check the server, the repository and any hot standbys against the enabled concerns.

    Fails (no retry) listing every unmet requirement with the change that fixes it; warnings are
    logged and returned in the XCom summary (check names and statuses only, no data).
    """

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.airflow.hooks import pg_target
        from pgwarden.engine.errors import CheckFailed
        from pgwarden.engine.healthcheck import check_database

        report = check_database(self.database, self.db_config, pg_target, self.repository)
        self.log.info("healthcheck of %s:\n%s", self.database, report.render())
        if not report.ok:
            problems = "\n".join(f.line() for f in report.failures)
            raise CheckFailed(
                f"{self.database}: {len(report.failures)} requirement(s) not met:\n{problems}"
            )
        return report.summary()
