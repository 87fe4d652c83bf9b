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
        from airflow.sdk.exceptions import AirflowFailException

        from pgwarden.core.health import Requirements
        from pgwarden.engine.errors import PgwardenError
        from pgwarden.engine.healthcheck import gather_standby_facts, run_healthcheck

        cfg = self.db_config
        requirements = Requirements(
            backups=cfg.backup.enabled,
            slot_name=cfg.backup.slot_name or f"pgwarden_{self.database}",
            slot_warn_bytes=cfg.backup.slot_warn_size,
            max_pg_wal_bytes=cfg.healthcheck.max_pg_wal_size,
        )
        standbys = []
        for standby in cfg.healthcheck.standbys:
            try:
                target = self._standby_target(standby.conn_id)
                standbys.append(gather_standby_facts(standby.conn_id, target, standby.max_replay_lag))
            except PgwardenError as exc:
                standbys.append(gather_standby_facts(standby.conn_id, None, standby.max_replay_lag, str(exc)))

        def probe_repository() -> None:
            self.repository().probe()

        report = run_healthcheck(
            self.pg_target(), requirements,
            repository_url=cfg.repository.url, repository_probe=probe_repository, standbys=standbys,
        )
        self.log.info("healthcheck of %s:\n%s", self.database, report.render())
        if not report.ok:
            problems = "\n".join(f.line() for f in report.failures)
            raise AirflowFailException(
                f"{self.database}: {len(report.failures)} requirement(s) not met:\n{problems}"
            )
        return report.summary()

    @staticmethod
    def _standby_target(conn_id: str):
        from pgwarden.airflow.connections import pg_target

        return pg_target(conn_id)
