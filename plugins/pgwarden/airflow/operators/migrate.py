"""Operators of ``<database>.migrate``: lint, check the folder against the history, apply or roll back."""

from __future__ import annotations

from typing import Any

from pgwarden.airflow.operators.base import PgwardenOperator


def run_info(context: Any):
    from pgwarden.engine.migrations.history import RunInfo

    return RunInfo(dag_id=context["dag"].dag_id, run_id=context["run_id"], try_number=context["ti"].try_number)


def rollback_target(context: Any) -> int | None:
    value = (context.get("params") or {}).get("rollback_to")
    return None if value is None else int(value)


class MigrationLintOperator(PgwardenOperator):
    """squawk on every plain migration (up and down) and the folder's refusals; needs no database."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.engine.migrations.lint import lint_migration, require_clean
        from pgwarden.engine.migrations.loader import load_migrations

        migrations = load_migrations(self.db_config.migrations)
        findings = [f for m in migrations for f in lint_migration(m, self.db_config.migrations)]
        require_clean(findings)
        return {"migrations": len(migrations), "plain": sum(m.kind == "plain" for m in migrations)}


class MigrationCheckOperator(PgwardenOperator):
    """Refuse changed, removed or out-of-order migrations against ``pgwarden.schema_history``; list pending."""

    def run(self, context: Any) -> dict[str, object]:
        from pgwarden.core.migrations.file import pending
        from pgwarden.engine.migrations.history import read_history_readonly
        from pgwarden.engine.migrations.loader import check_history, load_migrations

        migrations = load_migrations(self.db_config.migrations)
        history = read_history_readonly(self.pg_target())
        check_history(self.db_config.migrations, migrations, history)
        todo = pending(migrations, [row.record for row in history])
        for migration in todo:
            self.log.info("pending: %s (%s)", migration.label, migration.kind)
        return {"applied": sum(row.record.in_effect for row in history), "pending": [m.label for m in todo]}


class ApplyMigrationsOperator(PgwardenOperator):
    """Apply pending plain migrations in order, a restore point before each (skipped for a rollback run)."""

    def run(self, context: Any) -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pgwarden.engine.migrations.apply import apply_pending

        if rollback_target(context) is not None:
            raise AirflowSkipException("this run rolls back (rollback_to is set); nothing is applied")
        result = apply_pending(self.pg_target(), self.repository(), self.database, self.db_config.migrations,
                               run_info(context), log=self.log.info)
        return result.to_json_dict()


class RollbackMigrationsOperator(PgwardenOperator):
    """Run the down files of the migrations above ``rollback_to``, newest first (skipped when it is unset)."""

    def run(self, context: Any) -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pgwarden.engine.migrations.apply import rollback_to

        version = rollback_target(context)
        if version is None:
            raise AirflowSkipException("rollback_to is not set; nothing is rolled back")
        result = rollback_to(self.pg_target(), self.repository(), self.database, self.db_config.migrations,
                             version, run_info(context), log=self.log.info)
        return result.to_json_dict()
