"""Operators that anchor the erasure ledger outside its database: export, certificates.

Both are safe to clear and re-run: they write what the repository does not hold yet and nothing else.
"""

from __future__ import annotations

from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


class LedgerExportOperator(PgwardenOperator):
    """Export new ledger entries and the chain head to ``<db>/ledger/`` (Object Lock where configured).

    Fails without retry when the database chain no longer links to what was exported: that is
    tampering, and ``pgwarden ledger verify <db>`` names the entry.
    """

    ui_color = "#5b4b8a"

    def run(self, context: Any) -> dict[str, Any]:
        from pgwarden.engine.lifecycle.ledger_export import export_ledger
        from pgwarden.engine.postgres import connect

        with connect(self.pg_target(), statement_timeout="5min") as conn:
            result = export_ledger(conn, self.repository(), self.database, self.db_config.repository,
                                   log=self.log.info)
        self.log.info("%s", result.summary())
        return result.to_json_dict()


class CertificatesOperator(PgwardenOperator):
    """Write JSON and HTML certificates of new erasure entries to ``<db>/ledger/certificates/``."""

    ui_color = "#5b4b8a"

    def run(self, context: Any) -> dict[str, Any]:
        from pgwarden.engine.lifecycle.certificates import write_certificates
        from pgwarden.engine.postgres import connect

        with connect(self.pg_target(), statement_timeout="5min") as conn:
            result = write_certificates(conn, self.repository(), self.database, self.db_config, log=self.log.info)
        self.log.info("%s", result.summary())
        return result.to_json_dict()
