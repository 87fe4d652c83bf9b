"""The ``migrations`` section of a database entry: where its versioned migrations live and how they run.

``path`` defaults to ``sql/migrations/<database>`` beside the config file (``include/sql/migrations/appdb``
for ``include/pgwarden.yaml``); a relative path is read from the config file's folder too. The parser
resolves it once (:func:`resolve_folder`), so every reader (DAG factory, CLI, tasks) sees one absolute folder.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePath
from typing import Literal

from pydantic import Field

from pgwarden.core.config_types import Duration, Strict


class GatesConfig(Strict):
    """The human gates of the gated expand/contract DAGs (``<database>.migrate.<NNN_name>``)."""

    approvers: list[str] = Field(
        default_factory=list,
        description="Airflow user ids allowed to answer the gates; empty: any user with access to the DAG",
    )
    migration_approvers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per migration (NNN_name): approvers replacing `approvers` for that migration's gates",
    )
    switch_timeout: Duration = Field(default=timedelta(days=7),
                                     description="how long the switch-reads gate waits; then it rolls back")
    contract_timeout: Duration = Field(default=timedelta(days=1),
                                       description="how long the contract gate waits; then it rolls back")
    min_soak: Duration = Field(default=timedelta(minutes=30),
                               description="without pg_stat_statements: wait this long after the switch gate")
    quiet_for: Duration = Field(default=timedelta(seconds=30),
                                description="with pg_stat_statements: no statement on the old column for this long")
    poke_interval: Duration = Field(default=timedelta(seconds=30),
                                    description="how often the consistency and readiness sensors look again")
    safety_net: Literal["wal", "full_backup", "restore_point"] = Field(
        default="wal",
        description="before contract: restore point + WAL collection (wal), + a full backup (full_backup), "
        "or only the restore point (restore_point: for a database without backups)",
    )

    def approvers_for(self, label: str) -> list[str]:
        return self.migration_approvers.get(label, self.approvers)


class MigrationsConfig(Strict):
    path: str | None = Field(
        default=None,
        description="folder of NNN_name.sql/.down.sql/.yaml files; default sql/migrations/<database> "
        "beside the config file; relative paths are read from the config file's folder",
    )
    lint_exclude: list[str] = Field(
        default_factory=list,
        description="squawk rules to skip for this database, besides the ones pgwarden's runner makes safe",
    )
    lock_timeout: Duration = Field(default=timedelta(seconds=1), description="per statement: wait this long for a lock")
    statement_timeout: Duration = Field(default=timedelta(minutes=10), description="per statement: run this long")
    lock_retries: int = Field(default=10, ge=0, le=1000, description="retries of a migration on lock timeout")
    gates: GatesConfig = Field(default_factory=GatesConfig, description="the gated expand/contract DAGs")


def resolve_folder(config: MigrationsConfig, database: str, config_source: str) -> MigrationsConfig:
    """The section with ``path`` made absolute against the config file's folder (pure path arithmetic)."""
    base = PurePath(config_source).parent
    path = PurePath(config.path) if config.path else PurePath("sql", "migrations", database)
    if not path.is_absolute():
        path = base / path
    return config.model_copy(update={"path": str(path)})
